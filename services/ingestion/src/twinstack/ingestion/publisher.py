"""Publishing telemetry batches to JetStream, acknowledged before the caller is answered."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from nats.js import JetStreamContext
from opentelemetry import metrics, trace

from twinstack.api.common.v1 import events_pb2
from twinstack.common.errors import ResourceExhaustedError, UnavailableError
from twinstack.common.nats import (
    TELEMETRY_STREAM,
    message_headers,
    nats_unavailable,
    telemetry_subject,
)
from twinstack.common.tracing import span

_tracer = trace.get_tracer("twinstack.ingestion")
_POINTS_PUBLISHED = metrics.get_meter("twinstack.ingestion").create_counter(
    "twinstack.ingestion.points_published",
    description="Points acknowledged by the TELEMETRY stream (retried copies included)",
)


@dataclass(frozen=True)
class PublishResult:
    messages: int
    duplicates: int


def dedup_id(batch: events_pb2.TelemetryBatch) -> str:
    """A de-duplication id from the batch's content (before its ingest time is set).

    A client that retries an identical request after a lost answer produces the same ids, so
    JetStream drops the copies inside its duplicate window.
    """
    digest = hashlib.blake2b(batch.SerializeToString(deterministic=True), digest_size=16)
    return f"tel:{digest.hexdigest()}"


class TelemetryPublisher:
    """Publishes one message per twin batch and waits for every JetStream ack.

    A bounded number of publishes is in flight at once across all calls: when the stream falls
    behind, callers are pushed back with RESOURCE_EXHAUSTED instead of queueing without limit.
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        partitions: int,
        max_in_flight: int,
        slot_wait_s: float,
    ) -> None:
        self._js = js
        self._partitions = partitions
        self._slots = asyncio.Semaphore(max_in_flight)
        self._slot_wait_s = slot_wait_s
        _POINTS_PUBLISHED.add(0)  # present from the start: 0, not an absent series

    async def publish(self, batches: list[events_pb2.TelemetryBatch]) -> PublishResult:
        """Publishes all batches; raises if any was not acknowledged.

        A failure after some batches were acknowledged is safe to retry whole: the retried
        copies carry the same de-duplication ids and are dropped by the stream.
        """
        acks = await asyncio.gather(*(self._publish_one(batch) for batch in batches))
        _POINTS_PUBLISHED.add(sum(len(batch.frame.time_unix_ns) for batch in batches))
        return PublishResult(messages=len(acks), duplicates=sum(acks))

    async def _publish_one(self, batch: events_pb2.TelemetryBatch) -> bool:
        msg_id = dedup_id(batch)
        batch.ingest_time.GetCurrentTime()
        try:
            async with asyncio.timeout(self._slot_wait_s):
                await self._slots.acquire()
        except TimeoutError as error:
            raise ResourceExhaustedError(
                "ingestion is at its limit of publishes in flight; retry with backoff",
                retry_after_s=self._slot_wait_s,
            ) from error
        subject = telemetry_subject(batch.frame.twin_id, self._partitions)
        try:
            # The message carries this span's context: the historian's and state's batch spans
            # link to it.
            with span(
                _tracer,
                f"{TELEMETRY_STREAM} publish",
                kind=trace.SpanKind.PRODUCER,
                attributes={"messaging.system": "nats", "messaging.destination.name": subject},
            ):
                ack = await self._js.publish(
                    subject,
                    batch.SerializeToString(),
                    stream=TELEMETRY_STREAM,
                    headers=message_headers(msg_id),
                )
        except Exception as error:
            if nats_unavailable(error):
                raise UnavailableError(
                    f"telemetry stream did not acknowledge: {error!r}"
                ) from error
            raise
        finally:
            self._slots.release()
        return bool(ack.duplicate)
