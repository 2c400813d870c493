"""The ingestion service's gRPC surface, and its start and stop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import grpc

from twinstack.api.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from twinstack.common.consumer import PullConsumerSettings
from twinstack.common.directory import TwinDirectory
from twinstack.common.ids import TWIN_ID_PATTERN
from twinstack.common.influx import InfluxStore
from twinstack.common.nats import REGISTRY_BUCKET, Backbone, key_value
from twinstack.ingestion.batching import check_points, check_size, group_by_twin
from twinstack.ingestion.historian import Historian
from twinstack.ingestion.publisher import TelemetryPublisher
from twinstack.ingestion.settings import IngestionSettings

SERVICE_NAME = ingestion_pb2.DESCRIPTOR.services_by_name["IngestionService"].full_name


class IngestionServicer(ingestion_pb2_grpc.IngestionServiceServicer):
    def __init__(
        self, settings: IngestionSettings, directory: TwinDirectory, publisher: TelemetryPublisher
    ) -> None:
        self._settings = settings
        self._directory = directory
        self._publisher = publisher

    async def IngestBatch(
        self,
        request: ingestion_pb2.IngestBatchRequest,
        context: grpc.aio.ServicerContext[
            ingestion_pb2.IngestBatchRequest, ingestion_pb2.IngestBatchResponse
        ],
    ) -> ingestion_pb2.IngestBatchResponse:
        points = request.points
        check_size(points, self._settings.max_points_per_request)
        # Only well-formed ids are looked up: a malformed one never reaches a KV key.
        twin_ids = sorted({p.twin_id for p in points if TWIN_ID_PATTERN.fullmatch(p.twin_id)})
        twins = await asyncio.gather(*(self._directory.get(twin_id) for twin_id in twin_ids))
        models = {
            twin_id: (twin.model_id if twin is not None else None)
            for twin_id, twin in zip(twin_ids, twins, strict=True)
        }
        latest_allowed_ns = time.time_ns() + int(self._settings.max_future_skew_s * 1e9)
        check_points(points, models, latest_allowed_ns=latest_allowed_ns)
        result = await self._publisher.publish(group_by_twin(points, models))
        return ingestion_pb2.IngestBatchResponse(
            accepted_points=len(points),
            published_messages=result.messages,
            duplicate_messages=result.duplicates,
        )


class IngestionApp:
    """Ingestion and, unless disabled, the historian, as the server bootstrap runs them."""

    service_names: Sequence[str] = (SERVICE_NAME,)

    def __init__(self, settings: IngestionSettings) -> None:
        self._settings = settings
        self._backbone: Backbone | None = None
        self._directory: TwinDirectory | None = None
        self._publisher: TelemetryPublisher | None = None
        self._store: InfluxStore | None = None
        self._historian: Historian | None = None

    async def start(self) -> None:
        settings = self._settings
        self._backbone = await Backbone.connect(settings, "twinstack-ingestion")
        self._directory = TwinDirectory(await key_value(self._backbone.js, REGISTRY_BUCKET))
        await self._directory.start()
        self._publisher = TelemetryPublisher(
            self._backbone.js,
            partitions=settings.telemetry_partitions,
            max_in_flight=settings.max_publishes_in_flight,
            slot_wait_s=settings.publish_slot_wait_s,
        )
        if settings.historian_enabled:
            self._store = InfluxStore.from_settings(settings)
            await self._store.connect()
            self._historian = Historian(
                self._backbone.js,
                self._store,
                PullConsumerSettings.for_telemetry(
                    settings.historian_durable,
                    fetch_messages=settings.historian_fetch_messages,
                    fetch_timeout_s=settings.historian_fetch_timeout_s,
                    ack_wait_s=settings.historian_ack_wait_s,
                ),
                max_backoff_s=settings.historian_retry_max_backoff_s,
            )
            await self._historian.start()

    def register(self, server: grpc.aio.Server) -> None:
        assert self._directory is not None, "start() first"
        assert self._publisher is not None, "start() first"
        ingestion_pb2_grpc.add_IngestionServiceServicer_to_server(
            IngestionServicer(self._settings, self._directory, self._publisher), server
        )

    async def stop(self) -> None:
        if self._historian is not None:
            await self._historian.stop()
        if self._directory is not None:
            await self._directory.stop()
        if self._store is not None:
            await self._store.close()
        if self._backbone is not None:
            await self._backbone.close()
