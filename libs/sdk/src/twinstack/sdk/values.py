"""Conversions between the API's ``Value`` messages and Python values.

Telemetry fields are scalars (:data:`Scalar`); twin properties may also hold datetimes, lists
and maps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from twinstack.api.common.v1 import types_pb2

Scalar = float | int | bool | str
"""A telemetry value: a number, a boolean or a string."""


def to_python(value: types_pb2.Value) -> Any:
    """The Python value a ``Value`` holds.

    Args:
        value: The message to read.

    Returns:
        Timestamps as aware datetimes, lists and maps nested, scalars as themselves.

    Raises:
        ValueError: The value has no kind set.
    """
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
    """A ``Value`` holding a Python value.

    Args:
        scalar: A bool, int, float, str, datetime, sequence or mapping (nested freely).

    Returns:
        The message; ``True`` becomes a boolean, not the integer 1.

    Raises:
        TypeError: The value has a type the API cannot carry.
    """
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


def to_values(mapping: Mapping[str, Any] | None) -> dict[str, types_pb2.Value]:
    """A name → ``Value`` map of a name → Python value map (``None`` is empty)."""
    return {name: from_python(value) for name, value in (mapping or {}).items()}
