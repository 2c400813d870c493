"""The fetch loop of a durable JetStream pull consumer, shared by the services' consumers.

The owner supplies what to do with a fetched batch; the loop owns the subscription, keeps going
through idle periods and lost connections (the client reconnects by itself), and stops after
the batch in hand when asked. Messages the handler leaves unacknowledged are redelivered after
``ack_wait_s``, so a crash or an exception in the handler never loses a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace

from twinstack.common.nats import TELEMETRY_STREAM, telemetry_partition_filter
from twinstack.common.tracing import context_from_headers

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("twinstack.nats")

BatchHandler = Callable[[list[Msg]], Awaitable[None]]


@dataclass(frozen=True)
class PullConsumerSettings:
    """Where a durable consumer reads and how much it takes at once."""

    stream: str
    subject: str
    durable: str
    fetch_messages: int = 256
    fetch_timeout_s: float = 1.0
    ack_wait_s: float = 60.0
    # Pause after a failed fetch, so a lost connection is not hammered.
    retry_pause_s: float = 1.0
    # Batches handled at once. More than one overlaps fetching and decoding with the handler's
    # I/O, but gives up the order between batches: only for handlers that do not need it.
    batches_in_flight: int = 1

    @classmethod
    def for_telemetry(
        cls,
        durable: str,
        *,
        fetch_messages: int,
        fetch_timeout_s: float,
        ack_wait_s: float,
        batches_in_flight: int = 1,
    ) -> PullConsumerSettings:
        """A consumer of every partition of the TELEMETRY stream."""
        return cls(
            stream=TELEMETRY_STREAM,
            subject=telemetry_partition_filter(),
            durable=durable,
            fetch_messages=fetch_messages,
            fetch_timeout_s=fetch_timeout_s,
            ack_wait_s=ack_wait_s,
            batches_in_flight=batches_in_flight,
        )


class PullConsumer:
    """Fetches batches from a durable consumer and hands each to ``handle`` until stopped."""

    def __init__(
        self, js: JetStreamContext, settings: PullConsumerSettings, handle: BatchHandler
    ) -> None:
        self._js = js
        self._settings = settings
        self._handle = handle
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        settings = self._settings
        subscription = await self._js.pull_subscribe(
            settings.subject,
            durable=settings.durable,
            stream=settings.stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=settings.ack_wait_s,
                max_ack_pending=settings.fetch_messages * max(8, 2 * settings.batches_in_flight),
            ),
        )
        self._task = asyncio.create_task(self._run(subscription), name=settings.durable)

    async def stop(self) -> None:
        """Lets the batch in hand finish (up to ``ack_wait_s``), then stops."""
        self._stopping.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._task, self._settings.ack_wait_s)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def pause(self, seconds: float) -> None:
        """Waits ``seconds``, or less if the consumer is being stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _run(self, subscription: JetStreamContext.PullSubscription) -> None:
        settings = self._settings
        slots = asyncio.Semaphore(settings.batches_in_flight)
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping.is_set():
                await slots.acquire()
                try:
                    messages = await subscription.fetch(
                        settings.fetch_messages, timeout=settings.fetch_timeout_s
                    )
                except (NatsTimeoutError, TimeoutError):
                    slots.release()
                    continue  # nothing to fetch
                except Exception:
                    slots.release()
                    logger.warning("%s: fetch failed", settings.durable, exc_info=True)
                    await self.pause(settings.retry_pause_s)
                    continue
                task = asyncio.create_task(self._process(messages))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                task.add_done_callback(lambda _: slots.release())
        finally:
            if in_flight:
                await asyncio.wait(in_flight)

    async def _process(self, messages: list[Msg]) -> None:
        settings = self._settings
        # One span per batch, linked to the trace of every message's publisher.
        with tracer.start_as_current_span(
            f"{settings.durable} process",
            kind=trace.SpanKind.CONSUMER,
            links=_publisher_links(messages),
            attributes={
                "messaging.system": "nats",
                "messaging.batch.message_count": len(messages),
            },
        ):
            try:
                await self._handle(messages)
            except Exception:
                logger.exception("%s: batch failed; it will be redelivered", settings.durable)


def _publisher_links(messages: list[Msg]) -> list[trace.Link]:
    links = []
    for message in messages:
        if not message.headers:
            continue
        span_context = trace.get_current_span(
            context_from_headers(message.headers)
        ).get_span_context()
        if span_context.is_valid:
            links.append(trace.Link(span_context))
    return links
