"""The ingestion service as the server bootstrap runs it: its dependencies acquired in order
and released in reverse, and its servicer registered."""

from __future__ import annotations

import contextlib

import grpc

from twinstack.api.devices.v1 import devices_pb2_grpc
from twinstack.api.ingestion.v1 import ingestion_pb2_grpc
from twinstack.common.app import Registration, ServiceApp, started
from twinstack.common.catalog import ModelCatalog
from twinstack.common.consumer import DeadLetters, PullConsumerSettings
from twinstack.common.events import INGESTION_DEAD_LETTER
from twinstack.common.nats import (
    DEVICE_GATEWAY_BUCKET,
    DEVICES_BUCKET,
    REGISTRY_BUCKET,
    Backbone,
    NatsConnection,
    key_value,
)
from twinstack.ingestion.batching import BatchValidator
from twinstack.ingestion.device_service import DEVICE_SERVICE_NAME, DeviceServicer
from twinstack.ingestion.devices.bridge import BridgeLimits, DeviceBridge
from twinstack.ingestion.devices.commands import CommandInvoker
from twinstack.ingestion.devices.directory import DeviceDirectory
from twinstack.ingestion.devices.gateway import DeviceGateway, GatewaySettings
from twinstack.ingestion.devices.mapping import DeviceMapping
from twinstack.ingestion.devices.mqtt_client import MqttEndpoint
from twinstack.ingestion.devices.sparkplug import SparkplugSessions
from twinstack.ingestion.historian import Historian
from twinstack.ingestion.publisher import TelemetryPublisher
from twinstack.ingestion.service import SERVICE_NAME, IngestionServicer
from twinstack.ingestion.settings import IngestionSettings


class IngestionApp(ServiceApp[IngestionSettings]):
    """Ingestion and, unless disabled, the historian, as the server bootstrap runs them."""

    service_names = (SERVICE_NAME, DEVICE_SERVICE_NAME)

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
        directory = DeviceDirectory(
            await key_value(backbone.js, DEVICES_BUCKET),
            flush_interval_s=settings.device_directory_flush_interval_s,
            silent_after_s=settings.device_silent_after_s,
        )
        if settings.device_gateway_enabled:
            gateway = await self._gateway(backbone, catalog, validator, publisher, directory)
            await started(resources, gateway)
        devices = DeviceServicer(
            catalog,
            directory,
            CommandInvoker(
                backbone.client,
                catalog,
                default_timeout_s=settings.command_timeout_s,
                max_timeout_s=settings.max_command_timeout_s,
            ),
        )

        def register(server: grpc.aio.Server) -> None:
            ingestion_pb2_grpc.add_IngestionServiceServicer_to_server(servicer, server)
            devices_pb2_grpc.add_DeviceServiceServicer_to_server(devices, server)

        return register

    async def _gateway(
        self,
        backbone: Backbone,
        catalog: ModelCatalog,
        validator: BatchValidator,
        publisher: TelemetryPublisher,
        directory: DeviceDirectory,
    ) -> DeviceGateway:
        settings = self.settings
        connection = NatsConnection.from_settings(settings)
        mapping = DeviceMapping.load(settings.device_mapping_file)
        mqtt = (
            None
            if settings.mqtt_url is None
            else MqttEndpoint(
                settings.mqtt_url,
                connection.user,
                connection.password,
                connection.tls_context(),
            )
        )
        gateway_settings = GatewaySettings(
            member=settings.device_gateway_member,
            mqtt=mqtt,
            mapping=mapping,
            fetch_messages=settings.device_fetch_messages,
            ack_wait_s=settings.device_ack_wait_s,
            renew_interval_s=settings.device_gateway_renew_interval_s,
        )
        sessions = SparkplugSessions(mapping.sparkplug)
        bridge = DeviceBridge(
            backbone.client,
            catalog,
            validator,
            publisher,
            DeadLetters(backbone.js, INGESTION_DEAD_LETTER, gateway_settings.bridge_consumer),
            directory,
            sessions,
            BridgeLimits(settings.max_readings_per_message, settings.max_future_skew_s),
        )
        return DeviceGateway(
            backbone.client,
            backbone.js,
            await key_value(backbone.js, DEVICE_GATEWAY_BUCKET),
            directory,
            sessions,
            bridge,
            gateway_settings,
        )
