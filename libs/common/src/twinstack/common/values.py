"""Conversions between :class:`twinstack.api.common.v1.types_pb2.Value` and Python values:
scalars for telemetry, and also datetimes, lists and dicts for twin properties."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from twinstack.api.common.v1 import types_pb2
from twinstack.common.errors import FieldViolation
from twinstack.common.ids import field_name_violation

Scalar = float | int | bool | str


def to_python(value: types_pb2.Value) -> Any:
    """The Python value a Value holds (timestamps as aware datetimes, lists and maps nested);
    ValueError if it holds none."""
    kind = value.WhichOneof("kind")
    if kind == "timestamp_value":
        return value.timestamp_value.ToDatetime(tzinfo=UTC)
    if kind == "list_value":
        return [to_python(item) for item in value.list_value.values]
    if kind == "map_value":
        return {key: to_python(item) for key, item in value.map_value.fields.items()}
    if kind == "double_value":
        return value.double_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "string_value":
        return value.string_value
    raise ValueError("value has no kind set")


def from_python(scalar: Any) -> types_pb2.Value:
    """A Value holding ``scalar`` (bool before int: ``True`` is an int in Python); datetimes,
    sequences and mappings become timestamps, lists and maps."""
    if isinstance(scalar, datetime):
        value = types_pb2.Value()
        value.timestamp_value.FromDatetime(scalar)
        return value
    if isinstance(scalar, Mapping):
        fields = {str(k): from_python(v) for k, v in scalar.items()}
        return types_pb2.Value(map_value=types_pb2.ValueMap(fields=fields))
    if isinstance(scalar, Sequence) and not isinstance(scalar, str):
        return types_pb2.Value(
            list_value=types_pb2.ValueList(values=[from_python(v) for v in scalar])
        )
    if isinstance(scalar, bool):
        return types_pb2.Value(bool_value=scalar)
    if isinstance(scalar, int):
        return types_pb2.Value(int_value=scalar)
    if isinstance(scalar, float):
        return types_pb2.Value(double_value=scalar)
    if isinstance(scalar, str):
        return types_pb2.Value(string_value=scalar)
    raise TypeError(f"unsupported value type {type(scalar).__name__}")


def named_value_violations(name: str, value: types_pb2.Value, path: str) -> list[FieldViolation]:
    """What is wrong with a telemetry field (a named scalar) found at ``path``."""
    violations = []
    bad_name = field_name_violation(name, path)
    if bad_name is not None:
        violations.append(bad_name)
    kind = value.WhichOneof("kind")
    if kind is None:
        violations.append(FieldViolation(path, "value has no kind set"))
    elif kind == "double_value" and not math.isfinite(value.double_value):
        violations.append(FieldViolation(path, "NaN and infinity are not valid values"))
    elif kind not in _SCALAR_KINDS:
        violations.append(FieldViolation(path, "telemetry values are numbers, booleans or strings"))
    return violations


_SCALAR_KINDS = frozenset({"double_value", "int_value", "bool_value", "string_value"})
