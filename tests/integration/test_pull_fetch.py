"""``common.pull.fetch`` against a real nats-server: every message exactly once, waits that end
with the first message, cancellations that are not swallowed, stale statuses ignored."""

import asyncio
import contextlib
import itertools
from typing import Any

import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from twinstack.common.nats import Backbone
from twinstack.common.pull import fetch

_streams = itertools.count()


async def pull_subscription(backbone: Backbone) -> tuple[str, JetStreamContext.PullSubscription]:
    name = f"PULL{next(_streams)}"
    await backbone.js.add_stream(name=name, subjects=[f"{name.lower()}.>"])
    subscription = await backbone.js.pull_subscribe(
        f"{name.lower()}.>",
        durable="reader",
        stream=name,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=10_000),
    )
    return name.lower(), subscription


async def fetch_waiting(subscription: JetStreamContext.PullSubscription, eventually: Any) -> None:
    """Until the server holds a pull request of ``subscription``."""
    await eventually(subscription.consumer_info, lambda info: info.num_waiting > 0)


async def test_every_message_is_fetched_once_in_batches_of_at_most_the_size(
    backbone: Backbone,
) -> None:
    prefix, subscription = await pull_subscription(backbone)
    sent = 1_000
    await asyncio.gather(
        *(backbone.js.publish(f"{prefix}.{i % 7}", str(i).encode()) for i in range(sent))
    )
    received: list[int] = []
    while len(received) < sent:
        messages = await fetch(subscription, 13, 5.0)
        assert 1 <= len(messages) <= 13
        for message in messages:
            received.append(int(message.data))
            await message.ack()
    assert sorted(received) == list(range(sent))
    with pytest.raises(NatsTimeoutError):
        await fetch(subscription, 13, 0.3)
    # nats.py's slow-consumer accounting is kept: no message's bytes are counted as pending.
    # (The server's end of the timed-out request may still arrive: a status without data.)
    assert subscription.pending_bytes == 0


async def test_an_idle_fetch_returns_with_the_first_message_to_arrive(
    backbone: Backbone, eventually: Any
) -> None:
    prefix, subscription = await pull_subscription(backbone)
    # A fetch that timed out leaves the server's end-of-request status behind; the next
    # fetches must not be confused by it.
    with pytest.raises(NatsTimeoutError):
        await fetch(subscription, 50, 0.2)
    for value in range(5):
        waiting = asyncio.create_task(fetch(subscription, 50, 30.0))
        await fetch_waiting(subscription, eventually)
        await backbone.js.publish(f"{prefix}.x", str(value).encode())
        # A fetch that waited for the full batch would take the whole 30 s.
        messages = await asyncio.wait_for(waiting, 10.0)
        assert [int(m.data) for m in messages] == [value]
        await messages[0].ack()


async def test_a_waiting_fetch_is_cancelled_promptly(backbone: Backbone, eventually: Any) -> None:
    _, subscription = await pull_subscription(backbone)
    waiting = asyncio.create_task(fetch(subscription, 10, 60.0))
    await fetch_waiting(subscription, eventually)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(waiting, 5.0)
    assert waiting.cancelled()


async def test_a_message_whose_own_headers_say_status_is_still_a_message(
    backbone: Backbone,
) -> None:
    """Only the server's status messages (which carry no reply subject) end a request; a
    publisher's ``Status`` header must not make its message vanish unacknowledged."""
    prefix, subscription = await pull_subscription(backbone)
    await backbone.js.publish(f"{prefix}.x", b"data", headers={"Status": "404"})
    messages = await fetch(subscription, 10, 5.0)
    assert [m.data for m in messages] == [b"data"]
