"""Alert rules over telemetry and silence: hysteresis, rate, anomaly score, staleness."""

from __future__ import annotations

import random
from typing import Any

from twinstack.api.common.v1 import events_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.sdk import make_frame
from twinstack.state.alerts import AlertEvaluator
from twinstack.state.live import merge

S = 10**9
Direction = state_pb2.ThresholdCondition


def rule(rule_id: str, **condition: Any) -> state_pb2.AlertRule:
    return state_pb2.AlertRule(
        id=rule_id,
        twin_id="pump-1",
        field="temp",
        severity=events_pb2.SEVERITY_CRITICAL,
        message=rule_id,
        **condition,
    )


class Twin:
    def __init__(self, *rules: state_pb2.AlertRule) -> None:
        self.state = state_pb2.TwinState(twin_id="pump-1")
        self.evaluator = AlertEvaluator(lambda twin_id, model_id: rules)
        self.clock_s = 0

    def feed(self, *values: float) -> list[tuple[str, bool, float]]:
        times = [(self.clock_s + i + 1) * S for i in range(len(values))]
        self.clock_s += len(values)
        batch = events_pb2.TelemetryBatch(frame=make_frame("pump-1", times, {"temp": list(values)}))
        batch.ingest_time.FromNanoseconds(times[-1])
        merge(self.state, batch)
        changes = self.evaluator.on_telemetry(self.state, batch)
        return [(c.alert.rule_id, c.alert.active, round(c.alert.value, 3)) for c in changes]


def test_threshold_hysteresis_raises_once_and_clears_only_below_the_clear_level() -> None:
    twin = Twin(
        rule(
            "hot",
            threshold=Direction(direction=Direction.DIRECTION_ABOVE, raise_at=90, clear_at=85),
        )
    )
    assert twin.feed(80, 89.9) == []
    assert twin.feed(90, 95, 88, 91) == [("hot", True, 90.0)], "no flapping between 85 and 90"
    assert twin.feed(85.5, 85) == [("hot", False, 85.0)]
    assert twin.feed(84, 92) == [("hot", True, 92.0)]
    alert = twin.state.alerts["hot"]
    assert alert.active
    assert alert.raised_time.seconds == twin.clock_s


def test_threshold_below() -> None:
    twin = Twin(
        rule(
            "cold", threshold=Direction(direction=Direction.DIRECTION_BELOW, raise_at=5, clear_at=8)
        )
    )
    assert twin.feed(6, 4, 7, 9) == [("cold", True, 4.0), ("cold", False, 9.0)]


def test_rate_of_change_per_second() -> None:
    twin = Twin(rule("jump", rate=state_pb2.RateCondition(max_per_s=5)))
    assert twin.feed(10, 14, 18) == [], "4 per second"
    assert twin.feed(30) == [("jump", True, 12.0)]
    assert twin.feed(33) == [("jump", False, 3.0)]


def test_anomaly_score_flags_an_outlier_after_warmup_and_clears() -> None:
    rng = random.Random(7)
    anomaly = state_pb2.AnomalyCondition(
        alpha=0.05, raise_score=4, clear_score=2, warmup_samples=50
    )
    twin = Twin(rule("odd", anomaly=anomaly))
    assert twin.feed(*(50 + rng.gauss(0, 1) for _ in range(200))) == []
    raised = twin.feed(80)
    assert len(raised) == 1
    assert raised[0][:2] == ("odd", True)
    assert raised[0][2] > 10
    assert twin.feed(50.2)[0][:2] == ("odd", False)


def test_redelivered_samples_do_not_move_a_rule_twice() -> None:
    twin = Twin(rule("jump", rate=state_pb2.RateCondition(max_per_s=5)))
    twin.feed(10, 11)
    memory = state_pb2.RuleMemory()
    memory.CopyFrom(twin.state.rule_memory["jump"])
    twin.clock_s -= 2
    assert twin.feed(10, 11) == []
    assert twin.state.rule_memory["jump"] == memory


def test_staleness_raises_on_the_clock_and_clears_with_telemetry() -> None:
    silence = state_pb2.StalenessCondition()
    silence.max_silence.FromSeconds(30)
    twin = Twin(rule("quiet", staleness=silence))
    twin.feed(1.0)
    received = twin.clock_s * S
    assert twin.evaluator.on_clock(twin.state, received + 29 * S) == []
    changes = twin.evaluator.on_clock(twin.state, received + 31 * S)
    assert [(c.alert.rule_id, c.alert.active) for c in changes] == [("quiet", True)]
    assert twin.evaluator.on_clock(twin.state, received + 60 * S) == [], "raised once"
    assert [c[:2] for c in twin.feed(2.0)] == [("quiet", False)]
