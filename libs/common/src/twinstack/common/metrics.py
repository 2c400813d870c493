"""Metrics of a service for Prometheus (and OTLP), and the process-level ones every service has.

Instruments are OpenTelemetry's (the code records through the API, as for traces); the
Prometheus reader turns them into the exposition format on ``/metrics`` of the metrics port,
next to what ``prometheus_client`` collects by default (``process_cpu_seconds_total``,
``process_resident_memory_bytes``, open file descriptors, Python GC). With an OTLP endpoint
configured the same instruments are also pushed there. docs/operations.md lists every metric.

Names follow Prometheus: seconds and bytes, ``_total`` on counters (added by the exporter).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from twinstack.common.tasks import cancel_and_wait

# Seconds. Fine below 100 ms, where the platform's latency targets are, coarse beyond.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
# How often the event loop's lag is sampled: a blocked loop shows up within this.
LOOP_LAG_INTERVAL_S = 0.25

Attributes = Mapping[str, str | int]
Reading = Callable[[], Iterable[tuple[float, Attributes]]]


def configure_metrics(
    service_name: str,
    *,
    prometheus: bool,
    otlp_endpoint: str | None,
    export_timeout_s: float = 2.0,
) -> bool:
    """Installs a meter provider with a Prometheus reader and/or an OTLP exporter.

    Returns whether anything was installed; with neither, the API stays the no-op default.
    """
    if not prometheus and not otlp_endpoint:
        return False
    from opentelemetry.sdk.metrics import Histogram, MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource

    readers: list[MetricReader] = []
    if prometheus:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        # Scrape labels (job, instance, service) say where a series comes from; the
        # instrumentation scope and target_info would only multiply the series.
        readers.append(PrometheusMetricReader(disable_target_info=True, scope_info_enabled=False))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        readers.append(
            PeriodicExportingMetricReader(
                OTLPMetricExporter(otlp_endpoint, timeout=export_timeout_s)
            )
        )
    seconds = View(
        instrument_type=Histogram,
        instrument_unit="s",
        aggregation=ExplicitBucketHistogramAggregation(LATENCY_BUCKETS_S),
    )
    metrics.set_meter_provider(
        MeterProvider(
            resource=Resource.create({"service.name": service_name}),
            metric_readers=readers,
            views=[seconds],
        )
    )
    return True


def gauge(meter_name: str, name: str, description: str, read: Reading, *, unit: str = "") -> None:
    """An observable gauge whose values ``read`` returns at each collection (it must be cheap
    and must not block: it runs on the scraping thread)."""

    def observe(_: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, dict(attributes)) for value, attributes in read()]

    metrics.get_meter(meter_name).create_observable_gauge(
        name, callbacks=[observe], unit=unit, description=description
    )


_LOOP_LAG = metrics.get_meter("twinstack.process").create_histogram(
    "twinstack.event_loop.lag",
    unit="s",
    description="How late the event loop ran a timer: time it spent on other work, blocked",
)


@dataclass
class MetricsEndpoint:
    """The ``/metrics`` HTTP endpoint and the event-loop lag probe, stopped together."""

    server: WSGIServer
    thread: threading.Thread
    lag_probe: asyncio.Task[None]

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    async def stop(self) -> None:
        await cancel_and_wait(self.lag_probe)
        # shutdown() waits for the serving thread; a scrape in progress finishes first.
        await asyncio.to_thread(self.server.shutdown)
        self.server.server_close()


async def serve_metrics(host: str, port: int) -> MetricsEndpoint:
    """Starts ``/metrics`` on ``host:port`` (0: a free port) and the event-loop lag probe.

    Raises:
        OSError: The port cannot be bound (a misconfiguration that must not go unnoticed).
    """
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=host)
    return MetricsEndpoint(server, thread, asyncio.create_task(_probe_loop_lag(), name="loop-lag"))


async def _probe_loop_lag() -> None:
    loop = asyncio.get_running_loop()
    while True:
        expected = loop.time() + LOOP_LAG_INTERVAL_S
        await asyncio.sleep(LOOP_LAG_INTERVAL_S)
        _LOOP_LAG.record(max(0.0, loop.time() - expected))
