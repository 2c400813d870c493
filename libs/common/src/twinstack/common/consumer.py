"""The fetch loop of a durable JetStream pull consumer, shared by the services' consumers.

The owner supplies what to do with a fetched batch; the loop owns the subscription, keeps going
through idle periods and lost connections (the client reconnects by itself), and stops after
the batch in hand when asked. Messages the handler leaves unacknowledged are redelivered after
``ack_wait_s``, so a crash or an exception in the handler never loses a message.

A message that fails again and again must not stall its consumer: handlers give up on it after
``max_deliver`` deliveries through :class:`DeadLetters`, which parks it on a dead-letter subject
with the reason (nothing is dropped) and counts it. Failures of the infrastructure itself
(NATS unreachable, timeouts) are retried without limit instead: an outage must not turn good
messages into dead letters. So the server's own ``max_deliver`` stays unlimited; a server-side
limit would silently strand messages that failed only because a dependency was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy, StreamInfo
from opentelemetry import metrics, trace

from twinstack.common.events import EventPublisher, EventType
from twinstack.common.metrics import Attributes, gauge
from twinstack.common.nats import (
    NATS_UNAVAILABLE_ERRORS,
    TELEMETRY_STREAM,
    nats_unavailable,
    retried_at_start,
    telemetry_partition_filter,
)
from twinstack.common.pull import fetch
from twinstack.common.tasks import cancel_and_wait
from twinstack.common.tracing import context_from_headers, span, tracing_enabled

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("twinstack.nats")

BatchHandler = Callable[[list[Msg]], Awaitable[None]]

DEAD_LETTER_REASON_HEADER = "Twinstack-Dead-Letter-Reason"
ORIGINAL_SUBJECT_HEADER = "Twinstack-Original-Subject"
# Failures that say nothing about the message: retried for as long as they last.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *NATS_UNAVAILABLE_ERRORS,
    TimeoutError,
    OSError,
)

_DEAD_LETTERS = metrics.get_meter("twinstack.consumer").create_counter(
    "twinstack.consumer.dead_letters",
    description="Messages parked on a dead-letter subject, by consumer",
)
# How often a consumer reads its own and its stream's state from the server for the gauges
# below: lag is a trend over minutes, and each read is a JetStream API request.
STATE_READ_INTERVAL_S = 5.0
# The last read of each consumer of this process (by durable) and of their streams.
_CONSUMERS: dict[str, ConsumerInfo] = {}
_STREAMS: dict[str, StreamInfo] = {}
_STREAM_READS: dict[str, float] = {}


def _of_consumers(
    value: Callable[[ConsumerInfo], int | None],
) -> Callable[[], Iterable[tuple[float, Attributes]]]:
    def read() -> Iterable[tuple[float, Attributes]]:
        return [
            (float(value(info) or 0), {"consumer": durable, "stream": info.stream_name})
            for durable, info in list(_CONSUMERS.items())
        ]

    return read


def _replicas_current(info: StreamInfo) -> int:
    """Copies of the stream that are up to date: the leader's and every current follower's."""
    cluster = info.cluster
    if cluster is None:
        return 1
    followers = cluster.replicas or []
    leader = 1 if cluster.leader else 0
    return leader + sum(1 for peer in followers if peer.current and not peer.offline)


def _of_streams(
    value: Callable[[StreamInfo], Iterable[tuple[float, dict[str, str]]]],
) -> Callable[[], Iterable[tuple[float, Attributes]]]:
    def read() -> Iterable[tuple[float, Attributes]]:
        return [
            (reading, {"stream": name, **labels})
            for name, info in list(_STREAMS.items())
            for reading, labels in value(info)
        ]

    return read


gauge(
    "twinstack.consumer",
    "twinstack.consumer.pending",
    "Messages of the stream not yet delivered to the consumer: its lag",
    _of_consumers(lambda info: info.num_pending),
)
gauge(
    "twinstack.consumer",
    "twinstack.consumer.ack_pending",
    "Messages delivered to the consumer and not yet acknowledged",
    _of_consumers(lambda info: info.num_ack_pending),
)
gauge(
    "twinstack.consumer",
    "twinstack.consumer.redelivered",
    "Messages delivered more than once and not yet acknowledged",
    _of_consumers(lambda info: info.num_redelivered),
)
gauge(
    "twinstack.consumer",
    "twinstack.nats.stream.replicas",
    "Replicas the stream is configured with",
    _of_streams(lambda info: [(float(info.config.num_replicas or 1), {})]),
)
gauge(
    "twinstack.consumer",
    "twinstack.nats.stream.replicas_current",
    "Replicas of the stream that are up to date (the leader's included)",
    _of_streams(lambda info: [(float(_replicas_current(info)), {})]),
)
gauge(
    "twinstack.consumer",
    "twinstack.nats.stream.replica_lag",
    "Operations a follower of the stream is behind its leader",
    _of_streams(
        lambda info: [
            (float(peer.lag or 0), {"replica": peer.name or ""})
            for peer in ((info.cluster.replicas or []) if info.cluster else [])
        ]
    ),
)
gauge(
    "twinstack.consumer",
    "twinstack.nats.stream.messages",
    "Messages stored in the stream",
    _of_streams(lambda info: [(float(info.state.messages or 0), {})]),
)


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
    # Deliveries of one message before its handler parks it as a dead letter.
    max_deliver: int = 5
    # First pause before a failed message is redelivered; doubled per delivery, up to 30 s.
    redelivery_backoff_s: float = 1.0

    @classmethod
    def for_telemetry(
        cls,
        durable: str,
        *,
        fetch_messages: int,
        fetch_timeout_s: float,
        ack_wait_s: float,
        batches_in_flight: int = 1,
        max_deliver: int = 5,
        redelivery_backoff_s: float = 1.0,
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
            max_deliver=max_deliver,
            redelivery_backoff_s=redelivery_backoff_s,
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
        self._state_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        settings = self._settings
        subscription = await retried_at_start(
            lambda: self._js.pull_subscribe(
                settings.subject,
                durable=settings.durable,
                stream=settings.stream,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=settings.ack_wait_s,
                    max_ack_pending=settings.fetch_messages
                    * max(8, 2 * settings.batches_in_flight),
                ),
            ),
            f"binding consumer {settings.durable}",
        )
        self._task = asyncio.create_task(self._run(subscription), name=settings.durable)
        self._state_task = asyncio.create_task(
            self._read_state(subscription), name=f"{settings.durable}-state"
        )

    async def stop(self) -> None:
        """Lets the batch in hand finish (up to ``ack_wait_s``), then stops."""
        self._stopping.set()
        if self._state_task is not None:
            await cancel_and_wait(self._state_task)
            _CONSUMERS.pop(self._settings.durable, None)
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._task, self._settings.ack_wait_s)
        except TimeoutError:
            await cancel_and_wait(self._task)

    async def pause(self, seconds: float) -> None:
        """Waits ``seconds``, or less if the consumer is being stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _read_state(self, subscription: JetStreamContext.PullSubscription) -> None:
        """Keeps the consumer's and its stream's last state for the lag and replica gauges."""
        settings = self._settings
        while True:
            try:
                _CONSUMERS[settings.durable] = await subscription.consumer_info()
                now = time.monotonic()
                # Several consumers of one stream (state partitions) share one read.
                if now - _STREAM_READS.get(settings.stream, 0.0) >= STATE_READ_INTERVAL_S:
                    _STREAM_READS[settings.stream] = now
                    _STREAMS[settings.stream] = await self._js.stream_info(settings.stream)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # The gauges keep their last values; the fetch loop reports the outage itself.
                logger.debug("%s: state not read: %r", settings.durable, error)
            await asyncio.sleep(STATE_READ_INTERVAL_S)

    async def _run(self, subscription: JetStreamContext.PullSubscription) -> None:
        settings = self._settings
        slots = asyncio.Semaphore(settings.batches_in_flight)
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping.is_set():
                await slots.acquire()
                try:
                    messages = await fetch(
                        subscription, settings.fetch_messages, settings.fetch_timeout_s
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
        with span(
            tracer,
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


class DeadLetters:
    """Gives up on messages that keep failing: each is parked on
    ``evt.<area>.deadletter.<last subject token>`` with its original data, subject and the reason
    in headers, then acknowledged, so that it never holds back the messages behind it.

    Args:
        js: JetStream, to publish the dead letters.
        event: Where its dead letters go (``INGESTION_DEAD_LETTER``, ``STATE_DEAD_LETTER``).
        settings: The consumer's settings (its name, delivery limit and backoff).
    """

    def __init__(
        self, js: JetStreamContext, event: EventType, settings: PullConsumerSettings
    ) -> None:
        self._events = EventPublisher(js)
        self._event = event
        self._settings = settings
        # The series exists from the start: "no dead letters" is a 0, not an absent metric.
        _DEAD_LETTERS.add(0, {"consumer": settings.durable})

    async def park(self, message: Msg, reason: str, *, key: str | None = None) -> None:
        """Parks ``message`` now (a failure that no retry can mend), under ``key`` (by
        default the last token of its subject: the twin id of a telemetry subject)."""
        key = key or message.subject.rsplit(".", 1)[-1] or "unknown"
        await self._events.publish(
            self._event,
            (key,),
            message.data,
            msg_id=f"dlq:{self._settings.durable}:{message.metadata.sequence.stream}",
            headers={
                DEAD_LETTER_REASON_HEADER: reason[:1024],
                ORIGINAL_SUBJECT_HEADER: message.subject,
            },
        )
        await message.ack()
        _DEAD_LETTERS.add(1, {"consumer": self._settings.durable})
        logger.error(
            "message dead-lettered",
            extra={
                "consumer": self._settings.durable,
                "reason": reason,
                "subject": message.subject,
            },
        )

    async def retry_or_park(self, message: Msg, error: BaseException, reason: str) -> None:
        """Asks for a redelivery after a growing pause, or parks ``message`` once it has been
        delivered ``max_deliver`` times, unless ``error`` is transient (:data:`TRANSIENT_ERRORS`,
        or a cluster in flux: :func:`nats_unavailable`): then it is redelivered however often it
        takes."""
        delivered = message.metadata.num_delivered or 1
        transient = isinstance(error, TRANSIENT_ERRORS) or nats_unavailable(error)
        if delivered >= self._settings.max_deliver and not transient:
            await self.park(message, f"{reason} (after {delivered} deliveries)")
            return
        delay_s = min(30.0, self._settings.redelivery_backoff_s * 2 ** (delivered - 1))
        await message.nak(delay=delay_s)


def _publisher_links(messages: list[Msg]) -> list[trace.Link]:
    if not tracing_enabled():
        return []
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
