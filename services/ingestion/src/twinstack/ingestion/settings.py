"""Ingestion settings (``TWINSTACK_*``)."""

import os
import socket
from pathlib import Path

from pydantic import Field, field_validator

from twinstack.common.settings import ServiceSettings


class IngestionSettings(ServiceSettings):
    grpc_port: int = Field(default=50052, ge=0, le=65535)
    max_points_per_request: int = Field(default=100_000, gt=0)
    # Distinct twins in one request (each is looked up before validation).
    max_twins_per_request: int = Field(default=10_000, gt=0)
    # Frames larger than this are cut into several stream messages (NATS caps a message at
    # max_payload, 1 MiB by default).
    max_message_bytes: int = Field(default=512 * 1024, ge=1024)
    # Batches of one IngestStream call validated and published at once; while they are, the
    # stream is not read, so gRPC flow control holds the client back.
    stream_batches_in_flight: int = Field(default=4, gt=0)
    # Source timestamps later than now plus this are rejected: a clock gone wrong at the source.
    max_future_skew_s: float = Field(default=300.0, ge=0)
    # Stream messages awaiting their JetStream ack at once, across all calls. A call that
    # cannot get a slot within publish_slot_wait_s is pushed back with RESOURCE_EXHAUSTED.
    max_publishes_in_flight: int = Field(default=512, gt=0)
    publish_slot_wait_s: float = Field(default=2.0, gt=0)
    # Points per second one tenant may send to this replica, with bursts of this many seconds'
    # worth; a request over it is held up to publish_slot_wait_s, then refused (QUOTA_EXCEEDED).
    tenant_ingest_points_per_s: float = Field(default=1_000_000.0, gt=0)
    tenant_ingest_burst_s: float = Field(default=2.0, gt=0)

    historian_enabled: bool = True
    historian_durable: str = "historian"
    historian_fetch_messages: int = Field(default=256, gt=0)
    historian_fetch_timeout_s: float = Field(default=1.0, gt=0)
    # Batches written at once: while InfluxDB parses one, the next is fetched and formatted.
    historian_batches_in_flight: int = Field(default=2, gt=0)
    # Redelivery after a crash waits this long; an InfluxDB write is bounded by influx_timeout_s.
    historian_ack_wait_s: float = Field(default=30.0, gt=0)
    historian_retry_max_backoff_s: float = Field(default=30.0, gt=0)

    # The device gateway (docs/devices.md). Its leader lease is held by one replica at a time,
    # named by device_gateway_member.
    device_gateway_enabled: bool = True
    device_gateway_member: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}", min_length=1
    )
    device_gateway_renew_interval_s: float = Field(default=1.0, gt=0)
    # nats-server's MQTT listener, where the gateway publishes retained desired values (as
    # this service's NATS user); unset: desired values reach Sparkplug and OPC UA devices only.
    mqtt_url: str | None = None
    # Sparkplug B and OPC UA mappings (YAML).
    device_mapping_file: Path | None = None
    device_fetch_messages: int = Field(default=256, gt=0)
    device_ack_wait_s: float = Field(default=30.0, gt=0)
    # Readings in one device message.
    max_readings_per_message: int = Field(default=10_000, gt=0)
    # An MQTT device silent this long is listed offline.
    device_silent_after_s: float = Field(default=60.0, gt=0)
    device_directory_flush_interval_s: float = Field(default=2.0, gt=0)
    # How long InvokeCommand waits for a device when the caller does not say, and at most.
    command_timeout_s: float = Field(default=10.0, gt=0)
    max_command_timeout_s: float = Field(default=300.0, gt=0)

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url_valid(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError("TWINSTACK_MQTT_URL is mqtt://host:port or mqtts://host:port")
        return value
