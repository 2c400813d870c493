"""The CLI's input files: CSV readings and alert rules, with errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinstack.api.common.v1 import events_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.cli.shared import UserError
from twinstack.cli.telemetry import csv_batches, parse_time_ns, rules_from_file

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.mark.parametrize(
    ("text", "expected_ns"),
    [
        ("2026-01-05T08:00:00Z", 1_767_600_000 * 10**9),
        ("2026-01-05T09:00:00+01:00", 1_767_600_000 * 10**9),
        ("2026-01-05 08:00:00", 1_767_600_000 * 10**9),  # no offset: UTC
        ("2026-01-05T08:00:00.000001Z", 1_767_600_000 * 10**9 + 1000),
        ("1767600000000000123", 1_767_600_000 * 10**9 + 123),
    ],
)
def test_times_are_rfc_3339_or_integer_nanoseconds(text: str, expected_ns: int) -> None:
    assert parse_time_ns(text) == expected_ns


def test_the_example_readings_become_frames(tmp_path: Path) -> None:
    batches = list(csv_batches(EXAMPLES / "readings.csv", batch_rows=50))
    assert [rows for _, rows in batches] == [50, 50, 20]
    frame = batches[0][0].frames[0]
    assert frame.twin_id == "line1-press-3"
    assert {c.field: c.WhichOneof("values") for c in frame.columns} == {
        "temperature_c": "double_values",
        "vibration_mm_s": "double_values",
        "load": "double_values",
        "cycles": "int_values",
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("twin,time,x\npump-1,1,2\n", "readings.csv:1: the CSV header needs twin_id and time"),
        ("twin_id,time,x\npump-1,1,2\npump-1,yesterday,3\n", "readings.csv:3: time 'yesterday'"),
        ("twin_id,time,x\npump-1,1,2\npump-1,2\n", "readings.csv:3: the row has another number"),
        ("twin_id,time,x\n,1,2\n", "readings.csv:2: twin_id is empty"),
    ],
)
def test_a_malformed_csv_names_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "readings.csv"
    path.write_text(content)
    with pytest.raises(UserError) as refused:
        list(csv_batches(path, batch_rows=10))
    assert message in str(refused.value)


def test_the_example_alert_rules_are_read_with_friendly_spellings() -> None:
    rules = {rule.id: rule for rule in rules_from_file(EXAMPLES / "alert-rules.yaml")}
    assert set(rules) == {"press-overheating", "truck-battery-low", "press-silent"}
    hot = rules["press-overheating"]
    assert hot.severity == events_pb2.SEVERITY_WARNING
    assert hot.threshold.direction == state_pb2.ThresholdCondition.DIRECTION_ABOVE
    assert (hot.threshold.raise_at, hot.threshold.clear_at) == (90, 85)
    assert rules["press-silent"].staleness.max_silence.ToSeconds() == 30


def test_a_malformed_rule_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "- id: fine\n  twin_id: pump-1\n  severity: info\n  staleness: {max_silence: 5s}\n"
        "- id: broken\n  twin_id: pump-1\n  severity: loud\n"
    )
    with pytest.raises(UserError) as refused:
        rules_from_file(path)
    assert "rules.yaml:5: rule 2:" in str(refused.value)
    path.write_text("just text")
    with pytest.raises(UserError, match="a rule is a mapping"):
        rules_from_file(path)
