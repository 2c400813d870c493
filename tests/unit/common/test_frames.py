"""Frames: points grouped into columns, validated against declared telemetry, cut and written."""

from __future__ import annotations

import math

from hard_numbers import DOUBLES

from twinstack.api.common.v1 import types_pb2
from twinstack.common.frames import (
    MAX_ISSUES_PER_COLUMN,
    column_values,
    frame_issues,
    frame_lines,
    frames_from_points,
    latest_values,
    split_frame,
)
from twinstack.common.series import MEASUREMENTS
from twinstack.modeling.document import Schema, Telemetry
from twinstack.sdk import make_frame

NOW_NS = 1_800_000_000 * 10**9
TELEMETRY = {
    "temp": Telemetry("temp", Schema("double"), minimum=-40, maximum=150),
    "count": Telemetry("count", Schema("integer"), minimum=0),
    "ok": Telemetry("ok", Schema("boolean")),
    "mode": Telemetry("mode", Schema("enum", enum_values=("auto", "manual"))),
    "label": Telemetry("label", Schema("string")),
}


def issues(frame: types_pb2.TelemetryFrame) -> list[tuple[int | None, int | None, str]]:
    found = frame_issues(frame, TELEMETRY, latest_allowed_ns=NOW_NS + 10**9)
    return [(i.column, i.row, i.description) for i in found]


def point(twin_id: str, time_ns: int, **fields: object) -> types_pb2.TelemetryPoint:
    p = types_pb2.TelemetryPoint(twin_id=twin_id)
    p.time.FromNanoseconds(time_ns)
    for name, value in fields.items():
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


def test_a_valid_frame_has_no_issues_and_integers_of_a_double_field_become_doubles() -> None:
    frame = make_frame(
        "pump-1",
        [NOW_NS, NOW_NS + 1],
        {"temp": [20, 21], "count": [1, 2], "ok": [True, False], "mode": ["auto", "manual"]},
    )
    assert issues(frame) == []
    assert frame.columns[0].WhichOneof("values") == "double_values"
    assert list(column_values(frame.columns[0])) == [20.0, 21.0]


def test_every_kind_of_bad_value_is_located_by_column_and_row() -> None:
    frame = make_frame(
        "pump-1",
        [NOW_NS, 0, NOW_NS + 3600 * 10**9],
        {
            "temp": [math.nan, 200.0, -math.inf],
            "count": [-1, 0, 1],
            "ok": ["yes", "no", "maybe"],
            "mode": ["auto", "broken", "manual"],
            "unknown": [1.0, 2.0, 3.0],
        },
    )
    found = issues(frame)
    assert (None, 1, "the source timestamp is missing") in found
    assert (None, 2, "the timestamp is too far in the future") in found
    assert (0, 0, "NaN and infinity are not valid values") in found
    assert (0, 2, "NaN and infinity are not valid values") in found
    assert (0, 1, "200.0 is above the maximum 150") in found
    assert (1, 0, "-1 is below the minimum 0") in found
    assert (2, None, "expected a boolean, got strings") in found
    assert (3, 1, "'broken' is not one of ['auto', 'manual']") in found
    assert (4, None, "the model declares no telemetry 'unknown'") in found


def test_structural_problems() -> None:
    empty = types_pb2.TelemetryFrame(twin_id="pump-1")
    assert issues(empty) == [(None, None, "a frame needs at least one row (time_unix_ns is empty)")]
    short = make_frame("pump-1", [NOW_NS, NOW_NS + 1], {"temp": [1.0]})
    assert issues(short) == [(0, None, "1 values for 2 timestamps; one per row")]
    twice = make_frame("pump-1", [NOW_NS], {"temp": [1.0]})
    twice.columns.add(field="temp").double_values.values.append(2.0)
    twice.columns.add(field="bad name").double_values.values.append(2.0)
    twice.columns.add(field="label")
    found = issues(twice)
    assert (1, None, "field 'temp' appears twice") in found
    assert (2, None, "field names are 1-128 characters of [A-Za-z0-9_]") in found
    assert (3, None, "the column has no values") in found


def test_a_column_full_of_bad_values_reports_a_bounded_number() -> None:
    frame = make_frame("pump-1", [NOW_NS + i for i in range(1000)], {"temp": [math.nan] * 1000})
    assert len(issues(frame)) == MAX_ISSUES_PER_COLUMN


def test_points_group_by_twin_and_field_shape_in_request_order() -> None:
    points = [
        point("a", NOW_NS + 2, temp=2.0),
        point("b", NOW_NS, temp=5.0),
        point("a", NOW_NS + 1, temp=1.0),
        point("a", NOW_NS + 3, temp=3),  # an integer: another column kind, another frame
        point("a", NOW_NS + 4, temp=4.0, ok=True),
    ]
    grouped = frames_from_points(points)
    frames = grouped.frames
    assert grouped.issues == []
    assert grouped.twin_ids == {"a", "b"}
    shapes = {(f.frame.twin_id, tuple(c.field for c in f.frame.columns)): f for f in frames}
    assert len(frames) == 4
    plain = [f for f in frames if f.frame.twin_id == "a" and len(f.frame.columns) == 1]
    doubles = next(f for f in plain if f.frame.columns[0].HasField("double_values"))
    assert doubles.point_indexes == [0, 2]
    assert list(doubles.frame.time_unix_ns) == [NOW_NS + 2, NOW_NS + 1]
    assert list(column_values(doubles.frame.columns[0])) == [2.0, 1.0]
    assert shapes[("a", ("ok", "temp"))].point_indexes == [4]


def test_each_value_of_a_point_lands_in_its_own_column_whatever_the_map_order() -> None:
    names = [f"f{n:02d}" for n in range(40)]
    forward = point("a", NOW_NS, **{name: float(n) for n, name in enumerate(names)})
    backward = point(
        "a", NOW_NS + 1, **{name: float(n) for n, name in reversed(list(enumerate(names)))}
    )
    grouped = frames_from_points([forward, backward])
    assert grouped.issues == []
    [only] = grouped.frames
    assert [c.field for c in only.frame.columns] == names
    assert [list(column_values(c)) for c in only.frame.columns] == [
        [float(n)] * 2 for n in range(40)
    ]
    assert only.point_indexes == [0, 1]


def test_an_invalid_time_is_an_issue_of_its_point() -> None:
    late = point("a", NOW_NS, temp=1.0)
    late.time.seconds = 10**12
    grouped = frames_from_points([point("a", NOW_NS, temp=1.0), late])
    assert grouped.frames == []
    assert [(p.point_index, p.field, p.description) for p in grouped.issues] == [
        (1, "", "not a valid timestamp")
    ]


def test_non_scalar_and_empty_values_are_issues_of_their_points() -> None:
    empty = point("a", NOW_NS, temp=None)
    listed = point("a", NOW_NS)
    listed.fields["temp"].list_value.values.add().double_value = 1.0
    grouped = frames_from_points([point("a", NOW_NS, temp=1.0), empty, listed])
    assert grouped.frames == []
    assert [(p.point_index, p.field, p.description) for p in grouped.issues] == [
        (1, "temp", "value has no kind set"),
        (2, "temp", "telemetry values are numbers, booleans or strings"),
    ]


def test_line_protocol_escapes_keys_and_strings_and_keeps_types() -> None:
    frame = make_frame(
        "pump-1",
        [NOW_NS, NOW_NS + 1],
        {"temp": [1.5, 1e-7], "count": [3, 4], "ok": [True, False], "label": ['a "b"', "c\\d"]},
    )
    frame.columns.add(field="odd key,=").double_values.values.extend([0.0, 1.0])
    lines = list(frame_lines(frame, MEASUREMENTS, "twin_id"))
    # One measurement per value type: a field's type can never conflict with another model's.
    assert lines == [
        f"telemetry,twin_id=pump-1 temp=1.5,odd\\ key\\,\\==0.0 {NOW_NS}",
        f"telemetry,twin_id=pump-1 temp=1e-7,odd\\ key\\,\\==1.0 {NOW_NS + 1}",
        f"telemetry_integer,twin_id=pump-1 count=3i {NOW_NS}",
        f"telemetry_integer,twin_id=pump-1 count=4i {NOW_NS + 1}",
        f"telemetry_boolean,twin_id=pump-1 ok=true {NOW_NS}",
        f"telemetry_boolean,twin_id=pump-1 ok=false {NOW_NS + 1}",
        f'telemetry_string,twin_id=pump-1 label="a \\"b\\"" {NOW_NS}',
        f'telemetry_string,twin_id=pump-1 label="c\\\\d" {NOW_NS + 1}',
    ]


def test_line_protocol_numbers_parse_back_to_the_same_values() -> None:
    doubles = DOUBLES
    integers = [0, -1, 2**63 - 1, -(2**63), 10**18]
    times = [
        1,
        2**62,
        NOW_NS,
        NOW_NS + 1,
        NOW_NS + 2,
        NOW_NS + 3,
        NOW_NS + 4,
        NOW_NS + 5,
        NOW_NS + 6,
        NOW_NS + 7,
        NOW_NS + 8,
    ]
    frame = make_frame("pump-1", times, {"x": doubles})
    frame.columns.add(field="n").int_values.values.extend([*integers, *integers, 7])
    lines = list(frame_lines(frame, MEASUREMENTS, "twin_id"))
    parsed_doubles = [float(line.split(" ")[1].removeprefix("x=")) for line in lines[:11]]
    parsed_integers = [
        int(line.split(" ")[1].removeprefix("n=").removesuffix("i")) for line in lines[11:]
    ]
    parsed_times = [int(line.split(" ")[2]) for line in lines[:11]]
    assert [math.copysign(1, d) for d in parsed_doubles] == [math.copysign(1, d) for d in doubles]
    assert parsed_doubles == doubles
    assert parsed_integers == [*integers, *integers, 7]
    assert parsed_times == times
    assert all(line.split(" ")[1].endswith("i") for line in lines[11:])


def test_line_protocol_refuses_what_it_cannot_carry() -> None:
    for frame in (
        make_frame("pump-1", [NOW_NS], {"temp": [math.nan]}),
        make_frame("pump-1", [NOW_NS, NOW_NS + 1], {"temp": [1.0]}),
    ):
        try:
            list(frame_lines(frame, MEASUREMENTS, "twin_id"))
        except ValueError:
            continue
        raise AssertionError("expected ValueError")


def test_latest_values_take_the_newest_row_and_the_later_of_a_tie() -> None:
    frame = make_frame(
        "pump-1", [NOW_NS + 5, NOW_NS + 9, NOW_NS + 9, NOW_NS + 1], {"temp": [1.0, 2.0, 3.0, 4.0]}
    )
    time_ns, value = latest_values(frame)["temp"]
    assert (time_ns, value.double_value) == (NOW_NS + 9, 3.0)


def test_a_large_frame_is_cut_into_pieces_that_keep_every_row_in_order() -> None:
    rows = 10_000
    frame = make_frame(
        "pump-1",
        [NOW_NS + i for i in range(rows)],
        {"temp": [float(i) for i in range(rows)], "label": [f"l{i}" for i in range(rows)]},
    )
    pieces = split_frame(frame, 20_000)
    assert len(pieces) > 1
    assert all(piece.ByteSize() <= 25_000 for piece in pieces)
    assert [t for piece in pieces for t in piece.time_unix_ns] == list(frame.time_unix_ns)
    labels = [v for piece in pieces for v in piece.columns[1].string_values.values]
    assert labels == list(frame.columns[1].string_values.values)
    assert split_frame(frame, 10**9) == [frame]
