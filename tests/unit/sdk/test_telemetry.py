"""The resend logic of ingest streams, and telemetry as the SDK builds it."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

import grpc
import numpy as np
import pytest

from twinstack.api.ingestion.v1 import ingestion_pb2
from twinstack.sdk import Point, Scalar, UnavailableError, make_frame
from twinstack.sdk._telemetry import ResendWindow

RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


class Broken(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "broken"


def batch() -> ingestion_pb2.IngestStreamRequest:
    return ingestion_pb2.IngestStreamRequest()


def test_batches_are_numbered_and_kept_until_acknowledged() -> None:
    window = ResendWindow(reconnect_timeout_s=60)
    sent = [window.send(batch()) for _ in range(3)]
    assert [b.sequence for b in sent] == [1, 2, 3]
    assert window.answer(ingestion_pb2.IngestStreamResponse(sequence=1)) is None
    assert [b.sequence for b in window.resend()] == [2, 3], "a new connection resends these"
    assert window.send(batch()).sequence == 4, "numbers never repeat"


def test_a_try_again_answer_pauses_and_keeps_the_batch() -> None:
    window = ResendWindow(reconnect_timeout_s=60)
    window.send(batch())
    busy = ingestion_pb2.IngestStreamResponse(
        sequence=1, code=RESOURCE_EXHAUSTED, retry_after_ms=250
    )
    assert window.answer(busy) == 0.25
    assert [b.sequence for b in window.resend()] == [1]
    no_hint = ingestion_pb2.IngestStreamResponse(sequence=1, code=RESOURCE_EXHAUSTED)
    assert window.answer(no_hint) == 0.05, "never a busy loop"


def test_a_rejected_batch_is_answered_not_resent() -> None:
    window = ResendWindow(reconnect_timeout_s=60)
    window.send(batch())
    rejected = ingestion_pb2.IngestStreamResponse(
        sequence=1, code=grpc.StatusCode.INVALID_ARGUMENT.value[0]
    )
    assert window.answer(rejected) is None
    assert window.resend() == []


def test_broken_connections_reconnect_and_other_failures_raise() -> None:
    window = ResendWindow(reconnect_timeout_s=60)
    assert window.broken(Broken(grpc.StatusCode.UNAVAILABLE)) > 0
    with pytest.raises(Exception, match="broken") as raised:
        window.broken(Broken(grpc.StatusCode.PERMISSION_DENIED))
    assert raised.value.code == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]


def test_it_gives_up_without_progress() -> None:
    window = ResendWindow(reconnect_timeout_s=0)
    window.send(batch())
    with pytest.raises(UnavailableError, match="no batch acknowledged"):
        window.check_progress()


def test_points_carry_their_time_and_typed_values() -> None:
    when = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)
    point = Point("pump-1", {"t": 1.5, "n": 2, "on": True, "s": "x"}, when).to_proto()
    assert point.time.ToDatetime(tzinfo=UTC) == when
    assert {k: v.WhichOneof("kind") for k, v in point.fields.items()} == {
        "t": "double_value", "n": "int_value", "on": "bool_value", "s": "string_value",
    }  # fmt: skip
    assert Point("pump-1", {"t": 1.0}, 7).to_proto().time.ToNanoseconds() == 7


def test_frame_columns_take_the_type_of_their_values() -> None:
    columns: dict[str, Collection[Scalar]] = {
        "t": np.array([1.0, 2.5]), "n": [1, 2], "on": [True, False], "mixed": [1, 2.5],
        "s": ["a", "b"],
    }  # fmt: skip
    frame = make_frame("pump-1", [1, 2], columns)
    kinds = {c.field: c.WhichOneof("values") for c in frame.columns}
    assert kinds == {
        "t": "double_values", "n": "int_values", "on": "bool_values",
        "mixed": "double_values", "s": "string_values",
    }  # fmt: skip
    assert list(frame.time_unix_ns) == [1, 2]
