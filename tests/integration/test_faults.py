"""Delivery guarantees under faults, against the real servers: every point the ingest API
acknowledged reaches InfluxDB, and none is stored twice."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from twinstack.api.common.v1 import types_pb2
from twinstack.api.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.common.influx import InfluxStore
from twinstack.devstack import InfluxServer, NatsServer
from twinstack.ingestion.app import IngestionApp
from twinstack.ingestion.settings import IngestionSettings
from twinstack.registry.app import RegistryApp
from twinstack.registry.settings import RegistrySettings

BATCHES = 40
POINTS_PER_BATCH = 25
T0_NS = (time.time_ns() // 10**9 - 7200) * 10**9


def batch(number: int) -> ingestion_pb2.IngestBatchRequest:
    points = []
    for i in range(POINTS_PER_BATCH):
        seq = number * POINTS_PER_BATCH + i
        point = types_pb2.TelemetryPoint(
            twin_id="fault-1", fields={"seq": types_pb2.Value(int_value=seq)}
        )
        point.time.FromNanoseconds(T0_NS + seq * 10**6)
        points.append(point)
    return ingestion_pb2.IngestBatchRequest(points=points)


async def test_nats_restart_mid_stream_loses_and_duplicates_nothing(
    infra_settings: dict[str, Any],
    serve_app: Any,
    nats_server: NatsServer,
    influxd: InfluxServer,
    influx_database: str,
    eventually: Any,
    store_test_models: Any,
) -> None:
    settings = {**infra_settings, "nats_request_timeout_s": 1.0}
    registry_settings = RegistrySettings(**settings)
    ingestion_settings = IngestionSettings(**settings, historian_retry_max_backoff_s=0.2)
    async with (
        serve_app(registry_settings, RegistryApp(registry_settings)) as registry_channel,
        serve_app(ingestion_settings, IngestionApp(ingestion_settings)) as ingestion_channel,
    ):
        registry = registry_pb2_grpc.RegistryServiceStub(registry_channel)
        await store_test_models(registry)
        await registry.CreateTwin(
            registry_pb2.CreateTwinRequest(
                twin=registry_pb2.Twin(id="fault-1", model_id="dtmi:twinstack:test:Device;1")
            )
        )
        ingestion = ingestion_pb2_grpc.IngestionServiceStub(ingestion_channel)
        refusals: list[grpc.StatusCode] = []
        outage_seen = asyncio.Event()

        async def acknowledged(number: int) -> bool:
            try:
                await ingestion.IngestBatch(batch(number), timeout=5)
            except grpc.aio.AioRpcError as error:
                refusals.append(error.code())
                outage_seen.set()
                return False
            return True

        async def produce() -> None:
            """Sends every batch until it is acknowledged, as a careful client does."""
            for number in range(BATCHES):
                await eventually(lambda n=number: acknowledged(n), timeout_s=60, interval_s=0.1)

        producer = asyncio.create_task(produce())
        store = InfluxStore(influxd.url, influx_database)
        await store.connect()

        async def stored() -> list[int]:
            series = await store.query(
                "SELECT seq FROM telemetry_integer WHERE twin_id::tag = $t", {"t": "fault-1"}
            )
            return sorted(row["seq"] for row in series[0].rows()) if series else []

        await eventually(stored, lambda seqs: len(seqs) >= 5 * POINTS_PER_BATCH)
        nats_server.stop()
        await asyncio.wait_for(outage_seen.wait(), 30)
        nats_server.start()
        await asyncio.wait_for(producer, 120)

        expected = list(range(BATCHES * POINTS_PER_BATCH))
        assert await eventually(stored, lambda seqs: seqs == expected, timeout_s=60) == expected
        await store.close()
        assert refusals, "the outage was felt by the client"
        assert set(refusals) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
