"""Whole ontologies import: relationship cycles, deep extends chains over many files, byte order
marks, reusable schemas across files, missing targets named once, and budgets on expansion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.errors import InvalidArgumentError, LimitExceededError
from twinstack.devstack.ontology import BOM, CHAIN_LENGTH, generate, interface_id
from twinstack.modeling.document import Model, ModelError, parse_model
from twinstack.modeling.dtdl import SchemaBudgetError, convert_dtdl, pint_unit
from twinstack.modeling.resolve import (
    MAX_INHERITANCE_DEPTH,
    InvalidDependencyError,
    Resolver,
)
from twinstack.registry.models import ModelLimits, dependency_order, parse_sources
from twinstack.sdk.models import model_sources


def dtdl_sources(documents: list[Any]) -> list[registry_pb2.ModelSource]:
    return [
        registry_pb2.ModelSource(
            name=f"file{i}.json",
            format=registry_pb2.MODEL_FORMAT_DTDL,
            content=document if isinstance(document, str) else json.dumps(document),
        )
        for i, document in enumerate(documents)
    ]


def resolve_all(models: list[Model]) -> tuple[Resolver, list[tuple[str, str]]]:
    """Resolves every model as the registry does; (resolver, the violations it reports: each
    cause once, not again for the models that build on it)."""
    by_id = {m.id: m for m in models}
    resolver = Resolver(by_id.get)
    violations = []
    for model in dependency_order(models):
        try:
            resolver.resolve(model.id)
        except InvalidDependencyError:
            continue
        except ModelError as error:
            violations += [(v.field, v.description) for v in error.violations]
    return resolver, violations


def interface(model_id: str, *contents: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "@context": "dtmi:dtdl:context;3",
        "@id": model_id,
        "@type": "Interface",
        "contents": list(contents),
        **more,
    }


def relationship(name: str, target: str) -> dict[str, Any]:
    return {"@type": "Relationship", "name": name, "target": target}


def test_a_generated_ontology_of_a_thousand_interfaces_imports_whole() -> None:
    files = generate(interfaces=1000)
    assert sum(f.text.startswith(BOM) for f in files) > 100
    batch = parse_sources(
        [
            registry_pb2.ModelSource(
                name=f.name, format=registry_pb2.MODEL_FORMAT_DTDL, content=f.text
            )
            for f in files
        ]
    )
    assert len(batch.models) == 1020
    resolver, violations = resolve_all(batch.models)
    assert violations == []
    deepest = resolver.resolve(interface_id(CHAIN_LENGTH - 1))
    assert deepest.depth == MAX_INHERITANCE_DEPTH
    # Inherited through ten files: the root's telemetry, whose enum schema the root defines.
    assert deepest.telemetry["status0"].schema.enum_values == ("running", "stopped")
    # A relationship cycle of length 1: a thing related to things of its own model.
    assert resolver.resolve(interface_id(0)).relationships["next0"].target == interface_id(0)
    assert deepest.components == {} or all(not c.components for c in deepest.components.values())
    units = {t.unit for m in batch.models for t in m.telemetry}
    assert {"horsepower", "knot", "nanometre", "kilogram/metre^3"} <= units


@pytest.mark.parametrize("length", [1, 2, 3, 4])
def test_relationship_cycles_resolve(length: int) -> None:
    ids = [f"dtmi:test:cycle:M{i};1" for i in range(length)]
    documents = [
        interface(model_id, relationship("next", ids[(i + 1) % length]))
        for i, model_id in enumerate(ids)
    ]
    batch = parse_sources(dtdl_sources(documents))
    _, violations = resolve_all(batch.models)
    assert violations == []


def test_a_cycle_through_extends_and_relationships_is_refused_once_not_recursed() -> None:
    a = interface("dtmi:test:A;1", relationship("b", "dtmi:test:B;1"), extends="dtmi:test:B;1")
    b = interface("dtmi:test:B;1", relationship("a", "dtmi:test:A;1"), extends="dtmi:test:A;1")
    _, violations = resolve_all(parse_sources(dtdl_sources([a, b])).models)
    assert violations
    assert all("cycle" in message for _, message in violations)


def test_a_thousand_deep_chain_is_refused_without_exhausting_the_stack() -> None:
    models = [
        parse_model({"id": f"dtmi:test:deep:M{i};1", "extends": f"dtmi:test:deep:M{i - 1};1"})
        if i
        else parse_model({"id": "dtmi:test:deep:M0;1"})
        for i in range(1200)
    ]
    resolver, violations = resolve_all(list(reversed(models)))
    assert resolver.resolve("dtmi:test:deep:M10;1").depth == 10
    refused = {field.split(".extends")[0] for field, _ in violations}
    assert "dtmi:test:deep:M11;1" in refused
    # Reported where the limit is crossed, not again for the 1,188 models below it.
    assert len(violations) == 1


def test_missing_relationship_targets_are_named_once_with_where_they_are_used() -> None:
    base = interface("dtmi:test:Base;1", relationship("feeds", "dtmi:test:Missing;1"))
    children = [interface(f"dtmi:test:Child{i};1", extends="dtmi:test:Base;1") for i in range(20)]
    other = interface("dtmi:test:Other;1", relationship("uses", "dtmi:test:Gone;2"))
    batch = parse_sources(dtdl_sources([base, *children, other]))
    _, violations = resolve_all(batch.models)
    primary = [v for v in violations if "unknown model" in v[1]]
    assert sorted(primary) == [
        ("dtmi:test:Base;1.relationships.feeds.target", "unknown model dtmi:test:Missing;1"),
        ("dtmi:test:Other;1.relationships.uses.target", "unknown model dtmi:test:Gone;2"),
    ]


def test_the_registry_message_names_every_missing_model() -> None:
    from twinstack.common.errors import FieldViolation
    from twinstack.registry.models import _invalid_models_message

    message = _invalid_models_message(
        [
            FieldViolation("a.relationships.x.target", "unknown model dtmi:x:Y;1"),
            FieldViolation("b.extends[0]", "unknown model dtmi:x:Z;1"),
        ]
    )
    assert "dtmi:x:Y;1" in message
    assert "dtmi:x:Z;1" in message
    assert "2 referenced" in message


def test_a_byte_order_mark_is_accepted_by_the_server_and_the_loader(tmp_path: Path) -> None:
    document = interface("dtmi:test:Bom;1", {"@type": "Property", "name": "p", "schema": "double"})
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(document).encode())
    sources = model_sources([tmp_path])
    assert sources[0].format == registry_pb2.MODEL_FORMAT_DTDL
    assert [m.id for m in parse_sources(dtdl_sources([BOM + json.dumps(document)])).models] == [
        "dtmi:test:Bom;1"
    ]


def test_the_loader_skips_hidden_folders_and_foreign_json_and_says_so(tmp_path: Path) -> None:
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "workflow.json").write_text('{"on": "push"}')
    (tmp_path / "package.json").write_text('{"name": "ontology", "version": "1.0.0"}')
    (tmp_path / "m.json").write_text(json.dumps(interface("dtmi:test:M;1")))
    skipped: list[tuple[str, str]] = []
    sources = model_sources([tmp_path], on_skip=lambda p, why: skipped.append((p.name, why)))
    assert [s.name for s in sources] == [str(tmp_path / "m.json")]
    assert sorted(name for name, _ in skipped) == ["package.json", "workflow.json"]


def test_no_file_count_cap_but_a_byte_and_model_budget() -> None:
    documents = [interface(f"dtmi:test:many:M{i};1") for i in range(800)]
    assert len(parse_sources(dtdl_sources(documents)).models) == 800
    with pytest.raises(LimitExceededError) as refused:
        parse_sources(dtdl_sources(documents), ModelLimits(max_models=500))
    assert refused.value.limit == "TWINSTACK_MAX_MODELS_PER_REQUEST"
    with pytest.raises(LimitExceededError) as too_big:
        parse_sources(dtdl_sources(documents[:1]), ModelLimits(max_source_bytes=10))
    assert too_big.value.limit == "TWINSTACK_MAX_MODEL_SOURCE_BYTES"


def test_schemas_that_expand_exponentially_are_refused_by_budget() -> None:
    # Each object has 20 fields of the next schema: 20^4 leaves per use from 2 kB of schemas.
    schemas = [
        {
            "@id": f"dtmi:test:S{i};1",
            "@type": "Object",
            "fields": [{"name": f"f{k}", "schema": f"dtmi:test:S{i + 1};1"} for k in range(20)],
        }
        for i in range(8)
    ]
    schemas.append(
        {"@id": "dtmi:test:S8;1", "@type": "Enum", "enumValues": [{"name": "a", "enumValue": 1}]}
    )
    document = interface(
        "dtmi:test:Bomb;1",
        *[{"@type": "Property", "name": f"p{i}", "schema": "dtmi:test:S0;1"} for i in range(50)],
        schemas=schemas,
    )
    with pytest.raises(SchemaBudgetError) as exhausted:
        convert_dtdl([(document, "bomb.json")], max_schema_nodes=100_000)
    assert exhausted.value.max_schema_nodes == 100_000
    assert exhausted.value.violation.field.startswith("bomb.json.contents[0].schema")
    # The registry refuses such a request with the documented limit named.
    source = registry_pb2.ModelSource(
        name="bomb.json", format=registry_pb2.MODEL_FORMAT_DTDL, content=json.dumps(document)
    )
    with pytest.raises(LimitExceededError) as refused:
        parse_sources([source], ModelLimits(max_dtdl_schema_nodes=100_000))
    assert refused.value.limit == "TWINSTACK_MAX_DTDL_SCHEMA_NODES"


def test_nothing_is_dropped_silently() -> None:
    document = interface(
        "dtmi:test:Fidelity;1",
        {
            "@type": "Property",
            "name": "mode",
            "description": "Operating mode",
            "comment": "Kept for the maintenance team",
            "schema": {
                "@type": "Enum",
                "valueSchema": "integer",
                "enumValues": [
                    {"name": "off", "enumValue": 0, "displayName": "Off"},
                    {"name": "on", "enumValue": 1},
                ],
            },
        },
        {
            "@type": "Property",
            "name": "location",
            "schema": {
                "@type": "Object",
                "fields": [{"name": "lat", "schema": "double", "description": "WGS84 latitude"}],
            },
        },
        {"@type": "Telemetry", "name": "power", "schema": "double", "unit": "horsepower"},
        {"@type": "Telemetry", "name": "speed", "schema": "double", "unit": "knot"},
        {"@type": "Telemetry", "name": "gap", "schema": "double", "unit": "nanometre"},
    )
    converted, notes = convert_dtdl([(document, "f.json")])
    texts = [f"{path}: {message}" for path, message in notes]
    assert any("comment" in t and "maintenance team" in t for t in texts)
    assert any("enum value names" in t and "'off': 0" in t for t in texts)
    assert any("displayName" in t and "Off" in t for t in texts)
    assert any("WGS84 latitude" in t for t in texts)
    telemetry = converted[0][0]["telemetry"]
    assert telemetry["power"]["unit"] == "horsepower"
    assert telemetry["speed"]["unit"] == "knot"
    assert telemetry["gap"]["unit"] == "nanometre"
    assert not any("unit" in t for t in texts)


def test_dtdl_unit_names_map_through_pint() -> None:
    assert pint_unit("kilogramPerCubicMetre") == "kilogram/metre^3"
    assert pint_unit("metrePerSecondSquared") == "metre/second^2"
    assert pint_unit("newtonMetre") == "newton*metre"
    assert pint_unit("noSuchUnitAtAll") is None


def test_refused_models_raise_invalid_argument_with_every_problem() -> None:
    with pytest.raises(InvalidArgumentError):
        parse_sources(dtdl_sources(["{not json"]))


def test_properties_named_by_their_full_iri_are_read_like_terms() -> None:
    """Some published ontologies write DTDL properties as JSON-LD IRIs
    (``dtmi:dtdl:property:schema;2``) instead of terms (``schema``)."""
    document = {
        "@context": "dtmi:dtdl:context;2",
        "@id": "dtmi:test:Expanded;1",
        "@type": "Interface",
        "contents": [
            {
                "@type": "Property",
                "name": "tags",
                "dtmi:dtdl:property:schema;2": {
                    "@type": "Map",
                    "dtmi:dtdl:property:mapKey;2": {"name": "tag", "schema": "string"},
                    "dtmi:dtdl:property:mapValue;2": {"name": "value", "schema": "string"},
                },
                "writable": True,
            },
            {"@type": "Relationship", "name": "servedBy"},
        ],
    }
    converted, notes = convert_dtdl([(document, "expanded.json")])
    model = converted[0][0]
    assert model["properties"]["tags"]["schema"] == {"map": "string"}
    assert model["relationships"]["servedBy"] == {}, "a relationship to any model"
    assert notes == []
