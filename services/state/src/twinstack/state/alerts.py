"""Alert rules evaluated against a twin's telemetry and silence: pure logic, no I/O.

Each rule keeps what it needs between samples in the twin's state document (``rule_memory``),
written in the same compare-and-set as the values that moved it, so evaluation continues
correctly on another replica or after a restart, and a redelivered batch (samples not newer
than the memory) is not counted twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twinstack.api.common.v1 import events_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.common.frames import column_samples

ThresholdDirection = state_pb2.ThresholdCondition.Direction


@dataclass(frozen=True)
class AlertChange:
    """An alert raised or cleared by an evaluation (a copy, as it was at that moment)."""

    alert: state_pb2.Alert
    time_ns: int


class AlertEvaluator:
    """Applies rules to a twin's state as telemetry and time go by.

    Args:
        rules_for: The rules that apply to a twin, given its id and model id.
    """

    def __init__(self, rules_for: Callable[[str, str], Iterable[state_pb2.AlertRule]]) -> None:
        self._rules_for = rules_for

    def on_telemetry(
        self, state: state_pb2.TwinState, batch: events_pb2.TelemetryBatch
    ) -> list[AlertChange]:
        """Evaluates the twin's value rules over the batch's samples, oldest first."""
        changes: list[AlertChange] = []
        for rule in self._rules_for(state.twin_id, state.model_id):
            condition = rule.WhichOneof("condition")
            if condition == "staleness":
                alert = state.alerts.get(rule.id)
                if alert is not None and alert.active:
                    # Telemetry arrived: the silence is over.
                    now_ns = batch.ingest_time.ToNanoseconds()
                    changes.append(_clear(state, rule, 0.0, now_ns))
                continue
            memory = state.rule_memory[rule.id]
            for time_ns, value in column_samples(batch.frame, rule.field):
                if time_ns <= memory.last_time_unix_ns or isinstance(value, (str, bool)):
                    continue  # already evaluated, arrived late, or not a number
                change = _evaluate(state, rule, memory, float(value), time_ns)
                if change is not None:
                    changes.append(change)
        return changes

    def on_clock(self, state: state_pb2.TwinState, now_ns: int) -> list[AlertChange]:
        """Evaluates the twin's staleness rules at ``now_ns``."""
        changes = []
        received_ns = state.last_received_time.ToNanoseconds()
        for rule in self._rules_for(state.twin_id, state.model_id):
            if rule.WhichOneof("condition") != "staleness" or received_ns == 0:
                continue
            silence_s = (now_ns - received_ns) / 1e9
            alert = state.alerts.get(rule.id)
            active = alert is not None and alert.active
            if not active and silence_s > rule.staleness.max_silence.ToTimedelta().total_seconds():
                changes.append(_raise(state, rule, silence_s, now_ns))
        return changes


def _evaluate(
    state: state_pb2.TwinState,
    rule: state_pb2.AlertRule,
    memory: state_pb2.RuleMemory,
    value: float,
    time_ns: int,
) -> AlertChange | None:
    alert = state.alerts.get(rule.id)
    active = alert is not None and alert.active
    condition = rule.WhichOneof("condition")
    change: AlertChange | None = None
    if condition == "threshold":
        threshold = rule.threshold
        above = threshold.direction == state_pb2.ThresholdCondition.DIRECTION_ABOVE
        beyond_raise = value >= threshold.raise_at if above else value <= threshold.raise_at
        back_to_clear = value <= threshold.clear_at if above else value >= threshold.clear_at
        if not active and beyond_raise:
            change = _raise(state, rule, value, time_ns)
        elif active and back_to_clear:
            change = _clear(state, rule, value, time_ns)
    elif condition == "rate":
        if memory.samples > 0:
            elapsed_s = (time_ns - memory.last_time_unix_ns) / 1e9
            rate = abs(value - memory.last_value) / elapsed_s
            if not active and rate > rule.rate.max_per_s:
                change = _raise(state, rule, rate, time_ns)
            elif active and rate <= rule.rate.max_per_s:
                change = _clear(state, rule, rate, time_ns)
    elif condition == "anomaly":
        change = _anomaly(state, rule, memory, value, time_ns, active)
    memory.last_value = value
    memory.last_time_unix_ns = time_ns
    memory.samples += 1
    return change


def _anomaly(  # noqa: PLR0917 - the evaluation's whole context
    state: state_pb2.TwinState,
    rule: state_pb2.AlertRule,
    memory: state_pb2.RuleMemory,
    value: float,
    time_ns: int,
    active: bool,
) -> AlertChange | None:
    anomaly = rule.anomaly
    change = None
    if memory.samples == 0:
        memory.mean, memory.variance = value, 0.0
        return None
    if memory.samples >= anomaly.warmup_samples and memory.variance > 0:
        score = abs(value - memory.mean) / math.sqrt(memory.variance)
        if not active and score >= anomaly.raise_score:
            change = _raise(state, rule, score, time_ns)
        elif active and score < anomaly.clear_score:
            change = _clear(state, rule, score, time_ns)
    # Exponentially weighted mean and variance (West's incremental form).
    difference = value - memory.mean
    increment = anomaly.alpha * difference
    memory.mean += increment
    memory.variance = (1 - anomaly.alpha) * (memory.variance + difference * increment)
    return change


def _raise(
    state: state_pb2.TwinState, rule: state_pb2.AlertRule, value: float, time_ns: int
) -> AlertChange:
    alert = state_pb2.Alert(
        rule_id=rule.id,
        twin_id=state.twin_id,
        field=rule.field,
        severity=rule.severity,
        active=True,
        value=value,
        message=rule.message,
    )
    alert.raised_time.FromNanoseconds(time_ns)
    state.alerts[rule.id].CopyFrom(alert)
    return AlertChange(alert, time_ns)


def _clear(
    state: state_pb2.TwinState, rule: state_pb2.AlertRule, value: float, time_ns: int
) -> AlertChange:
    alert = state.alerts[rule.id]
    alert.active = False
    alert.value = value
    alert.cleared_time.FromNanoseconds(time_ns)
    # A copy: a later sample of the same batch may raise the alert again.
    snapshot = state_pb2.Alert()
    snapshot.CopyFrom(alert)
    return AlertChange(snapshot, time_ns)


def alert_event(change: AlertChange, state_revision: int) -> events_pb2.AlertEvent:
    alert = change.alert
    event = events_pb2.AlertEvent(
        twin_id=alert.twin_id,
        rule_id=alert.rule_id,
        field=alert.field,
        severity=alert.severity,
        active=alert.active,
        value=alert.value,
        message=alert.message,
        state_revision=state_revision,
    )
    event.time.FromNanoseconds(change.time_ns)
    return event
