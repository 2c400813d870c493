"""History requests: checked, and turned into InfluxQL with nothing spliced from the caller."""

from __future__ import annotations

import pytest

from twinstack.api.state.v1 import state_pb2
from twinstack.common.errors import InvalidArgumentError
from twinstack.common.influx import QuerySeries
from twinstack.state.history import CHUNK_POINTS, plan, series_messages

S = 10**9


def request(**overrides: object) -> state_pb2.QueryHistoryRequest:
    r = state_pb2.QueryHistoryRequest(twin_ids=["pump-1"], fields=["temp"])
    r.start_time.FromSeconds(1000)
    r.end_time.FromSeconds(2000)
    for name, value in overrides.items():
        if name in ("twin_ids", "fields"):
            getattr(r, name)[:] = value
        elif name == "window_s":
            r.window.FromNanoseconds(int(float(value) * S))  # type: ignore[arg-type]
        else:
            setattr(r, name, value)
    return r


def problems(r: state_pb2.QueryHistoryRequest) -> list[str]:
    with pytest.raises(InvalidArgumentError) as raised:
        plan(r)
    return [v.field for v in raised.value.violations]


def test_raw_query_binds_twin_ids_and_quotes_fields() -> None:
    query = plan(request(twin_ids=["a", "b"], fields=["temp", "rpm"], max_points_per_series=10))
    assert query.influxql == (
        'SELECT "temp", "rpm" FROM telemetry WHERE ("twin_id" = $t0 OR "twin_id" = $t1) '
        f'AND time >= {1000 * S} AND time < {2000 * S} GROUP BY "twin_id" ORDER BY time ASC '
        "LIMIT 11"
    )
    assert query.params == {"t0": "a", "t1": "b"}


def test_aggregate_window_is_widened_to_respect_the_point_limit() -> None:
    query = plan(request(aggregation=state_pb2.AGGREGATION_MEAN, max_points_per_series=100))
    assert query.window_ns == 10 * S
    assert 'MEAN("temp") AS "temp"' in query.influxql
    assert f"GROUP BY time({10 * S}ns, 0ns)" in query.influxql, "windows start at start_time"
    narrow = plan(
        request(aggregation=state_pb2.AGGREGATION_MAX, window_s=1, max_points_per_series=10)
    )
    assert narrow.window_ns == 100 * S
    kept = plan(request(aggregation=state_pb2.AGGREGATION_MIN, window_s=60))
    assert kept.window_ns == 60 * S
    p95 = plan(request(aggregation=state_pb2.AGGREGATION_PERCENTILE, percentile=95, window_s=60))
    assert 'PERCENTILE("temp", 95.0) AS "temp"' in p95.influxql


def test_bad_requests_name_every_problem() -> None:
    assert set(
        problems(
            request(
                twin_ids=["ok", "bad id"],
                fields=['temp" ; DROP', "x"],
                aggregation=state_pb2.AGGREGATION_PERCENTILE,
                percentile=120,
                max_points_per_series=10**7,
            )
        )
    ) == {"twin_ids[1]", "fields[0]", "percentile", "max_points_per_series"}
    backwards = request()
    backwards.end_time.FromSeconds(10)
    assert problems(backwards) == ["end_time"]
    assert problems(request(twin_ids=[], fields=[])) == ["twin_ids", "fields"]
    assert problems(request(window_s=0.0001, aggregation=state_pb2.AGGREGATION_MEAN)) == ["window"]


def test_results_become_one_series_per_twin_and_field_with_declared_types() -> None:
    query = plan(request(twin_ids=["a", "b"], fields=["temp", "count"], max_points_per_series=2))
    results = [
        QuerySeries(
            "telemetry",
            ["time", "temp", "count"],
            [[1, 20, 1], [2, None, 2], [3, 21.5, 3]],
            {"twin_id": "a"},
        )
    ]
    series = list(series_messages(query, results, {"count"}))
    assert [(s.twin_id, s.field, list(s.time_unix_ns), s.truncated) for s in series] == [
        ("a", "temp", [1], True),
        ("a", "count", [1, 2], True),
    ]
    assert list(series[0].double_values.values) == [20.0], "a whole double stays a double"
    assert list(series[1].int_values.values) == [1, 2]


def test_long_series_arrive_in_chunks() -> None:
    query = plan(request())
    rows = [[i, float(i)] for i in range(CHUNK_POINTS + 5)]
    chunks = list(
        series_messages(
            query, [QuerySeries("t", ["time", "temp"], rows, {"twin_id": "pump-1"})], set()
        )
    )
    assert [len(c.time_unix_ns) for c in chunks] == [CHUNK_POINTS, 5]
