"""A lost Watch resumes through an outage of NATS or a replica, and gives up after a long one."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest

from twinstack.api.state.v1 import state_pb2
from twinstack.sdk._state import _WatchCursor


class _Lost(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(time, "monotonic", fake.monotonic)
    return fake


def cursor() -> _WatchCursor:
    return _WatchCursor(state_pb2.WatchRequest(twin_ids=["pump-1"]), timeout_s=None)


def test_pauses_grow_to_a_cap_through_a_rolling_restart(clock: Any) -> None:
    watch = cursor()
    pauses = []
    # A cluster electing leaders for 40 s: the watch keeps trying (more than 5 times).
    while clock.now < 1040.0:
        pause = watch.pause_before_resuming(_Lost(grpc.StatusCode.UNAVAILABLE))
        assert pause is not None
        pauses.append(pause)
        clock.now += pause
    assert pauses[:4] == [0.25, 0.5, 1.0, 2.0]
    assert max(pauses) == 2.0
    assert len(pauses) > 5


def test_a_delivered_change_starts_the_outage_anew(clock: Any) -> None:
    watch = cursor()
    for _ in range(3):
        clock.now += watch.pause_before_resuming(_Lost(grpc.StatusCode.UNAVAILABLE)) or 0
    watch.delivered(state_pb2.WatchResponse(state=state_pb2.TwinState(revision=42)))
    assert watch.request.after_revision == 42
    assert watch.pause_before_resuming(_Lost(grpc.StatusCode.UNAVAILABLE)) == 0.25


def test_a_long_outage_or_another_error_ends_the_watch(clock: Any) -> None:
    watch = cursor()
    assert watch.pause_before_resuming(_Lost(grpc.StatusCode.UNAVAILABLE)) is not None
    clock.now += 61.0
    assert watch.pause_before_resuming(_Lost(grpc.StatusCode.UNAVAILABLE)) is None
    assert cursor().pause_before_resuming(_Lost(grpc.StatusCode.PERMISSION_DENIED)) is None
