"""Stopping background tasks: a lost cancellation must not leave the stopper waiting for ever."""

from __future__ import annotations

import asyncio
import logging

import pytest

from twinstack.common.tasks import cancel_and_wait, raise_if_cancelled


async def test_a_task_that_lost_a_cancellation_is_cancelled_again() -> None:
    # Stands for a loop around nats.py's requests on Python 3.11, whose wait_for drops a
    # cancellation that arrives with the awaited result: the loop simply goes on.
    cancellations_seen = 0
    waiting = asyncio.Event()

    async def loop_that_drops_the_first_cancellation() -> None:
        nonlocal cancellations_seen
        while True:
            try:
                waiting.set()
                await asyncio.Event().wait()  # ended only by a cancellation
            except asyncio.CancelledError:
                cancellations_seen += 1
                if cancellations_seen > 1:
                    raise

    task = asyncio.create_task(loop_that_drops_the_first_cancellation())
    await waiting.wait()
    await asyncio.wait_for(cancel_and_wait(task), timeout=10)
    assert task.cancelled()
    assert cancellations_seen == 2


async def test_a_failed_task_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> None:
        raise RuntimeError("lost the connection")

    task = asyncio.create_task(fails(), name="reader")
    await asyncio.wait({task})
    with caplog.at_level(logging.WARNING, logger="twinstack.common.tasks"):
        await cancel_and_wait(task)
    assert "reader" in caplog.text
    assert "lost the connection" in caplog.text


async def test_a_cancellation_of_the_stopper_propagates() -> None:
    released = False
    waiting = asyncio.Event()
    cancelled_once = asyncio.Event()

    async def ignores_cancellation_until_released() -> None:
        while not released:
            try:
                waiting.set()
                await asyncio.Event().wait()  # ended only by a cancellation
            except asyncio.CancelledError:
                cancelled_once.set()

    stubborn = asyncio.create_task(ignores_cancellation_until_released())
    await waiting.wait()
    stopper = asyncio.create_task(cancel_and_wait(stubborn))
    await cancelled_once.wait()  # the stopper is inside its wait now
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert not stubborn.done()
    released = True
    stubborn.cancel()
    await asyncio.wait({stubborn}, timeout=10)
    assert stubborn.done()


async def test_a_swallowed_cancellation_is_raised_at_the_next_check() -> None:
    # As gRPC cancels a streaming handler once, and nats.py's wait_for may swallow it.
    started = asyncio.Event()
    outcome: list[str] = []

    async def handler() -> None:
        raise_if_cancelled()  # not cancelled: nothing happens
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome.append("swallowed")
        raise_if_cancelled()
        outcome.append("served on")

    task = asyncio.create_task(handler())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == ["swallowed"]
