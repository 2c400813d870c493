"""Models resolved against each other: inheritance merged, references checked, dynamics
validated, twins' properties checked, and new versions compared with old ones.

Inheritance rules: a model inherits every element (property, telemetry field, command,
relationship, component) and every dynamics entry of its parents, transitively. The same element
reached through two paths (a diamond) is fine when both paths bring the same definition; two
different definitions of one name are a conflict and the model is rejected, as is a model that
redeclares a name it inherits. Cycles of ``extends`` are rejected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from twinstack.api.common.v1 import types_pb2
from twinstack.modeling.document import (
    NUMERIC,
    TIME_NAME,
    Command,
    Component,
    Condition,
    Dynamics,
    Expression,
    Model,
    ModelError,
    Property,
    Relationship,
    Telemetry,
)
from twinstack.modeling.expressions import names_in
from twinstack.modeling.units import (
    TIME,
    Dimensions,
    UnitError,
    combine,
    describe,
    infer,
    unit_dimensions,
)
from twinstack.modeling.values import coerce, from_json, value_violations
from twinstack.modeling.violations import FieldViolation

# DTDL's own limit on levels of ``extends``.
MAX_INHERITANCE_DEPTH = 10


class InvalidDependencyError(ModelError):
    """A model is invalid only because a model it extends or contains is invalid."""


Element = Property | Telemetry | Command | Relationship | Component


@dataclass(frozen=True)
class ResolvedModel:
    """A model with everything it inherits: what twins, ingestion and simulation work with."""

    model: Model
    ancestors: frozenset[str]  # every model it extends, transitively (not itself)
    properties: Mapping[str, Property]
    telemetry: Mapping[str, Telemetry]
    commands: Mapping[str, Command]
    relationships: Mapping[str, Relationship]
    components: Mapping[str, ResolvedModel]
    dynamics: Dynamics = field(default_factory=Dynamics)
    depth: int = 0  # levels of ``extends`` above the model (0: it extends nothing)

    @property
    def id(self) -> str:
        return self.model.id

    def is_a(self, model_id: str) -> bool:
        return model_id == self.model.id or model_id in self.ancestors


def _merge(  # noqa: PLR0917 - one call shape for elements and dynamics entries
    into: dict[str, Any],
    name: str,
    element: Any,
    origin: str,
    path: str,
    sources: dict[str, str],
    violations: list[FieldViolation],
) -> None:
    if name not in into:
        into[name] = element
        sources[name] = origin
    elif into[name] != element:
        violations.append(
            FieldViolation(path, f"{name!r} is defined differently by {sources[name]} and {origin}")
        )


class Resolver:
    """Resolves models by id, looking each up with ``lookup`` (None: unknown).

    Resolution walks ``extends`` and component references with an explicit stack, never by
    recursion, so no ontology (however deep, wide or cyclic) can exhaust the interpreter's
    stack. Relationship targets are only checked to exist: a relationship names another model,
    it does not include it, so cycles of relationships (A targets B, B targets A) are normal.
    Successful resolutions are cached for good (models are immutable); failures until
    :meth:`forget_failures`, which a caller whose ``lookup`` gains models calls, since a model
    missing now may be stored a moment later.
    """

    def __init__(self, lookup: Callable[[str], Model | None]) -> None:
        self._lookup = lookup
        self._resolved: dict[str, ResolvedModel] = {}
        self._failed: dict[str, ModelError] = {}

    def forget_failures(self) -> None:
        """Lets models that failed be resolved again (``lookup`` knows more models now)."""
        self._failed.clear()

    def resolve(self, model_id: str) -> ResolvedModel:
        """The model with everything it inherits.

        Raises:
            ModelError: the model, or a model it extends or contains, is unknown or invalid.
                A model that fails only because a model it builds on is invalid raises
                :class:`InvalidDependencyError`, so a batch can report each cause once.
        """
        cached = self._resolved.get(model_id)
        if cached is not None:
            return cached
        if model_id in self._failed:
            raise self._failed[model_id]
        if self._lookup(model_id) is None:
            raise ModelError([FieldViolation(model_id, f"unknown model {model_id}")])
        failures = self._failed
        for current in self._dependencies_first(model_id, failures):
            if current in self._resolved or current in failures:
                continue
            try:
                self._resolved[current] = self._resolve_one(current, failures)
            except ModelError as error:
                failures[current] = error
        if model_id in failures:
            raise failures[model_id]
        return self._resolved[model_id]

    def _building_blocks(self, model: Model) -> list[str]:
        return [*model.extends, *(component.model for component in model.components)]

    def _dependencies_first(self, root: str, failures: dict[str, ModelError]) -> list[str]:
        """Models ``root`` builds on (known, unresolved), each after its own; models on a cycle
        of ``extends``/components are put into ``failures``."""
        order: list[str] = []
        on_path: dict[str, int] = {}  # model id -> its index in ``path``
        path: list[str] = []
        done: set[str] = set()
        stack: list[tuple[str, Iterator[str]]] = []

        def enter(model_id: str) -> None:
            model = self._lookup(model_id)
            assert model is not None
            on_path[model_id] = len(path)
            path.append(model_id)
            stack.append((model_id, iter(self._building_blocks(model))))

        enter(root)
        while stack:
            model_id, references = stack[-1]
            reference = next(references, None)
            if reference is None:
                stack.pop()
                path.pop()
                del on_path[model_id]
                done.add(model_id)
                order.append(model_id)
                continue
            if reference in done or reference in self._resolved or reference in failures:
                continue
            if reference in on_path:
                cycle = [*path[on_path[reference] :], reference]
                message = "extends or contains itself (a cycle): " + " -> ".join(cycle)
                for member in cycle[:-1]:
                    failures.setdefault(member, ModelError([FieldViolation(member, message)]))
                continue
            if self._lookup(reference) is not None:
                enter(reference)
        return order

    def _resolve_one(self, model_id: str, failures: Mapping[str, ModelError]) -> ResolvedModel:
        """One model whose building blocks are resolved (or known to have failed)."""
        model = self._lookup(model_id)
        assert model is not None
        violations: list[FieldViolation] = []
        invalid: list[FieldViolation] = []

        def building_block(reference: str, path: str) -> ResolvedModel | None:
            found = self._resolved.get(reference)
            if found is not None:
                return found
            if reference in failures:
                invalid.append(FieldViolation(path, f"{reference} is invalid"))
            elif self._lookup(reference) is None:
                violations.append(FieldViolation(path, f"unknown model {reference}"))
            return None

        parents = []
        for index, parent_id in enumerate(model.extends):
            parent = building_block(parent_id, f"{model_id}.extends[{index}]")
            if parent is not None:
                parents.append(parent)
        components: dict[str, ResolvedModel] = {}
        for component in model.components:
            where = f"{model_id}.components.{component.name}"
            inner = building_block(component.model, where)
            if inner is None:
                continue
            if inner.components:
                violations.append(
                    FieldViolation(
                        where, "a component's model may not have components itself (as in DTDL)"
                    )
                )
            components[component.name] = inner
        for relationship in model.relationships:
            if relationship.target and self._lookup(relationship.target) is None:
                violations.append(
                    FieldViolation(
                        f"{model_id}.relationships.{relationship.name}.target",
                        f"unknown model {relationship.target}",
                    )
                )
        depth = 1 + max((parent.depth for parent in parents), default=-1)
        if depth > MAX_INHERITANCE_DEPTH:
            violations.append(
                FieldViolation(
                    f"{model_id}.extends",
                    f"inherits through {depth} levels; DTDL allows {MAX_INHERITANCE_DEPTH}",
                )
            )
        if violations:
            raise ModelError(violations + invalid)
        if invalid:
            raise InvalidDependencyError(invalid)
        return self._combine(model, parents, components, depth)

    def _combine(
        self,
        model: Model,
        parents: list[ResolvedModel],
        own_components: dict[str, ResolvedModel],
        depth: int,
    ) -> ResolvedModel:
        path = model.id
        violations: list[FieldViolation] = []
        sections: dict[str, dict[str, Any]] = {
            key: {}
            for key in ("properties", "telemetry", "commands", "relationships", "components")
        }
        dynamics: dict[str, dict[str, Any]] = {
            key: {}
            for key in ("states", "parameters", "inputs", "equations", "outputs", "conditions")
        }
        sources: dict[str, str] = {}
        dynamic_sources: dict[str, str] = {}
        for parent in parents:
            for key, elements in (
                ("properties", parent.properties),
                ("telemetry", parent.telemetry),
                ("commands", parent.commands),
                ("relationships", parent.relationships),
                ("components", parent.components),
            ):
                for name, element in elements.items():
                    _merge(
                        sections[key],
                        name,
                        element,
                        parent.id,
                        f"{path}.extends",
                        sources,
                        violations,
                    )
            for key, merged_entries in dynamics.items():
                for entry in getattr(parent.dynamics, key):
                    _merge(
                        merged_entries,
                        entry.name,
                        entry,
                        parent.id,
                        f"{path}.extends",
                        dynamic_sources,
                        violations,
                    )
        own: list[tuple[str, Iterable[Any]]] = [
            ("properties", model.properties),
            ("telemetry", model.telemetry),
            ("commands", model.commands),
            ("relationships", model.relationships),
        ]
        for key, declared in own:
            for element in declared:
                self._own(
                    sections, key, element.name, element, sources, f"{path}.{key}", violations
                )
        for name, component in own_components.items():
            self._own(
                sections, "components", name, component, sources, f"{path}.components", violations
            )
        for key, merged_entries in dynamics.items():
            for entry in getattr(model.dynamics, key):
                if entry.name in merged_entries:
                    violations.append(
                        FieldViolation(
                            f"{path}.dynamics.{key}.{entry.name}",
                            f"{entry.name!r} is inherited from {dynamic_sources[entry.name]} and "
                            "cannot be redeclared",
                        )
                    )
                merged_entries[entry.name] = entry
        merged = Dynamics(*(tuple(entries.values()) for entries in dynamics.values()))
        ancestors = frozenset(model.extends).union(*(p.ancestors for p in parents))
        resolved = ResolvedModel(
            model=model,
            ancestors=ancestors,
            properties=sections["properties"],
            telemetry=sections["telemetry"],
            commands=sections["commands"],
            relationships=sections["relationships"],
            components=sections["components"],
            dynamics=merged,
            depth=depth,
        )
        violations.extend(dynamics_violations(resolved, f"{path}.dynamics"))
        if violations:
            raise ModelError(violations)
        return resolved

    @staticmethod
    def _own(  # noqa: PLR0917
        sections: dict[str, dict[str, Any]],
        key: str,
        name: str,
        element: Any,
        sources: dict[str, str],
        path: str,
        violations: list[FieldViolation],
    ) -> None:
        for other_key, elements in sections.items():
            if name in elements:
                violations.append(
                    FieldViolation(
                        f"{path}.{name}",
                        f"{name!r} is inherited from {sources[name]} ({other_key}) and cannot be "
                        "redeclared",
                    )
                )
                return
        sections[key][name] = element


def _dimensions(unit: str) -> Dimensions | None:
    return unit_dimensions(unit) if unit else None


def dynamics_violations(model: ResolvedModel, path: str) -> list[FieldViolation]:
    """Names that are unknown or declared twice, states without an equation, and units that
    do not agree, in the merged dynamics of ``model``."""
    dynamics = model.dynamics
    violations: list[FieldViolation] = []
    owners: dict[str, str] = {}
    units: dict[str, Dimensions | None] = {TIME_NAME: dict(TIME)}
    for key, entries in (
        ("states", dynamics.states),
        ("parameters", dynamics.parameters),
        ("inputs", dynamics.inputs),
    ):
        for entry in entries:
            if entry.name in owners:
                violations.append(
                    FieldViolation(
                        f"{path}.{key}.{entry.name}",
                        f"{entry.name!r} is also one of the {owners[entry.name]}",
                    )
                )
            owners[entry.name] = key
            units[entry.name] = _dimensions(entry.unit)
    numeric_sources = {name for name, p in model.properties.items() if p.schema.kind in NUMERIC} | {
        name for name, t in model.telemetry.items() if t.schema.kind in NUMERIC
    }
    for state in dynamics.states:
        if isinstance(state.initial, str) and state.initial not in numeric_sources:
            violations.append(
                FieldViolation(
                    f"{path}.states.{state.name}.initial",
                    f"{state.initial!r} is not a numeric property or telemetry field of the model",
                )
            )
    for parameter in dynamics.parameters:
        prop = model.properties.get(parameter.property) if parameter.property else None
        if parameter.property and (prop is None or prop.schema.kind not in NUMERIC):
            violations.append(
                FieldViolation(
                    f"{path}.parameters.{parameter.name}.property",
                    f"{parameter.property!r} is not a numeric property of the model",
                )
            )
    for item in dynamics.inputs:
        field_ = model.telemetry.get(item.telemetry) if item.telemetry else None
        if item.telemetry and (field_ is None or field_.schema.kind not in NUMERIC):
            violations.append(
                FieldViolation(
                    f"{path}.inputs.{item.name}.telemetry",
                    f"{item.telemetry!r} is not a numeric telemetry field of the model",
                )
            )
    states = {state.name: state for state in dynamics.states}
    for equation in dynamics.equations:
        where = f"{path}.equations.{equation.name}"
        if equation.name not in states:
            violations.append(FieldViolation(where, f"{equation.name!r} is not a state variable"))
            continue
        expected = units[equation.name]
        violations.extend(
            _expression_violations(
                equation, where, units, None if expected is None else combine(expected, TIME, -1.0)
            )
        )
    for missing in sorted(set(states) - {e.name for e in dynamics.equations}):
        violations.append(
            FieldViolation(
                f"{path}.equations", f"state {missing!r} has no equation (d{missing}/dt)"
            )
        )
    for output in dynamics.outputs:
        where = f"{path}.outputs.{output.name}"
        if output.name in owners:
            violations.append(
                FieldViolation(where, f"{output.name!r} is also one of the {owners[output.name]}")
            )
        violations.extend(_expression_violations(output, where, units, _dimensions(output.unit)))
        # Later outputs and conditions may read earlier outputs.
        owners[output.name] = "outputs"
        units[output.name] = _dimensions(output.unit)
    for condition in dynamics.conditions:
        violations.extend(
            _expression_violations(
                condition, f"{path}.conditions.{condition.name}.when", units, None
            )
        )
    return violations


def _expression_violations(
    entry: Expression | Condition,
    path: str,
    units: Mapping[str, Dimensions | None],
    expected: Dimensions | None,
) -> list[FieldViolation]:
    unknown = sorted(names_in(entry.node) - set(units))
    if unknown:
        return [FieldViolation(path, f"unknown names {unknown}; known: {sorted(units)}")]
    try:
        found = infer(entry.node, units)
    except UnitError as error:
        return [FieldViolation(path, str(error))]
    if expected is not None and found is not None and found != expected:
        return [
            FieldViolation(path, f"yields {describe(found)} where {describe(expected)} is expected")
        ]
    return []


def property_violations(
    model: ResolvedModel,
    properties: Mapping[str, types_pb2.Value],
    path: str,
    *,
    changed: Iterable[str] | None = None,
) -> list[FieldViolation]:
    """What is wrong with a twin's properties under ``model``; with ``changed``, read-only
    properties among those names are refused too."""
    violations: list[FieldViolation] = []
    for name, value in properties.items():
        where = f"{path}[{name!r}]"
        prop = model.properties.get(name)
        component = model.components.get(name)
        if prop is not None:
            violations.extend(
                value_violations(prop.schema, value, where, prop.minimum, prop.maximum)
            )
        elif component is not None:
            if not value.HasField("map_value"):
                violations.append(
                    FieldViolation(where, f"component of {component.id}: expected a map")
                )
            else:
                violations.extend(property_violations(component, value.map_value.fields, where))
        else:
            known = sorted([*model.properties, *model.components])
            violations.append(
                FieldViolation(where, f"{model.id} declares no property {name!r} (known: {known})")
            )
    for name in changed or ():
        prop = model.properties.get(name)
        if prop is not None and not prop.writable:
            violations.append(FieldViolation(f"{path}[{name!r}]", "the property is read-only"))
    return violations


def normalized(
    model: ResolvedModel, properties: Mapping[str, types_pb2.Value], *, fill_defaults: bool
) -> dict[str, types_pb2.Value]:
    """``properties`` coerced to their declared representation (integers of double properties
    become doubles), and with ``fill_defaults`` the model's defaults for those not given."""
    result: dict[str, types_pb2.Value] = {}
    for name, value in properties.items():
        prop = model.properties.get(name)
        result[name] = value if prop is None else coerce(prop.schema, value)
    if fill_defaults:
        for name, prop in model.properties.items():
            if name not in result and prop.default is not None:
                result[name] = from_json(prop.schema, prop.default, name)
    for name, component in model.components.items():
        if name not in result and not fill_defaults:
            continue
        inner = result[name].map_value.fields if name in result else {}
        filled = normalized(component, inner, fill_defaults=fill_defaults)
        if filled or name in result:
            result[name] = types_pb2.Value(map_value=types_pb2.ValueMap(fields=filled))
    return result
