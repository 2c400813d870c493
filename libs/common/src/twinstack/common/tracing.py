"""OpenTelemetry traces, and W3C trace context carried in NATS headers (metrics: ``metrics``).

With no OTLP endpoint configured nothing is installed and the OpenTelemetry API stays the
no-op default. Even a no-op span costs about 6 us (a context manager, a span object, a context
attach and detach): at a thousand telemetry messages a second that was about 5% of the ingestion
process. So hot paths open spans through :func:`span`, which opens none while no provider is
installed (about 1.7 us, mostly for the call's arguments).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from opentelemetry import context, metrics, propagate, trace


def configure_tracing(
    service_name: str, otlp_endpoint: str | None, *, export_timeout_s: float = 2.0
) -> None:
    """Installs an OTLP exporting trace provider when an endpoint is given.

    ``export_timeout_s`` bounds every export, retries included, so that a collector that is
    down can delay a service's shutdown by that much and no more.
    """
    if not otlp_endpoint:
        return
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": service_name})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(otlp_endpoint, timeout=export_timeout_s))
    )
    trace.set_tracer_provider(tracer_provider)


def shutdown_tracing() -> None:
    """Flushes and stops the SDK providers, if :func:`configure_tracing` or
    :func:`twinstack.common.metrics.configure_metrics` installed them."""
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        shutdown = getattr(provider, "shutdown", None)
        if shutdown is not None:
            shutdown()


def tracing_enabled() -> bool:
    """Whether a trace provider is installed (by :func:`configure_tracing`, or by a test)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def span(
    tracer: trace.Tracer, name: str, **options: Any
) -> contextlib.AbstractContextManager[object]:
    """``tracer.start_as_current_span(name, **options)``, or nothing while tracing is off."""
    if not tracing_enabled():
        return contextlib.nullcontext()
    return tracer.start_as_current_span(name, **options)


def inject_trace_headers(headers: dict[str, str]) -> dict[str, str]:
    """Adds ``traceparent`` (and ``tracestate``) of the current span to message headers."""
    if tracing_enabled():
        propagate.inject(headers)
    return headers


def context_from_headers(headers: Mapping[str, str] | None) -> context.Context:
    """The trace context a publisher put in message or gRPC metadata headers."""
    if not tracing_enabled():
        return context.get_current()
    return propagate.extract(dict(headers or {}))
