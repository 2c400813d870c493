"""JSON readings as devices publish them on ``twins/<twin id>/telemetry``.

A payload is one reading or an array of readings. A reading is an object of field values,
``{"temperature_c": 61.5}``, observed when the platform received it; or, with its own time,
``{"ts": 1764669600000, "values": {"temperature_c": 61.5}}`` (``ts`` in milliseconds since the
Unix epoch, as ThingsBoard devices send it, or an RFC 3339 string).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import timestamp_pb2

from twinstack.api.common.v1 import types_pb2
from twinstack.modeling.document import Telemetry
from twinstack.modeling.values import from_json, nests_deeper_than

# Readings, their values and the values' own arrays and objects: far below what breaks a parser.
MAX_NESTING = 32
TIME_KEY = "ts"
VALUES_KEY = "values"


class ReadingError(ValueError):
    """A payload that is no reading; the message says what is wrong with it."""


@dataclass(frozen=True)
class Reading:
    """One sample: when (None: when it was received) and its fields as JSON data."""

    time_ns: int | None
    values: Mapping[str, Any]


def parse_readings(payload: bytes, *, max_readings: int) -> list[Reading]:
    """The readings of a payload.

    Raises:
        ReadingError: Malformed JSON, or JSON that is not readings, saying where.
    """
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReadingError(f"malformed JSON: {error}") from None
    except RecursionError:
        raise ReadingError("JSON nested too deeply to read") from None
    # Values are converted recursively further on: refuse hostile nesting here.
    if nests_deeper_than(data, MAX_NESTING):
        raise ReadingError(f"JSON nested more than {MAX_NESTING} levels deep")
    items = data if isinstance(data, list) else [data]
    if not items:
        raise ReadingError("an empty array holds no readings")
    if len(items) > max_readings:
        raise ReadingError(f"{len(items)} readings in one message; at most {max_readings}")
    return [
        _reading(item, f"[{i}]" if isinstance(data, list) else "") for i, item in enumerate(items)
    ]


def _reading(item: Any, where: str) -> Reading:
    if not isinstance(item, dict):
        raise ReadingError(f"reading{where} is {type(item).__name__}, not an object of fields")
    if VALUES_KEY in item:
        unknown = sorted(set(item) - {TIME_KEY, VALUES_KEY})
        if unknown:
            raise ReadingError(
                f"reading{where} has {VALUES_KEY!r}, so only {TIME_KEY!r} may be beside it, "
                f"not {unknown}"
            )
        values = item[VALUES_KEY]
        if not isinstance(values, dict):
            raise ReadingError(f"reading{where}.{VALUES_KEY} is not an object of fields")
    else:
        values = {key: value for key, value in item.items() if key != TIME_KEY}
    if not values:
        raise ReadingError(f"reading{where} has no fields")
    return Reading(_time_ns(item.get(TIME_KEY), where), values)


def _time_ns(stamp: Any, where: str) -> int | None:
    if stamp is None:
        return None
    if isinstance(stamp, bool) or not isinstance(stamp, int | float | str):
        raise ReadingError(f"reading{where}.{TIME_KEY} is neither milliseconds nor RFC 3339")
    if isinstance(stamp, str):
        parsed = timestamp_pb2.Timestamp()
        try:
            parsed.FromJsonString(stamp)
        except ValueError:
            raise ReadingError(f"reading{where}.{TIME_KEY} {stamp!r} is not RFC 3339") from None
        return int(parsed.ToNanoseconds())
    if not math.isfinite(stamp) or stamp < 0:
        raise ReadingError(f"reading{where}.{TIME_KEY} {stamp!r} is no time")
    return int(stamp * 1_000_000)


def to_points(
    twin_id: str,
    readings: list[Reading],
    telemetry: Mapping[str, Telemetry],
    received_ns: int,
) -> list[types_pb2.TelemetryPoint]:
    """Points of a twin from its readings, values typed by the model where it declares the
    field (whether they fit is the validator's to say, as for gRPC ingest).

    Raises:
        ReadingError: A value that is no value at all (null).
    """
    points = []
    for index, reading in enumerate(readings):
        point = types_pb2.TelemetryPoint(twin_id=twin_id)
        point.time.FromNanoseconds(reading.time_ns if reading.time_ns is not None else received_ns)
        for name, data in reading.values.items():
            spec = telemetry.get(name)
            try:
                point.fields[name].CopyFrom(
                    from_json(spec.schema if spec else None, data, f"readings[{index}].{name}")
                )
            except ValueError as error:
                raise ReadingError(str(error)) from None
        points.append(point)
    return points
