"""Merging telemetry and desired values into live state."""

from __future__ import annotations

from twinstack.api.common.v1 import events_pb2, types_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.sdk import make_frame
from twinstack.state.live import is_stale, merge, same_value, set_desired

S = 10**9


def batch(
    times_s: list[int], received_s: int = 100, **columns: list[float]
) -> events_pb2.TelemetryBatch:
    b = events_pb2.TelemetryBatch(
        model_id="dtmi:acme:Pump;1", frame=make_frame("pump-1", [t * S for t in times_s], columns)
    )
    b.ingest_time.FromSeconds(received_s)
    return b


def test_newest_value_of_each_field_wins_whatever_the_arrival_order() -> None:
    state = state_pb2.TwinState(twin_id="pump-1")
    assert merge(state, batch([20, 10], temp=[2.0, 1.0]))
    assert merge(state, batch([10], rpm=[5.0]))
    assert state.reported["temp"].value.double_value == 2.0
    assert state.reported["temp"].time.seconds == 20
    assert state.reported["rpm"].value.double_value == 5.0
    assert state.last_seen_time.seconds == 20
    assert state.model_id == "dtmi:acme:Pump;1"
    assert state.connectivity == state_pb2.CONNECTIVITY_ONLINE

    assert merge(state, batch([15], temp=[1.5], rpm=[6.0])), "rpm is newer than what is held"
    assert state.reported["temp"].value.double_value == 2.0, "a late sample never overwrites"
    assert state.reported["rpm"].value.double_value == 6.0
    assert state.last_seen_time.seconds == 20


def test_redelivery_changes_nothing() -> None:
    state = state_pb2.TwinState(twin_id="pump-1")
    merge(state, batch([10, 11], temp=[1.0, 2.0]))
    before = state.SerializeToString()
    assert not merge(state, batch([10, 11], temp=[1.0, 2.0]))
    assert state.SerializeToString() == before


def test_delta_lists_desired_values_not_yet_reported() -> None:
    state = state_pb2.TwinState(twin_id="pump-1")
    set_desired(state, {"setpoint": types_pb2.Value(double_value=20.0)}, [], now_ns=5 * S)
    assert state.delta["setpoint"].double_value == 20.0
    merge(state, batch([10], setpoint=[19.0]))
    assert "setpoint" in state.delta
    merge(state, batch([11], setpoint=[20.0]))
    assert "setpoint" not in state.delta
    set_desired(state, {}, ["setpoint"], now_ns=6 * S)
    assert not state.desired
    assert not state.delta


def test_numbers_compare_by_value_whatever_their_kind() -> None:
    assert same_value(types_pb2.Value(int_value=20), types_pb2.Value(double_value=20.0))
    assert not same_value(types_pb2.Value(int_value=20), types_pb2.Value(double_value=20.5))
    assert not same_value(types_pb2.Value(string_value="20"), types_pb2.Value(int_value=20))


def test_staleness_is_judged_by_the_receive_clock() -> None:
    state = state_pb2.TwinState(twin_id="pump-1")
    assert not is_stale(state, 1000 * S, 30), "never heard of: not stale, just unknown"
    merge(state, batch([1], received_s=100, temp=[1.0]))
    assert not is_stale(state, 129 * S, 30)
    assert is_stale(state, 131 * S, 30)
