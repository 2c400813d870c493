"""Telemetry frames: the columnar form telemetry travels in, from the ingest API through the
TELEMETRY stream to InfluxDB and live state.

Per-point work in Python costs about a microsecond per value touched, which caps a pipeline at
a few tens of thousands of points a second. A frame holds the samples of one twin as a time
column and one column per field, so validation runs over whole columns with numpy, the stream
carries one message per frame, and the historian formats lines without building a Python
object per value.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from twinstack.api.common.v1 import types_pb2
from twinstack.common.ids import FIELD_NAME_PATTERN
from twinstack.common.influx import escape_key, escape_measurement, field_literal
from twinstack.modeling.document import Telemetry
from twinstack.modeling.names import RESERVED_SERIES_NAMES
from twinstack.modeling.violations import checked_timestamp_ns
from twinstack.sdk.values import Scalar

# A validation names at most this many bad values per column; more would only bloat the answer.
MAX_ISSUES_PER_COLUMN = 10
# The longest string reading, as for string properties.
MAX_TELEMETRY_STRING_CHARS = 16_384

_NOT_SCALAR = "telemetry values are numbers, booleans or strings"
_KIND_OF_VALUE = {
    "double_value": "double_values",
    "int_value": "int_values",
    "bool_value": "bool_values",
    "string_value": "string_values",
}


@dataclass(frozen=True)
class FrameIssue:
    """Something wrong in a frame: in one row of one column, a whole column, or a time."""

    description: str
    column: int | None = None  # None: the time column (or the frame as a whole if row is None)
    row: int | None = None


def column_values(column: types_pb2.TelemetryColumn) -> Sequence[Scalar]:
    """The values of a column, whatever their type (empty if none is set)."""
    kind = column.WhichOneof("values")
    if kind is None:
        return []
    values: Sequence[Scalar] = getattr(column, kind).values
    return values


def frame_rows(frame: types_pb2.TelemetryFrame) -> int:
    return len(frame.time_unix_ns)


@dataclass
class PointFrame:
    """A frame built from points, remembering which point each row came from."""

    frame: types_pb2.TelemetryFrame
    point_indexes: list[int]


@dataclass(frozen=True)
class PointIssue:
    """A value of a point that no frame column can hold."""

    point_index: int
    field: str
    description: str


@dataclass(frozen=True)
class PointGroups:
    """Points grouped into frames, or the issues that keep them from being grouped."""

    frames: list[PointFrame]
    issues: list[PointIssue]
    twin_ids: set[str]


def frames_from_points(points: Sequence[types_pb2.TelemetryPoint]) -> PointGroups:
    """Groups points into frames: one per twin and set of (field, value kind), rows in order.

    Points whose fields have the same names but other kinds of values go into other frames, so
    every column holds one kind and validation against the model speaks of the right points.
    Values that are not scalars cannot be telemetry; they are returned as issues (and then no
    frames).
    """
    # This loop is all of the per-point work of single-point ingest, and reading upb maps from
    # Python costs microseconds a point: each value is read once, and whatever depends only on
    # a point's twin and field names and kinds (the frame, the column order, the issues) is
    # worked out once per such shape in _route rather than per point.
    routes: dict[tuple[str, tuple[str, ...], tuple[str | None, ...]], _Route] = {}
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], _Rows] = {}
    issues: list[PointIssue] = []
    for index, point in enumerate(points):
        fields = point.fields
        names = tuple(fields)
        values = []
        kinds = []
        # A loop, not two comprehensions: a fifth faster on Python 3.11.
        for name in names:
            value = fields[name]
            values.append(value)
            kinds.append(value.WhichOneof("kind"))
        key = (point.twin_id, names, tuple(kinds))
        route = routes.get(key)
        if route is None:
            route = routes[key] = _route(groups, *key)
        time_ns = checked_timestamp_ns(point.time)
        if route.issues or time_ns is None:
            issues += [PointIssue(index, name, reason) for name, reason in route.issues]
            if time_ns is None:
                issues.append(PointIssue(index, "", "not a valid timestamp"))
            continue
        rows = route.rows
        rows.indexes.append(index)
        rows.times.append(time_ns)
        for column, position, kind in route.plan:
            column.append(getattr(values[position], kind))
    twin_ids = {twin_id for twin_id, _, _ in routes}
    if issues:
        return PointGroups([], issues, twin_ids)
    built = []
    for (twin_id, shape), rows in groups.items():
        frame = types_pb2.TelemetryFrame(twin_id=twin_id)
        frame.time_unix_ns.extend(rows.times)
        for (name, kind), column in zip(shape, rows.columns, strict=True):
            getattr(frame.columns.add(field=name), _KIND_OF_VALUE[kind]).values.extend(column)
        built.append(PointFrame(frame, rows.indexes))
    return PointGroups(built, [], twin_ids)


@dataclass
class _Rows:
    """The rows of one frame being built: point indexes, times, a value list per column."""

    indexes: list[int]
    times: list[int]
    columns: list[list[Any]]


@dataclass(frozen=True)
class _Route:
    """Where the points of one twin with one shape (field names and value kinds, in the order
    the point's map yields them) go."""

    rows: _Rows
    # Per column of the frame: the column, where its value is among the point's values, and
    # the value's kind.
    plan: list[tuple[list[Any], int, str]]
    # (field, reason) of each value that cannot be telemetry.
    issues: list[tuple[str, str]]


def _route(
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], _Rows],
    twin_id: str,
    names: tuple[str, ...],
    kinds: tuple[str | None, ...],
) -> _Route:
    issues = [
        (name, "value has no kind set" if kind is None else _NOT_SCALAR)
        for name, kind in zip(names, kinds, strict=True)
        if kind not in _KIND_OF_VALUE
    ]
    if issues:
        return _Route(_Rows([], [], []), [], issues)
    # Columns in name order: the same fields in another map order go into the same frame.
    order = sorted(range(len(names)), key=lambda position: (names[position], kinds[position]))
    shape = tuple((names[position], kinds[position] or "") for position in order)
    rows = groups.get((twin_id, shape))
    if rows is None:
        rows = groups[twin_id, shape] = _Rows([], [], [[] for _ in shape])
    plan = [
        (column, position, kind)
        for column, position, (_, kind) in zip(rows.columns, order, shape, strict=True)
    ]
    return _Route(rows, plan, [])


def frame_issues(
    frame: types_pb2.TelemetryFrame,
    telemetry: Mapping[str, Telemetry],
    *,
    latest_allowed_ns: int,
) -> list[FrameIssue]:
    """Everything wrong with a frame, checked against the telemetry its twin's model declares.

    Columns whose values fit the schema but not its type exactly (integers for a double field)
    are converted in place, so that the stream and InfluxDB always see the declared type.
    """
    issues: list[FrameIssue] = []
    rows = frame_rows(frame)
    if rows == 0:
        return [FrameIssue("a frame needs at least one row (time_unix_ns is empty)")]
    if not frame.columns:
        return [FrameIssue("a frame needs at least one column")]
    times = np.fromiter(frame.time_unix_ns, dtype=np.int64, count=rows)
    issues += [
        FrameIssue("the source timestamp is missing", None, int(r)) for r in _first(times <= 0)
    ]
    issues += [
        FrameIssue("the timestamp is too far in the future", None, int(r))
        for r in _first(times > latest_allowed_ns)
    ]
    seen: set[str] = set()
    for index, column in enumerate(frame.columns):
        if not FIELD_NAME_PATTERN.fullmatch(column.field):
            issues.append(FrameIssue("field names are 1-128 characters of [A-Za-z0-9_]", index))
            continue
        if column.field in RESERVED_SERIES_NAMES:
            # Refused even where a model stored before the name was reserved declares it.
            issues.append(FrameIssue(f"{column.field!r} is reserved for stored series", index))
            continue
        if column.field in seen:
            issues.append(FrameIssue(f"field {column.field!r} appears twice", index))
            continue
        seen.add(column.field)
        spec = telemetry.get(column.field)
        if spec is None:
            issues.append(FrameIssue(f"the model declares no telemetry {column.field!r}", index))
            continue
        values = column_values(column)
        if column.WhichOneof("values") is None:
            issues.append(FrameIssue("the column has no values", index))
            continue
        if len(values) != rows:
            issues.append(
                FrameIssue(f"{len(values)} values for {rows} timestamps; one per row", index)
            )
            continue
        issues += _column_issues(column, index, spec)
    return issues


def _column_issues(
    column: types_pb2.TelemetryColumn, index: int, spec: Telemetry
) -> list[FrameIssue]:
    kind = column.WhichOneof("values")
    schema = spec.schema
    if schema.kind == "enum":
        return _enum_issues(column, index, spec)
    expected_kind = {
        "double": ("double_values", "int_values"),
        "integer": ("int_values",),
        "boolean": ("bool_values",),
        "string": ("string_values",),
    }.get(schema.kind, ())
    if kind not in expected_kind:
        return [FrameIssue(f"expected {_expected(spec)}, got {_described(kind)}", index)]
    if kind == "int_values" and schema.kind == "double":
        # Setting the double values clears the integers: the column is one oneof.
        doubles = [float(v) for v in column.int_values.values]
        column.double_values.values.extend(doubles)
        kind = "double_values"
    if kind == "string_values":
        # Live state keeps the latest value of every field in one document under NATS's max
        # payload, so a reading may not be arbitrarily long.
        return [
            FrameIssue(f"longer than {MAX_TELEMETRY_STRING_CHARS} characters", index, row)
            for row, _ in _first_items(
                column.string_values.values, lambda v: len(v) > MAX_TELEMETRY_STRING_CHARS
            )
        ]
    if kind not in ("double_values", "int_values"):
        return []
    dtype = np.float64 if schema.kind == "double" else np.int64
    values = np.asarray(getattr(column, kind).values, dtype=dtype)
    finite = np.isfinite(values) if dtype is np.float64 else np.ones(len(values), dtype=bool)
    issues = [
        FrameIssue("NaN and infinity are not valid values", index, r) for r in _first(~finite)
    ]
    if spec.minimum is not None:
        issues += [
            FrameIssue(f"{values[r].item()!r} is below the minimum {spec.minimum:g}", index, r)
            for r in _first((values < spec.minimum) & finite)
        ]
    if spec.maximum is not None:
        issues += [
            FrameIssue(f"{values[r].item()!r} is above the maximum {spec.maximum:g}", index, r)
            for r in _first((values > spec.maximum) & finite)
        ]
    return issues


def _enum_issues(
    column: types_pb2.TelemetryColumn, index: int, spec: Telemetry
) -> list[FrameIssue]:
    members = spec.schema.enum_values
    wanted = "string_values" if isinstance(members[0], str) else "int_values"
    if column.WhichOneof("values") != wanted:
        kind = column.WhichOneof("values")
        return [FrameIssue(f"expected {_expected(spec)}, got {_described(kind)}", index)]
    allowed = set(members)
    return [
        FrameIssue(f"{value!r} is not one of {list(members)}", index, row)
        for row, value in _first_items(column_values(column), lambda v: v not in allowed)
    ]


def _first(mask: np.ndarray[Any, np.dtype[np.bool_]]) -> Iterable[int]:
    return (int(i) for i in np.flatnonzero(mask)[:MAX_ISSUES_PER_COLUMN])


def _first_items(values: Sequence[Any], bad: Any) -> list[tuple[int, Any]]:
    found = []
    for row, value in enumerate(values):
        if bad(value):
            found.append((row, value))
            if len(found) == MAX_ISSUES_PER_COLUMN:
                break
    return found


def _expected(spec: Telemetry) -> str:
    if spec.schema.kind == "enum":
        return f"one of {list(spec.schema.enum_values)}"
    return {"double": "a number", "integer": "an integer", "boolean": "a boolean"}.get(
        spec.schema.kind, "a string"
    )


def _described(kind: str | None) -> str:
    return {
        "double_values": "numbers",
        "int_values": "integers",
        "bool_values": "booleans",
        "string_values": "strings",
    }.get(kind or "", "no values")


def split_frame(frame: types_pb2.TelemetryFrame, max_bytes: int) -> list[types_pb2.TelemetryFrame]:
    """The frame cut into consecutive pieces of at most about ``max_bytes`` serialized."""
    size = frame.ByteSize()
    rows = frame_rows(frame)
    if size <= max_bytes or rows <= 1:
        return [frame]
    rows_per_piece = max(1, rows * max_bytes // size)
    pieces = []
    for start in range(0, rows, rows_per_piece):
        piece = types_pb2.TelemetryFrame(twin_id=frame.twin_id)
        piece.time_unix_ns.extend(frame.time_unix_ns[start : start + rows_per_piece])
        for column in frame.columns:
            kind = column.WhichOneof("values")
            assert kind is not None
            part = piece.columns.add(field=column.field)
            getattr(part, kind).values.extend(
                getattr(column, kind).values[start : start + rows_per_piece]
            )
        pieces.append(piece)
    return pieces


def frame_lines(
    frame: types_pb2.TelemetryFrame, measurements: Mapping[str, str], tag_key: str
) -> list[str]:
    """The frame as line protocol, one line per row and measurement, tagged
    ``tag_key=<twin id>``; each column goes to the measurement ``measurements`` names for its
    value kind (``double_values``...), so that a field's type never conflicts in InfluxDB.

    Raises:
        ValueError: a value line protocol cannot carry (NaN, infinity, a column without values).
    """
    tag = f",{escape_key(tag_key)}={escape_key(frame.twin_id)} "
    rows = frame_rows(frame)
    if rows == 0:
        return []
    # Per kind: the text before each column's value (the measurement, or a comma, and the
    # key), each column's values as texts, and what follows a value ("i" after an integer).
    keys: dict[str, list[str]] = defaultdict(list)
    columns: dict[str, list[list[str]]] = defaultdict(list)
    for column in frame.columns:
        kind = column.WhichOneof("values")
        values: Sequence[Any] = column_values(column)
        if len(values) != rows:
            raise ValueError(f"field {column.field!r} has {len(values)} values for {rows} rows")
        if kind == "double_values":
            array = np.asarray(values, dtype=np.float64)
            if not np.isfinite(array).all():
                raise ValueError(f"field {column.field!r} holds NaN or infinity")
            texts = _number_texts(array)
        elif kind == "int_values":
            texts = _number_texts(np.asarray(values, dtype=np.int64))
        elif kind in ("bool_values", "string_values"):
            texts = [field_literal(v) for v in values]
        else:
            raise ValueError(f"field {column.field!r} has no values")
        keys[kind].append(escape_key(column.field))
        columns[kind].append(texts)
    times = _number_texts(np.asarray(frame.time_unix_ns, dtype=np.int64))
    lines: list[str] = []
    for kind, kind_keys in keys.items():
        after_value = "i" if kind == "int_values" else ""
        before = escape_measurement(measurements[kind]) + tag
        parts: list[Iterable[str]] = []
        for key, texts in zip(kind_keys, columns[kind], strict=True):
            parts += [itertools.repeat(f"{before}{key}="), texts]
            before = after_value + ","
        parts += [itertools.repeat(after_value + " "), times]
        # Joined in C, row by row (a %-template per row cost twice as much). Not strict: the
        # constant parts repeat without end, and every column has `rows` values (checked).
        lines += map("".join, zip(*parts, strict=False))
    return lines


def _number_texts(array: np.ndarray[Any, Any]) -> list[str]:
    """Each number of a non-empty array as line protocol writes it, in one pass of compiled code.

    orjson writes a double as the shortest text that parses back to the same double (as
    ``repr`` does, at a fifth of the cost per value, which was most of the historian's CPU);
    the callers refuse NaN and infinity, which JSON has no text for.
    """
    return orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode().split(",")


def latest_values(frame: types_pb2.TelemetryFrame) -> dict[str, tuple[int, types_pb2.Value]]:
    """Field name to (source time, value) of its newest row; the later row wins a tie."""
    rows = frame_rows(frame)
    if rows == 0:
        return {}
    times = np.fromiter(frame.time_unix_ns, dtype=np.int64, count=rows)
    # argmax finds the first maximum; reversed, it finds the last.
    newest = rows - 1 - int(np.argmax(times[::-1]))
    latest = {}
    for column in frame.columns:
        kind = column.WhichOneof("values")
        if kind is None:
            continue
        value = types_pb2.Value(**{kind.removesuffix("s"): getattr(column, kind).values[newest]})
        latest[column.field] = (int(times[newest]), value)
    return latest


def column_samples(frame: types_pb2.TelemetryFrame, name: str) -> list[tuple[int, Scalar]]:
    """(time, value) of every row of one field, oldest first."""
    for column in frame.columns:
        if column.field == name:
            return sorted(zip(frame.time_unix_ns, column_values(column), strict=False))
    return []
