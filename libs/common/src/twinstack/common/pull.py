"""One fetch from a JetStream pull consumer, at a quarter of nats.py's cost per message.

nats.py's ``PullSubscription.fetch`` waits for every message of a batch through
``Subscription.next_msg``, which makes a uuid4 task name, a task and an ``asyncio.wait_for``
(a second task) per message. With a real server on loopback that is 40-50 us of CPU per
message fetched and acknowledged in batches of 256, and 100-135 us in batches of 3, which is
what a state partition's consumer gets at 10k points/s: a tenth of a core there. This
fetch speaks the same pull protocol (a ``no_wait`` request, lingering up to ``expires`` when
nothing is ready; the server ends it with a 404 or 408 status) but reads the subscription's
queue directly under one deadline: 11 us and 63 us in the same measurements.

It reads attributes nats.py does not document (the subscription's queue, the request subject
and inbox), so the nats-py version is pinned by ``uv.lock``;
``tests/integration/test_pull_fetch.py`` checks this against a real server, and so do the
tests of every consumer and of the Watch.
"""

from __future__ import annotations

import asyncio
import json

from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api
from nats.js.errors import APIError

# Statuses that end a pull request: nothing more now (404), expired (408), or a conflict the
# next request resolves or reports again (409: leadership change, consumer deleted...).
_REQUEST_ENDED = frozenset(
    {api.StatusCode.NO_MESSAGES, api.StatusCode.REQUEST_TIMEOUT, api.StatusCode.CONFLICT}
)


async def fetch(
    subscription: JetStreamContext.PullSubscription, batch: int, timeout_s: float
) -> list[Msg]:
    """Up to ``batch`` messages: those ready now, or, if none are, the first to arrive within
    ``timeout_s`` with whatever came with it.

    Raises:
        nats.errors.TimeoutError: Nothing arrived within ``timeout_s``.
        nats.errors.ConnectionClosedError: The connection is closed.
        nats.js.errors.APIError: The server answered the request with an error status.
    """
    client = subscription._nc  # private: see the module docstring
    if client.is_closed:
        raise ConnectionClosedError
    inbox = subscription._sub
    if inbox is None:
        raise ValueError("the pull subscription is unsubscribed")
    queue = inbox._pending_queue
    messages: list[Msg] = []

    def settle(message: Msg) -> str | None:
        """Takes ``message`` off the queue's books; returns its status, if it is one."""
        queue.task_done()
        inbox._pending_size -= len(message.data)  # nats.py's slow-consumer count
        # The server's statuses have no reply subject; a delivered message always has one (its
        # ack subject), whatever headers its publisher gave it (nats.py's fetch drops a message
        # with its own "Status" header, which then stays unacknowledged for ever).
        status: str | None = (
            message.headers.get(api.Header.STATUS)
            if message.headers and not message.reply
            else None
        )
        if status is None:
            messages.append(message)
        return status

    # Left over from an earlier request that ended early (its statuses are stale now).
    while len(messages) < batch and not queue.empty():
        settle(queue.get_nowait())
    needed = batch - len(messages)
    if not needed:
        return messages
    request: dict[str, object] = {"batch": needed, "no_wait": True}
    if not messages:
        # With expires the server holds the request until a message arrives, then ends it as
        # soon as nothing more is ready.
        request["expires"] = max(1, int(timeout_s * 1e9) - 100_000)
    await client.publish(
        subscription._nms,
        json.dumps(request).encode(),
        subscription._deliver,
    )
    try:
        async with asyncio.timeout(timeout_s):
            while len(messages) < batch:
                message = queue.get_nowait() if not queue.empty() else await queue.get()
                status = settle(message)
                if status in _REQUEST_ENDED:
                    if messages:
                        break
                    # Before any message this is most likely the end of an earlier request
                    # (one this client gave up on just before the server did): wait on. If it
                    # was this one's (a conflict), waiting costs the rest of the timeout only.
                    continue
                if status is not None and status != api.StatusCode.CONTROL_MESSAGE:
                    raise APIError.from_msg(message)
    except TimeoutError:
        pass  # what arrived is returned; later messages of the request wait in the queue
    if not messages:
        raise NatsTimeoutError
    return messages
