"""The registry against a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from twinstack.api.common.v1 import events_pb2, types_pb2
from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.common.nats import EVENTS_STREAM, Backbone
from twinstack.devstack import NatsServer
from twinstack.registry.service import RegistryApp
from twinstack.registry.settings import RegistrySettings


@pytest.fixture
async def registry(
    infra_settings: dict[str, Any], serve_app: Any
) -> AsyncIterator[registry_pb2_grpc.RegistryServiceAsyncStub]:
    settings = RegistrySettings(**infra_settings)
    async with serve_app(settings, RegistryApp(settings)) as channel:
        yield registry_pb2_grpc.RegistryServiceStub(channel)


def twin(twin_id: str, **properties: float) -> registry_pb2.Twin:
    return registry_pb2.Twin(
        id=twin_id,
        model_id="dtmi:acme:Pump;1",
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
        (registry_pb2.Twin(id="a.b", model_id="dtmi:x;1"), "twin.id"),
        (registry_pb2.Twin(id="tel.>", model_id="dtmi:x;1"), "twin.id"),
        (registry_pb2.Twin(id="", model_id="dtmi:x;1"), "twin.id"),
        (registry_pb2.Twin(id="ok-1", model_id=""), "twin.model_id"),
        (twin("ok-1", **{"bad name": 1.0}), "twin.properties['bad name']"),
        (twin("ok-1", t=float("nan")), "twin.properties['t']"),
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
) -> None:
    """While NATS is down, calls fail clearly (UNAVAILABLE, retry later); once it is back on
    the same storage, the registry reconnects by itself and nothing was lost."""
    settings = RegistrySettings(**infra_settings, nats_request_timeout_s=1.0)
    async with serve_app(settings, RegistryApp(settings)) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
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
