"""Property values checked against, and converted by, the schemas of a model.

Values travel as :class:`twinstack.api.common.v1.types_pb2.Value`; JSON (merge patches, model
defaults) is converted with the declared schema, so a JSON ``3`` becomes an ``int_value`` for an
integer property and a ``double_value`` for a double one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from google.protobuf import timestamp_pb2

from twinstack.api.common.v1 import types_pb2
from twinstack.modeling.document import MAX_SCHEMA_DEPTH, Property, Schema
from twinstack.modeling.violations import FieldViolation, timestamp_violation

_KIND_OF_SCHEMA = {
    "double": "double_value",
    "integer": "int_value",
    "boolean": "bool_value",
    "string": "string_value",
    "timestamp": "timestamp_value",
    "array": "list_value",
    "object": "map_value",
    "map": "map_value",
}
MAX_STRING_CHARS = 16_384
MAX_ITEMS = 10_000
# Schemas nest at most MAX_SCHEMA_DEPTH deep, so no valid value (a property inside a component
# included) nests deeper than this.
MAX_VALUE_DEPTH = MAX_SCHEMA_DEPTH + 2


def nests_deeper_than(data: Any, limit: int) -> bool:
    """Whether JSON ``data`` has objects or arrays nested more than ``limit`` deep (checked
    without recursion, so any depth that parsed can be checked)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def value_violations(
    schema: Schema,
    value: types_pb2.Value,
    path: str,
    minimum: float | None = None,
    maximum: float | None = None,
) -> list[FieldViolation]:
    """What is wrong with ``value`` as a value of ``schema`` (and within [minimum, maximum])."""
    kind = value.WhichOneof("kind")
    if schema.kind == "enum":
        expected = "string_value" if isinstance(schema.enum_values[0], str) else "int_value"
    else:
        expected = _KIND_OF_SCHEMA[schema.kind]
    # An integer is a valid double (JSON and many clients do not tell them apart).
    if kind == "int_value" and expected == "double_value":
        kind = expected
    if kind != expected:
        found = "nothing" if kind is None else kind.removesuffix("_value")
        return [FieldViolation(path, f"expected {_describe(schema)}, got {found}")]
    if schema.kind == "timestamp":
        invalid = timestamp_violation(value.timestamp_value, path)
        if invalid is not None:
            return [invalid]
    if schema.kind == "double" and not math.isfinite(value.double_value):
        return [FieldViolation(path, "NaN and infinity are not valid values")]
    if schema.kind in ("double", "integer"):
        number = value.double_value if value.HasField("double_value") else value.int_value
        if minimum is not None and number < minimum:
            return [FieldViolation(path, f"{number:g} is below the minimum {minimum:g}")]
        if maximum is not None and number > maximum:
            return [FieldViolation(path, f"{number:g} is above the maximum {maximum:g}")]
    if schema.kind == "string" and len(value.string_value) > MAX_STRING_CHARS:
        return [FieldViolation(path, f"longer than {MAX_STRING_CHARS} characters")]
    if schema.kind == "enum":
        member = value.string_value if kind == "string_value" else value.int_value
        if member not in schema.enum_values:
            return [FieldViolation(path, f"{member!r} is not one of {list(schema.enum_values)}")]
    if schema.kind == "array":
        assert schema.items is not None
        if len(value.list_value.values) > MAX_ITEMS:
            return [FieldViolation(path, f"more than {MAX_ITEMS} items")]
        return [
            v
            for index, item in enumerate(value.list_value.values)
            for v in value_violations(schema.items, item, f"{path}[{index}]")
        ]
    if schema.kind == "map":
        assert schema.items is not None
        return [
            v
            for key, item in value.map_value.fields.items()
            for v in value_violations(schema.items, item, f"{path}.{key}")
        ]
    if schema.kind == "object":
        declared = dict(schema.fields)
        found_violations = []
        for key, item in value.map_value.fields.items():
            if key not in declared:
                found_violations.append(
                    FieldViolation(
                        f"{path}.{key}", f"not a field of the object ({sorted(declared)})"
                    )
                )
            else:
                found_violations.extend(value_violations(declared[key], item, f"{path}.{key}"))
        return found_violations
    return []


def _describe(schema: Schema) -> str:
    if schema.kind == "enum":
        return f"one of {list(schema.enum_values)}"
    return schema.kind


def coerce(schema: Schema, value: types_pb2.Value) -> types_pb2.Value:
    """``value`` in the representation ``schema`` stores (integers of double fields as doubles)."""
    if schema.kind == "double" and value.HasField("int_value"):
        return types_pb2.Value(double_value=float(value.int_value))
    if schema.kind == "array" and schema.items is not None:
        return types_pb2.Value(
            list_value=types_pb2.ValueList(
                values=[coerce(schema.items, item) for item in value.list_value.values]
            )
        )
    if schema.kind in ("map", "object") and value.HasField("map_value"):
        declared = dict(schema.fields)
        fields = {}
        for key, item in value.map_value.fields.items():
            inner = schema.items if schema.kind == "map" else declared.get(key)
            fields[key] = item if inner is None else coerce(inner, item)
        return types_pb2.Value(map_value=types_pb2.ValueMap(fields=fields))
    return value


def from_json(schema: Schema | None, data: Any, path: str) -> types_pb2.Value:
    """A Value from JSON data, typed by ``schema`` where known; ValueError saying where."""
    if isinstance(data, bool):
        return types_pb2.Value(bool_value=data)
    if isinstance(data, int):
        if schema is not None and schema.kind == "double":
            return types_pb2.Value(double_value=float(data))
        return types_pb2.Value(int_value=data)
    if isinstance(data, float):
        return types_pb2.Value(double_value=data)
    if isinstance(data, str):
        if schema is not None and schema.kind == "timestamp":
            stamp = timestamp_pb2.Timestamp()
            try:
                stamp.FromJsonString(data)
            except ValueError:
                raise ValueError(f"{path}: {data!r} is not an RFC 3339 timestamp") from None
            return types_pb2.Value(timestamp_value=stamp)
        return types_pb2.Value(string_value=data)
    if isinstance(data, list):
        items = schema.items if schema is not None and schema.kind == "array" else None
        return types_pb2.Value(
            list_value=types_pb2.ValueList(
                values=[from_json(items, item, f"{path}[{i}]") for i, item in enumerate(data)]
            )
        )
    if isinstance(data, Mapping):
        return types_pb2.Value(
            map_value=types_pb2.ValueMap(
                fields={
                    str(key): from_json(_member_schema(schema, str(key)), item, f"{path}.{key}")
                    for key, item in data.items()
                }
            )
        )
    raise ValueError(f"{path}: null and {type(data).__name__} are not values")


def _member_schema(schema: Schema | None, key: str) -> Schema | None:
    if schema is None:
        return None
    if schema.kind == "map":
        return schema.items
    if schema.kind == "object":
        return dict(schema.fields).get(key)
    return None


def to_json(value: types_pb2.Value) -> Any:
    """JSON data for a Value (timestamps as RFC 3339 strings)."""
    kind = value.WhichOneof("kind")
    if kind == "timestamp_value":
        return value.timestamp_value.ToJsonString()
    if kind == "list_value":
        return [to_json(item) for item in value.list_value.values]
    if kind == "map_value":
        return {key: to_json(item) for key, item in sorted(value.map_value.fields.items())}
    if kind is None:
        return None
    return getattr(value, kind)


def json_violations(prop: Property, data: Any, path: str) -> list[FieldViolation]:
    """What is wrong with JSON ``data`` as a value of ``prop`` (used for model defaults)."""
    try:
        value = from_json(prop.schema, data, path)
    except ValueError as error:
        return [FieldViolation(path, str(error))]
    return value_violations(prop.schema, value, path, prop.minimum, prop.maximum)
