"""The ingestion service's calls: telemetry into the platform."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator

import grpc

from twinstack.api.common.v1 import types_pb2
from twinstack.api.ingestion.v1 import ingestion_pb2
from twinstack.sdk._transport import AsyncArea, SyncArea, Unary, async_call, sync_call
from twinstack.sdk.errors import ApiError, UnavailableError
from twinstack.sdk.points import Point

# Per-batch outcomes after which the same batch may succeed when sent again.
_RESEND_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE.value[0], grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]}
)
# Stream failures that a new connection may cure (a service restarting, a rollout).
_RECONNECT_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN}
)
_RECONNECT_PAUSE_S = 0.2
_MIN_RESEND_PAUSE_S = 0.05


def ingest(
    points: Iterable[Point] = (), frames: Iterable[types_pb2.TelemetryFrame] = ()
) -> Unary[ingestion_pb2.IngestBatchResponse]:
    """Ingests points and frames in one batch, validated against the twins' models.

    Args:
        points: Single samples.
        frames: Columnar samples of one twin each (see :func:`twinstack.sdk.make_frame`).

    Returns:
        How many points were accepted, once all are durable in the telemetry stream.

    Raises:
        InvalidArgumentError: A point does not fit its twin's model; nothing was ingested.
    """
    request = ingestion_pb2.IngestBatchRequest(
        points=[point.to_proto() for point in points], frames=list(frames)
    )
    return Unary("ingestion", "IngestBatch", request)


def ingest_batch(
    request: ingestion_pb2.IngestBatchRequest,
) -> Unary[ingestion_pb2.IngestBatchResponse]:
    """Ingests a request built by the caller (for producers that keep protos at hand).

    Args:
        request: The batch.
    """
    return Unary("ingestion", "IngestBatch", request)


class ResendWindow:
    """The batches of an ingest stream that are sent but not yet acknowledged.

    Numbers batches as they are sent; after a lost connection or a "try again" answer every
    unacknowledged batch is sent again, in order (the stream de-duplicates, so a batch that did
    arrive is not stored twice). Gives up when nothing was acknowledged for
    ``reconnect_timeout_s``.
    """

    def __init__(self, reconnect_timeout_s: float) -> None:
        self.reconnect_timeout_s = reconnect_timeout_s
        self.unacknowledged: list[ingestion_pb2.IngestStreamRequest] = []
        self._next_sequence = 1
        self._progress_at = time.monotonic()

    def send(self, batch: ingestion_pb2.IngestStreamRequest) -> ingestion_pb2.IngestStreamRequest:
        """Numbers a new batch and remembers it until it is acknowledged."""
        batch.sequence = self._next_sequence
        self._next_sequence += 1
        self.unacknowledged.append(batch)
        return batch

    def resend(self) -> list[ingestion_pb2.IngestStreamRequest]:
        """What a new connection sends first."""
        return list(self.unacknowledged)

    def answer(self, ack: ingestion_pb2.IngestStreamResponse) -> float | None:
        """Takes the service's answer to the oldest batch.

        Returns:
            None when the batch is done (acknowledged, or rejected for good: the caller sees
            it), or the pause before resending everything unacknowledged.
        """
        if ack.code in _RESEND_CODES:
            return max(ack.retry_after_ms / 1000, _MIN_RESEND_PAUSE_S)
        self.unacknowledged.pop(0)
        self._progress_at = time.monotonic()
        return None

    def broken(self, error: grpc.RpcError) -> float:
        """Takes a broken stream; the pause before reconnecting.

        Raises:
            ApiError: The failure is not one a new connection cures.
        """
        if error.code() not in _RECONNECT_CODES:
            raise ApiError.from_rpc_error(error) from error
        return _RECONNECT_PAUSE_S

    def check_progress(self) -> None:
        """Raises UnavailableError when nothing was acknowledged for too long."""
        if time.monotonic() - self._progress_at > self.reconnect_timeout_s:
            raise UnavailableError(
                grpc.StatusCode.UNAVAILABLE,
                f"no batch acknowledged for {self.reconnect_timeout_s:g} s; giving up",
            )


class Telemetry(SyncArea):
    """Telemetry into the platform (``client.telemetry``)."""

    ingest = sync_call(ingest)
    ingest_batch = sync_call(ingest_batch)

    def ingest_stream(
        self,
        batches: Iterable[ingestion_pb2.IngestStreamRequest],
        *,
        reconnect_timeout_s: float = 60.0,
    ) -> Iterator[ingestion_pb2.IngestStreamResponse]:
        """Streams batches and yields each one's final answer, in order.

        Sequence numbers are assigned here. A batch the service could not make durable for now
        (UNAVAILABLE, RESOURCE_EXHAUSTED), and every batch unacknowledged when the connection
        breaks (a service restarting), is sent again until it is acknowledged. A rejected batch
        (INVALID_ARGUMENT) is yielded with its violations and not resent.

        Args:
            batches: The batches, produced as they are needed.
            reconnect_timeout_s: Give up when nothing was acknowledged for this long.

        Raises:
            UnavailableError: Nothing was acknowledged for ``reconnect_timeout_s``.
        """
        window = ResendWindow(reconnect_timeout_s)
        source = iter(batches)

        def requests() -> Iterator[ingestion_pb2.IngestStreamRequest]:
            yield from window.resend()
            for batch in source:
                yield window.send(batch)

        stream = self._transport.method("ingestion", "IngestStream")
        metadata = self._transport.config.metadata
        while True:
            pause_s: float | None = None
            call = stream(requests(), metadata=metadata)
            try:
                for ack in call:
                    pause_s = window.answer(ack)
                    if pause_s is not None:
                        break
                    yield ack
                else:
                    if not window.unacknowledged:
                        return
            except grpc.RpcError as error:
                pause_s = window.broken(error)
            finally:
                # Stops the old call's request thread from taking further batches.
                call.cancel()
            window.check_progress()
            time.sleep(pause_s or 0.0)


class AsyncTelemetry(AsyncArea):
    """Telemetry into the platform (``client.telemetry`` of an :class:`AsyncClient`)."""

    ingest = async_call(ingest)
    ingest_batch = async_call(ingest_batch)

    async def ingest_stream(
        self,
        batches: AsyncIterable[ingestion_pb2.IngestStreamRequest],
        *,
        reconnect_timeout_s: float = 60.0,
    ) -> AsyncIterator[ingestion_pb2.IngestStreamResponse]:
        """Streams batches and yields each one's final answer, in order.

        The same as :meth:`Telemetry.ingest_stream`, for asyncio: batches come from an async
        iterable, and what was not acknowledged is sent again after a lost connection.

        Args:
            batches: The batches, produced as they are needed.
            reconnect_timeout_s: Give up when nothing was acknowledged for this long.

        Raises:
            UnavailableError: Nothing was acknowledged for ``reconnect_timeout_s``.
        """
        window = ResendWindow(reconnect_timeout_s)
        source = aiter(batches)

        async def requests() -> AsyncIterator[ingestion_pb2.IngestStreamRequest]:
            for batch in window.resend():
                yield batch
            async for batch in source:
                yield window.send(batch)

        stream = self._transport.method("ingestion", "IngestStream")
        metadata = self._transport.config.metadata
        while True:
            pause_s: float | None = None
            call = stream(requests(), metadata=metadata)
            try:
                async for ack in call:
                    pause_s = window.answer(ack)
                    if pause_s is not None:
                        break
                    yield ack
                else:
                    if not window.unacknowledged:
                        return
            except grpc.RpcError as error:
                pause_s = window.broken(error)
            finally:
                call.cancel()
            window.check_progress()
            await asyncio.sleep(pause_s or 0.0)
