"""Live state from the real TELEMETRY stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from twinstack.api.common.v1 import events_pb2, types_pb2
from twinstack.api.state.v1 import state_pb2, state_pb2_grpc
from twinstack.common.nats import TELEMETRY_STREAM, Backbone, message_headers, telemetry_subject
from twinstack.state.service import StateApp
from twinstack.state.settings import StateSettings


@pytest.fixture
async def state(
    infra_settings: dict[str, Any], serve_app: Any
) -> AsyncIterator[state_pb2_grpc.StateServiceAsyncStub]:
    settings = StateSettings(**infra_settings)
    async with serve_app(settings, StateApp(settings)) as channel:
        yield state_pb2_grpc.StateServiceStub(channel)


async def publish(backbone: Backbone, twin_id: str, *samples: tuple[int, dict[str, float]]) -> None:
    batch = events_pb2.TelemetryBatch(twin_id=twin_id)
    for time_s, fields in samples:
        sample = batch.samples.add(
            fields={k: types_pb2.Value(double_value=v) for k, v in fields.items()}
        )
        sample.time.FromSeconds(time_s)
    await backbone.js.publish(
        telemetry_subject(twin_id, 8),
        batch.SerializeToString(),
        headers=message_headers(f"{twin_id}-{samples[0][0]}"),
    )


async def get(
    state: state_pb2_grpc.StateServiceAsyncStub, twin_id: str
) -> state_pb2.TwinState | None:
    try:
        return (await state.GetState(state_pb2.GetStateRequest(twin_id=twin_id), timeout=5)).state
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


async def test_state_follows_the_stream_and_ignores_late_samples(
    state: state_pb2_grpc.StateServiceAsyncStub, backbone: Backbone, eventually: Any
) -> None:
    await publish(backbone, "pump-1", (100, {"temp": 50.0, "rpm": 1400.0}))
    current = await eventually(lambda: get(state, "pump-1"), lambda s: s is not None)
    assert current.reported["temp"].value.double_value == 50.0
    assert current.last_seen_time.seconds == 100

    await publish(backbone, "pump-1", (90, {"temp": 10.0, "pressure": 2.0}))
    await publish(backbone, "pump-1", (110, {"rpm": 1500.0}))
    current = await eventually(
        lambda: get(state, "pump-1"),
        lambda s: s is not None and s.reported["rpm"].value.double_value == 1500.0,
    )
    assert current.reported["temp"].value.double_value == 50.0, "late sample did not overwrite"
    assert current.reported["pressure"].value.double_value == 2.0, "but a new field is taken"
    assert current.last_seen_time.seconds == 110
    assert current.revision > 0


async def test_bad_messages_do_not_block_good_ones(
    state: state_pb2_grpc.StateServiceAsyncStub, backbone: Backbone, eventually: Any
) -> None:
    await backbone.js.publish("tel.0.junk", b"\x00\xffnot protobuf")
    bad_id = events_pb2.TelemetryBatch(twin_id="bad id.>")
    bad_id.samples.add(fields={"temp": types_pb2.Value(double_value=1.0)}).time.FromSeconds(5)
    await backbone.js.publish("tel.0.x", bad_id.SerializeToString())
    await publish(backbone, "pump-2", (100, {"temp": 7.0}))
    current = await eventually(lambda: get(state, "pump-2"), lambda s: s is not None)
    assert current.reported["temp"].value.double_value == 7.0

    async def unacknowledged() -> int:
        info = await backbone.js.consumer_info(TELEMETRY_STREAM, "state")
        return int(info.num_ack_pending or 0) + int(info.num_redelivered or 0)

    # Every message was settled at once: none waits for a redelivery that would fail again.
    await eventually(unacknowledged, lambda n: n == 0, timeout_s=10)


async def test_unknown_and_invalid_twins(
    state: state_pb2_grpc.StateServiceAsyncStub, details_of: Any
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await state.GetState(state_pb2.GetStateRequest(twin_id="never-seen"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await state.GetState(state_pb2.GetStateRequest(twin_id="../etc"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details_of(raised.value)[1].field_violations[0].field == "twin_id"
