"""The twinstack model language: documents parsed into typed, immutable models.

A model document (JSON, or YAML converted to JSON by the CLI) is parsed into :class:`Model`;
every problem is collected with the path where it occurs, so one answer lists all of them.
docs/models.md is the reference for the language.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twinstack.modeling.expressions import (
    ExpressionError,
    Node,
    is_boolean,
    parse_expression,
    type_errors,
)
from twinstack.modeling.names import RESERVED_SERIES_NAMES
from twinstack.modeling.units import UnitError, dimensions_of
from twinstack.modeling.violations import FieldViolation

PRIMITIVES = frozenset({"double", "integer", "boolean", "string", "timestamp"})
NUMERIC = frozenset({"double", "integer"})
SEVERITIES = ("info", "warning", "critical")
MAX_SCHEMA_DEPTH = 8
MAX_ELEMENTS = 500

# dtmi:<segment>(:<segment>)*;<major>[.<minor>], as DTDL v3 defines model identifiers.
MODEL_ID = re.compile(
    r"dtmi:[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?(?::[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?)*"
    r";[1-9][0-9]{0,8}(?:\.[0-9]{1,6})?"
)
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
TIME_NAME = "t"


class ModelError(ValueError):
    """A model document is invalid; ``violations`` say where (a path) and why."""

    def __init__(self, violations: Iterable[FieldViolation]) -> None:
        self.violations = list(violations)
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in self.violations))


def model_key(model_id: str) -> str:
    """The model id as a NATS KV key and subject tail: ':' becomes '.', ';' becomes '='."""
    return model_id.replace(":", ".").replace(";", "=")


def version_of(model_id: str) -> tuple[str, tuple[int, ...]]:
    """The unversioned id and the version as comparable numbers."""
    base, _, version = model_id.partition(";")
    return base, tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class Schema:
    """The type of a property, telemetry field, command payload or object field."""

    kind: str  # a primitive, or "enum", "object", "array", "map"
    enum_values: tuple[str | int, ...] = ()
    fields: tuple[tuple[str, Schema], ...] = ()  # of an object
    items: Schema | None = None  # of an array, or the values of a map

    def to_json(self) -> Any:
        if self.kind in PRIMITIVES:
            return self.kind
        if self.kind == "enum":
            return {"enum": list(self.enum_values)}
        if self.kind == "object":
            return {"object": {name: schema.to_json() for name, schema in self.fields}}
        assert self.items is not None
        return {self.kind: self.items.to_json()}


@dataclass(frozen=True)
class Property:
    name: str
    schema: Schema
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    writable: bool = True
    default: Any = None
    description: str = ""


@dataclass(frozen=True)
class Telemetry:
    name: str
    schema: Schema
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    sample_period_s: float | None = None
    description: str = ""


@dataclass(frozen=True)
class Command:
    name: str
    request: Schema | None = None
    response: Schema | None = None
    description: str = ""


@dataclass(frozen=True)
class Relationship:
    name: str
    target: str | None = None  # a model id; None allows any target
    min_multiplicity: int = 0
    max_multiplicity: int | None = None  # None: unbounded
    properties: tuple[Property, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Component:
    name: str
    model: str
    description: str = ""


@dataclass(frozen=True)
class State:
    name: str
    initial: str | float  # a property or telemetry name, or a number
    unit: str = ""


@dataclass(frozen=True)
class Parameter:
    name: str
    default: float
    minimum: float | None = None
    maximum: float | None = None
    unit: str = ""
    property: str = ""  # a twin property that overrides the default when set


@dataclass(frozen=True)
class Input:
    name: str
    default: float
    telemetry: str = ""  # the telemetry field it follows; scenario-only when empty
    unit: str = ""


@dataclass(frozen=True)
class Expression:
    name: str
    text: str
    node: Node
    unit: str = ""


@dataclass(frozen=True)
class Condition:
    name: str
    text: str
    node: Node
    severity: str = "warning"
    message: str = ""


@dataclass(frozen=True)
class Dynamics:
    """What the simulation service compiles: d(state)/dt = equation, per state, in seconds."""

    states: tuple[State, ...] = ()
    parameters: tuple[Parameter, ...] = ()
    inputs: tuple[Input, ...] = ()
    equations: tuple[Expression, ...] = ()  # named after the state they are the derivative of
    outputs: tuple[Expression, ...] = ()
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Model:
    id: str
    display_name: str = ""
    description: str = ""
    extends: tuple[str, ...] = ()
    properties: tuple[Property, ...] = ()
    telemetry: tuple[Telemetry, ...] = ()
    commands: tuple[Command, ...] = ()
    relationships: tuple[Relationship, ...] = ()
    components: tuple[Component, ...] = ()
    dynamics: Dynamics = field(default_factory=Dynamics)
    document: str = ""  # canonical JSON of the source document

    def references(self) -> set[str]:
        """Ids of the other models this one names (parents, components, relationship targets)."""
        found = set(self.extends) | {c.model for c in self.components}
        found |= {r.target for r in self.relationships if r.target}
        return found


def canonical_json(document: Any) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class _Reader:
    """Walks a document, collecting violations instead of stopping at the first."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.violations: list[FieldViolation] = []

    def fail(self, path: str, message: str) -> None:
        self.violations.append(FieldViolation(f"{self.origin}{path}", message))

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, "must be an object")
            return {}
        if len(value) > MAX_ELEMENTS:
            self.fail(path, f"at most {MAX_ELEMENTS} entries")
            return {}
        return value

    def text(self, value: Any, path: str, *, limit: int = 2000) -> str:
        if value is None:
            return ""
        if not isinstance(value, str) or len(value) > limit:
            self.fail(path, f"must be a string of at most {limit} characters")
            return ""
        return value

    def number(self, value: Any, path: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, "must be a number")
            return None
        if not math.isfinite(value):
            self.fail(path, "must be finite")
            return None
        return float(value)

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(path, "must be true or false")
            return default
        return value

    def name(self, value: str, path: str) -> bool:
        if NAME.fullmatch(value):
            return True
        self.fail(path, "names are 1-64 characters of [A-Za-z0-9_] not starting with a digit")
        return False

    def model_id(self, value: Any, path: str) -> str | None:
        if isinstance(value, str) and MODEL_ID.fullmatch(value):
            return value
        self.fail(path, "must be a model id like 'dtmi:example:Pump;1' (DTMI with a version)")
        return None

    def unit(self, value: Any, path: str) -> str:
        unit = self.text(value, path, limit=64)
        if unit:
            try:
                dimensions_of(unit)
            except UnitError as error:
                self.fail(path, str(error))
                return ""
        return unit

    def known_keys(self, value: Mapping[str, Any], allowed: Iterable[str], path: str) -> None:
        allowed = set(allowed)
        for key in value:
            if key not in allowed:
                self.fail(f"{path}.{key}", f"unknown key; expected one of {sorted(allowed)}")

    def schema(self, value: Any, path: str, depth: int = 0) -> Schema | None:
        if depth > MAX_SCHEMA_DEPTH:
            self.fail(path, f"schemas nest at most {MAX_SCHEMA_DEPTH} deep")
            return None
        if isinstance(value, str):
            if value in PRIMITIVES:
                return Schema(value)
            self.fail(path, f"unknown schema {value!r}; expected one of {sorted(PRIMITIVES)}")
            return None
        if not isinstance(value, Mapping) or len(value) != 1:
            self.fail(
                path,
                "must be a primitive name or an object with one key of enum, object, array, map",
            )
            return None
        ((kind, body),) = value.items()
        inner = f"{path}.{kind}"
        if kind == "enum":
            return self._enum(body, inner)
        if kind == "object":
            fields = []
            for name, schema in self.mapping(body, inner).items():
                if self.name(name, f"{inner}.{name}"):
                    parsed = self.schema(schema, f"{inner}.{name}", depth + 1)
                    if parsed is not None:
                        fields.append((name, parsed))
            return Schema("object", fields=tuple(fields))
        if kind in ("array", "map"):
            items = self.schema(body, inner, depth + 1)
            return None if items is None else Schema(kind, items=items)
        self.fail(path, f"unknown schema kind {kind!r}; expected enum, object, array or map")
        return None

    def _enum(self, body: Any, path: str) -> Schema | None:
        values = body if isinstance(body, list) else None
        if not values or len(values) > MAX_ELEMENTS:
            self.fail(path, f"an enum lists 1-{MAX_ELEMENTS} values")
            return None
        kinds = {type(v) for v in values}
        if kinds not in ({str}, {int}) or len(set(values)) != len(values):
            self.fail(path, "enum values are distinct strings, or distinct integers")
            return None
        return Schema("enum", enum_values=tuple(values))


_PROPERTY_KEYS = ("schema", "unit", "min", "max", "writable", "default", "description")
_TELEMETRY_KEYS = ("schema", "unit", "min", "max", "samplePeriodS", "description")


def _property(reader: _Reader, name: str, body: Any, path: str) -> Property | None:
    if isinstance(body, str):
        body = {"schema": body}
    spec = reader.mapping(body, path)
    reader.known_keys(spec, _PROPERTY_KEYS, path)
    schema = reader.schema(spec.get("schema"), f"{path}.schema")
    if schema is None:
        return None
    minimum, maximum = _range(reader, spec, schema, path)
    prop = Property(
        name=name,
        schema=schema,
        unit=reader.unit(spec.get("unit"), f"{path}.unit"),
        minimum=minimum,
        maximum=maximum,
        writable=reader.boolean(spec.get("writable"), f"{path}.writable", True),
        default=spec.get("default"),
        description=reader.text(spec.get("description"), f"{path}.description"),
    )
    if prop.default is not None:
        from twinstack.modeling.values import json_violations

        for violation in json_violations(prop, prop.default, f"{path}.default"):
            reader.fail(violation.field, violation.description)
    return prop


def _range(
    reader: _Reader, spec: Mapping[str, Any], schema: Schema, path: str
) -> tuple[float | None, float | None]:
    minimum = reader.number(spec.get("min"), f"{path}.min")
    maximum = reader.number(spec.get("max"), f"{path}.max")
    if (minimum is not None or maximum is not None) and schema.kind not in NUMERIC:
        reader.fail(path, f"min and max apply to numbers, not to {schema.kind}")
    if minimum is not None and maximum is not None and minimum > maximum:
        reader.fail(f"{path}.min", f"min {minimum:g} is above max {maximum:g}")
    return minimum, maximum


def _reserved_series_name(reader: _Reader, name: str, path: str) -> bool:
    """Refuses a name that becomes an InfluxDB field but is a tag or column name there."""
    if name not in RESERVED_SERIES_NAMES:
        return False
    reader.fail(
        path,
        f"{name!r} is reserved: stored series use it as a tag or column "
        f"(reserved: {sorted(RESERVED_SERIES_NAMES)})",
    )
    return True


def _telemetry(reader: _Reader, name: str, body: Any, path: str) -> Telemetry | None:
    if isinstance(body, str):
        body = {"schema": body}
    spec = reader.mapping(body, path)
    reader.known_keys(spec, _TELEMETRY_KEYS, path)
    schema = reader.schema(spec.get("schema"), f"{path}.schema")
    if schema is None:
        return None
    if schema.kind not in PRIMITIVES - {"timestamp"} and schema.kind != "enum":
        reader.fail(
            f"{path}.schema",
            "telemetry fields are double, integer, boolean, string or enum (one time series each)",
        )
    minimum, maximum = _range(reader, spec, schema, path)
    period = reader.number(spec.get("samplePeriodS"), f"{path}.samplePeriodS")
    if period is not None and period <= 0:
        reader.fail(f"{path}.samplePeriodS", "must be positive")
    return Telemetry(
        name=name,
        schema=schema,
        unit=reader.unit(spec.get("unit"), f"{path}.unit"),
        minimum=minimum,
        maximum=maximum,
        sample_period_s=period,
        description=reader.text(spec.get("description"), f"{path}.description"),
    )


def _command(reader: _Reader, name: str, body: Any, path: str) -> Command:
    spec = reader.mapping(body, path)
    reader.known_keys(spec, ("request", "response", "description"), path)
    request = spec.get("request")
    response = spec.get("response")
    return Command(
        name=name,
        request=None if request is None else reader.schema(request, f"{path}.request"),
        response=None if response is None else reader.schema(response, f"{path}.response"),
        description=reader.text(spec.get("description"), f"{path}.description"),
    )


def _relationship(reader: _Reader, name: str, body: Any, path: str) -> Relationship:
    spec = reader.mapping(body, path)
    allowed = ("target", "minMultiplicity", "maxMultiplicity", "properties", "description")
    reader.known_keys(spec, allowed, path)
    target = spec.get("target")
    if target is not None:
        target = reader.model_id(target, f"{path}.target")
    low = spec.get("minMultiplicity", 0)
    high = spec.get("maxMultiplicity")
    if not isinstance(low, int) or isinstance(low, bool) or low < 0:
        reader.fail(f"{path}.minMultiplicity", "must be a non-negative integer")
        low = 0
    if high is not None and (not isinstance(high, int) or isinstance(high, bool) or high < 1):
        reader.fail(f"{path}.maxMultiplicity", "must be a positive integer (omit for unbounded)")
        high = None
    if high is not None and low > high:
        reader.fail(f"{path}.minMultiplicity", "is above maxMultiplicity")
    properties = []
    for prop_name, prop_body in reader.mapping(
        spec.get("properties"), f"{path}.properties"
    ).items():
        prop_path = f"{path}.properties.{prop_name}"
        if reader.name(prop_name, prop_path):
            parsed = _property(reader, prop_name, prop_body, prop_path)
            if parsed is not None:
                properties.append(parsed)
    return Relationship(
        name=name,
        target=target,
        min_multiplicity=low,
        max_multiplicity=high,
        properties=tuple(properties),
        description=reader.text(spec.get("description"), f"{path}.description"),
    )


def _component(reader: _Reader, name: str, body: Any, path: str) -> Component | None:
    if isinstance(body, str):
        body = {"model": body}
    spec = reader.mapping(body, path)
    reader.known_keys(spec, ("model", "description"), path)
    model = reader.model_id(spec.get("model"), f"{path}.model")
    if model is None:
        return None
    return Component(name, model, reader.text(spec.get("description"), f"{path}.description"))


def _expression(reader: _Reader, value: Any, path: str) -> Node | None:
    if not isinstance(value, str):
        reader.fail(path, "must be an expression string")
        return None
    try:
        node = parse_expression(value)
    except ExpressionError as error:
        reader.fail(path, str(error))
        return None
    for problem in type_errors(node):
        reader.fail(path, problem)
    return node


def _dynamics(reader: _Reader, body: Any, path: str) -> Dynamics:
    spec = reader.mapping(body, path)
    allowed = ("states", "parameters", "inputs", "equations", "outputs", "conditions")
    reader.known_keys(spec, allowed, path)

    def entries(section: str) -> list[tuple[str, Any, str]]:
        found = []
        for name, value in reader.mapping(spec.get(section), f"{path}.{section}").items():
            entry_path = f"{path}.{section}.{name}"
            if reader.name(name, entry_path):
                if name == TIME_NAME:
                    reader.fail(entry_path, f"{TIME_NAME!r} is reserved for the time in seconds")
                elif section in ("states", "outputs") and _reserved_series_name(
                    reader, name, entry_path
                ):
                    pass  # forecasts store states and outputs as InfluxDB fields
                else:
                    found.append((name, value, entry_path))
        return found

    states = []
    for name, value, entry_path in entries("states"):
        state = reader.mapping(value, entry_path)
        reader.known_keys(state, ("initial", "unit"), entry_path)
        raw_initial = state.get("initial")
        initial: str | float = 0.0
        if isinstance(raw_initial, str):
            reader.name(raw_initial, f"{entry_path}.initial")
            initial = raw_initial
        else:
            number = reader.number(raw_initial, f"{entry_path}.initial")
            if number is None:
                reader.fail(f"{entry_path}.initial", "must be a number or a property name")
            else:
                initial = number
        states.append(State(name, initial, reader.unit(state.get("unit"), f"{entry_path}.unit")))

    parameters = []
    for name, value, entry_path in entries("parameters"):
        param = reader.mapping(value, entry_path)
        reader.known_keys(param, ("default", "min", "max", "unit", "property"), entry_path)
        default = reader.number(param.get("default"), f"{entry_path}.default")
        if default is None:
            reader.fail(f"{entry_path}.default", "a parameter needs a numeric default")
            default = 0.0
        low = reader.number(param.get("min"), f"{entry_path}.min")
        high = reader.number(param.get("max"), f"{entry_path}.max")
        if (low is not None and default < low) or (high is not None and default > high):
            reader.fail(f"{entry_path}.default", "is outside [min, max]")
        parameters.append(
            Parameter(
                name,
                default,
                low,
                high,
                reader.unit(param.get("unit"), f"{entry_path}.unit"),
                reader.text(param.get("property"), f"{entry_path}.property", limit=64),
            )
        )

    inputs = []
    for name, value, entry_path in entries("inputs"):
        spec_input = reader.mapping(value, entry_path)
        reader.known_keys(spec_input, ("default", "telemetry", "unit"), entry_path)
        default = reader.number(spec_input.get("default"), f"{entry_path}.default")
        inputs.append(
            Input(
                name,
                0.0 if default is None else default,
                reader.text(spec_input.get("telemetry"), f"{entry_path}.telemetry", limit=64),
                reader.unit(spec_input.get("unit"), f"{entry_path}.unit"),
            )
        )

    equations = []
    for name, value, entry_path in entries("equations"):
        node = _expression(reader, value, entry_path)
        if node is not None:
            if is_boolean(node):
                reader.fail(entry_path, "an equation yields a rate of change, not a condition")
            equations.append(Expression(name, value, node))

    outputs = []
    for name, value, entry_path in entries("outputs"):
        spec_output = reader.mapping(
            {"expression": value} if isinstance(value, str) else value, entry_path
        )
        reader.known_keys(spec_output, ("expression", "unit"), entry_path)
        node = _expression(reader, spec_output.get("expression"), f"{entry_path}.expression")
        if node is not None:
            unit = reader.unit(spec_output.get("unit"), f"{entry_path}.unit")
            outputs.append(Expression(name, spec_output["expression"], node, unit))

    conditions = []
    for name, value, entry_path in entries("conditions"):
        spec_condition = reader.mapping(
            {"when": value} if isinstance(value, str) else value, entry_path
        )
        reader.known_keys(spec_condition, ("when", "severity", "message"), entry_path)
        node = _expression(reader, spec_condition.get("when"), f"{entry_path}.when")
        severity = spec_condition.get("severity", "warning")
        if severity not in SEVERITIES:
            reader.fail(f"{entry_path}.severity", f"must be one of {list(SEVERITIES)}")
        if node is not None:
            if not is_boolean(node):
                reader.fail(f"{entry_path}.when", "a condition must be a comparison or logic")
            conditions.append(
                Condition(
                    name,
                    spec_condition["when"],
                    node,
                    str(severity),
                    reader.text(spec_condition.get("message"), f"{entry_path}.message"),
                )
            )
    return Dynamics(
        tuple(states),
        tuple(parameters),
        tuple(inputs),
        tuple(equations),
        tuple(outputs),
        tuple(conditions),
    )


_MODEL_KEYS = (
    "id",
    "displayName",
    "description",
    "extends",
    "properties",
    "telemetry",
    "commands",
    "relationships",
    "components",
    "dynamics",
)


def parse_model(document: Any, origin: str = "") -> Model:
    """Parses one model document; raises ModelError listing every problem with its path.

    ``origin`` prefixes every path (e.g. the file name), so errors of a multi-file request
    say which file they are in.
    """
    reader = _Reader(origin)
    spec = reader.mapping(document, "")
    reader.known_keys(spec, _MODEL_KEYS, "")
    model_id = reader.model_id(spec.get("id"), ".id") or ""
    extends_value = spec.get("extends", [])
    if isinstance(extends_value, str):
        extends_value = [extends_value]
    extends: list[str] = []
    if not isinstance(extends_value, list):
        reader.fail(".extends", "must be a model id or a list of them")
    else:
        for index, parent in enumerate(extends_value):
            parsed = reader.model_id(parent, f".extends[{index}]")
            if parsed is not None and parsed in extends:
                reader.fail(f".extends[{index}]", f"{parsed} is listed twice")
            elif parsed is not None:
                extends.append(parsed)
    if model_id and model_id in extends:
        reader.fail(".extends", "a model cannot extend itself")

    declared: dict[str, str] = {}

    def section(key: str) -> list[tuple[str, Any, str]]:
        found = []
        for name, body in reader.mapping(spec.get(key), f".{key}").items():
            path = f".{key}.{name}"
            if not reader.name(name, path):
                continue
            if name in declared:
                reader.fail(path, f"{name!r} is already declared in {declared[name]}")
                continue
            declared[name] = key
            found.append((name, body, path))
        return found

    properties = [p for n, b, path in section("properties") if (p := _property(reader, n, b, path))]
    telemetry = [
        t
        for n, b, path in section("telemetry")
        if not _reserved_series_name(reader, n, path) and (t := _telemetry(reader, n, b, path))
    ]
    commands = [_command(reader, n, b, path) for n, b, path in section("commands")]
    relationships = [_relationship(reader, n, b, path) for n, b, path in section("relationships")]
    components = [
        c for n, b, path in section("components") if (c := _component(reader, n, b, path))
    ]
    dynamics = _dynamics(reader, spec.get("dynamics"), ".dynamics")
    display_name = reader.text(spec.get("displayName"), ".displayName", limit=256)
    description = reader.text(spec.get("description"), ".description")
    if reader.violations:
        raise ModelError(reader.violations)
    return Model(
        id=model_id,
        display_name=display_name,
        description=description,
        extends=tuple(extends),
        properties=tuple(properties),
        telemetry=tuple(telemetry),
        commands=tuple(commands),
        relationships=tuple(relationships),
        components=tuple(components),
        dynamics=dynamics,
        document=canonical_json(document),
    )
