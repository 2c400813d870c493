"""Ingest batches are validated against the twins' models, column by column, and refused whole
with every bad value named."""

from __future__ import annotations

import pytest

from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.errors import InvalidArgumentError
from twinstack.ingestion.batching import BatchValidator
from twinstack.modeling.document import parse_model
from twinstack.modeling.resolve import ResolvedModel, Resolver
from twinstack.sdk import Point, make_frame

PUMP = parse_model(
    {
        "id": "dtmi:test:Pump;1",
        "telemetry": {
            "temperature_c": {"schema": "double", "min": -40, "max": 250},
            "cycles": "integer",
            "running": "boolean",
        },
    }
)
NOW_NS = 1_700_000_000 * 10**9


class Catalog:
    """The registry's view, as ingestion reads it: pump-* twins are pumps, nothing else."""

    async def get(self, twin_id: str) -> registry_pb2.Twin | None:
        return (
            registry_pb2.Twin(id=twin_id, model_id=PUMP.id) if twin_id.startswith("pump-") else None
        )

    async def resolve_current(self, model_id: str) -> ResolvedModel:
        return Resolver({PUMP.id: PUMP}.get).resolve(model_id)


VALIDATOR = BatchValidator(Catalog(), max_points=1000, max_message_bytes=512 * 1024)  # type: ignore[arg-type]


async def test_points_of_one_twin_become_one_batch_per_field_set() -> None:
    points = [
        Point("pump-1", {"temperature_c": 60.0 + i, "cycles": i}, NOW_NS + i).to_proto()
        for i in range(3)
    ]
    batches = await VALIDATOR.validate(points, [], latest_allowed_ns=NOW_NS * 2)
    assert sum(len(b.frame.time_unix_ns) for b in batches) == 3
    assert {b.model_id for b in batches} == {PUMP.id}


async def test_every_bad_value_is_named_and_nothing_passes() -> None:
    frame = make_frame(
        "pump-1",
        [NOW_NS, NOW_NS + 1],
        {"temperature_c": [20.0, 999.0], "cycles": [1, 2], "humidity": [0.5, 0.6]},
    )
    stranger = make_frame("valve-1", [NOW_NS], {"x": [1.0]})
    with pytest.raises(InvalidArgumentError) as refused:
        await VALIDATOR.validate([], [frame, stranger], latest_allowed_ns=NOW_NS * 2)
    described = {v.field: v.description for v in refused.value.violations}
    assert "above the maximum 250" in described["frames[0].columns[0].values[1]"]
    assert any(field.startswith("frames[0].columns[2]") for field in described), "humidity"
    assert any(field.startswith("frames[1]") for field in described), "an unknown twin"


async def test_a_column_of_the_wrong_type_is_refused() -> None:
    frame = make_frame("pump-2", [NOW_NS], {"running": ["yes"]})
    with pytest.raises(InvalidArgumentError) as refused:
        await VALIDATOR.validate([], [frame], latest_allowed_ns=NOW_NS * 2)
    assert refused.value.violations[0].field.startswith("frames[0].columns[0]")


async def test_samples_from_too_far_in_the_future_are_refused() -> None:
    frame = make_frame("pump-3", [NOW_NS * 3], {"cycles": [1]})
    with pytest.raises(InvalidArgumentError):
        await VALIDATOR.validate([], [frame], latest_allowed_ns=NOW_NS * 2)
