"""Telemetry history from InfluxDB: raw points and windowed aggregates, as InfluxQL.

Twin ids and times are bound parameters and field names are quoted identifiers checked against
the field name pattern, so nothing a caller sends is spliced into a query as code.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Set
from dataclasses import dataclass
from typing import Any

from twinstack.api.state.v1 import state_pb2
from twinstack.common.errors import FieldViolation, InvalidArgumentError
from twinstack.common.ids import field_name_violation, twin_id_violation
from twinstack.common.influx import QuerySeries, quote_identifier

MEASUREMENT = "telemetry"
MAX_TWINS = 100
MAX_FIELDS = 50
MAX_POINTS_PER_SERIES = 100_000
MAX_RANGE_S = 366 * 24 * 3600
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


@dataclass(frozen=True)
class HistoryQuery:
    """A checked history request and the InfluxQL that answers it."""

    influxql: str
    params: dict[str, Any]
    fields: list[str]
    twin_ids: list[str]
    window_ns: int  # 0 for raw points
    max_points: int
    function: str = ""  # the InfluxQL aggregate, "" for raw points


def plan(request: state_pb2.QueryHistoryRequest) -> HistoryQuery:
    """Checks a request and writes its query; InvalidArgumentError lists every problem."""
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
    start_ns = request.start_time.ToNanoseconds()
    end_ns = request.end_time.ToNanoseconds()
    if not request.HasField("start_time") or not request.HasField("end_time"):
        violations.append(FieldViolation("start_time", "start_time and end_time are required"))
    elif end_ns <= start_ns:
        violations.append(FieldViolation("end_time", "must be after start_time"))
    elif end_ns - start_ns > MAX_RANGE_S * 10**9:
        violations.append(FieldViolation("end_time", "at most a year after start_time"))
    max_points = request.max_points_per_series or MAX_POINTS_PER_SERIES
    if max_points > MAX_POINTS_PER_SERIES:
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
    params: dict[str, Any] = {f"t{i}": twin_id for i, twin_id in enumerate(twin_ids)}
    twins = " OR ".join(f'"twin_id" = $t{i}' for i in range(len(twin_ids)))
    # Times are integers of nanoseconds; InfluxQL compares them with the time column directly.
    where = f"({twins}) AND time >= {start_ns} AND time < {end_ns}"
    if aggregation == state_pb2.AGGREGATION_NONE:
        columns = ", ".join(quote_identifier(name) for name in fields)
        influxql = (
            f'SELECT {columns} FROM {MEASUREMENT} WHERE {where} GROUP BY "twin_id" '
            f"ORDER BY time ASC LIMIT {max_points + 1}"
        )
        return HistoryQuery(influxql, params, fields, twin_ids, 0, max_points)
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
    influxql = (
        f"SELECT {columns} FROM {MEASUREMENT} WHERE {where} "
        # The offset makes the first window start at start_time rather than at the epoch grid.
        f'GROUP BY time({window_ns}ns, {start_ns % window_ns}ns), "twin_id" fill(none)'
    )
    return HistoryQuery(influxql, params, fields, twin_ids, window_ns, max_points, function)


def series_messages(
    query: HistoryQuery, results: list[QuerySeries], integer_fields: Set[str]
) -> Iterator[state_pb2.HistorySeries]:
    """One series per twin and field (in the order asked), in chunks of CHUNK_POINTS.

    InfluxDB's JSON writes a double without a fraction as an integer, so numbers are doubles
    unless the field is declared an integer (or they are counts).
    """
    by_twin = {series.tags.get("twin_id", ""): series for series in results}
    for twin_id in query.twin_ids:
        found = by_twin.get(twin_id)
        if found is None:
            continue
        rows = found.values
        truncated = query.window_ns == 0 and len(rows) > query.max_points
        rows = rows[: query.max_points]
        time_column = found.columns.index("time")
        for name in query.fields:
            column = found.columns.index(name)
            points = [(row[time_column], row[column]) for row in rows if row[column] is not None]
            for start in range(0, max(len(points), 1), CHUNK_POINTS):
                chunk = points[start : start + CHUNK_POINTS]
                if not chunk and start:
                    break
                series = state_pb2.HistorySeries(twin_id=twin_id, field=name, truncated=truncated)
                series.time_unix_ns.extend(int(t) for t, _ in chunk)
                integers = name in integer_fields or query.function == "COUNT"
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
