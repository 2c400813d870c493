"""Alert rules are checked whole before they are stored: every problem named at once."""

from __future__ import annotations

from google.protobuf.json_format import ParseDict

from twinstack.api.state.v1 import state_pb2
from twinstack.modeling.document import parse_model
from twinstack.modeling.resolve import Resolver
from twinstack.state.rules import rule_violations

OVEN = parse_model({"id": "dtmi:test:Oven;1", "telemetry": {"temp": "double", "door": "string"}})
RESOLVE = Resolver({OVEN.id: OVEN}.get).resolve


def rule(**fields: object) -> state_pb2.AlertRule:
    return ParseDict(
        {"id": "too-hot", "model_id": OVEN.id, "field": "temp", "severity": "SEVERITY_WARNING"}
        | fields,
        state_pb2.AlertRule(),
    )


def fields_of(alert_rule: state_pb2.AlertRule) -> list[str]:
    return [v.field for v in rule_violations(alert_rule, RESOLVE)]


def test_a_good_rule_has_no_violation() -> None:
    good = rule(threshold={"direction": "DIRECTION_ABOVE", "raise_at": 90, "clear_at": 85})
    assert fields_of(good) == []
    assert fields_of(rule(staleness={"max_silence": "30s"}, field="")) == []


def test_every_problem_is_named() -> None:
    bad = rule(
        id="Too Hot",
        field="door",
        severity="SEVERITY_UNSPECIFIED",
        threshold={"direction": "DIRECTION_ABOVE", "raise_at": 90, "clear_at": 95},
    )
    assert fields_of(bad) == [
        "rule.id",
        "rule.field",
        "rule.threshold.clear_at",
        "rule.severity",
    ]


def test_unknown_models_and_fields_are_refused() -> None:
    assert fields_of(rule(model_id="dtmi:test:Nothing;1", rate={"max_per_s": 1})) == [
        "rule.model_id"
    ]
    assert fields_of(rule(field="humidity", rate={"max_per_s": 1})) == ["rule.field"]


def test_conditions_must_make_sense() -> None:
    assert fields_of(rule(rate={"max_per_s": 0})) == ["rule.rate.max_per_s"]
    assert fields_of(rule(field="", staleness={"max_silence": "0s"})) == [
        "rule.staleness.max_silence"
    ]
    assert fields_of(
        rule(anomaly={"alpha": 1.5, "raise_score": 3, "clear_score": 4, "warmup_samples": 10})
    ) == ["rule.anomaly.alpha", "rule.anomaly.clear_score"]
    assert fields_of(rule()) == ["rule.condition"]
