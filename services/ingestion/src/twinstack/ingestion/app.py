"""The ingestion service as the server bootstrap runs it: its dependencies acquired in order
and released in reverse, and its servicer registered."""

from __future__ import annotations

import contextlib

from twinstack.api.ingestion.v1 import ingestion_pb2_grpc
from twinstack.common.app import Registration, ServiceApp, started
from twinstack.common.catalog import ModelCatalog
from twinstack.common.consumer import PullConsumerSettings
from twinstack.common.nats import REGISTRY_BUCKET, key_value
from twinstack.ingestion.batching import BatchValidator
from twinstack.ingestion.historian import Historian
from twinstack.ingestion.publisher import TelemetryPublisher
from twinstack.ingestion.service import SERVICE_NAME, IngestionServicer
from twinstack.ingestion.settings import IngestionSettings


class IngestionApp(ServiceApp[IngestionSettings]):
    """Ingestion and, unless disabled, the historian, as the server bootstrap runs them."""

    service_names = (SERVICE_NAME,)

    async def open(self, resources: contextlib.AsyncExitStack) -> Registration:
        settings = self.settings
        backbone = await self.backbone(resources, "twinstack-ingestion")
        # The graph: for the twins subgraph scopes cover.
        registry_bucket = await key_value(backbone.js, REGISTRY_BUCKET)
        catalog = await started(resources, ModelCatalog(registry_bucket, follow_graph=True))
        publisher = TelemetryPublisher(
            backbone.js,
            partitions=settings.telemetry_partitions,
            max_in_flight=settings.max_publishes_in_flight,
            slot_wait_s=settings.publish_slot_wait_s,
        )
        if settings.historian_enabled:
            historian = Historian(
                backbone.js,
                await self.influx(resources),
                PullConsumerSettings.for_telemetry(
                    settings.historian_durable,
                    fetch_messages=settings.historian_fetch_messages,
                    fetch_timeout_s=settings.historian_fetch_timeout_s,
                    ack_wait_s=settings.historian_ack_wait_s,
                    batches_in_flight=settings.historian_batches_in_flight,
                ),
                max_backoff_s=settings.historian_retry_max_backoff_s,
            )
            await started(resources, historian)
        validator = BatchValidator(
            catalog,
            max_points=settings.max_points_per_request,
            max_message_bytes=settings.max_message_bytes,
            max_twins=settings.max_twins_per_request,
            max_payload_bytes=backbone.client.max_payload,
        )
        servicer = IngestionServicer(settings, validator, publisher, self.quota_overrides)
        return lambda server: ingestion_pb2_grpc.add_IngestionServiceServicer_to_server(
            servicer, server
        )
