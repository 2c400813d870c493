"""Merging telemetry into a twin's live state: pure logic, no I/O."""

from __future__ import annotations

from collections.abc import Iterable

from twinstack.api.common.v1 import events_pb2
from twinstack.api.state.v1 import state_pb2


def merge(state: state_pb2.TwinState, batches: Iterable[events_pb2.TelemetryBatch]) -> bool:
    """Applies samples to ``state`` in place; returns whether anything changed.

    A field takes a sample's value only if the sample is newer than the value it holds, so
    late or redelivered samples never overwrite fresher ones, and applying the same batch
    twice changes nothing the second time.
    """
    changed = False
    for batch in batches:
        for sample in batch.samples:
            sample_ns = sample.time.ToNanoseconds()
            for name, value in sample.fields.items():
                current = state.reported.get(name)
                if current is not None and current.time.ToNanoseconds() >= sample_ns:
                    continue
                state.reported[name].value.CopyFrom(value)
                state.reported[name].time.CopyFrom(sample.time)
                changed = True
            if sample_ns > state.last_seen_time.ToNanoseconds():
                state.last_seen_time.CopyFrom(sample.time)
                changed = True
    return changed
