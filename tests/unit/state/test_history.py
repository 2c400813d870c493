"""History requests: checked, and turned into InfluxQL with nothing spliced from the caller."""

from __future__ import annotations

import pytest

from twinstack.api.state.v1 import state_pb2
from twinstack.common.errors import InvalidArgumentError, LimitExceededError
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


def test_raw_query_binds_twin_ids_quotes_fields_and_qualifies_the_tag() -> None:
    query = plan(request(twin_ids=["a", "b"], fields=["temp", "rpm"], max_points_per_series=10))
    assert query.statements == [
        f'SELECT "temp", "rpm" FROM "{measurement}" WHERE "twin_id"::tag = $twin '
        f"AND time >= {1000 * S} AND time < {2000 * S} ORDER BY time ASC LIMIT 11"
        for measurement in (
            "telemetry",
            "telemetry_integer",
            "telemetry_boolean",
            "telemetry_string",
        )
    ]
    assert query.twin_ids == ["a", "b"]
    assert query.params("b") == {"twin": "b"}


def test_numeric_aggregates_read_numeric_measurements_only() -> None:
    mean = plan(request(aggregation=state_pb2.AGGREGATION_MEAN))
    assert [s.split(" WHERE")[0].split("FROM ")[1] for s in mean.statements] == [
        '"telemetry"',
        '"telemetry_integer"',
    ]
    last = plan(request(aggregation=state_pb2.AGGREGATION_LAST))
    assert len(last.statements) == 4


def test_a_request_over_the_value_budget_is_refused_and_defaults_fit_it() -> None:
    many = {"twin_ids": [f"t{i}" for i in range(100)], "fields": [f"f{i}" for i in range(50)]}
    assert plan(request(**many), max_values=1_000_000).max_points == 200
    with pytest.raises(LimitExceededError) as refused:
        plan(request(**many, max_points_per_series=100_000), max_values=1_000_000)
    assert refused.value.limit == "TWINSTACK_HISTORY_MAX_VALUES"


def test_aggregate_window_is_widened_to_respect_the_point_limit() -> None:
    query = plan(request(aggregation=state_pb2.AGGREGATION_MEAN, max_points_per_series=100))
    assert query.window_ns == 10 * S
    assert 'MEAN("temp") AS "temp"' in query.statements[0]
    assert f"GROUP BY time({10 * S}ns, 0ns)" in query.statements[0], "windows start at start_time"
    narrow = plan(
        request(aggregation=state_pb2.AGGREGATION_MAX, window_s=1, max_points_per_series=10)
    )
    assert narrow.window_ns == 100 * S
    kept = plan(request(aggregation=state_pb2.AGGREGATION_MIN, window_s=60))
    assert kept.window_ns == 60 * S
    p95 = plan(request(aggregation=state_pb2.AGGREGATION_PERCENTILE, percentile=95, window_s=60))
    assert 'PERCENTILE("temp", 95.0) AS "temp"' in p95.statements[0]


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


def test_results_become_one_series_per_field_typed_by_their_measurement() -> None:
    query = plan(request(twin_ids=["a", "b"], fields=["temp", "count"], max_points_per_series=2))
    results = [
        QuerySeries("telemetry", ["time", "temp", "count"], [[1, 20, None], [3, 21.5, None]]),
        QuerySeries("telemetry_integer", ["time", "temp", "count"], [[1, None, 1], [2, None, 2]]),
        QuerySeries("telemetry_integer", ["time", "temp", "count"], [[3, None, 3]]),
    ]
    series = list(series_messages(query, "a", results))
    assert [(s.twin_id, s.field, list(s.time_unix_ns), s.truncated) for s in series] == [
        ("a", "temp", [1, 3], False),
        ("a", "count", [1, 2], True),
    ]
    assert list(series[0].double_values.values) == [20.0, 21.5], "a whole double stays a double"
    assert list(series[1].int_values.values) == [1, 2]


def test_long_series_arrive_in_chunks() -> None:
    query = plan(request())
    rows = [[i, float(i)] for i in range(CHUNK_POINTS + 5)]
    chunks = list(
        series_messages(query, "pump-1", [QuerySeries("telemetry", ["time", "temp"], rows)])
    )
    assert [len(c.time_unix_ns) for c in chunks] == [CHUNK_POINTS, 5]
