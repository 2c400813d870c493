"""Models written back as documents of the model language (resolved models, DTDL imports)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twinstack.modeling.document import (
    Command,
    Dynamics,
    Property,
    Relationship,
    Telemetry,
)

if TYPE_CHECKING:
    from twinstack.modeling.resolve import ResolvedModel


def _drop_empty(entries: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entries.items() if v not in (None, "", [], {})}


def property_document(prop: Property) -> dict[str, Any]:
    return _drop_empty(
        {
            "schema": prop.schema.to_json(),
            "unit": prop.unit,
            "min": prop.minimum,
            "max": prop.maximum,
            "writable": None if prop.writable else False,
            "default": prop.default,
            "description": prop.description,
        }
    )


def telemetry_document(field: Telemetry) -> dict[str, Any]:
    return _drop_empty(
        {
            "schema": field.schema.to_json(),
            "unit": field.unit,
            "min": field.minimum,
            "max": field.maximum,
            "samplePeriodS": field.sample_period_s,
            "description": field.description,
        }
    )


def command_document(command: Command) -> dict[str, Any]:
    return _drop_empty(
        {
            "request": None if command.request is None else command.request.to_json(),
            "response": None if command.response is None else command.response.to_json(),
            "description": command.description,
        }
    )


def relationship_document(relationship: Relationship) -> dict[str, Any]:
    return _drop_empty(
        {
            "target": relationship.target,
            "minMultiplicity": relationship.min_multiplicity or None,
            "maxMultiplicity": relationship.max_multiplicity,
            "properties": {p.name: property_document(p) for p in relationship.properties},
            "description": relationship.description,
        }
    )


def dynamics_document(dynamics: Dynamics) -> dict[str, Any]:
    return _drop_empty(
        {
            "states": {
                s.name: _drop_empty({"initial": s.initial, "unit": s.unit}) for s in dynamics.states
            },
            "parameters": {
                p.name: _drop_empty(
                    {
                        "default": p.default,
                        "min": p.minimum,
                        "max": p.maximum,
                        "unit": p.unit,
                        "property": p.property,
                    }
                )
                for p in dynamics.parameters
            },
            "inputs": {
                i.name: _drop_empty(
                    {"default": i.default, "telemetry": i.telemetry, "unit": i.unit}
                )
                for i in dynamics.inputs
            },
            "equations": {e.name: e.text for e in dynamics.equations},
            "outputs": {
                o.name: _drop_empty({"expression": o.text, "unit": o.unit})
                for o in dynamics.outputs
            },
            "conditions": {
                c.name: _drop_empty({"when": c.text, "severity": c.severity, "message": c.message})
                for c in dynamics.conditions
            },
        }
    )


def resolved_document(resolved: ResolvedModel) -> dict[str, Any]:
    model = resolved.model
    return _drop_empty(
        {
            "id": model.id,
            "displayName": model.display_name,
            "description": model.description,
            "extends": list(model.extends),
            "properties": {n: property_document(p) for n, p in sorted(resolved.properties.items())},
            "telemetry": {n: telemetry_document(t) for n, t in sorted(resolved.telemetry.items())},
            "commands": {n: command_document(c) for n, c in sorted(resolved.commands.items())},
            "relationships": {
                n: relationship_document(r) for n, r in sorted(resolved.relationships.items())
            },
            "components": {n: {"model": c.id} for n, c in sorted(resolved.components.items())},
            "dynamics": dynamics_document(resolved.dynamics),
        }
    )
