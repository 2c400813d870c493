"""Telemetry as the SDK sends it: single points and columnar frames."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twinstack.api.common.v1 import types_pb2
from twinstack.sdk.values import Scalar, from_python


@dataclass(frozen=True)
class Point:
    """One telemetry sample of one twin.

    Attributes:
        twin_id: The twin the sample belongs to.
        fields: Field name → value (a number, boolean or string).
        time: When it was measured: an aware datetime, integer nanoseconds since the epoch, or
            None for now.
    """

    twin_id: str
    fields: Mapping[str, Scalar]
    time: datetime | int | None = None

    def to_proto(self) -> types_pb2.TelemetryPoint:
        """The point as the API carries it."""
        point = types_pb2.TelemetryPoint(
            twin_id=self.twin_id,
            fields={name: from_python(value) for name, value in self.fields.items()},
        )
        if isinstance(self.time, datetime):
            point.time.FromDatetime(self.time)
        else:
            point.time.FromNanoseconds(time.time_ns() if self.time is None else self.time)
        return point


def make_frame(
    twin_id: str, times_ns: Collection[int], columns: Mapping[str, Collection[Scalar]]
) -> types_pb2.TelemetryFrame:
    """A frame of one twin's samples: one time per row, one equally long column per field.

    Frames are the fast way to send many samples: the services handle them column by column.

    Args:
        twin_id: The twin.
        times_ns: Row times, integer nanoseconds since the epoch.
        columns: Field name → one value per row. A column's type follows its values: all
            booleans, all integers, numbers (doubles) or strings. NumPy arrays work too.

    Returns:
        The frame, ready for :meth:`Telemetry.ingest`.
    """
    frame = types_pb2.TelemetryFrame(twin_id=twin_id)
    frame.time_unix_ns.extend(int(t) for t in times_ns)
    for name, values in columns.items():
        column = frame.columns.add(field=name)
        items: list[Any] = values.tolist() if hasattr(values, "tolist") else list(values)
        if items and all(isinstance(v, bool) for v in items):
            column.bool_values.values.extend(items)
        elif items and all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            column.int_values.values.extend(items)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            column.double_values.values.extend(float(v) for v in items)
        else:
            column.string_values.values.extend(items)
    return frame
