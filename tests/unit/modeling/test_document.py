"""The model language: parsing with paths, expressions, units, inheritance, compatibility."""

from __future__ import annotations

import json
from typing import Any

import pytest

from twinstack.api.common.v1 import types_pb2
from twinstack.modeling.document import Model, ModelError, model_key, parse_model
from twinstack.modeling.expressions import (
    Binary,
    ExpressionError,
    Name,
    Number,
    names_in,
    parse_expression,
)
from twinstack.modeling.resolve import Resolver, normalized, property_violations
from twinstack.modeling.values import from_json, value_violations
from twinstack.registry.compatibility import breaking_changes
from twinstack.sdk.models import example_model_sources

PUMP = "dtmi:test:Pump;1"


def pump(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": PUMP,
        "properties": {"rated_kw": {"schema": "double", "unit": "kW", "min": 0, "max": 500}},
        "telemetry": {"temperature_c": {"schema": "double", "unit": "degC"}},
        "dynamics": {
            "states": {"temp": {"initial": "temperature_c", "unit": "degC"}},
            "parameters": {"tau": {"default": 600, "unit": "s", "min": 1}},
            "equations": {"temp": "(20 - temp) / tau"},
        },
    }
    for path, value in changes.items():
        target = document
        *parents, last = path.split("__")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    return document


def violations_of(document: Any, *others: Any) -> list[tuple[str, str]]:
    """(path, message) of every problem, from parsing and from resolving with ``others``."""
    try:
        models = {m.id: m for m in (parse_model(d) for d in (*others, document))}
        Resolver(models.get).resolve(document["id"])
    except ModelError as error:
        return [(v.field, v.description) for v in error.violations]
    return []


def test_the_example_models_of_the_four_use_cases_resolve() -> None:
    models: dict[str, Model] = {}
    for source in example_model_sources():
        for document in json.loads(source.content):
            model = parse_model(document, source.name)
            models[model.id] = model
    resolver = Resolver(models.get)
    pump_model = resolver.resolve("dtmi:twinstack:examples:Pump;1")
    assert pump_model.is_a("dtmi:twinstack:examples:Machine;1")
    assert pump_model.is_a("dtmi:twinstack:examples:Asset;1")
    assert {"serial_number", "rated_power_kw", "rated_flow_m3_h"} <= set(pump_model.properties)
    assert set(pump_model.components) == {"motor"}
    assert [s.name for s in pump_model.dynamics.states] == ["temperature", "wear"]
    assert len(models) == 16
    for model_id in models:
        resolver.resolve(model_id)


def test_a_valid_model_parses() -> None:
    assert violations_of(pump()) == []


@pytest.mark.parametrize(
    ("document", "path", "message"),
    [
        (pump(id="Pump"), ".id", "model id"),
        (pump(id="dtmi:test:Pump"), ".id", "model id"),
        (pump(colour="red"), ".colour", "unknown key"),
        (pump(properties__x={"schema": "float"}), ".properties.x.schema", "unknown schema"),
        (pump(properties__x={"schema": "string", "min": 1}), ".properties.x", "apply to numbers"),
        (pump(properties__x={"schema": "double", "min": 5, "max": 1}), ".properties.x.min",
         "above max"),
        (pump(properties__x={"schema": "double", "unit": "furlongs per fortnight^"}),
         ".properties.x.unit", "unit"),
        (pump(properties__x={"schema": {"enum": ["a", 1]}}), ".properties.x.schema.enum",
         "distinct strings"),
        (pump(properties__x={"schema": "integer", "max": 3, "default": 7}),
         ".properties.x.default", "above the maximum"),
        (pump(properties__x={"schema": {"object": {"1bad": "double"}}}),
         ".properties.x.schema.object.1bad", "names are"),
        (pump(properties__temperature_c="double"), ".telemetry.temperature_c",
         "already declared in properties"),
        (pump(telemetry__pos={"schema": {"object": {"x": "double"}}}), ".telemetry.pos.schema",
         "telemetry fields are"),
        (pump(relationships__feeds={"target": "Tank"}), ".relationships.feeds.target",
         "model id"),
        (pump(relationships__feeds={"maxMultiplicity": 0}),
         ".relationships.feeds.maxMultiplicity", "positive"),
        (pump(dynamics__equations={"temp": "(20 - temp) / tau", "other": "1"}),
         ".dynamics.equations.other", "not a state variable"),
        (pump(dynamics__equations={}), ".dynamics.equations", "has no equation"),
        (pump(dynamics__equations={"temp": "(20 - temp) / taux"}), ".dynamics.equations.temp",
         "unknown names ['taux']"),
        (pump(dynamics__equations={"temp": "temp / tau + tau"}), ".dynamics.equations.temp",
         "mixes"),
        (pump(dynamics__equations={"temp": "temp"}), ".dynamics.equations.temp",
         "where [temperature] * [time]^-1 is expected"),
        (pump(dynamics__equations={"temp": "exp(tau)"}), ".dynamics.equations.temp",
         "dimensionless argument"),
        (pump(dynamics__equations={"temp": "temp > 3"}), ".dynamics.equations.temp",
         "not a condition"),
        (pump(dynamics__equations={"temp": "__import__('os')"}), ".dynamics.equations.temp",
         "unexpected character"),
        (pump(dynamics__equations={"temp": "tau.real"}), ".dynamics.equations.temp",
         "unexpected character"),
        (pump(dynamics__equations={"temp": "system(1)"}), ".dynamics.equations.temp",
         "unknown function 'system'"),
        (pump(dynamics__equations={"temp": "temp[0]"}), ".dynamics.equations.temp",
         "unexpected character"),
        (pump(dynamics__equations={"temp": "1 < temp < 2"}), ".dynamics.equations.temp",
         "chained comparisons"),
        (pump(dynamics__equations={"temp": "+".join(["x"] * 450)}),
         ".dynamics.equations.temp", "more than 400 terms"),
        (pump(dynamics__equations={"temp": "(" * 60 + "temp" + ")" * 60}),
         ".dynamics.equations.temp", "nested deeper"),
        (pump(dynamics__equations={"temp": "1" * 2001}), ".dynamics.equations.temp",
         "longer than"),
        (pump(dynamics__equations={"temp": "where(temp, 1, 2) / tau"}),
         ".dynamics.equations.temp", "must be a condition"),
        (pump(dynamics__states={"t": {"initial": 0}}), ".dynamics.states.t", "reserved"),
        (pump(dynamics__states={"temp": {"initial": "nope", "unit": "degC"}}),
         ".dynamics.states.temp.initial", "not a numeric property"),
        (pump(dynamics__parameters={"tau": {"default": 0, "min": 1}}),
         ".dynamics.parameters.tau.default", "outside"),
        (pump(dynamics__parameters={"tau": {"default": 5, "property": "missing"}}),
         ".dynamics.parameters.tau.property", "not a numeric property"),
        (pump(dynamics__inputs={"tau": {"default": 1}}), ".dynamics.inputs.tau",
         "also one of the parameters"),
        (pump(dynamics__conditions={"hot": "temp + 1"}), ".dynamics.conditions.hot.when",
         "comparison or logic"),
        (pump(dynamics__outputs={"kelvin": {"expression": "temp", "unit": "s"}}),
         ".dynamics.outputs.kelvin", "where [time] is expected"),
        (pump(extends=[PUMP]), ".extends", "cannot extend itself"),
        (pump(extends=["dtmi:test:Missing;1"]), ".extends[0]", "unknown model"),
    ],
)  # fmt: skip
def test_invalid_models_say_where_and_why(document: Any, path: str, message: str) -> None:
    found = violations_of(document)
    assert any(p.endswith(path) and message in m for p, m in found), found


def test_every_problem_is_reported_at_once() -> None:
    document = pump(
        properties__a={"schema": "nope"}, properties__b={"schema": "double", "min": "x"}
    )
    assert {p for p, _ in violations_of(document)} >= {".properties.a.schema", ".properties.b.min"}


BASE = {"id": "dtmi:test:Base;1", "properties": {"serial": "string"}}
LEFT = {"id": "dtmi:test:Left;1", "extends": "dtmi:test:Base;1", "properties": {"l": "double"}}
RIGHT = {"id": "dtmi:test:Right;1", "extends": "dtmi:test:Base;1", "properties": {"r": "double"}}


def test_inheritance_merges_parents_and_accepts_a_diamond() -> None:
    child = {"id": "dtmi:test:Child;1", "extends": ["dtmi:test:Left;1", "dtmi:test:Right;1"]}
    models = {m.id: m for m in map(parse_model, (BASE, LEFT, RIGHT, child))}
    resolved = Resolver(models.get).resolve("dtmi:test:Child;1")
    assert set(resolved.properties) == {"serial", "l", "r"}
    assert resolved.ancestors == {"dtmi:test:Left;1", "dtmi:test:Right;1", "dtmi:test:Base;1"}


def test_inheritance_conflicts_redeclarations_and_cycles_are_refused() -> None:
    other = {"id": "dtmi:test:Other;1", "properties": {"l": "integer"}}
    conflict = {"id": "dtmi:test:C;1", "extends": ["dtmi:test:Left;1", "dtmi:test:Other;1"]}
    assert any("defined differently" in m for _, m in violations_of(conflict, BASE, LEFT, other))
    redeclare = {
        "id": "dtmi:test:D;1",
        "extends": "dtmi:test:Base;1",
        "properties": {"serial": "double"},
    }
    assert any("cannot be redeclared" in m for _, m in violations_of(redeclare, BASE))
    a = {"id": "dtmi:test:A;1", "extends": "dtmi:test:B;1"}
    b = {"id": "dtmi:test:B;1", "extends": "dtmi:test:A;1"}
    assert any("cycle" in m for _, m in violations_of(a, b))


def test_components_are_models_without_components_of_their_own() -> None:
    motor = {
        "id": "dtmi:test:Motor;1",
        "properties": {"rpm": {"schema": "double", "default": 1480}},
    }
    holder = {"id": "dtmi:test:Holder;1", "components": {"motor": "dtmi:test:Motor;1"}}
    nested = {"id": "dtmi:test:Nested;1", "components": {"holder": "dtmi:test:Holder;1"}}
    models = {m.id: m for m in map(parse_model, (motor, holder))}
    resolved = Resolver(models.get).resolve("dtmi:test:Holder;1")
    filled = normalized(resolved, {}, fill_defaults=True)
    assert filled["motor"].map_value.fields["rpm"].double_value == 1480.0
    bad = types_pb2.Value(map_value=types_pb2.ValueMap(fields={"rpm": from_json(None, "x", "")}))
    assert [v.field for v in property_violations(resolved, {"motor": bad}, "p")] == [
        "p['motor']['rpm']"
    ]
    assert any("components itself" in m for _, m in violations_of(nested, motor, holder))


def _resolved(document: dict[str, Any]) -> Any:
    model = parse_model(document)
    return Resolver({model.id: model}.get).resolve(model.id)


def test_additions_are_compatible_and_removals_or_narrowing_are_not() -> None:
    old = _resolved(pump())
    assert (
        breaking_changes(old, _resolved(pump(id="dtmi:test:Pump;2", properties__extra="string")))
        == []
    )
    new = _resolved(
        pump(
            id="dtmi:test:Pump;2",
            properties={"rated_kw": {"schema": "double", "unit": "W", "min": 1, "max": 500}},
            telemetry={"temperature_c": {"schema": "integer", "unit": "degC"}},
        )
    )
    found = {change.field: change.description for change in breaking_changes(old, new)}
    assert found == {
        "properties.rated_kw.unit": "unit changed from 'kW' to 'W'",
        "properties.rated_kw.min": "range narrowed",
        "telemetry.temperature_c.schema": "type changed from double to integer",
    }
    removed = _resolved(pump(id="dtmi:test:Pump;2", properties={}))
    assert [c.field for c in breaking_changes(old, removed)] == ["properties.rated_kw"]


@pytest.mark.parametrize(
    ("schema", "data", "problem"),
    [
        ({"enum": ["a", "b"]}, "c", "not one of"),
        ({"array": "integer"}, [1, "x"], "expected integer"),
        ({"map": "double"}, {"k": True}, "expected double"),
        ({"object": {"x": "double"}}, {"y": 1.0}, "not a field"),
        ("timestamp", 5, "expected timestamp"),
        ("double", 1, None),
        ({"object": {"when": "timestamp"}}, {"when": "2026-01-02T03:04:05Z"}, None),
    ],
)
def test_values_are_checked_against_their_schema(
    schema: Any, data: Any, problem: str | None
) -> None:
    document = pump(properties__x={"schema": schema})
    prop = next(p for p in parse_model(document).properties if p.name == "x")
    found = value_violations(prop.schema, from_json(prop.schema, data, "x"), "x")
    if problem is None:
        assert found == []
    else:
        (violation,) = found
        assert problem in violation.description


def test_expression_precedence_and_names() -> None:
    node = parse_expression("a + b * c ^ 2")
    assert isinstance(node, Binary)
    assert node.op == "+"
    assert isinstance(node.right, Binary)
    assert node.right.op == "*"
    assert node.left == Name("a")
    assert parse_expression("-2 ^ 2") != Number(-4.0)
    assert names_in(parse_expression("where(x > 1 and not y < 2, min(x, z), 0)")) == {"x", "y", "z"}
    with pytest.raises(ExpressionError, match="expected"):
        parse_expression("a +")


def test_model_keys_fit_nats_keys_and_subjects() -> None:
    assert model_key("dtmi:twinstack:examples:Pump;12") == "dtmi.twinstack.examples.Pump=12"
