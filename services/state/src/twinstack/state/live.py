"""Merging telemetry and desired values into a twin's live state: pure logic, no I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from twinstack.api.common.v1 import events_pb2, types_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.common.frames import latest_values


def merge(state: state_pb2.TwinState, batch: events_pb2.TelemetryBatch) -> bool:
    """Applies a telemetry batch to ``state`` in place; returns whether anything changed.

    A field takes a sample's value only if the sample is newer than the value it holds, so
    late or redelivered samples never overwrite fresher ones, and applying the same batch
    twice changes nothing the second time.
    """
    changed = False
    for name, (time_ns, value) in latest_values(batch.frame).items():
        current = state.reported.get(name)
        if current is not None and current.time.ToNanoseconds() >= time_ns:
            continue
        state.reported[name].value.CopyFrom(value)
        state.reported[name].time.FromNanoseconds(time_ns)
        if time_ns > state.last_seen_time.ToNanoseconds():
            state.last_seen_time.FromNanoseconds(time_ns)
        changed = True
    received_ns = batch.ingest_time.ToNanoseconds()
    if received_ns > state.last_received_time.ToNanoseconds():
        state.last_received_time.FromNanoseconds(received_ns)
        # A device's death (Sparkplug) makes the twin stale at once; anything else from it
        # says it is online.
        died = batch.connection.change == events_pb2.DeviceConnection.CHANGE_DIED
        connectivity = state_pb2.CONNECTIVITY_STALE if died else state_pb2.CONNECTIVITY_ONLINE
        if state.connectivity != connectivity:
            state.connectivity = connectivity
            changed = True
    if batch.model_id and state.model_id != batch.model_id:
        state.model_id = batch.model_id
        changed = True
    if changed:
        refresh_delta(state)
    return changed


def set_desired(
    state: state_pb2.TwinState,
    values: Mapping[str, types_pb2.Value],
    remove: Sequence[str],
    now_ns: int,
) -> None:
    """Sets and removes desired values in place and refreshes the delta."""
    for name in remove:
        state.desired.pop(name, None)
    for name, value in values.items():
        state.desired[name].value.CopyFrom(value)
        state.desired[name].time.FromNanoseconds(now_ns)
    refresh_delta(state)


def refresh_delta(state: state_pb2.TwinState) -> None:
    """Recomputes which desired values the reported ones have not reached."""
    state.ClearField("delta")
    for name, desired in state.desired.items():
        reported = state.reported.get(name)
        if reported is None or not same_value(reported.value, desired.value):
            state.delta[name].CopyFrom(desired.value)


def same_value(a: types_pb2.Value, b: types_pb2.Value) -> bool:
    """Equal values; numbers compare by value whatever their kind (a device reports 20 for a
    desired 20.0), doubles within a relative 1e-9."""
    numeric = ("double_value", "int_value")
    kind_a, kind_b = a.WhichOneof("kind"), b.WhichOneof("kind")
    if kind_a in numeric and kind_b in numeric:
        x, y = float(getattr(a, kind_a)), float(getattr(b, kind_b))
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=0.0)
    return a == b


def is_stale(state: state_pb2.TwinState, now_ns: int, stale_after_s: float) -> bool:
    """Whether nothing arrived for longer than ``stale_after_s`` (by ingestion's clock)."""
    received_ns = state.last_received_time.ToNanoseconds()
    return received_ns > 0 and now_ns - received_ns > stale_after_s * 1e9
