"""The historian: a durable pull consumer that persists the TELEMETRY stream into InfluxDB.

A message is acknowledged only after its points were written, so a crash at any moment means
redelivery, never loss; redelivery is harmless because InfluxDB keys a point by series and
timestamp, and rewriting it stores it once. Server errors and network failures are retried
with backoff (honouring Retry-After) for as long as it takes; a message InfluxDB rejects as
malformed is isolated from its batch and parked on a dead-letter subject with the reason.
Only such definitive failures are dead-lettered: a transient one is retried however many times it
takes, because the number of deliveries says nothing about whether the next write can succeed.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import metrics, trace

from twinstack.api.common.v1 import events_pb2
from twinstack.common.consumer import DeadLetters, PullConsumer, PullConsumerSettings
from twinstack.common.events import INGESTION_DEAD_LETTER
from twinstack.common.frames import frame_lines
from twinstack.common.influx import InfluxError, InfluxStore
from twinstack.common.series import MEASUREMENTS, TWIN_ID_TAG
from twinstack.common.tracing import span

logger = logging.getLogger(__name__)
_meter = metrics.get_meter("twinstack.historian")
_tracer = trace.get_tracer("twinstack.historian")
_POINTS_WRITTEN = _meter.create_counter(
    "twinstack.historian.points_written", description="Points stored in InfluxDB and acknowledged"
)
_WRITE_RETRIES = _meter.create_counter(
    "twinstack.historian.write_retries", description="InfluxDB writes put back for a retry"
)
_WRITE_DURATION = _meter.create_histogram(
    "twinstack.historian.write.duration",
    unit="s",
    description="Duration of a batch write to InfluxDB, by outcome (ok, retry, rejected)",
)


def batch_lines(batch: events_pb2.TelemetryBatch) -> list[str]:
    """The batch in line protocol, in the layout of :mod:`twinstack.common.series`.

    Raises:
        ValueError: a value line protocol cannot carry (NaN, infinity, a column without values).
            Ingestion rejects those; a message published around it is poison.
    """
    return list(frame_lines(batch.frame, MEASUREMENTS, TWIN_ID_TAG))


class Historian:
    """Consumes the TELEMETRY stream into InfluxDB until stopped.

    Args:
        js: JetStream.
        store: Where points go.
        consumer: The durable consumer to read with.
        max_backoff_s: Longest wait between retries of a failed write.
    """

    def __init__(
        self,
        js: JetStreamContext,
        store: InfluxStore,
        consumer: PullConsumerSettings,
        *,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._js = js
        self._store = store
        self._max_backoff_s = max_backoff_s
        self._consumer = PullConsumer(js, consumer, self._persist)
        self._dead_letters = DeadLetters(js, INGESTION_DEAD_LETTER, consumer)
        self._failures = 0

    async def start(self) -> None:
        # Present from the start: dashboards and alerts see 0, not an absent series.
        _POINTS_WRITTEN.add(0)
        _WRITE_RETRIES.add(0)
        await self._consumer.start()

    async def stop(self) -> None:
        """Finishes the batch in hand, then stops; unacknowledged messages are redelivered."""
        await self._consumer.stop()

    async def _persist(self, messages: list[Msg]) -> None:
        decoded: list[tuple[Msg, list[str]]] = []
        for message in messages:
            try:
                decoded.append(
                    (message, batch_lines(events_pb2.TelemetryBatch.FromString(message.data)))
                )
            except DecodeError as error:
                await self._dead_letters.park(message, f"undecodable telemetry batch: {error}")
            except ValueError as error:
                await self._dead_letters.park(message, f"a value InfluxDB cannot store: {error}")
        if not decoded:
            return
        started = time.perf_counter()
        lines = [line for _, message_lines in decoded for line in message_lines]
        try:
            with span(
                _tracer,
                "influxdb write",
                kind=trace.SpanKind.CLIENT,
                attributes={"db.system": "influxdb", "db.operation": "write", "points": len(lines)},
            ):
                await self._store.write_lines(lines)
        except InfluxError as error:
            outcome = "retry" if error.retryable else "rejected"
            _WRITE_DURATION.record(time.perf_counter() - started, {"outcome": outcome})
            if error.retryable:
                await self._retry_later(decoded, error)
                return
            # One bad message must not hold back the good ones it was batched with.
            await self._persist_one_by_one(decoded)
            return
        _WRITE_DURATION.record(time.perf_counter() - started, {"outcome": "ok"})
        await self._ack(decoded)

    async def _persist_one_by_one(self, decoded: list[tuple[Msg, list[str]]]) -> None:
        for index, (message, points) in enumerate(decoded):
            try:
                await self._store.write_lines(points)
            except InfluxError as error:
                if error.retryable:
                    # InfluxDB went away meanwhile: the rest waits out one backoff together.
                    await self._retry_later(decoded[index:], error)
                    return
                await self._dead_letters.park(message, f"InfluxDB rejected the points: {error}")
                continue
            await self._ack([(message, points)])

    async def _ack(self, decoded: list[tuple[Msg, list[str]]]) -> None:
        for message, points in decoded:
            await message.ack()
            _POINTS_WRITTEN.add(len(points))
        self._failures = 0

    async def _retry_later(self, decoded: list[tuple[Msg, list[str]]], error: InfluxError) -> None:
        logger.warning("InfluxDB write failed; will retry: %s", error)
        _WRITE_RETRIES.add(1)
        # Wait here rather than in the stream: the next fetch gets the same messages back.
        await self._backoff(error.retry_after_s)
        for message, _ in decoded:
            with contextlib.suppress(Exception):
                await message.nak()

    async def _backoff(self, retry_after_s: float | None) -> None:
        self._failures += 1
        exponential = min(self._max_backoff_s, 0.25 * 2 ** min(self._failures, 10))
        delay_s = retry_after_s if retry_after_s is not None else exponential
        await self._consumer.pause(min(delay_s, self._max_backoff_s) * random.uniform(0.8, 1.2))
