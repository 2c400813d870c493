"""Conversions between :class:`twinstack.api.common.v1.types_pb2.Value` and Python scalars."""

from __future__ import annotations

from twinstack.api.common.v1 import types_pb2

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
