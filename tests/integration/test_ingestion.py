"""Ingestion and the historian against real nats-server and influxd."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from twinstack.api.common.v1 import events_pb2, types_pb2
from twinstack.api.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.common.consumer import DEAD_LETTER_REASON_HEADER
from twinstack.common.influx import InfluxStore
from twinstack.common.nats import EVENTS_STREAM, TELEMETRY_STREAM, Backbone
from twinstack.common.series import ALL_MEASUREMENTS, from_clause
from twinstack.devstack import InfluxServer
from twinstack.ingestion.app import IngestionApp
from twinstack.ingestion.settings import IngestionSettings
from twinstack.registry.app import RegistryApp
from twinstack.registry.settings import RegistrySettings
from twinstack.sdk import make_frame

T0_NS = (time.time_ns() // 10**9 - 3600) * 10**9


def points(twin_id: str, count: int, start: int = 0) -> list[types_pb2.TelemetryPoint]:
    made = []
    for i in range(start, start + count):
        point = types_pb2.TelemetryPoint(
            twin_id=twin_id,
            fields={
                "temp": types_pb2.Value(double_value=20 + i / 10),
                "seq": types_pb2.Value(int_value=i),
            },
        )
        point.time.FromNanoseconds(T0_NS + i * 10**6)
        made.append(point)
    return made


@contextlib.asynccontextmanager
async def platform(
    infra_settings: dict[str, Any],
    serve_app: Any,
    store_models: Any,
    twin_ids: list[str],
    **ingestion: Any,
) -> AsyncIterator[ingestion_pb2_grpc.IngestionServiceAsyncStub]:
    registry_settings = RegistrySettings(**infra_settings)
    async with serve_app(registry_settings, RegistryApp(registry_settings)) as registry_channel:
        registry = registry_pb2_grpc.RegistryServiceStub(registry_channel)
        await store_models(registry)
        for twin_id in twin_ids:
            await registry.CreateTwin(
                registry_pb2.CreateTwinRequest(
                    twin=registry_pb2.Twin(id=twin_id, model_id="dtmi:twinstack:test:Device;1")
                )
            )
        settings = IngestionSettings(**{**infra_settings, **ingestion})
        async with serve_app(settings, IngestionApp(settings)) as channel:
            yield ingestion_pb2_grpc.IngestionServiceStub(channel)


async def stored_count(store: InfluxStore, twin_id: str) -> int:
    """Rows stored for the twin (every test row has an integer ``seq``)."""
    series = await store.query(
        'SELECT count(seq) FROM "telemetry_integer" WHERE "twin_id"::tag = $t', {"t": twin_id}
    )
    return int(series[0].values[0][1]) if series else 0


async def stored_rows(store: InfluxStore, twin_id: str) -> list[dict[str, Any]]:
    """The twin's stored rows in time order, fields of every measurement (type) together."""
    by_time: dict[int, dict[str, Any]] = {}
    for series in await store.query(
        f'SELECT * FROM {from_clause(ALL_MEASUREMENTS)} WHERE "twin_id"::tag = $t', {"t": twin_id}
    ):
        for row in series.rows():
            by_time.setdefault(row["time"], {}).update(
                {k: v for k, v in row.items() if v is not None}
            )
    return [by_time[t] for t in sorted(by_time)]


@pytest.fixture
async def reader(influxd: InfluxServer, influx_database: str) -> AsyncIterator[InfluxStore]:
    store = InfluxStore(influxd.url, influx_database)
    await store.connect()
    yield store
    await store.close()


async def test_acknowledged_points_reach_influxdb_exactly_once(
    infra_settings: dict[str, Any],
    serve_app: Any,
    store_test_models: Any,
    backbone: Backbone,
    reader: InfluxStore,
    eventually: Callable[..., Any],
) -> None:
    twins = ["press-1", "press-2", "press-3"]
    request = ingestion_pb2.IngestBatchRequest(points=[p for t in twins for p in points(t, 200)])
    async with platform(infra_settings, serve_app, store_test_models, twins) as ingestion:
        response = await ingestion.IngestBatch(request, timeout=10)
        assert (
            response.accepted_points,
            response.published_messages,
            response.duplicate_messages,
        ) == (600, 3, 0)

        again = await ingestion.IngestBatch(request, timeout=10)
        assert again.duplicate_messages == 3, "a retried batch is de-duplicated by the stream"
        info = await backbone.js.stream_info(TELEMETRY_STREAM)
        assert info.state.messages == 3

        for twin_id in twins:
            await eventually(lambda t=twin_id: stored_count(reader, t), lambda n: n == 200)
        rows = await stored_rows(reader, "press-2")
        assert [r["seq"] for r in rows] == list(range(200))
        assert rows[10]["temp"] == pytest.approx(21.0)
        assert rows[0]["time"] == T0_NS


def set_nan(p: types_pb2.TelemetryPoint) -> None:
    p.fields["temp"].double_value = math.nan


def set_future(p: types_pb2.TelemetryPoint) -> None:
    p.time.FromNanoseconds(time.time_ns() + 3600 * 10**9)


def set_bad_field_name(p: types_pb2.TelemetryPoint) -> None:
    p.fields["bad.name"].int_value = 1


def set_unknown_field(p: types_pb2.TelemetryPoint) -> None:
    p.fields["humidity"].double_value = 1.0


def set_wrong_type(p: types_pb2.TelemetryPoint) -> None:
    p.fields["seq"].double_value = 1.5


def set_out_of_range(p: types_pb2.TelemetryPoint) -> None:
    p.fields["pressure_bar"].double_value = 401.0


def set_bad_enum(p: types_pb2.TelemetryPoint) -> None:
    p.fields["mode"].string_value = "turbo"


def set_list(p: types_pb2.TelemetryPoint) -> None:
    p.fields["temp"].list_value.values.add().double_value = 1.0


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda p: setattr(p, "twin_id", "ghost-9"), "points[1].twin_id", "unknown twin"),
        (lambda p: setattr(p, "twin_id", "tel.>"), "points[1].twin_id", "twin ids are"),
        (lambda p: setattr(p, "twin_id", "a'; DROP"), "points[1].twin_id", "twin ids are"),
        (set_nan, "points[1].fields['temp']", "NaN"),
        (lambda p: p.ClearField("time"), "points[1].time", "missing"),
        (set_future, "points[1].time", "future"),
        (set_bad_field_name, "points[1].fields['bad.name']", "field names"),
        (set_unknown_field, "points[1].fields['humidity']", "declares no telemetry"),
        (set_wrong_type, "points[1].fields['seq']", "expected an integer, got numbers"),
        (set_out_of_range, "points[1].fields['pressure_bar']", "above the maximum 400"),
        (set_bad_enum, "points[1].fields['mode']", "not one of ['auto', 'manual']"),
        (set_list, "points[1].fields['temp']", "numbers, booleans or strings"),
    ],
)
async def test_bad_points_reject_the_whole_batch_and_leave_the_service_serving(
    infra_settings: dict[str, Any],
    serve_app: Any,
    store_test_models: Any,
    backbone: Backbone,
    details_of: Any,
    mutate: Callable[[types_pb2.TelemetryPoint], None],
    field: str,
    reason: str,
) -> None:
    async with platform(
        infra_settings, serve_app, store_test_models, ["pump-7"], historian_enabled=False
    ) as ingestion:
        batch = points("pump-7", 3)
        mutate(batch[1])
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await ingestion.IngestBatch(ingestion_pb2.IngestBatchRequest(points=batch), timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        violations = details_of(raised.value)[1].field_violations
        assert [(v.field, reason in v.description) for v in violations] == [(field, True)]
        assert (await backbone.js.stream_info(TELEMETRY_STREAM)).state.messages == 0

        ok = await ingestion.IngestBatch(
            ingestion_pb2.IngestBatchRequest(points=points("pump-7", 3)), timeout=10
        )
        assert ok.accepted_points == 3


async def test_empty_and_oversized_requests(
    infra_settings: dict[str, Any], serve_app: Any, store_test_models: Any
) -> None:
    async with platform(
        infra_settings,
        serve_app,
        store_test_models,
        ["pump-8"],
        historian_enabled=False,
        max_points_per_request=10,
    ) as ingestion:
        for batch in ([], points("pump-8", 11)):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await ingestion.IngestBatch(
                    ingestion_pb2.IngestBatchRequest(points=batch), timeout=10
                )
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_request_budgets_are_named_and_refuse_the_whole_request(
    infra_settings: dict[str, Any],
    serve_app: Any,
    store_test_models: Any,
    backbone: Backbone,
    details_of: Any,
) -> None:
    async with platform(
        infra_settings,
        serve_app,
        store_test_models,
        ["pump-a", "pump-b", "pump-c"],
        historian_enabled=False,
        max_twins_per_request=2,
    ) as ingestion:
        three = [make_frame(t, [T0_NS], {"temp": [1.0]}) for t in ("pump-a", "pump-b", "pump-c")]
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await ingestion.IngestBatch(ingestion_pb2.IngestBatchRequest(frames=three), timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        quota = [d for d in details_of(raised.value) if d.DESCRIPTOR.name == "QuotaFailure"]
        assert quota[0].violations[0].subject == "TWINSTACK_MAX_TWINS_PER_REQUEST"

        long_reading = make_frame("pump-a", [T0_NS], {"note": ["x" * 20_000]})
        ok_reading = make_frame("pump-b", [T0_NS], {"temp": [1.0]})
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await ingestion.IngestBatch(
                ingestion_pb2.IngestBatchRequest(frames=[ok_reading, long_reading]), timeout=10
            )
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "longer than 16384" in str(details_of(raised.value))
        info = await backbone.js.stream_info(TELEMETRY_STREAM)
        assert info.state.messages == 0, "refused whole: not even the good frame was published"


async def test_poison_messages_are_dead_lettered_with_a_reason(
    infra_settings: dict[str, Any],
    serve_app: Any,
    store_test_models: Any,
    backbone: Backbone,
    reader: InfluxStore,
    eventually: Callable[..., Any],
) -> None:
    async with platform(infra_settings, serve_app, store_test_models, ["pump-9"]) as ingestion:
        await backbone.js.publish("tel.0.junk-1", b"\xff\xfenot a protobuf")
        # Published around ingestion, which would have refused them.
        not_finite = events_pb2.TelemetryBatch(
            frame=make_frame("nan-1", [T0_NS], {"temp": [math.inf]})
        )
        await backbone.js.publish("tel.0.nan-1", not_finite.SerializeToString())
        # Outside the times InfluxDB can store (its largest is 2^63 - 2 ns).
        out_of_range = events_pb2.TelemetryBatch(
            frame=make_frame("pump-9", [2**63 - 1], {"seq": [1]})
        )
        await ingestion.IngestBatch(
            ingestion_pb2.IngestBatchRequest(points=points("pump-9", 20)), timeout=10
        )
        await eventually(lambda: stored_count(reader, "pump-9"), lambda n: n == 20)
        await backbone.js.publish("tel.0.pump-9", out_of_range.SerializeToString())
        await ingestion.IngestBatch(
            ingestion_pb2.IngestBatchRequest(points=points("pump-9", 20, start=20)), timeout=10
        )
        await eventually(lambda: stored_count(reader, "pump-9"), lambda n: n == 40)

        async def dead_letter(twin_id: str) -> Any:
            try:
                return await backbone.js.get_last_msg(
                    EVENTS_STREAM, f"evt.ingestion.deadletter.{twin_id}"
                )
            except Exception:
                return None

        junk = await eventually(lambda: dead_letter("junk-1"))
        assert "undecodable" in junk.headers[DEAD_LETTER_REASON_HEADER]
        assert junk.data == b"\xff\xfenot a protobuf"
        rejected = await eventually(lambda: dead_letter("pump-9"))
        assert "InfluxDB rejected" in rejected.headers[DEAD_LETTER_REASON_HEADER]
        not_finite_letter = await eventually(lambda: dead_letter("nan-1"))
        assert "NaN or infinity" in not_finite_letter.headers[DEAD_LETTER_REASON_HEADER]
        events = await backbone.js.stream_info(EVENTS_STREAM, subjects_filter="evt.ingestion.>")
        assert events.state.subjects == {
            "evt.ingestion.deadletter.junk-1": 1,
            "evt.ingestion.deadletter.nan-1": 1,
            "evt.ingestion.deadletter.pump-9": 1,
        }

        async def unsettled() -> int:
            info = await backbone.js.consumer_info(TELEMETRY_STREAM, "historian")
            return int(info.num_ack_pending)

        # Parking acknowledges each message after publishing its dead letter; an ack is a plain
        # publish, which the server may count a moment after the dead letter is readable.
        await eventually(unsettled, lambda pending: pending == 0, timeout_s=10)


async def test_influxdb_outage_loses_nothing(
    infra_settings: dict[str, Any],
    serve_app: Any,
    store_test_models: Any,
    backbone: Backbone,
    tmp_path: Path,
    influx_database: str,
    eventually: Callable[..., Any],
) -> None:
    """InfluxDB stops mid-stream; ingestion keeps acknowledging; the historian retries each
    message many times over; after the restart every acknowledged point is stored exactly once
    and nothing was dead-lettered."""
    own_influx = InfluxServer(tmp_path / "influx")
    own_influx.start()
    try:
        settings = {
            **infra_settings,
            "influx_url": own_influx.url,
            "historian_retry_max_backoff_s": 0.1,
        }
        async with platform(settings, serve_app, store_test_models, ["pump-10"]) as ingestion:
            store = InfluxStore(own_influx.url, influx_database)
            await store.connect()
            await ingestion.IngestBatch(
                ingestion_pb2.IngestBatchRequest(points=points("pump-10", 50)), timeout=10
            )
            await eventually(lambda: stored_count(store, "pump-10"), lambda n: n == 50)

            own_influx.stop()
            for chunk in range(5):
                batch = points("pump-10", 50, start=50 + chunk * 50)
                response = await ingestion.IngestBatch(
                    ingestion_pb2.IngestBatchRequest(points=batch), timeout=10
                )
                assert response.accepted_points == 50

            async def deliveries() -> int:
                info = await backbone.js.consumer_info(TELEMETRY_STREAM, "historian")
                return int(info.delivered.consumer_seq or 0)

            # Each of the 5 waiting messages delivered over 15 times: far past any delivery cap.
            await eventually(deliveries, lambda n: n > 1 + 5 * 15, timeout_s=60)
            own_influx.start()

            await eventually(
                lambda: stored_count(store, "pump-10"), lambda n: n == 300, timeout_s=60
            )
            rows = await stored_rows(store, "pump-10")
            assert sorted(r["seq"] for r in rows) == list(range(300))
            await store.close()
            events = await backbone.js.stream_info(EVENTS_STREAM, subjects_filter="evt.ingestion.>")
            assert not events.state.subjects, "nothing was dead-lettered"
    finally:
        own_influx.stop()


async def test_frames_are_validated_by_column_and_stored_like_points(
    infra_settings: dict[str, Any],
    serve_app: Any,
    store_test_models: Any,
    backbone: Backbone,
    details_of: Any,
    reader: InfluxStore,
    eventually: Callable[..., Any],
) -> None:
    times = [T0_NS + i * 10**6 for i in range(1000)]
    good = make_frame("frame-1", times, {"seq": list(range(1000)), "temp": [20] * 1000})
    async with platform(infra_settings, serve_app, store_test_models, ["frame-1"]) as ingestion:
        bad = make_frame("frame-1", times[:3], {"seq": [1, 2, 3], "pressure_bar": [1.0, -1.0, 2.0]})
        ghost = make_frame("ghost-2", times[:1], {"seq": [1]})
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await ingestion.IngestBatch(
                ingestion_pb2.IngestBatchRequest(frames=[good, bad, ghost]), timeout=10
            )
        violations = details_of(raised.value)[1].field_violations
        assert [(v.field, v.description) for v in violations] == [
            ("frames[1].columns[1].values[1]", "-1.0 is below the minimum 0"),
            ("frames[2].twin_id", "unknown twin 'ghost-2'"),
        ]
        assert (await backbone.js.stream_info(TELEMETRY_STREAM)).state.messages == 0

        response = await ingestion.IngestBatch(
            ingestion_pb2.IngestBatchRequest(frames=[good], points=points("frame-1", 5, 1000)),
            timeout=10,
        )
        assert (response.accepted_points, response.published_messages) == (1005, 2)
        await eventually(lambda: stored_count(reader, "frame-1"), lambda n: n == 1005)
        second = (await stored_rows(reader, "frame-1"))[1]
        assert (second["temp"], second["seq"]) == (20, 1)
        # Integers sent for a double field were stored as doubles, so the field's type is one.
        kinds = await reader.query('SHOW FIELD KEYS FROM "telemetry"')
        assert ["temp", "float"] in kinds[0].values


async def test_a_frame_larger_than_a_message_is_cut_and_stored_whole(
    infra_settings: dict[str, Any],
    serve_app: Any,
    store_test_models: Any,
    reader: InfluxStore,
    eventually: Callable[..., Any],
) -> None:
    rows = 20_000
    big = make_frame(
        "big-1",
        [T0_NS + i for i in range(rows)],
        {"seq": list(range(rows)), "mode": ["auto"] * rows},
    )
    async with platform(
        infra_settings, serve_app, store_test_models, ["big-1"], max_message_bytes=64 * 1024
    ) as ingestion:
        response = await ingestion.IngestBatch(
            ingestion_pb2.IngestBatchRequest(frames=[big]), timeout=20
        )
        assert response.accepted_points == rows
        assert response.published_messages >= big.ByteSize() // (64 * 1024)
        await eventually(lambda: stored_count(reader, "big-1"), lambda n: n == rows)


async def test_stream_acknowledges_each_batch_in_order_and_survives_a_rejected_one(
    infra_settings: dict[str, Any],
    serve_app: Any,
    store_test_models: Any,
    reader: InfluxStore,
    eventually: Callable[..., Any],
) -> None:
    async with platform(
        infra_settings, serve_app, store_test_models, ["stream-1"], stream_batches_in_flight=3
    ) as ingestion:
        requests = [
            ingestion_pb2.IngestStreamRequest(
                sequence=10 + i, points=points("stream-1", 100, i * 100)
            )
            for i in range(20)
        ]
        set_nan(requests[7].points[3])
        call = ingestion.IngestStream(iter(requests), timeout=30)
        acks = [ack async for ack in call]
        assert [ack.sequence for ack in acks] == [10 + i for i in range(20)]
        assert [ack.code for ack in acks] == [0] * 7 + [
            grpc.StatusCode.INVALID_ARGUMENT.value[0]
        ] + [0] * 12
        assert acks[7].violations[0].field == "points[3].fields['temp']"
        assert acks[7].accepted_points == 0
        assert sum(ack.accepted_points for ack in acks) == 1900
        await eventually(lambda: stored_count(reader, "stream-1"), lambda n: n == 1900)
