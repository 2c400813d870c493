"""Models, relationships and queries through the registry API, against a real nats-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from twinstack.api.common.v1 import events_pb2, types_pb2
from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.common.nats import EVENTS_STREAM, Backbone
from twinstack.devstack.ontology import generate as generate_ontology
from twinstack.devstack.ontology import interface_id
from twinstack.registry.app import RegistryApp
from twinstack.registry.settings import RegistrySettings
from twinstack.sdk.values import from_python

if TYPE_CHECKING:
    Stub = registry_pb2_grpc.RegistryServiceAsyncStub
EX = "dtmi:twinstack:examples:"
DTDL = Path(__file__).parents[1] / "data" / "dtdl"


@pytest.fixture
async def registry(
    infra_settings: dict[str, Any], serve_app: Any, store_test_models: Any
) -> AsyncIterator[Stub]:
    settings = RegistrySettings(**infra_settings)
    async with serve_app(settings, RegistryApp(settings)) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        await store_test_models(stub)
        yield stub


def native(*documents: dict[str, Any], name: str = "models.json") -> registry_pb2.ModelSource:
    return registry_pb2.ModelSource(
        name=name, format=registry_pb2.MODEL_FORMAT_NATIVE, content=json.dumps(list(documents))
    )


TANK_V1: dict[str, Any] = {
    "id": "dtmi:acme:Tank;1",
    "properties": {
        "capacity_l": {"schema": "double", "unit": "L", "min": 0},
        "fluid": {"schema": {"enum": ["water", "oil"]}, "default": "water"},
    },
}


async def create_models(registry: Stub, *sources: registry_pb2.ModelSource, **flags: bool) -> Any:
    return await registry.CreateModels(registry_pb2.CreateModelsRequest(sources=sources, **flags))


async def fails(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


async def test_models_are_stored_immutable_resolved_and_announced(
    registry: Stub, backbone: Backbone, details_of: Any
) -> None:
    created = (await create_models(registry, native(TANK_V1))).models
    assert [m.id for m in created] == ["dtmi:acme:Tank;1"]
    assert created[0].revision > 0
    again = (await create_models(registry, native(TANK_V1))).models
    assert again[0].revision == created[0].revision, "storing the same document is a no-op"

    changed = {**TANK_V1, "description": "edited in place"}
    refused = await fails(create_models(registry, native(changed)))
    assert refused.code() == grpc.StatusCode.ALREADY_EXISTS

    pump = (await registry.GetModel(registry_pb2.GetModelRequest(model_id=f"{EX}Pump;1"))).model
    resolved = json.loads(pump.resolved_document)
    assert {"serial_number", "rated_power_kw", "rated_flow_m3_h"} <= set(resolved["properties"])
    assert resolved["components"] == {"motor": {"model": f"{EX}Motor;1"}}
    missing = await fails(registry.GetModel(registry_pb2.GetModelRequest(model_id="dtmi:no:X;1")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND

    event = await backbone.js.get_last_msg(EVENTS_STREAM, "evt.registry.model.dtmi.acme.Tank=1")
    announced = events_pb2.ModelChangedEvent.FromString(event.data or b"")
    assert (announced.model_id, announced.revision) == ("dtmi:acme:Tank;1", created[0].revision)


async def test_invalid_models_get_every_problem_with_its_path(
    registry: Stub, details_of: Any
) -> None:
    bad = {
        "id": "dtmi:acme:Bad;1",
        "extends": "dtmi:acme:Unknown;1",
        "properties": {"p": {"schema": "double", "min": 3, "max": 1}},
        "dynamics": {"states": {"x": {"initial": 0}}, "equations": {"x": "open('/etc/passwd')"}},
    }
    error = await fails(create_models(registry, native(bad, name="bad.yaml")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = [v.field for v in details_of(error)[1].field_violations]
    assert "bad.yaml.properties.p.min" in fields
    assert "bad.yaml.dynamics.equations.x" in fields

    unresolvable = await fails(
        create_models(registry, native({"id": "dtmi:acme:Orphan;1", "extends": "dtmi:acme:None;1"}))
    )
    assert unresolvable.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown model" in details_of(unresolvable)[1].field_violations[0].description

    for content in ("{not json", "[" * 100_000, json.dumps({"id": "x" * (2 * 1024 * 1024)})):
        source = registry_pb2.ModelSource(
            name="junk.json", format=registry_pb2.MODEL_FORMAT_NATIVE, content=content
        )
        junk = await fails(create_models(registry, source))
        assert junk.code() == grpc.StatusCode.INVALID_ARGUMENT
    listed = await registry.ListModels(registry_pb2.ListModelsRequest(id_prefix="dtmi:acme:"))
    assert [m.id for m in listed.models] == [], "nothing of a refused request was stored"


async def test_new_versions_are_checked_and_twins_migrate(registry: Stub, details_of: Any) -> None:
    await create_models(registry, native(TANK_V1))
    tank = (
        await registry.CreateTwin(
            registry_pb2.CreateTwinRequest(
                twin=registry_pb2.Twin(
                    id="tank-1",
                    model_id="dtmi:acme:Tank;1",
                    properties={"capacity_l": from_python(1000)},
                )
            )
        )
    ).twin
    assert tank.properties["capacity_l"].double_value == 1000.0, "an int stored as the double"
    assert tank.properties["fluid"].string_value == "water", "the default filled in"

    breaking = {**TANK_V1, "id": "dtmi:acme:Tank;2", "properties": {"capacity_l": "integer"}}
    error = await fails(create_models(registry, native(breaking)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    subjects = {v.subject: v.description for v in details_of(error)[1].violations}
    assert "removed" in subjects["dtmi:acme:Tank;2.properties.fluid"]
    assert "type changed" in subjects["dtmi:acme:Tank;2.properties.capacity_l.schema"]

    compatible = {
        **TANK_V1,
        "id": "dtmi:acme:Tank;2",
        "properties": {
            **TANK_V1["properties"],
            "level_pct": {"schema": "double", "unit": "percent", "default": 50},
        },
    }
    dry = await create_models(registry, native(compatible), validate_only=True)
    assert dry.models[0].revision == 0
    await create_models(registry, native(compatible))
    latest = await registry.ListModels(
        registry_pb2.ListModelsRequest(id_prefix="dtmi:acme:Tank", latest_only=True)
    )
    assert [m.id for m in latest.models] == ["dtmi:acme:Tank;2"]

    migrated = (
        await registry.MigrateTwin(
            registry_pb2.MigrateTwinRequest(
                twin_id="tank-1", model_id="dtmi:acme:Tank;2", expected_revision=tank.revision
            )
        )
    ).twin
    assert migrated.model_id == "dtmi:acme:Tank;2"
    assert migrated.properties["level_pct"].double_value == 50.0
    stale = await fails(
        registry.MigrateTwin(
            registry_pb2.MigrateTwinRequest(
                twin_id="tank-1", model_id="dtmi:acme:Tank;1", expected_revision=tank.revision
            )
        )
    )
    assert stale.code() == grpc.StatusCode.ABORTED
    back = await fails(
        registry.MigrateTwin(
            registry_pb2.MigrateTwinRequest(twin_id="tank-1", model_id="dtmi:acme:Tank;1")
        )
    )
    assert back.code() == grpc.StatusCode.INVALID_ARGUMENT, "level_pct is not declared in v1"
    dropped = await registry.MigrateTwin(
        registry_pb2.MigrateTwinRequest(
            twin_id="tank-1", model_id="dtmi:acme:Tank;1", drop_undeclared=True
        )
    )
    assert "level_pct" not in dropped.twin.properties


async def test_dtdl_ontology_imports_through_the_api(registry: Stub) -> None:
    sources = [
        registry_pb2.ModelSource(
            name=name, format=registry_pb2.MODEL_FORMAT_DTDL, content=(DTDL / name).read_text()
        )
        for name in ("room.json", "thermostat.json", "device.json")
    ]
    response = await registry.CreateModels(registry_pb2.CreateModelsRequest(sources=sources))
    stored = [m.id for m in response.models]
    # Stored in dependency order: a model after everything it refers to.
    assert (
        stored.index("dtmi:com:example:Device;1")
        < stored.index("dtmi:com:example:Thermostat;1")
        < stored.index("dtmi:com:example:Room;1")
    )
    assert any("GeoJSON" in note.message for note in response.notes)
    room = await registry.CreateTwin(
        registry_pb2.CreateTwinRequest(
            twin=registry_pb2.Twin(
                id="room-1",
                model_id="dtmi:com:example:Room;1",
                properties={"thermostat": from_python({"targetTemperature": 21, "mode": "heat"})},
            )
        )
    )
    component = room.twin.properties["thermostat"].map_value.fields
    assert component["targetTemperature"].double_value == 21.0


async def test_a_thousand_interface_ontology_with_cycles_imports_and_resolves(
    registry: Stub, infra_settings: dict[str, Any], serve_app: Any
) -> None:
    sources = [
        registry_pb2.ModelSource(name=f.name, format=registry_pb2.MODEL_FORMAT_DTDL, content=f.text)
        for f in generate_ontology(interfaces=1000)
    ]
    checked = await create_models(registry, *sources, validate_only=True)
    assert len(checked.models) == 1020
    assert all(m.revision == 0 for m in checked.models), "validate_only stores nothing"
    stored = await create_models(registry, *sources)
    assert all(m.revision > 0 for m in stored.models)
    deepest = interface_id(10)
    resolved = json.loads(
        (
            await registry.GetModel(registry_pb2.GetModelRequest(model_id=deepest))
        ).model.resolved_document
    )
    assert "next0" in resolved["relationships"], "inherited through ten levels of extends"
    # Relationship cycles between stored models: twins relate both ways.
    await new_twin(registry, "thing-0", interface_id(0))
    await new_twin(registry, "thing-1", interface_id(1))
    await new_twin(registry, "thing-2", interface_id(2))
    await relate(registry, "thing-1", "next1", "thing-2")
    await relate(registry, "thing-2", "next2", "thing-1")
    await relate(registry, "thing-0", "next0", "thing-0")
    # Another replica builds its catalog from the bucket: the cycles resolve there too.
    settings = RegistrySettings(**infra_settings)
    async with serve_app(settings, RegistryApp(settings)) as channel:
        replica = registry_pb2_grpc.RegistryServiceStub(channel)
        answer = await replica.GetModel(registry_pb2.GetModelRequest(model_id=interface_id(2)))
        assert json.loads(answer.model.resolved_document)["relationships"]["next2"]


async def test_missing_relationship_targets_are_named_not_cascaded(
    registry: Stub, details_of: Any
) -> None:
    base = {"id": "dtmi:acme:Base;1", "relationships": {"feeds": {"target": "dtmi:acme:Nope;1"}}}
    children = [{"id": f"dtmi:acme:Child{i};1", "extends": "dtmi:acme:Base;1"} for i in range(30)]
    error = await fails(create_models(registry, native(base, *children)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "dtmi:acme:Nope;1" in (error.details() or "")
    (bad_request,) = [d for d in details_of(error) if d.DESCRIPTOR.name == "BadRequest"]
    assert [v.field for v in bad_request.field_violations] == [
        "dtmi:acme:Base;1.relationships.feeds.target"
    ]


async def test_a_whole_ontology_is_bounded_by_bytes_and_models_not_files(
    infra_settings: dict[str, Any], serve_app: Any, details_of: Any
) -> None:
    settings = RegistrySettings(**infra_settings, max_models_per_request=100)
    async with serve_app(settings, RegistryApp(settings)) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        many = [native({"id": f"dtmi:acme:M{i};1"}, name=f"m{i}.json") for i in range(100)]
        assert len((await create_models(registry, *many, validate_only=True)).models) == 100
        error = await fails(
            create_models(registry, *many, native({"id": "dtmi:acme:M100;1"}), validate_only=True)
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        (quota,) = [d for d in details_of(error) if d.DESCRIPTOR.name == "QuotaFailure"]
        assert quota.violations[0].subject == "TWINSTACK_MAX_MODELS_PER_REQUEST"
        health = await registry.ListModels(registry_pb2.ListModelsRequest())
        assert health is not None


async def new_twin(registry: Stub, twin_id: str, model: str, **properties: Any) -> Any:
    twin = registry_pb2.Twin(
        id=twin_id, model_id=model, properties={k: from_python(v) for k, v in properties.items()}
    )
    return (await registry.CreateTwin(registry_pb2.CreateTwinRequest(twin=twin))).twin


async def relate(registry: Stub, source: str, name: str, target: str, **properties: Any) -> Any:
    relationship = registry_pb2.Relationship(
        source_id=source,
        name=name,
        target_id=target,
        properties={k: from_python(v) for k, v in properties.items()},
    )
    return (
        await registry.CreateRelationship(
            registry_pb2.CreateRelationshipRequest(relationship=relationship)
        )
    ).relationship


async def query(
    registry: Stub, text: str, min_revision: int = 0, page_size: int = 100
) -> list[str]:
    found: list[str] = []
    token = ""
    while True:
        response = await registry.QueryTwins(
            registry_pb2.QueryTwinsRequest(
                query=text,
                min_revision=min_revision,
                page=types_pb2.PageRequest(page_size=page_size, page_token=token),
            )
        )
        found.extend(t.id for t in response.twins)
        token = response.page.next_page_token
        if not token:
            return found


async def test_relationships_follow_the_model_and_the_graph_answers_queries(
    registry: Stub, backbone: Backbone, details_of: Any
) -> None:
    await new_twin(registry, "site", f"{EX}Site;1", name="North")
    await new_twin(registry, "line", f"{EX}ProductionLine;1")
    await new_twin(registry, "press", f"{EX}HydraulicPress;1", rated_power_kw=45)
    await new_twin(registry, "pump", f"{EX}Pump;1", rated_power_kw=30)
    await new_twin(registry, "ward", f"{EX}Ward;1", beds=10)
    await new_twin(registry, "spare", f"{EX}Pump;1")
    await relate(registry, "site", "contains", "line")
    await relate(registry, "line", "contains", "press", position=1)
    await relate(registry, "line", "contains", "pump", position=2)
    await relate(registry, "press", "feeds", "pump")
    last = await relate(registry, "pump", "feeds", "press")  # a cycle

    event = await backbone.js.get_last_msg(
        EVENTS_STREAM, f"evt.registry.relationship.pump.{last.id}"
    )
    announced = events_pb2.RelationshipChangedEvent.FromString(event.data or b"")
    assert (announced.target_id, announced.revision) == ("press", last.revision)

    # Read-your-write on the graph: the traversal sees the last write at once.
    assert await query(registry, "FROM 'site' FOLLOW contains DEPTH 2", last.revision) == [
        "line", "press", "pump",
    ]  # fmt: skip
    assert await query(
        registry, f"FROM 'site' FOLLOW * DEPTH 5 WHERE IS_OF_MODEL('{EX}Machine;1')"
    ) == ["press", "pump"]
    assert await query(registry, "FROM 'press' FOLLOW feeds DEPTH 10") == ["pump"]
    assert await query(registry, "FROM 'press' FOLLOW * INCOMING") == ["line", "pump"]
    assert await query(registry, "WHERE rated_power_kw > 40", page_size=1) == ["press"]
    incoming = await registry.ListRelationships(
        registry_pb2.ListRelationshipsRequest(
            twin_id="press", direction=registry_pb2.RELATIONSHIP_DIRECTION_INCOMING
        )
    )
    assert [(r.source_id, r.name) for r in incoming.relationships] == [
        ("line", "contains"), ("pump", "feeds"),
    ]  # fmt: skip

    refusals = {
        "undeclared": relate(registry, "press", "contains", "pump"),
        "wrong target": relate(registry, "line", "contains", "ward"),
        "bad property": relate(registry, "line", "contains", "site", position=0),
        "beyond maxMultiplicity 1": relate(registry, "press", "feeds", "spare"),
        "missing target": relate(registry, "line", "contains", "nothing"),
        "bad id": relate(registry, "line", "contains", "a.b"),
    }
    codes = {name: (await fails(call)).code() for name, call in refusals.items()}
    assert codes == {
        "undeclared": grpc.StatusCode.INVALID_ARGUMENT,
        "wrong target": grpc.StatusCode.INVALID_ARGUMENT,
        "bad property": grpc.StatusCode.INVALID_ARGUMENT,
        "beyond maxMultiplicity 1": grpc.StatusCode.FAILED_PRECONDITION,
        "missing target": grpc.StatusCode.NOT_FOUND,
        "bad id": grpc.StatusCode.INVALID_ARGUMENT,
    }
    duplicate = await fails(relate(registry, "press", "feeds", "pump"))
    assert duplicate.code() == grpc.StatusCode.ALREADY_EXISTS

    connected = await fails(registry.DeleteTwin(registry_pb2.DeleteTwinRequest(twin_id="pump")))
    assert connected.code() == grpc.StatusCode.FAILED_PRECONDITION
    for source, relationship_id in (("line", "contains-pump"), ("press", "feeds-pump"),
                                    ("pump", "feeds-press")):  # fmt: skip
        await registry.DeleteRelationship(
            registry_pb2.DeleteRelationshipRequest(
                source_id=source, relationship_id=relationship_id
            )
        )
    deleted = await registry.DeleteTwin(registry_pb2.DeleteTwinRequest(twin_id="pump"))
    assert await query(registry, "FROM 'site' FOLLOW * DEPTH 5", deleted.revision) == [
        "line", "press",
    ]  # fmt: skip


async def test_concurrent_relationships_never_exceed_the_multiplicity(registry: Stub) -> None:
    """Twenty callers race for the one 'feeds' slot of a machine: exactly one gets it."""
    await new_twin(registry, "src", f"{EX}Pump;1")
    for i in range(20):
        await new_twin(registry, f"dst-{i}", f"{EX}Pump;1")

    async def attempt(i: int) -> grpc.StatusCode:
        try:
            await relate(registry, "src", "feeds", f"dst-{i}")
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    codes = await asyncio.gather(*(attempt(i) for i in range(20)))
    assert codes.count(grpc.StatusCode.OK) == 1
    assert codes.count(grpc.StatusCode.FAILED_PRECONDITION) == 19


async def test_a_second_replica_answers_from_its_own_index(
    registry: Stub, infra_settings: dict[str, Any], serve_app: Any
) -> None:
    """A replica started later rebuilds the graph from the KV watch and reads a write made
    through another replica once it reaches that write's revision."""
    await new_twin(registry, "depot", f"{EX}Depot;1", name="South")
    await new_twin(registry, "truck", f"{EX}ElectricTruck;1", battery_kwh=300)
    settings = RegistrySettings(**infra_settings)
    async with serve_app(settings, RegistryApp(settings)) as channel:
        replica = registry_pb2_grpc.RegistryServiceStub(channel)
        written = await relate(registry, "depot", "houses", "truck")
        assert await query(replica, "FROM 'depot' FOLLOW houses", written.revision) == ["truck"]
        truck = await replica.GetTwin(registry_pb2.GetTwinRequest(twin_id="truck"))
        assert truck.twin.properties["battery_kwh"].double_value == 300.0


async def test_property_filters_follow_writes_after_their_index_is_made(registry: Stub) -> None:
    """The first query of a property makes its index; later writes and deletions, seen through
    the KV watch, change what the same query answers."""
    for n in range(30):
        await new_twin(registry, f"truck-{n:02d}", f"{EX}ElectricTruck;1", battery_kwh=100 + n)
    assert await query(registry, "WHERE battery_kwh >= 128") == ["truck-28", "truck-29"]
    updated = await registry.UpdateTwin(
        registry_pb2.UpdateTwinRequest(
            twin_id="truck-03", set_properties={"battery_kwh": from_python(500.0)}
        )
    )
    await registry.DeleteTwin(registry_pb2.DeleteTwinRequest(twin_id="truck-29"))
    created = await new_twin(registry, "truck-99", f"{EX}ElectricTruck;1", battery_kwh=130)
    last = max(updated.twin.revision, created.revision)
    assert await query(registry, "WHERE battery_kwh >= 128", last) == [
        "truck-03",
        "truck-28",
        "truck-99",
    ]
    assert await query(registry, "WHERE battery_kwh IN (103, 500)", last) == ["truck-03"]
