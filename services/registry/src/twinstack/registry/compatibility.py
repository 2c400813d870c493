"""Whether a new version of a model keeps working for what was written against the old one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twinstack.common.errors import FieldViolation
from twinstack.modeling.document import Property, Telemetry
from twinstack.modeling.resolve import ResolvedModel


def breaking_changes(old: ResolvedModel, new: ResolvedModel) -> list[FieldViolation]:
    """How ``new`` breaks twins, telemetry or clients written for ``old`` (empty if it does not).

    Adding anything is compatible; removing or retyping an element, changing a unit, narrowing
    a range or an enum, making a property read-only, retargeting a relationship or lowering its
    multiplicity, and removing a state variable are not.
    """
    changes: list[FieldViolation] = []

    def removed(kind: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        for name in sorted(set(before) - set(after)):
            changes.append(FieldViolation(f"{kind}.{name}", "removed"))

    removed("properties", old.properties, new.properties)
    removed("telemetry", old.telemetry, new.telemetry)
    removed("commands", old.commands, new.commands)
    removed("relationships", old.relationships, new.relationships)
    removed("components", old.components, new.components)
    removed(
        "dynamics.states",
        {s.name: s for s in old.dynamics.states},
        {s.name: s for s in new.dynamics.states},
    )
    for kind, before_map, after_map in (
        ("properties", old.properties, new.properties),
        ("telemetry", old.telemetry, new.telemetry),
    ):
        for name, before in before_map.items():
            after = after_map.get(name)
            if after is not None:
                changes.extend(_field_changes(f"{kind}.{name}", before, after))
    for name, before_rel in old.relationships.items():
        after_rel = new.relationships.get(name)
        if after_rel is None:
            continue
        if before_rel.target != after_rel.target:
            changes.append(FieldViolation(f"relationships.{name}.target", "target model changed"))
        if after_rel.max_multiplicity is not None and (
            before_rel.max_multiplicity is None
            or after_rel.max_multiplicity < before_rel.max_multiplicity
        ):
            changes.append(FieldViolation(f"relationships.{name}.maxMultiplicity", "lowered"))
    return changes


def _field_changes(
    path: str, before: Property | Telemetry, after: Property | Telemetry
) -> list[FieldViolation]:
    changes = []
    if before.schema.kind != after.schema.kind:
        changes.append(
            FieldViolation(
                f"{path}.schema", f"type changed from {before.schema.kind} to {after.schema.kind}"
            )
        )
    elif before.schema.kind == "enum" and not set(before.schema.enum_values) <= set(
        after.schema.enum_values
    ):
        changes.append(FieldViolation(f"{path}.schema", "enum values removed"))
    elif before.schema != after.schema and before.schema.kind in ("object", "array", "map"):
        changes.append(FieldViolation(f"{path}.schema", "schema changed"))
    if before.unit != after.unit:
        changes.append(
            FieldViolation(f"{path}.unit", f"unit changed from {before.unit!r} to {after.unit!r}")
        )
    if after.minimum is not None and (before.minimum is None or after.minimum > before.minimum):
        changes.append(FieldViolation(f"{path}.min", "range narrowed"))
    if after.maximum is not None and (before.maximum is None or after.maximum < before.maximum):
        changes.append(FieldViolation(f"{path}.max", "range narrowed"))
    if (
        isinstance(before, Property)
        and isinstance(after, Property)
        and (before.writable and not after.writable)
    ):
        changes.append(FieldViolation(f"{path}.writable", "became read-only"))
    return changes
