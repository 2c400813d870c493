"""Conversions between :class:`twinstack.api.common.v1.types_pb2.Value` and Python scalars."""

from __future__ import annotations

import math

from twinstack.api.common.v1 import types_pb2
from twinstack.common.errors import FieldViolation
from twinstack.common.ids import field_name_violation

Scalar = float | int | bool | str


def to_python(value: types_pb2.Value) -> Scalar:
    """The Python scalar a Value holds; ValueError if it holds none."""
    kind = value.WhichOneof("kind")
    if kind == "double_value":
        return value.double_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "string_value":
        return value.string_value
    raise ValueError("value has no kind set")


def from_python(scalar: Scalar) -> types_pb2.Value:
    """A Value holding ``scalar`` (bool before int: ``True`` is an int in Python)."""
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
    """What is wrong with a named value (a property or a telemetry field) found at ``path``."""
    violations = []
    bad_name = field_name_violation(name, path)
    if bad_name is not None:
        violations.append(bad_name)
    kind = value.WhichOneof("kind")
    if kind is None:
        violations.append(FieldViolation(path, "value has no kind set"))
    elif kind == "double_value" and not math.isfinite(value.double_value):
        violations.append(FieldViolation(path, "NaN and infinity are not valid values"))
    return violations
