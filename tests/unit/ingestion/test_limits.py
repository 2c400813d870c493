"""Ingest requests are refused whole, before anything is published, when a row could never be
published (larger than NATS's max payload) or a request goes over its budgets."""

from __future__ import annotations

from typing import Any

import pytest

from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.errors import InvalidArgumentError, LimitExceededError
from twinstack.ingestion.batching import BatchValidator
from twinstack.modeling.document import parse_model
from twinstack.modeling.resolve import ResolvedModel, Resolver
from twinstack.sdk import make_frame

MODEL = parse_model(
    {
        "id": "dtmi:test:Wide;1",
        "telemetry": {f"s{i}": "string" for i in range(80)} | {"x": "double"},
    }
)
NOW_NS = 1_700_000_000 * 10**9


class Catalog:
    """The registry's view, as ingestion reads it: every twin is of MODEL."""

    async def get(self, twin_id: str) -> registry_pb2.Twin:
        return registry_pb2.Twin(id=twin_id, model_id=MODEL.id)

    async def resolve_current(self, model_id: str) -> ResolvedModel:
        return Resolver({MODEL.id: MODEL}.get).resolve(model_id)


def validator(**limits: Any) -> BatchValidator:
    return BatchValidator(
        Catalog(),  # type: ignore[arg-type]
        max_points=limits.pop("max_points", 1000),
        max_message_bytes=512 * 1024,
        **limits,
    )


async def test_a_row_larger_than_the_max_payload_is_refused_before_publishing() -> None:
    wide = make_frame("wide-1", [NOW_NS], {f"s{i}": ["x" * 16_000] for i in range(80)})
    narrow = make_frame("ok-1", [NOW_NS], {"x": [1.0]})
    with pytest.raises(InvalidArgumentError) as refused:
        await validator().validate([], [narrow, wide], latest_allowed_ns=NOW_NS * 2)
    assert [v.field for v in refused.value.violations] == ["frames[1]"]
    assert "1048576 bytes" in refused.value.violations[0].description


async def test_rows_that_fit_are_cut_into_messages_under_the_payload() -> None:
    rows = [NOW_NS + i for i in range(200)]
    frame = make_frame("wide-2", rows, {"s0": ["x" * 10_000] * 200})
    batches = await validator().validate([], [frame], latest_allowed_ns=NOW_NS * 2)
    assert len(batches) > 1
    assert all(batch.ByteSize() <= 1024 * 1024 for batch in batches)


async def test_points_and_twins_budgets_name_their_settings() -> None:
    frames = [make_frame(f"t-{i}", [NOW_NS], {"x": [1.0]}) for i in range(3)]
    with pytest.raises(LimitExceededError) as twins:
        await validator(max_twins=2).validate([], frames, latest_allowed_ns=NOW_NS * 2)
    assert twins.value.limit == "TWINSTACK_MAX_TWINS_PER_REQUEST"
    with pytest.raises(LimitExceededError) as points:
        await validator(max_points=2).validate([], frames, latest_allowed_ns=NOW_NS * 2)
    assert points.value.limit == "TWINSTACK_MAX_POINTS_PER_REQUEST"
