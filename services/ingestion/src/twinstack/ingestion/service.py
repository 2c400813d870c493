"""The ingestion service's gRPC surface, and its start and stop."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Sequence

import grpc

from twinstack.api.common.v1 import types_pb2
from twinstack.api.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from twinstack.common.errors import (
    InvalidArgumentError,
    LimitExceededError,
    QuotaExceededError,
    ResourceExhaustedError,
    UnavailableError,
)
from twinstack.common.gatekeeper import current_principal, require_devices_twins
from twinstack.common.quotas import QuotaOverrides, TenantRate, no_overrides
from twinstack.ingestion.batching import BatchValidator
from twinstack.ingestion.publisher import PublishResult, TelemetryPublisher
from twinstack.ingestion.settings import IngestionSettings

SERVICE_NAME = ingestion_pb2.DESCRIPTOR.services_by_name["IngestionService"].full_name


class IngestionServicer(ingestion_pb2_grpc.IngestionServiceServicer):
    def __init__(
        self,
        settings: IngestionSettings,
        validator: BatchValidator,
        publisher: TelemetryPublisher,
        quotas: QuotaOverrides = no_overrides,
    ) -> None:
        self._settings = settings
        self._validator = validator
        self._publisher = publisher
        self._tenant_rate = TenantRate(
            settings.tenant_ingest_points_per_s,
            settings.tenant_ingest_burst_s,
            quota="TWINSTACK_TENANT_INGEST_POINTS_PER_S",
            what="points",
            overrides=quotas,
            name="ingest_points_per_s",
        )

    async def _ingest(
        self,
        points: Sequence[types_pb2.TelemetryPoint],
        frames: Sequence[types_pb2.TelemetryFrame],
    ) -> tuple[int, PublishResult]:
        principal = current_principal()
        require_devices_twins(
            principal,
            itertools.chain((p.twin_id for p in points), (f.twin_id for f in frames)),
        )
        await self._tenant_rate.wait_turn(
            principal.tenant, max_wait_s=self._settings.publish_slot_wait_s
        )
        latest_allowed_ns = time.time_ns() + int(self._settings.max_future_skew_s * 1e9)
        batches = await self._validator.validate(
            points, frames, latest_allowed_ns=latest_allowed_ns
        )
        accepted = sum(len(batch.frame.time_unix_ns) for batch in batches)
        self._tenant_rate.take(principal.tenant, accepted)
        result = await self._publisher.publish(batches)
        return accepted, result

    async def IngestBatch(
        self,
        request: ingestion_pb2.IngestBatchRequest,
        context: grpc.aio.ServicerContext[
            ingestion_pb2.IngestBatchRequest, ingestion_pb2.IngestBatchResponse
        ],
    ) -> ingestion_pb2.IngestBatchResponse:
        accepted, result = await self._ingest(request.points, request.frames)
        return ingestion_pb2.IngestBatchResponse(
            accepted_points=accepted,
            published_messages=result.messages,
            duplicate_messages=result.duplicates,
        )

    async def IngestStream(
        self,
        request_iterator: AsyncIterator[ingestion_pb2.IngestStreamRequest],
        context: grpc.aio.ServicerContext[
            ingestion_pb2.IngestStreamRequest, ingestion_pb2.IngestStreamResponse
        ],
    ) -> AsyncIterator[ingestion_pb2.IngestStreamResponse]:
        # Batches are worked on concurrently but acknowledged in the order they came; the
        # reader stops reading while the window is full.
        window = asyncio.Semaphore(self._settings.stream_batches_in_flight)
        in_order: asyncio.Queue[asyncio.Task[ingestion_pb2.IngestStreamResponse] | None] = (
            asyncio.Queue()
        )

        async def read() -> None:
            async for request in request_iterator:
                await window.acquire()
                in_order.put_nowait(asyncio.create_task(self._acknowledge(request)))
            in_order.put_nowait(None)

        def wake_writer_on_failure(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                in_order.put_nowait(None)

        reader = asyncio.create_task(read())
        reader.add_done_callback(wake_writer_on_failure)
        try:
            while (task := await in_order.get()) is not None:
                response = await task
                window.release()
                yield response
            await reader
        finally:
            reader.cancel()
            while not in_order.empty():
                leftover = in_order.get_nowait()
                if leftover is not None:
                    leftover.cancel()

    async def _acknowledge(
        self, request: ingestion_pb2.IngestStreamRequest
    ) -> ingestion_pb2.IngestStreamResponse:
        response = ingestion_pb2.IngestStreamResponse(sequence=request.sequence)
        try:
            accepted, result = await self._ingest(request.points, request.frames)
        except (InvalidArgumentError, LimitExceededError) as error:
            response.code = error.code.value[0]
            response.message = error.message
            response.violations.extend(
                ingestion_pb2.PointViolation(field=v.field, description=v.description)
                for v in error.violations
            )
            return response
        except (UnavailableError, ResourceExhaustedError, QuotaExceededError) as error:
            response.code = error.code.value[0]
            response.message = error.message
            response.retry_after_ms = int((error.retry_after_s or 1.0) * 1000)
            return response
        response.accepted_points = accepted
        response.published_messages = result.messages
        response.duplicate_messages = result.duplicates
        return response
