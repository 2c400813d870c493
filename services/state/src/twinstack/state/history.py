"""Telemetry history from InfluxDB: raw points and windowed aggregates, as InfluxQL.

Twin ids and times are bound parameters, field names are quoted identifiers checked against
the field name pattern and the twin id tag is qualified as a tag, so nothing a caller sends is
spliced into a query as code and no field can pose as a tag.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from twinstack.api.state.v1 import state_pb2
from twinstack.common.errors import FieldViolation, InvalidArgumentError, LimitExceededError
from twinstack.common.ids import field_name_violation, twin_id_violation
from twinstack.common.influx import QuerySeries, quote_identifier
from twinstack.common.series import (
    ALL_MEASUREMENTS,
    MEASUREMENTS,
    NUMERIC_MEASUREMENTS,
    twin_tag,
)
from twinstack.common.times import duration_violation, timestamp_violation

MAX_TWINS = 100
MAX_FIELDS = 50
MAX_POINTS_PER_SERIES = 100_000
MAX_RANGE_S = 366 * 24 * 3600
# Values (points x fields x twins) one request may read, by default; see plan().
DEFAULT_MAX_VALUES = 2_000_000
# Points per streamed message: large answers arrive in pieces of about a megabyte.
CHUNK_POINTS = 50_000

_FUNCTIONS = {
    state_pb2.AGGREGATION_MEAN: "MEAN",
    state_pb2.AGGREGATION_MIN: "MIN",
    state_pb2.AGGREGATION_MAX: "MAX",
    state_pb2.AGGREGATION_FIRST: "FIRST",
    state_pb2.AGGREGATION_LAST: "LAST",
    state_pb2.AGGREGATION_COUNT: "COUNT",
    state_pb2.AGGREGATION_SUM: "SUM",
    state_pb2.AGGREGATION_MEDIAN: "MEDIAN",
    state_pb2.AGGREGATION_STDDEV: "STDDEV",
    state_pb2.AGGREGATION_PERCENTILE: "PERCENTILE",
}
# Aggregates that take any field type; the others read only numeric measurements.
_ANY_TYPE = frozenset({"FIRST", "LAST", "COUNT"})


@dataclass(frozen=True)
class HistoryQuery:
    """A checked history request and the InfluxQL that answers it: one statement per
    measurement (InfluxDB 1.x reads a field name as one type across the measurements of one
    statement), sent together in one request per twin so that no more than one twin's answer
    is held at a time."""

    statements: list[str]  # each for one twin, bound as $twin
    fields: list[str]
    twin_ids: list[str]
    window_ns: int  # 0 for raw points
    max_points: int
    function: str = ""  # the InfluxQL aggregate, "" for raw points

    @property
    def influxql(self) -> str:
        """Every statement, in one request (InfluxDB answers each with its own result)."""
        return "; ".join(self.statements)

    def params(self, twin_id: str) -> dict[str, Any]:
        return {"twin": twin_id}


def plan(
    request: state_pb2.QueryHistoryRequest, max_values: int = DEFAULT_MAX_VALUES
) -> HistoryQuery:
    """Checks a request and writes its query; InvalidArgumentError lists every problem.

    ``max_values`` bounds twins x fields x points per series: without ``max_points_per_series``
    the points per series are cut down to fit it; asking for more is refused.

    Raises:
        InvalidArgumentError: a field of the request is invalid.
        LimitExceededError: the request would read more than ``max_values`` values.
    """
    violations = []
    if not 1 <= len(request.twin_ids) <= MAX_TWINS:
        violations.append(FieldViolation("twin_ids", f"1 to {MAX_TWINS} twins"))
    if not 1 <= len(request.fields) <= MAX_FIELDS:
        violations.append(FieldViolation("fields", f"1 to {MAX_FIELDS} fields"))
    for i, twin_id in enumerate(request.twin_ids):
        bad = twin_id_violation(twin_id, f"twin_ids[{i}]")
        violations += [bad] if bad else []
    for i, name in enumerate(request.fields):
        bad = field_name_violation(name, f"fields[{i}]")
        violations += [bad] if bad else []
    times = [
        bad
        for bad in (
            timestamp_violation(request.start_time, "start_time"),
            timestamp_violation(request.end_time, "end_time"),
            duration_violation(request.window, "window"),
        )
        if bad is not None
    ]
    if times:
        raise InvalidArgumentError("invalid history query", violations + times)
    start_ns = request.start_time.ToNanoseconds()
    end_ns = request.end_time.ToNanoseconds()
    if not request.HasField("start_time") or not request.HasField("end_time"):
        violations.append(FieldViolation("start_time", "start_time and end_time are required"))
    elif end_ns <= start_ns:
        violations.append(FieldViolation("end_time", "must be after start_time"))
    elif end_ns - start_ns > MAX_RANGE_S * 10**9:
        violations.append(FieldViolation("end_time", "at most a year after start_time"))
    if request.max_points_per_series > MAX_POINTS_PER_SERIES:
        violations.append(
            FieldViolation("max_points_per_series", f"at most {MAX_POINTS_PER_SERIES}")
        )
    aggregation = request.aggregation or state_pb2.AGGREGATION_NONE
    if aggregation == state_pb2.AGGREGATION_PERCENTILE and not 0 < request.percentile <= 100:
        violations.append(FieldViolation("percentile", "between 0 (exclusive) and 100"))
    if aggregation not in _FUNCTIONS and aggregation != state_pb2.AGGREGATION_NONE:
        violations.append(FieldViolation("aggregation", "unknown aggregation"))
    window_ns = request.window.ToNanoseconds() if request.HasField("window") else 0
    if window_ns < 0 or (window_ns and window_ns < 10**6):
        violations.append(FieldViolation("window", "at least a millisecond"))
    if violations:
        raise InvalidArgumentError("invalid history query", violations)

    fields = list(dict.fromkeys(request.fields))
    twin_ids = list(dict.fromkeys(request.twin_ids))
    series_count = len(fields) * len(twin_ids)
    max_points = request.max_points_per_series or min(
        MAX_POINTS_PER_SERIES, max(1, max_values // series_count)
    )
    if max_points * series_count > max_values:
        raise LimitExceededError(
            f"{len(twin_ids)} twins x {len(fields)} fields x {max_points} points would read "
            f"{max_points * series_count} values, more than {max_values} per request",
            limit="TWINSTACK_HISTORY_MAX_VALUES",
            maximum=max_values,
            requested=max_points * series_count,
            violations=[
                FieldViolation("max_points_per_series", "lower it, or ask for fewer twins/fields")
            ],
        )
    # Times are integers of nanoseconds; InfluxQL compares them with the time column directly.
    where = f"{twin_tag()} = $twin AND time >= {start_ns} AND time < {end_ns}"
    if aggregation == state_pb2.AGGREGATION_NONE:
        columns = ", ".join(quote_identifier(name) for name in fields)
        statements = [
            f"SELECT {columns} FROM {quote_identifier(measurement)} WHERE {where} "
            f"ORDER BY time ASC LIMIT {max_points + 1}"
            for measurement in ALL_MEASUREMENTS
        ]
        return HistoryQuery(statements, fields, twin_ids, 0, max_points)
    if not window_ns:
        # Wide enough for max_points windows, rounded up to whole milliseconds.
        window_ns = max(10**6, math.ceil((end_ns - start_ns) / max_points / 10**6) * 10**6)
    elif math.ceil((end_ns - start_ns) / window_ns) > max_points:
        window_ns = math.ceil((end_ns - start_ns) / max_points / 10**6) * 10**6
    function = _FUNCTIONS[aggregation]
    extra = f", {request.percentile!r}" if aggregation == state_pb2.AGGREGATION_PERCENTILE else ""
    columns = ", ".join(
        f"{function}({quote_identifier(name)}{extra}) AS {quote_identifier(name)}"
        for name in fields
    )
    measurements = ALL_MEASUREMENTS if function in _ANY_TYPE else NUMERIC_MEASUREMENTS
    statements = [
        f"SELECT {columns} FROM {quote_identifier(measurement)} WHERE {where} "
        # The offset makes the first window start at start_time rather than at the epoch grid.
        f"GROUP BY time({window_ns}ns, {start_ns % window_ns}ns) fill(none)"
        for measurement in measurements
    ]
    return HistoryQuery(statements, fields, twin_ids, window_ns, max_points, function)


def series_messages(
    query: HistoryQuery, twin_id: str, results: list[QuerySeries]
) -> Iterator[state_pb2.HistorySeries]:
    """One series per field of one twin (in the order asked), in chunks of CHUNK_POINTS.

    A twin's field lives in the measurement of its type (:mod:`twinstack.common.series`), so the
    measurement says how to return it: InfluxDB's JSON writes a double without a fraction as an
    integer, which is read back as a double unless it came from the integer measurement.
    """
    for name in query.fields:
        points: list[tuple[int, Any]] = []
        integers = True
        for found in results:
            if name not in found.columns:
                continue
            time_column = found.columns.index("time")
            column = found.columns.index(name)
            rows = [(row[time_column], row[column]) for row in found.values]
            rows = [(t, v) for t, v in rows if v is not None]
            if rows and found.name != MEASUREMENTS["int_values"] and query.function != "COUNT":
                integers = False
            points.extend(rows)
        if not points and not any(found.values for found in results):
            continue  # no history of this twin at all
        # Only a field whose type changed between model versions lives in two measurements.
        points.sort(key=lambda point: point[0])
        truncated = query.window_ns == 0 and len(points) > query.max_points
        points = points[: query.max_points]
        for start in range(0, max(len(points), 1), CHUNK_POINTS):
            chunk = points[start : start + CHUNK_POINTS]
            series = state_pb2.HistorySeries(twin_id=twin_id, field=name, truncated=truncated)
            series.time_unix_ns.extend(int(t) for t, _ in chunk)
            _set_values(series, [v for _, v in chunk], integers=integers)
            yield series


def _set_values(series: state_pb2.HistorySeries, values: list[Any], *, integers: bool) -> None:
    if not values:
        return
    if all(isinstance(v, bool) for v in values):
        series.bool_values.values.extend(values)
    elif integers and all(isinstance(v, int) for v in values):
        series.int_values.values.extend(values)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        series.double_values.values.extend(float(v) for v in values)
    else:
        series.string_values.values.extend(str(v) for v in values)
