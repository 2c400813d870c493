"""Patches of twin properties: JSON merge patches (RFC 7386) and the shape of a patch."""

from __future__ import annotations

from typing import Any

import pytest

from twinstack.api.common.v1 import types_pb2
from twinstack.common.errors import InvalidArgumentError
from twinstack.modeling.document import parse_model
from twinstack.modeling.resolve import Resolver
from twinstack.registry.twins import (
    _apply_merge_patch,
    _check_patch_shape,
    merge_patch,
    parse_merge_patch,
)
from twinstack.sdk.values import from_python, to_python

PUMP = parse_model(
    {
        "id": "dtmi:test:Pump;1",
        "properties": {
            "rated_power_kw": {"schema": "double", "min": 0},
            "motor": {"schema": {"object": {"rpm": "double", "class": "string"}}},
        },
    }
)


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        ({"a": 1, "b": 2}, {"a": None}, {"b": 2}),
        ({"a": {"x": 1, "y": 2}}, {"a": {"y": None, "z": 3}}, {"a": {"x": 1, "z": 3}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": 1}, {"a": {"b": 2}}, {"a": {"b": 2}}),
        (None, {"a": 1}, {"a": 1}),
        ({"a": 1}, "replaced", "replaced"),
    ],
)
def test_merge_patch_follows_rfc_7386(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [("[1, 2]", "must be a JSON object"), ("{", "not valid JSON"), ("3", "must be a JSON object")],
)
def test_a_merge_patch_must_be_a_json_object(text: str, why: str) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        parse_merge_patch(text)
    (violation,) = refused.value.violations
    assert violation.field == "json_merge_patch"
    assert why in violation.description


def test_a_patch_that_changes_nothing_or_contradicts_itself_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="invalid patch"):
        _check_patch_shape({}, [], has_merge_patch=False)
    with pytest.raises(InvalidArgumentError) as both:
        _check_patch_shape({"a": from_python(1.0)}, ["a", "bad name"], has_merge_patch=False)
    assert [v.field for v in both.value.violations] == [
        "remove_properties[0]",
        "remove_properties[1]",
    ]
    _check_patch_shape({}, [], has_merge_patch=True)


def test_a_merge_patch_merges_into_nested_properties_and_removes() -> None:
    model = Resolver({PUMP.id: PUMP}.get).resolve(PUMP.id)
    current: dict[str, types_pb2.Value] = {
        "rated_power_kw": from_python(30.0),
        "motor": from_python({"rpm": 2950.0, "class": "F"}),
    }
    patched = _apply_merge_patch(model, current, {"motor": {"rpm": 1480.0}, "rated_power_kw": None})
    assert {k: to_python(v) for k, v in patched.items()} == {"motor": {"rpm": 1480.0, "class": "F"}}
    assert {k: to_python(v) for k, v in current.items()}["rated_power_kw"] == 30.0, "a copy"
