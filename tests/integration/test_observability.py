"""Traces continue across gRPC and NATS headers, and calls are measured.

OpenTelemetry providers are process-wide and can be installed once, so this module installs
in-memory ones for the rest of the session.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from twinstack.api.common.v1 import types_pb2
from twinstack.api.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.common.nats import EVENTS_STREAM, Backbone
from twinstack.ingestion.app import IngestionApp
from twinstack.ingestion.settings import IngestionSettings
from twinstack.registry.app import RegistryApp
from twinstack.registry.settings import RegistrySettings

REGISTRY_TRACE = "0af7651916cd43dd8448eb211c80319c"
INGEST_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def recorded() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return spans, reader


def traceparent(trace_id: str) -> tuple[tuple[str, str]]:
    return (("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"),)


async def test_trace_context_crosses_grpc_and_nats(
    recorded: tuple[InMemorySpanExporter, InMemoryMetricReader],
    infra_settings: dict[str, Any],
    serve_app: Any,
    backbone: Backbone,
    eventually: Any,
    store_test_models: Any,
) -> None:
    spans, reader = recorded
    registry_settings = RegistrySettings(**infra_settings)
    ingestion_settings = IngestionSettings(**infra_settings)
    async with (
        serve_app(registry_settings, RegistryApp(registry_settings)) as registry_channel,
        serve_app(ingestion_settings, IngestionApp(ingestion_settings)) as ingestion_channel,
    ):
        registry = registry_pb2_grpc.RegistryServiceStub(registry_channel)
        await store_test_models(registry)
        twin = registry_pb2.Twin(id="traced-1", model_id="dtmi:twinstack:test:Device;1")
        await registry.CreateTwin(
            registry_pb2.CreateTwinRequest(twin=twin), metadata=traceparent(REGISTRY_TRACE)
        )
        server_span = next(s for s in spans.get_finished_spans() if s.name.endswith("/CreateTwin"))
        assert format(server_span.context.trace_id, "032x") == REGISTRY_TRACE
        assert server_span.parent is not None
        assert format(server_span.parent.span_id, "016x") == "00f067aa0ba902b7"
        event = await backbone.js.get_last_msg(EVENTS_STREAM, "evt.registry.twin.traced-1")
        assert REGISTRY_TRACE in (event.headers or {})["traceparent"]

        point = types_pb2.TelemetryPoint(
            twin_id="traced-1", fields={"temp": types_pb2.Value(double_value=1.0)}
        )
        point.time.FromNanoseconds(time.time_ns())
        ingestion = ingestion_pb2_grpc.IngestionServiceStub(ingestion_channel)
        await ingestion.IngestBatch(
            ingestion_pb2.IngestBatchRequest(points=[point]), metadata=traceparent(INGEST_TRACE)
        )

        def historian_linked_to_ingest() -> bool:
            return any(
                span.name == "historian process"
                and any(
                    format(link.context.trace_id, "032x") == INGEST_TRACE for link in span.links
                )
                for span in spans.get_finished_spans()
            )

        async def probe() -> bool:
            return historian_linked_to_ingest()

        await eventually(probe)

    data = reader.get_metrics_data()
    assert data is not None
    durations = [
        point.attributes
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "rpc.server.duration"
        for point in metric.data.data_points
    ]
    assert {
        "rpc.method": "/twinstack.api.registry.v1.RegistryService/CreateTwin",
        "rpc.grpc.status_code": "OK",
    } in durations
