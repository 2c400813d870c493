import math
import time

import pytest

from twinstack.api.common.v1 import types_pb2
from twinstack.common.errors import InvalidArgumentError
from twinstack.ingestion.batching import (
    MAX_REPORTED_VIOLATIONS,
    check_points,
    check_size,
    dedup_id,
    group_by_twin,
)

NOW_NS = 1_800_000_000 * 10**9
MODELS = {"pump-1": "dtmi:acme:Pump;1", "pump-2": "dtmi:acme:Pump;1"}


def point(
    twin_id: str = "pump-1",
    time_ns: int | None = NOW_NS,
    fields: dict[str, object] | None = None,
    **named: object,
) -> types_pb2.TelemetryPoint:
    p = types_pb2.TelemetryPoint(twin_id=twin_id)
    if time_ns is not None:
        p.time.FromNanoseconds(time_ns)
    for name, value in ({**(fields or {}), **named} or {"temp": 1.0}).items():
        if isinstance(value, bool):
            p.fields[name].bool_value = value
        elif isinstance(value, int):
            p.fields[name].int_value = value
        elif isinstance(value, float):
            p.fields[name].double_value = value
        elif isinstance(value, str):
            p.fields[name].string_value = value
        else:
            p.fields[name].SetInParent()
    return p


def violations(points: list[types_pb2.TelemetryPoint]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidArgumentError) as raised:
        check_points(points, MODELS, latest_allowed_ns=NOW_NS + 10**9)
    return [(v.field, v.description) for v in raised.value.violations]


def test_valid_points_pass() -> None:
    check_points(
        [point(), point("pump-2", temp=2, ok=True, mode="auto")], MODELS, latest_allowed_ns=NOW_NS
    )


def test_every_bad_point_is_named() -> None:
    found = violations(
        [
            point(),
            point("ghost-7"),
            point(temp=math.nan),
            point(temp=math.inf),
            point(time_ns=None),
            point(time_ns=NOW_NS + 3600 * 10**9),
            point(fields={"bad-name": 1.0}),
            point(temp=None),
            point("a.b>"),
        ]
    )
    fields = [field for field, _ in found]
    assert fields == [
        "points[1].twin_id",
        "points[2].fields['temp']",
        "points[3].fields['temp']",
        "points[4].time",
        "points[5].time",
        "points[6].fields['bad-name']",
        "points[7].fields['temp']",
        "points[8].twin_id",
    ]
    assert "unknown twin 'ghost-7'" in found[0][1]
    assert "NaN" in found[1][1]


def test_size_limits() -> None:
    with pytest.raises(InvalidArgumentError, match="no points"):
        check_size([], 10)
    with pytest.raises(InvalidArgumentError, match="at most 2"):
        check_size([point()] * 3, 2)
    check_size([point()] * 2, 2)


def test_report_is_capped() -> None:
    found = violations([point("ghost")] * (MAX_REPORTED_VIOLATIONS + 50))
    assert len(found) == MAX_REPORTED_VIOLATIONS


def test_grouping_keeps_request_order_per_twin() -> None:
    points = [point("pump-1", NOW_NS + i, temp=float(i)) for i in range(3)]
    points.insert(1, point("pump-2", NOW_NS, temp=9.0))
    batches = group_by_twin(points, MODELS)
    assert [b.twin_id for b in batches] == ["pump-1", "pump-2"]
    assert [s.fields["temp"].double_value for s in batches[0].samples] == [0.0, 1.0, 2.0]
    assert batches[0].model_id == "dtmi:acme:Pump;1"


def test_dedup_id_depends_on_content_only() -> None:
    first = group_by_twin([point(temp=1.0)], MODELS)[0]
    again = group_by_twin([point(temp=1.0)], MODELS)[0]
    other = group_by_twin([point(temp=1.5)], MODELS)[0]
    assert dedup_id(first) == dedup_id(again)
    assert dedup_id(first) != dedup_id(other)
    again.ingest_time.FromNanoseconds(time.time_ns())
    assert dedup_id(first) != dedup_id(again), "ids are taken before the ingest time is set"
