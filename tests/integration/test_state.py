"""Live state, desired values, watches, staleness, alerts and history, against real
nats-server and influxd, with the registry and ingestion in front as in production."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest

from twinstack.api.common.v1 import events_pb2, types_pb2
from twinstack.api.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.api.state.v1 import state_pb2, state_pb2_grpc
from twinstack.common.consumer import DEAD_LETTER_REASON_HEADER, ORIGINAL_SUBJECT_HEADER
from twinstack.common.ids import partition_of
from twinstack.common.nats import (
    EVENTS_STREAM,
    TELEMETRY_STREAM,
    Backbone,
    message_headers,
    telemetry_subject,
)
from twinstack.ingestion.app import IngestionApp
from twinstack.ingestion.settings import IngestionSettings
from twinstack.registry.app import RegistryApp
from twinstack.registry.settings import RegistrySettings
from twinstack.sdk import make_frame
from twinstack.state.app import StateApp
from twinstack.state.settings import StateSettings

DEVICE = "dtmi:twinstack:test:Device;1"
BEACON = "dtmi:twinstack:test:Beacon;1"
S = 10**9
T0_NS = (time.time_ns() // S - 3600) * S


@dataclass
class Platform:
    registry: registry_pb2_grpc.RegistryServiceAsyncStub
    ingestion: ingestion_pb2_grpc.IngestionServiceAsyncStub
    state: state_pb2_grpc.StateServiceAsyncStub

    async def twin(self, twin_id: str, model_id: str = DEVICE) -> None:
        twin = registry_pb2.Twin(id=twin_id, model_id=model_id)
        await self.registry.CreateTwin(registry_pb2.CreateTwinRequest(twin=twin), timeout=10)

    async def create_models(self, name: str, *documents: dict[str, Any]) -> None:
        """Stores native model documents given as one file ``name``."""
        source = registry_pb2.ModelSource(
            name=name, format=registry_pb2.MODEL_FORMAT_NATIVE, content=json.dumps(documents)
        )
        await self.registry.CreateModels(
            registry_pb2.CreateModelsRequest(sources=[source]), timeout=10
        )

    async def ingest(self, twin_id: str, times_ns: Sequence[int], **columns: Sequence[Any]) -> None:
        frame = make_frame(twin_id, times_ns, columns)
        request = ingestion_pb2.IngestBatchRequest(frames=[frame])
        await self.ingestion.IngestBatch(request, timeout=10)

    async def get(self, twin_id: str) -> state_pb2.TwinState | None:
        try:
            request = state_pb2.GetStateRequest(twin_id=twin_id)
            return (await self.state.GetState(request, timeout=5)).state
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise


@pytest.fixture
async def platform(
    infra_settings: dict[str, Any], serve_app: Any, store_test_models: Any
) -> AsyncIterator[Platform]:
    registry_settings = RegistrySettings(**infra_settings)
    ingestion_settings = IngestionSettings(**infra_settings)
    state_settings = StateSettings(
        **infra_settings, state_staleness_check_interval_s=0.1, watch_fetch_timeout_s=0.5
    )
    async with (
        serve_app(registry_settings, RegistryApp(registry_settings)) as registry_channel,
        serve_app(ingestion_settings, IngestionApp(ingestion_settings)) as ingestion_channel,
        serve_app(state_settings, StateApp(state_settings)) as state_channel,
    ):
        registry = registry_pb2_grpc.RegistryServiceStub(registry_channel)
        await store_test_models(registry)
        yield Platform(
            registry,
            ingestion_pb2_grpc.IngestionServiceStub(ingestion_channel),
            state_pb2_grpc.StateServiceStub(state_channel),
        )


async def publish_raw(
    backbone: Backbone, batch: events_pb2.TelemetryBatch, subject: str = ""
) -> None:
    """Publishes around ingestion, as only a misbehaving producer could."""
    batch.ingest_time.GetCurrentTime()
    await backbone.js.publish(
        subject or telemetry_subject(batch.frame.twin_id, 8),
        batch.SerializeToString(),
        headers=message_headers(f"raw-{time.time_ns()}"),
    )


async def test_state_follows_the_stream_and_ignores_late_samples(
    platform: Platform, eventually: Any
) -> None:
    await platform.twin("pump-1")
    await platform.ingest("pump-1", [T0_NS + 100 * S], temp=[50.0], seq=[1])
    current = await eventually(lambda: platform.get("pump-1"), lambda s: s is not None)
    assert current.reported["temp"].value.double_value == 50.0
    assert current.last_seen_time.ToNanoseconds() == T0_NS + 100 * S
    assert current.model_id == DEVICE
    assert current.connectivity == state_pb2.CONNECTIVITY_ONLINE

    await platform.ingest("pump-1", [T0_NS + 90 * S], temp=[10.0], pressure_bar=[2.0])
    await platform.ingest("pump-1", [T0_NS + 110 * S], seq=[2])
    current = await eventually(
        lambda: platform.get("pump-1"), lambda s: s.reported["seq"].value.int_value == 2
    )
    assert current.reported["temp"].value.double_value == 50.0, "late sample did not overwrite"
    assert current.reported["pressure_bar"].value.double_value == 2.0, "a new field is taken"
    assert current.last_seen_time.ToNanoseconds() == T0_NS + 110 * S


async def test_bad_messages_do_not_block_good_ones(
    platform: Platform, backbone: Backbone, eventually: Any
) -> None:
    await platform.twin("pump-2")
    await backbone.js.publish("tel.0.junk", b"\x00\xffnot protobuf")
    await publish_raw(
        backbone,
        events_pb2.TelemetryBatch(frame=make_frame("bad id.>", [T0_NS], {"t": [1.0]})),
        "tel.0.x",
    )
    await platform.ingest("pump-2", [T0_NS], temp=[7.0])
    current = await eventually(lambda: platform.get("pump-2"), lambda s: s is not None)
    assert current.reported["temp"].value.double_value == 7.0

    async def unsettled() -> int:
        total = 0
        for partition in range(8):
            info = await backbone.js.consumer_info(TELEMETRY_STREAM, f"state-p{partition}")
            total += int(info.num_ack_pending or 0) + int(info.num_redelivered or 0)
        return total

    # Every message was settled at once: none waits for a redelivery that would fail again.
    await eventually(unsettled, lambda n: n == 0, timeout_s=10)


async def test_bad_state_requests(platform: Platform, details_of: Any) -> None:
    calls: list[tuple[Any, str]] = [
        (platform.state.GetState(state_pb2.GetStateRequest(twin_id="never-seen")), "NOT_FOUND"),
        (platform.state.GetState(state_pb2.GetStateRequest(twin_id="../etc")), "twin_id"),
        (
            platform.state.BatchGetStates(state_pb2.BatchGetStatesRequest(twin_ids=["ok", "a.b"])),
            "twin_ids[1]",
        ),
        (
            platform.state.SetDesired(
                state_pb2.SetDesiredRequest(
                    twin_id="ghost", set={"setpoint": types_pb2.Value(double_value=1)}
                )
            ),
            "NOT_FOUND",
        ),
    ]
    for call, expected in calls:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        if expected == "NOT_FOUND":
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        else:
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert details_of(raised.value)[1].field_violations[0].field == expected


async def test_a_deleted_twin_leaves_no_live_state_behind(
    platform: Platform, eventually: Any
) -> None:
    await platform.twin("gone-1")
    await platform.twin("kept-1")
    await platform.ingest("gone-1", [T0_NS], temp=[20.0])
    await platform.ingest("kept-1", [T0_NS], temp=[21.0])
    await eventually(lambda: platform.get("gone-1"), lambda s: s is not None)
    await eventually(lambda: platform.get("kept-1"), lambda s: s is not None)
    await platform.registry.DeleteTwin(registry_pb2.DeleteTwinRequest(twin_id="gone-1"), timeout=10)
    await eventually(lambda: platform.get("gone-1"), lambda s: s is None)
    assert await platform.get("kept-1") is not None


async def test_desired_values_delta_revisions_and_the_device_event(
    platform: Platform, backbone: Backbone, details_of: Any, eventually: Any
) -> None:
    await platform.twin("valve-1")
    await platform.ingest("valve-1", [T0_NS], setpoint=[10.0])
    reported = await eventually(lambda: platform.get("valve-1"), lambda s: s is not None)

    bad = state_pb2.SetDesiredRequest(
        twin_id="valve-1",
        set={
            "setpoint": types_pb2.Value(double_value=500),
            "mode": types_pb2.Value(string_value="turbo"),
            "nope": types_pb2.Value(double_value=1),
        },
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await platform.state.SetDesired(bad, timeout=5)
    fields = sorted(v.field for v in details_of(raised.value)[1].field_violations)
    assert fields == ["set['mode']", "set['nope']", "set['setpoint']"]

    request = state_pb2.SetDesiredRequest(
        twin_id="valve-1",
        set={"setpoint": types_pb2.Value(double_value=20)},
        expected_revision=reported.revision,
    )
    desired = (await platform.state.SetDesired(request, timeout=5)).state
    assert desired.revision > reported.revision
    assert desired.delta["setpoint"].double_value == 20
    event = await backbone.js.get_last_msg(EVENTS_STREAM, "evt.state.desired.valve-1")
    sent = events_pb2.DesiredChangedEvent.FromString(event.data or b"")
    assert (sent.desired["setpoint"].double_value, list(sent.delta_fields)) == (20, ["setpoint"])
    assert sent.state_revision == desired.revision

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await platform.state.SetDesired(request, timeout=5)  # the same, now stale, revision
    assert raised.value.code() == grpc.StatusCode.ABORTED
    mismatch = details_of(raised.value)[-1]
    assert (mismatch.expected_revision, mismatch.current_revision) == (
        reported.revision,
        desired.revision,
    )

    await platform.ingest("valve-1", [T0_NS + S], setpoint=[20])
    reached = await eventually(lambda: platform.get("valve-1"), lambda s: not s.delta)
    assert reached.desired["setpoint"].value.double_value == 20

    both = await platform.state.BatchGetStates(
        state_pb2.BatchGetStatesRequest(twin_ids=["valve-1", "nobody", "valve-1"]), timeout=5
    )
    assert [s.twin_id for s in both.states] == ["valve-1"]
    assert list(both.missing_twin_ids) == ["nobody"]


async def test_watch_starts_with_current_states_follows_changes_and_resumes(
    platform: Platform, eventually: Any
) -> None:
    for twin_id in ("w-1", "w-2"):
        await platform.twin(twin_id)
    await platform.twin("b-1", BEACON)
    await platform.ingest("w-1", [T0_NS], seq=[1])
    await platform.ingest("b-1", [T0_NS], ping=[1.0])
    await eventually(lambda: platform.get("b-1"), lambda s: s is not None)
    await eventually(lambda: platform.get("w-1"), lambda s: s is not None)

    seen: list[tuple[str, int, bool]] = []
    revisions: list[int] = []

    async def follow(request: state_pb2.WatchRequest, into: list[Any]) -> None:
        async for response in platform.state.Watch(request):
            into.append(response)

    by_model: list[state_pb2.WatchResponse] = []
    by_id: list[state_pb2.WatchResponse] = []
    tasks = [
        asyncio.create_task(follow(state_pb2.WatchRequest(model_id=DEVICE), by_model)),
        asyncio.create_task(follow(state_pb2.WatchRequest(twin_ids=["w-2"]), by_id)),
    ]
    try:
        await eventually(lambda: _value(len(by_model)), lambda n: n >= 1)
        assert by_model[0].state.twin_id == "w-1", (
            "the current state first; the beacon is not a device"
        )
        await platform.ingest("w-2", [T0_NS], seq=[5])
        await platform.ingest("w-1", [T0_NS + S], seq=[2])
        await eventually(lambda: _value(len(by_model)), lambda n: n >= 3)
        await eventually(lambda: _value(len(by_id)), lambda n: n >= 1)
        seen = [
            (r.state.twin_id, r.state.reported["seq"].value.int_value, r.catching_up)
            for r in by_model
        ]
        assert sorted(seen[1:3]) == [("w-1", 2, False), ("w-2", 5, False)]
        assert [r.state.twin_id for r in by_id] == ["w-2"]
        revisions = [r.state.revision for r in by_model]
        assert revisions == sorted(revisions), "revisions order the changes of all twins"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # Resume after the first change: only what changed since, each twin's latest state.
    await platform.ingest("w-1", [T0_NS + 2 * S], seq=[3])
    await platform.ingest("w-1", [T0_NS + 3 * S], seq=[4])
    resumed: list[state_pb2.WatchResponse] = []
    task = asyncio.create_task(
        follow(state_pb2.WatchRequest(model_id=DEVICE, after_revision=revisions[0]), resumed)
    )
    try:
        await eventually(
            lambda: _value(
                {r.state.twin_id: r.state.reported["seq"].value.int_value for r in resumed}
            ),
            lambda d: d == {"w-1": 4, "w-2": 5},
        )
        assert all(r.state.revision > revisions[0] for r in resumed)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in platform.state.Watch(state_pb2.WatchRequest()):
            pass
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in platform.state.Watch(state_pb2.WatchRequest(model_id="dtmi:no:Such;1")):
            pass
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def _value(value: Any) -> Any:
    return value


async def test_a_silent_twin_goes_stale_raises_its_staleness_alert_and_recovers(
    platform: Platform, backbone: Backbone, eventually: Any
) -> None:
    silence = state_pb2.StalenessCondition()
    silence.max_silence.FromMilliseconds(800)
    rule = state_pb2.AlertRule(
        id="beacon-silent",
        model_id=BEACON,
        severity=events_pb2.SEVERITY_WARNING,
        staleness=silence,
        message="no pings",
    )
    await platform.state.PutAlertRule(state_pb2.PutAlertRuleRequest(rule=rule), timeout=5)
    await platform.twin("b-2", BEACON)
    await platform.ingest("b-2", [time.time_ns()], ping=[1.0])
    online = await eventually(lambda: platform.get("b-2"), lambda s: s is not None)
    assert online.connectivity == state_pb2.CONNECTIVITY_ONLINE
    # 3 sample periods of 0.2 s: stale after 0.6 s; the rule fires after 0.8 s.
    stale = await eventually(
        lambda: platform.get("b-2"),
        lambda s: s.connectivity == state_pb2.CONNECTIVITY_STALE and "beacon-silent" in s.alerts,
    )
    assert stale.alerts["beacon-silent"].active
    assert stale.alerts["beacon-silent"].value > 0.8
    event = await backbone.js.get_last_msg(EVENTS_STREAM, "evt.alert.raised.b-2.beacon-silent")
    assert events_pb2.AlertEvent.FromString(event.data or b"").active

    await platform.ingest("b-2", [time.time_ns()], ping=[2.0])
    back = await eventually(
        lambda: platform.get("b-2"), lambda s: s.connectivity == state_pb2.CONNECTIVITY_ONLINE
    )
    assert not back.alerts["beacon-silent"].active


async def test_threshold_alert_raises_clears_lists_and_is_acknowledged(
    platform: Platform, backbone: Backbone, details_of: Any, eventually: Any
) -> None:
    rule = state_pb2.AlertRule(
        id="too-hot",
        model_id=DEVICE,
        field="temp",
        severity=events_pb2.SEVERITY_CRITICAL,
        threshold=state_pb2.ThresholdCondition(
            direction=state_pb2.ThresholdCondition.DIRECTION_ABOVE, raise_at=90, clear_at=80
        ),
        message="cool it",
    )
    stored = (await platform.state.PutAlertRule(state_pb2.PutAlertRuleRequest(rule=rule))).rule
    assert stored.revision > 0
    listed = await platform.state.ListAlertRules(state_pb2.ListAlertRulesRequest())
    assert [r.id for r in listed.rules] == ["too-hot"]

    await platform.twin("oven-1")
    await platform.twin("oven-2")
    await platform.ingest("oven-1", [T0_NS + i * S for i in range(4)], temp=[70, 95, 85, 99])
    await platform.ingest("oven-2", [T0_NS], temp=[50])
    hot = await eventually(lambda: platform.get("oven-1"), lambda s: "too-hot" in s.alerts)
    alert = hot.alerts["too-hot"]
    assert (alert.active, alert.value, alert.raised_time.ToNanoseconds()) == (True, 95, T0_NS + S)
    event = await backbone.js.get_last_msg(EVENTS_STREAM, "evt.alert.raised.oven-1.too-hot")
    assert events_pb2.AlertEvent.FromString(event.data or b"").message == "cool it"

    async def active() -> list[str]:
        response = await platform.state.ListAlerts(state_pb2.ListAlertsRequest())
        return [f"{a.twin_id}/{a.rule_id}" for a in response.alerts]

    await eventually(active, lambda ids: ids == ["oven-1/too-hot"])
    acked = await platform.state.AcknowledgeAlert(
        state_pb2.AcknowledgeAlertRequest(
            twin_id="oven-1", rule_id="too-hot", acknowledged_by="ana"
        )
    )
    assert acked.alert.acknowledged
    # The record names the authenticated principal (here auth is off: anonymous); the name the
    # caller gave is kept only as a claim beside it.
    assert acked.alert.acknowledged_by == "anonymous (for ana)"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await platform.state.AcknowledgeAlert(
            state_pb2.AcknowledgeAlertRequest(twin_id="oven-2", rule_id="too-hot")
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND

    await platform.ingest("oven-1", [T0_NS + 10 * S], temp=[79])
    cleared = await eventually(
        lambda: platform.get("oven-1"), lambda s: not s.alerts["too-hot"].active
    )
    assert cleared.alerts["too-hot"].cleared_time.ToNanoseconds() == T0_NS + 10 * S
    await eventually(active, lambda ids: ids == [])
    everything = await platform.state.ListAlerts(state_pb2.ListAlertsRequest(include_cleared=True))
    assert [a.twin_id for a in everything.alerts] == ["oven-1"]

    bad = state_pb2.AlertRule(
        id="Bad Id",
        model_id=DEVICE,
        field="label",
        threshold=state_pb2.ThresholdCondition(
            direction=state_pb2.ThresholdCondition.DIRECTION_ABOVE, raise_at=1, clear_at=2
        ),
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await platform.state.PutAlertRule(state_pb2.PutAlertRuleRequest(rule=bad))
    fields = sorted(v.field for v in details_of(raised.value)[1].field_violations)
    assert fields == ["rule.field", "rule.id", "rule.severity", "rule.threshold.clear_at"]
    await platform.state.DeleteAlertRule(state_pb2.DeleteAlertRuleRequest(rule_id="too-hot"))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await platform.state.DeleteAlertRule(state_pb2.DeleteAlertRuleRequest(rule_id="too-hot"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_history_aggregates_match_values_computed_here(
    platform: Platform, details_of: Any, eventually: Any
) -> None:
    rng = np.random.default_rng(3)
    temps = [float(round(v, 3)) for v in rng.normal(60, 5, 600)]
    times = [T0_NS + i * S for i in range(600)]  # one a second for 10 minutes
    for twin_id in ("hist-1", "hist-2"):
        await platform.twin(twin_id)
        await platform.ingest(twin_id, times, temp=temps, seq=list(range(600)))

    def request(aggregation: str, **extra: Any) -> state_pb2.QueryHistoryRequest:
        r = state_pb2.QueryHistoryRequest(
            twin_ids=["hist-1", "hist-2"], fields=["temp", "seq"], aggregation=aggregation, **extra
        )
        r.start_time.FromNanoseconds(T0_NS)
        r.end_time.FromNanoseconds(T0_NS + 600 * S)
        if aggregation != "AGGREGATION_NONE":
            r.window.FromSeconds(60)
        return r

    async def query(
        r: state_pb2.QueryHistoryRequest,
    ) -> dict[tuple[str, str], state_pb2.HistorySeries]:
        joined: dict[tuple[str, str], state_pb2.HistorySeries] = {}
        async for response in platform.state.QueryHistory(r, timeout=10):
            for series in response.series:
                joined.setdefault(
                    (series.twin_id, series.field), state_pb2.HistorySeries()
                ).MergeFrom(series)
        return joined

    raw = await eventually(
        lambda: query(request("AGGREGATION_NONE")),
        lambda found: len(found) == 4 and len(found["hist-2", "seq"].time_unix_ns) == 600,
    )
    assert list(raw["hist-1", "temp"].double_values.values) == temps
    assert list(raw["hist-1", "seq"].int_values.values) == list(range(600))

    windows = [temps[i : i + 60] for i in range(0, 600, 60)]
    expected = {
        "AGGREGATION_MEAN": [statistics.fmean(w) for w in windows],
        "AGGREGATION_MIN": [min(w) for w in windows],
        "AGGREGATION_MAX": [max(w) for w in windows],
        "AGGREGATION_LAST": [w[-1] for w in windows],
        "AGGREGATION_SUM": [sum(w) for w in windows],
        "AGGREGATION_STDDEV": [statistics.stdev(w) for w in windows],
        "AGGREGATION_MEDIAN": [statistics.median(w) for w in windows],
        # InfluxDB's percentile is the nearest-rank value.
        "AGGREGATION_PERCENTILE": [sorted(w)[int(0.9 * 60 + 0.5) - 1] for w in windows],
    }
    for aggregation, values in expected.items():
        found = await query(request(aggregation, percentile=90))
        series = found["hist-2", "temp"]
        assert list(series.time_unix_ns) == [T0_NS + i * 60 * S for i in range(10)]
        assert list(series.double_values.values) == pytest.approx(values, rel=1e-9), aggregation
    counts = await query(request("AGGREGATION_COUNT"))
    assert list(counts["hist-1", "seq"].int_values.values) == [60] * 10

    limited = await query(request("AGGREGATION_NONE", max_points_per_series=100))
    assert len(limited["hist-1", "temp"].time_unix_ns) == 100
    assert limited["hist-1", "temp"].truncated
    downsampled = await query(request("AGGREGATION_MEAN", max_points_per_series=5))
    assert len(downsampled["hist-1", "temp"].time_unix_ns) <= 6

    hostile = request("AGGREGATION_NONE")
    hostile.twin_ids[:] = ["hist-1' OR 1=1 --"]
    hostile.fields[:] = ['temp" FROM x; DROP DATABASE twinstack']
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await query(hostile)
    fields = sorted(v.field for v in details_of(raised.value)[1].field_violations)
    assert fields == ["fields[0]", "twin_ids[0]"]
    assert len(await query(request("AGGREGATION_NONE"))) == 4, "still serving, data intact"


async def test_one_field_name_of_two_types_is_stored_for_both_models(
    platform: Platform, eventually: Any
) -> None:
    """Two models declare ``level`` with different types: every acknowledged point is stored
    and read back with its own type (one measurement per value type)."""
    documents = [
        {"id": "dtmi:acme:TankA;1", "telemetry": {"level": "double"}},
        {"id": "dtmi:acme:TankB;1", "telemetry": {"level": "integer"}},
        {"id": "dtmi:acme:TankC;1", "telemetry": {"level": {"schema": {"enum": ["low", "high"]}}}},
    ]
    await platform.create_models("tanks.json", *documents)
    values: dict[str, list[Any]] = {
        "tank-a": [1.5, 2.5],
        "tank-b": [3, 4],
        "tank-c": ["low", "high"],
    }
    for twin_id, model in zip(values, ("TankA", "TankB", "TankC"), strict=True):
        await platform.twin(twin_id, f"dtmi:acme:{model};1")
    for twin_id, column in values.items():
        await platform.ingest(twin_id, [T0_NS, T0_NS + S], level=column)

    async def history() -> dict[str, list[Any]]:
        request = state_pb2.QueryHistoryRequest(twin_ids=list(values), fields=["level"])
        request.start_time.FromNanoseconds(T0_NS)
        request.end_time.FromNanoseconds(T0_NS + 10 * S)
        found: dict[str, list[Any]] = {}
        async for response in platform.state.QueryHistory(request, timeout=10):
            for series in response.series:
                kind = series.WhichOneof("values")
                found[series.twin_id] = list(getattr(series, kind).values) if kind else []
        return found

    assert await eventually(history, lambda found: found == values)


async def test_a_field_posing_as_the_twin_tag_never_reaches_another_twins_history(
    platform: Platform, backbone: Backbone, eventually: Any, details_of: Any
) -> None:
    refused = {"id": "dtmi:acme:Sly;1", "telemetry": {"twin_id": "string", "time": "double"}}
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await platform.create_models("sly.json", refused)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(v.field for v in details_of(raised.value)[1].field_violations) == [
        "sly.json.telemetry.time",
        "sly.json.telemetry.twin_id",
    ]
    # A producer around ingestion writes a field twin_id="victim" for its own twin.
    await platform.twin("victim")
    await platform.ingest("victim", [T0_NS], temp=[20.0])
    await publish_raw(
        backbone,
        events_pb2.TelemetryBatch(
            frame=make_frame("attacker", [T0_NS + S], {"twin_id": ["victim"], "temp": [99.0]})
        ),
    )
    request = state_pb2.QueryHistoryRequest(twin_ids=["victim"], fields=["temp"])
    request.start_time.FromNanoseconds(T0_NS)
    request.end_time.FromNanoseconds(T0_NS + 10 * S)

    async def victims_history() -> list[float]:
        values: list[float] = []
        async for response in platform.state.QueryHistory(request, timeout=10):
            for series in response.series:
                values.extend(series.double_values.values)
        return values

    await eventually(victims_history, lambda found: found)

    # Wait until the historian has settled the attacker's message, then look again.
    async def historian_settled() -> bool:
        info = await backbone.js.consumer_info(TELEMETRY_STREAM, "historian")
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)

    await eventually(historian_settled)
    assert await victims_history() == [20.0]


async def test_a_poisoned_twin_never_stalls_its_partition(
    infra_settings: dict[str, Any], serve_app: Any, backbone: Backbone, eventually: Any
) -> None:
    """A twin whose state can never be stored (two messages of a 600 kB string each, published
    around ingestion, make its document larger than NATS's max payload) is retried, then
    dead-lettered with the reason, while the twins of its partition keep updating all along."""
    settings = StateSettings(
        **infra_settings,
        state_max_deliver=3,
        state_redelivery_backoff_s=0.1,
        state_fetch_timeout_s=0.1,
    )
    poisoned = "poison-0"
    partition = partition_of(poisoned, settings.telemetry_partitions)
    neighbours = [
        twin_id
        for twin_id in (f"neighbour-{i}" for i in range(200))
        if partition_of(twin_id, settings.telemetry_partitions) == partition
    ][:3]
    async with serve_app(settings, StateApp(settings)) as channel:
        state = state_pb2_grpc.StateServiceStub(channel)
        huge = "x" * 600_000
        for field in ("a", "b"):
            await publish_raw(
                backbone,
                events_pb2.TelemetryBatch(frame=make_frame(poisoned, [T0_NS], {field: [huge]})),
            )
        for round_ in range(3):
            for twin_id in neighbours:
                await publish_raw(
                    backbone,
                    events_pb2.TelemetryBatch(
                        frame=make_frame(twin_id, [T0_NS + round_ * S], {"temp": [float(round_)]})
                    ),
                )

            async def neighbours_at(value: float) -> bool:
                for twin_id in neighbours:
                    try:
                        found = await state.GetState(
                            state_pb2.GetStateRequest(twin_id=twin_id), timeout=5
                        )
                    except grpc.aio.AioRpcError:
                        return False
                    if found.state.reported["temp"].value.double_value != value:
                        return False
                return True

            await eventually(lambda v=float(round_): neighbours_at(v))

        letter = await eventually(
            lambda: _last_message(backbone, f"evt.state.deadletter.{poisoned}")
        )
        assert "poison-0" in letter.headers[DEAD_LETTER_REASON_HEADER]
        assert "after 3 deliveries" in letter.headers[DEAD_LETTER_REASON_HEADER]
        assert letter.headers[ORIGINAL_SUBJECT_HEADER] == telemetry_subject(
            poisoned, settings.telemetry_partitions
        )

        async def settled() -> bool:
            info = await backbone.js.consumer_info(TELEMETRY_STREAM, f"state-p{partition}")
            return bool(info.num_pending == 0 and info.num_ack_pending == 0)

        await eventually(settled)


async def _last_message(backbone: Backbone, subject: str) -> Any:
    try:
        return await backbone.js.get_last_msg(EVENTS_STREAM, subject)
    except Exception:
        return None


async def test_watches_and_alert_rules_are_bounded_per_caller_and_in_all(
    infra_settings: dict[str, Any],
    serve_app: Any,
    store_test_models: Any,
    details_of: Any,
    eventually: Any,
) -> None:
    registry_settings = RegistrySettings(**infra_settings)
    settings = StateSettings(
        **infra_settings, max_watches_per_caller=1, max_alert_rules=3, watch_fetch_timeout_s=0.2
    )
    async with serve_app(registry_settings, RegistryApp(registry_settings)) as registry_channel:
        # Stored before the state service starts: its catalog has them from the beginning.
        await store_test_models(registry_pb2_grpc.RegistryServiceStub(registry_channel))
        async with serve_app(settings, StateApp(settings)) as channel:
            await _bounded_watches_and_rules(
                state_pb2_grpc.StateServiceStub(channel), details_of, eventually
            )


async def _bounded_watches_and_rules(
    state: state_pb2_grpc.StateServiceAsyncStub, details_of: Any, eventually: Any
) -> None:
    async def another_watch() -> grpc.StatusCode:
        """How a second Watch fares: refused, or served (until its deadline)."""
        call = state.Watch(state_pb2.WatchRequest(all_twins=True), timeout=1)
        try:
            await call.read()
        except grpc.aio.AioRpcError as error:
            refused.append(error)
            return error.code()
        finally:
            call.cancel()
        return grpc.StatusCode.OK

    refused: list[grpc.aio.AioRpcError] = []
    first = state.Watch(state_pb2.WatchRequest(all_twins=True))
    await first.initial_metadata()  # sent once the Watch holds its slot
    reading = asyncio.ensure_future(first.read())
    assert await another_watch() == grpc.StatusCode.RESOURCE_EXHAUSTED
    quota = [d for d in details_of(refused[-1]) if d.DESCRIPTOR.name == "QuotaFailure"]
    assert quota[0].violations[0].subject == "TWINSTACK_MAX_WATCHES_PER_CALLER"
    first.cancel()
    reading.cancel()
    # Closing it frees the slot: a Watch is served again (it runs into its deadline). It once
    # never was: gRPC cancels the handler once, and a nats.py fetch could swallow that
    # (Python 3.11 wait_for); the Watch now checks for a swallowed cancellation.
    await eventually(
        another_watch, lambda code: code == grpc.StatusCode.DEADLINE_EXCEEDED, timeout_s=60
    )

    def rule(rule_id: str) -> state_pb2.PutAlertRuleRequest:
        return state_pb2.PutAlertRuleRequest(
            rule=state_pb2.AlertRule(
                id=rule_id,
                model_id=DEVICE,
                field="temp",
                severity=events_pb2.SEVERITY_WARNING,
                threshold=state_pb2.ThresholdCondition(
                    direction=state_pb2.ThresholdCondition.DIRECTION_ABOVE,
                    raise_at=9,
                    clear_at=8,
                ),
            )
        )

    for rule_id in ("r1", "r2", "r3"):
        await state.PutAlertRule(rule(rule_id))
    await state.PutAlertRule(rule("r2"))  # replacing one is no new rule
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await state.PutAlertRule(rule("r4"))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    listed: list[str] = []
    page = state_pb2.ListAlertRulesRequest()
    page.page.page_size = 2
    while True:
        response = await state.ListAlertRules(page)
        listed += [r.id for r in response.rules]
        if not response.page.next_page_token:
            break
        page.page.page_token = response.page.next_page_token
    assert listed == ["r1", "r2", "r3"]
