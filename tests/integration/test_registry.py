"""The registry against a real nats-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from twinstack.api.common.v1 import events_pb2, types_pb2
from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.common.nats import EVENTS_STREAM, Backbone
from twinstack.devstack import NatsServer
from twinstack.registry.app import RegistryApp
from twinstack.registry.settings import RegistrySettings

DEVICE = "dtmi:twinstack:test:Device;1"


@pytest.fixture
async def registry(
    infra_settings: dict[str, Any], serve_app: Any, store_test_models: Any
) -> AsyncIterator[registry_pb2_grpc.RegistryServiceAsyncStub]:
    settings = RegistrySettings(**infra_settings)
    async with serve_app(settings, RegistryApp(settings)) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        await store_test_models(stub)
        yield stub


def twin(twin_id: str, **properties: float) -> registry_pb2.Twin:
    return registry_pb2.Twin(
        id=twin_id,
        model_id=DEVICE,
        properties={k: types_pb2.Value(double_value=v) for k, v in properties.items()},
    )


async def test_create_get_and_event(
    registry: registry_pb2_grpc.RegistryServiceAsyncStub, backbone: Backbone
) -> None:
    created = (
        await registry.CreateTwin(
            registry_pb2.CreateTwinRequest(twin=twin("pump-1", rated_kw=30.0))
        )
    ).twin
    assert created.revision > 0
    assert created.create_time.seconds > 0
    fetched = (await registry.GetTwin(registry_pb2.GetTwinRequest(twin_id="pump-1"))).twin
    assert fetched == created
    assert fetched.properties["rated_kw"].double_value == 30.0

    message = await backbone.js.get_last_msg(EVENTS_STREAM, "evt.registry.twin.pump-1")
    event = events_pb2.TwinChangedEvent.FromString(message.data or b"")
    assert (event.twin_id, event.kind, event.revision) == (
        "pump-1",
        events_pb2.CHANGE_KIND_CREATED,
        created.revision,
    )


async def test_concurrent_creates_of_one_id_have_exactly_one_winner(
    registry: registry_pb2_grpc.RegistryServiceAsyncStub,
) -> None:
    async def create(n: int) -> grpc.StatusCode:
        try:
            await registry.CreateTwin(
                registry_pb2.CreateTwinRequest(twin=twin("contended", n=float(n)))
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    codes = await asyncio.gather(*(create(n) for n in range(30)))
    assert codes.count(grpc.StatusCode.OK) == 1
    assert codes.count(grpc.StatusCode.ALREADY_EXISTS) == 29


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (registry_pb2.Twin(id="a.b", model_id=DEVICE), "twin.id"),
        (registry_pb2.Twin(id="tel.>", model_id=DEVICE), "twin.id"),
        (registry_pb2.Twin(id="", model_id=DEVICE), "twin.id"),
        (registry_pb2.Twin(id="ok-1", model_id=""), "twin.model_id"),
        (registry_pb2.Twin(id="ok-1", model_id="dtmi:twinstack:test:Nothing;1"), "twin.model_id"),
        (twin("ok-1", **{"bad name": 1.0}), "twin.properties['bad name']"),
        (twin("ok-1", t=float("nan")), "twin.properties['t']"),
        (twin("ok-1", undeclared=1.0), "twin.properties['undeclared']"),
    ],
)  # fmt: skip
async def test_bad_twins_are_rejected_with_the_field(
    registry: registry_pb2_grpc.RegistryServiceAsyncStub,
    details_of: Any,
    bad: registry_pb2.Twin,
    field: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await registry.CreateTwin(registry_pb2.CreateTwinRequest(twin=bad))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad_request = details_of(raised.value)[1]
    assert field in [v.field for v in bad_request.field_violations]
    # Nothing was stored, and the service still serves.
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await registry.GetTwin(registry_pb2.GetTwinRequest(twin_id="ok-1"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_registry_survives_a_nats_server_restart(
    infra_settings: dict[str, Any],
    serve_app: Any,
    nats_server: NatsServer,
    eventually: Any,
    details_of: Any,
    store_test_models: Any,
) -> None:
    """While NATS is down, calls fail clearly (UNAVAILABLE, retry later); once it is back on
    the same storage, the registry reconnects by itself and nothing was lost."""
    settings = RegistrySettings(**infra_settings, nats_request_timeout_s=1.0)
    async with serve_app(settings, RegistryApp(settings)) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        await store_test_models(registry)
        await registry.CreateTwin(registry_pb2.CreateTwinRequest(twin=twin("before-1")))

        nats_server.stop()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await registry.GetTwin(registry_pb2.GetTwinRequest(twin_id="before-1"), timeout=30)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        info, retry = details_of(raised.value)
        assert info.reason == "DEPENDENCY_UNAVAILABLE"
        assert retry.retry_delay.seconds >= 1
        nats_server.start()

        async def create_after() -> bool:
            try:
                await registry.CreateTwin(
                    registry_pb2.CreateTwinRequest(twin=twin("after-1")), timeout=5
                )
            except grpc.aio.AioRpcError:
                return False
            return True

        await eventually(create_after, timeout_s=30, interval_s=0.2)
        kept = await registry.GetTwin(registry_pb2.GetTwinRequest(twin_id="before-1"))
        assert kept.twin.id == "before-1", "JetStream storage survived the restart"


async def test_fifty_conditional_writers_one_winner_per_revision_no_lost_update(
    registry: registry_pb2_grpc.RegistryServiceAsyncStub, details_of: Any
) -> None:
    created = await registry.CreateTwin(registry_pb2.CreateTwinRequest(twin=twin("hot-1", n=0.0)))
    winners: list[tuple[int, int]] = []  # (revision the winner expected, revision it produced)
    losers: list[tuple[int, grpc.aio.AioRpcError]] = []  # (revision expected, the refusal)

    async def writer() -> None:
        while True:
            current = (await registry.GetTwin(registry_pb2.GetTwinRequest(twin_id="hot-1"))).twin
            count = current.properties["n"].double_value
            try:
                updated = await registry.UpdateTwin(
                    registry_pb2.UpdateTwinRequest(
                        twin_id="hot-1",
                        set_properties={"n": types_pb2.Value(double_value=count + 1)},
                        expected_revision=current.revision,
                    )
                )
            except grpc.aio.AioRpcError as error:
                losers.append((current.revision, error))
                continue
            winners.append((current.revision, updated.twin.revision))
            return

    await asyncio.gather(*(writer() for _ in range(50)))
    final = (await registry.GetTwin(registry_pb2.GetTwinRequest(twin_id="hot-1"))).twin
    assert final.properties["n"].double_value == 50.0, "no increment was lost"
    expected_revisions = [expected for expected, _ in winners]
    assert len(set(expected_revisions)) == 50, "exactly one winner per revision"
    chain = sorted(winners)
    assert chain[0][0] == created.twin.revision
    assert all(chain[i][1] == chain[i + 1][0] for i in range(49)), "each win builds on the last"
    assert losers, "the writers really did race"
    for expected, refusal in losers:
        assert refusal.code() == grpc.StatusCode.ABORTED
        mismatch = details_of(refusal)[1]
        assert mismatch.expected_revision == expected
        assert mismatch.current_revision > expected


async def test_unconditional_patches_never_lose_each_other(
    registry: registry_pb2_grpc.RegistryServiceAsyncStub,
) -> None:
    """Concurrent JSON merge patches into one map property: each re-applies on top of the
    others after losing a compare-and-set, so every key lands."""
    await registry.CreateTwin(registry_pb2.CreateTwinRequest(twin=twin("busy-1")))
    await asyncio.gather(
        *(
            registry.UpdateTwin(
                registry_pb2.UpdateTwinRequest(
                    twin_id="busy-1", json_merge_patch=json.dumps({"counters": {f"p{i}": i}})
                )
            )
            for i in range(30)
        )
    )
    final = (await registry.GetTwin(registry_pb2.GetTwinRequest(twin_id="busy-1"))).twin
    counters = final.properties["counters"].map_value.fields
    assert {name: value.int_value for name, value in counters.items()} == {
        f"p{i}": i for i in range(30)
    }


async def test_patch_delete_and_their_events(
    registry: registry_pb2_grpc.RegistryServiceAsyncStub, backbone: Backbone, details_of: Any
) -> None:
    created = (
        await registry.CreateTwin(registry_pb2.CreateTwinRequest(twin=twin("pump-5", n=1.0, t=2.0)))
    ).twin
    updated = (
        await registry.UpdateTwin(
            registry_pb2.UpdateTwinRequest(
                twin_id="pump-5",
                set_properties={"n": types_pb2.Value(double_value=10.0)},
                remove_properties=["t"],
                expected_revision=created.revision,
            )
        )
    ).twin
    assert dict(updated.properties) == {"n": types_pb2.Value(double_value=10.0)}
    assert updated.revision > created.revision
    assert updated.create_time == created.create_time
    event = await backbone.js.get_last_msg(EVENTS_STREAM, "evt.registry.twin.pump-5")
    changed = events_pb2.TwinChangedEvent.FromString(event.data or b"")
    assert (changed.kind, changed.revision) == (events_pb2.CHANGE_KIND_UPDATED, updated.revision)
    assert list(changed.changed_properties) == ["n", "t"]

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await registry.DeleteTwin(
            registry_pb2.DeleteTwinRequest(twin_id="pump-5", expected_revision=created.revision)
        )
    assert raised.value.code() == grpc.StatusCode.ABORTED
    assert details_of(raised.value)[1].current_revision == updated.revision

    deleted = await registry.DeleteTwin(
        registry_pb2.DeleteTwinRequest(twin_id="pump-5", expected_revision=updated.revision)
    )
    assert deleted.revision > updated.revision
    event = await backbone.js.get_last_msg(EVENTS_STREAM, "evt.registry.twin.pump-5")
    changed = events_pb2.TwinChangedEvent.FromString(event.data or b"")
    assert (changed.kind, changed.revision) == (events_pb2.CHANGE_KIND_DELETED, deleted.revision)
    for call in (
        registry.GetTwin(registry_pb2.GetTwinRequest(twin_id="pump-5")),
        registry.DeleteTwin(registry_pb2.DeleteTwinRequest(twin_id="pump-5")),
        registry.UpdateTwin(
            registry_pb2.UpdateTwinRequest(
                twin_id="pump-5", set_properties={"n": types_pb2.Value(double_value=1.0)}
            )
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND

    again = await registry.CreateTwin(registry_pb2.CreateTwinRequest(twin=twin("pump-5")))
    assert again.twin.revision > deleted.revision, "a deleted id can be created again"


def patch(
    twin_id: str = "pump-6", remove: tuple[str, ...] = (), **values: types_pb2.Value
) -> registry_pb2.UpdateTwinRequest:
    return registry_pb2.UpdateTwinRequest(
        twin_id=twin_id, set_properties=values, remove_properties=remove
    )


ONE = types_pb2.Value(int_value=1)
NAN = types_pb2.Value(double_value=float("nan"))


@pytest.mark.parametrize(
    ("bad_patch", "field"),
    [
        (patch(), "set_properties"),
        (patch(remove=("bad name",)), "remove_properties[0]"),
        (patch(n=NAN), "properties['n']"),
        (patch(label=ONE), "properties['label']"),
        (patch(firmware=types_pb2.Value(string_value="2.0")), "properties['firmware']"),
        (patch(remove=("n",), n=ONE), "remove_properties[0]"),
        (patch("pump.6", n=ONE), "twin_id"),
        (
            registry_pb2.UpdateTwinRequest(twin_id="pump-6", json_merge_patch="[1]"),
            "json_merge_patch",
        ),
        (
            registry_pb2.UpdateTwinRequest(twin_id="pump-6", json_merge_patch="{"),
            "json_merge_patch",
        ),
        (
            registry_pb2.UpdateTwinRequest(twin_id="pump-6", json_merge_patch='{"count": 1.5}'),
            "properties['count']",
        ),
    ],
)
async def test_bad_patches_change_nothing(
    registry: registry_pb2_grpc.RegistryServiceAsyncStub,
    details_of: Any,
    bad_patch: registry_pb2.UpdateTwinRequest,
    field: str,
) -> None:
    created = (
        await registry.CreateTwin(registry_pb2.CreateTwinRequest(twin=twin("pump-6", n=1.0)))
    ).twin
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await registry.UpdateTwin(bad_patch)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [v.field for v in details_of(raised.value)[1].field_violations]
    unchanged = (await registry.GetTwin(registry_pb2.GetTwinRequest(twin_id="pump-6"))).twin
    assert unchanged == created


async def test_list_pages_in_id_order_and_reads_its_own_writes(
    registry: registry_pb2_grpc.RegistryServiceAsyncStub, details_of: Any
) -> None:
    ids = [f"line-{i:02d}" for i in range(25)]
    last_revision = 0
    for twin_id in reversed(ids):
        created = await registry.CreateTwin(registry_pb2.CreateTwinRequest(twin=twin(twin_id)))
        last_revision = created.twin.revision

    listed: list[str] = []
    token = ""
    pages = 0
    while True:
        response = await registry.ListTwins(
            registry_pb2.ListTwinsRequest(
                page=types_pb2.PageRequest(page_size=10, page_token=token),
                min_revision=last_revision,
            )
        )
        listed.extend(t.id for t in response.twins)
        pages += 1
        token = response.page.next_page_token
        if not token:
            break
    assert listed == ids
    assert pages == 3

    deleted = await registry.DeleteTwin(registry_pb2.DeleteTwinRequest(twin_id="line-00"))
    after_delete = await registry.ListTwins(
        registry_pb2.ListTwinsRequest(min_revision=deleted.revision)
    )
    assert [t.id for t in after_delete.twins] == ids[1:]

    for page, field in [
        (types_pb2.PageRequest(page_size=-1), "page.page_size"),
        (types_pb2.PageRequest(page_token="not-a-token"), "page.page_token"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await registry.ListTwins(registry_pb2.ListTwinsRequest(page=page))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details_of(raised.value)[1].field_violations[0].field == field
