"""Stopping background tasks so that they really stop.

Python 3.11's ``asyncio.wait_for``, which nats.py awaits in every request, fetch and
``next_msg``, drops a cancellation that arrives in the same loop iteration as the awaited
result (python/cpython#86296, fixed in 3.12). A background loop cancelled at that moment goes on
to its next round as if nothing happened, and whoever awaits its end waits for ever: that hung
service shutdowns (and the tests that stop services) about once in a few dozen stops.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)

# How long a cancelled task may run on before it is cancelled again: long enough for any
# cleanup it does in ``finally``, short enough that a lost cancellation costs little.
RECANCEL_INTERVAL_S = 0.5


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancels ``task`` and returns once it has ended, cancelling it again while it runs on.

    A failure of the task itself is logged, not raised: the caller is stopping it and has
    nothing left to do with its outcome. A cancellation of the caller propagates (the task is
    cancelled anyway).
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_INTERVAL_S)
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.warning("background task %r had failed", _name(task), exc_info=error)


def _name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)


def raise_if_cancelled() -> None:
    """Raises CancelledError if the current task was cancelled and an await swallowed it.

    For loops that are cancelled once by someone who will not cancel again: gRPC cancels a
    handler's task once when its caller goes away, and if nats.py's ``wait_for`` drops that
    cancellation, a streaming handler would serve nobody for ever (its done callbacks, ``done()``
    and ``cancelled()`` never change). The task still counts the request (``cancelling()``).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
