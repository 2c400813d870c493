"""free_port picks ports no outgoing connection can take between the pick and the bind."""

from __future__ import annotations

import random
import socket

import pytest

from twinstack.devstack import processes
from twinstack.devstack.processes import FREE_PORT_LOWEST, free_port


def test_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    ephemeral_low, _ = processes._ephemeral_range()
    picked = [free_port() for _ in range(300)]
    assert len(set(picked)) == len(picked)
    assert all(FREE_PORT_LOWEST <= port < ephemeral_low for port in picked)
    with socket.socket() as server:
        server.bind(("127.0.0.1", picked[-1]))
        server.listen()


def test_a_port_something_listens_on_is_not_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter, socket.socket() as released:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        released.bind(("127.0.0.1", 0))
        taken, free = squatter.getsockname()[1], released.getsockname()[1]
        released.close()
        choices = iter([taken] * 5 + [free])
        monkeypatch.setattr(random, "randrange", lambda low, high: next(choices))
        monkeypatch.setattr(processes, "_handed_out", set())
        assert free_port() == free


def test_without_room_below_the_ephemeral_range_the_kernel_picks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(processes, "_ephemeral_range", lambda: (FREE_PORT_LOWEST + 10, 60999))
    port = free_port()
    assert port >= FREE_PORT_LOWEST + 10
