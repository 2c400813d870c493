"""End-to-end ingest (gRPC -> JetStream -> historian -> InfluxDB), against raw baselines.

The same points, in the same batch size, are written three ways in one run on the same
servers: straight to InfluxDB (pre-built line protocol POSTed to /write), straight to JetStream
(pre-serialised batches published with nats.py), and through twinstack, timed until InfluxDB
holds every point.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from nats.js.api import StreamConfig

from bench.report import console, save, show
from twinstack.api.common.v1 import events_pb2
from twinstack.api.ingestion.v1.ingestion_pb2 import IngestBatchRequest
from twinstack.common.influx import InfluxPoint, InfluxStore
from twinstack.common.nats import connect_nats, message_headers
from twinstack.devstack import LocalPlatform
from twinstack.sdk import Endpoints, Point, TwinstackClient
from twinstack.sdk.models import example_model_sources

TWINS = 20
SAMPLES_PER_TWIN_PER_BATCH = 250
BATCHES = 40
CLIENT_THREADS = 2
THINGSBOARD_2VCPU_VALUES_PER_S = 15_000
START_NS = (time.time_ns() // 10**9 - 86_400) * 10**9


def make_batches() -> list[list[Point]]:
    batches = []
    for b in range(BATCHES):
        batch = []
        for twin in range(TWINS):
            for s in range(SAMPLES_PER_TWIN_PER_BATCH):
                n = b * SAMPLES_PER_TWIN_PER_BATCH + s
                fields = {
                    "temperature_c": 40.0 + n % 50 / 7,
                    "vibration_mm_s": 2.5 + n % 13 / 10,
                    "cycles": n,
                }
                batch.append(Point(f"bench-{twin:03d}", fields, START_NS + n * 10**6))
        batches.append(batch)
    return batches


def influx_body(points: list[Point]) -> bytes:
    lines = [
        InfluxPoint("telemetry", {"twin_id": p.twin_id}, dict(p.fields), int(str(p.time))).to_line()
        for p in points
    ]
    return "\n".join(lines).encode()


async def raw_influx(url: str, batches: list[list[Point]]) -> float:
    database = f"raw_{uuid.uuid4().hex[:8]}"
    bodies = [influx_body(batch) for batch in batches]
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        await http.post("/query", params={"q": f'CREATE DATABASE "{database}"'})
        started = time.perf_counter()
        for body in bodies:
            response = await http.post(
                "/write", params={"db": database, "precision": "ns"}, content=body
            )
            response.raise_for_status()
        return time.perf_counter() - started


async def raw_nats(url: str, batches: list[list[Point]]) -> float:
    client = await connect_nats(url, "bench-raw")
    js = client.jetstream()
    await js.add_stream(StreamConfig(name="BENCH", subjects=["bench.>"]))
    messages = []
    for b, batch in enumerate(batches):
        per_twin: dict[str, events_pb2.TelemetryBatch] = {}
        for point in batch:
            proto = point.to_proto()
            per_twin.setdefault(point.twin_id, events_pb2.TelemetryBatch(twin_id=point.twin_id))
            per_twin[point.twin_id].samples.add(time=proto.time, fields=proto.fields)
        messages.append(
            [(f"bench.{t}", m.SerializeToString(), f"{b}-{t}") for t, m in per_twin.items()]
        )
    started = time.perf_counter()
    for batch_messages in messages:
        await asyncio.gather(
            *(js.publish(s, data, headers=message_headers(i)) for s, data, i in batch_messages)
        )
    elapsed = time.perf_counter() - started
    await js.delete_stream("BENCH")
    await client.close()
    return elapsed


async def stored_points(url: str) -> int:
    store = InfluxStore(url, "twinstack")
    try:
        series = await store.query("SELECT count(cycles) FROM telemetry")
    finally:
        await store.close()
    return int(series[0].values[0][1]) if series else 0


def run() -> dict[str, Any]:
    total_points = TWINS * SAMPLES_PER_TWIN_PER_BATCH * BATCHES
    batch_points = TWINS * SAMPLES_PER_TWIN_PER_BATCH
    values_per_point = 3
    batches = make_batches()
    with tempfile.TemporaryDirectory(prefix="twinstack-bench-") as scratch:
        platform = LocalPlatform(
            Path(scratch),
            nats_port=0,
            influx_port=0,
            service_ports={"registry": 0, "ingestion": 0, "state": 0},
            services=("registry", "ingestion", "state"),
        )
        console.print(
            "[bold]pipeline[/bold]: starting nats-server, influxd, registry, ingestion, state"
        )
        platform.start()
        try:
            console.print(f"pipeline: raw InfluxDB writes, {BATCHES} x {batch_points} points")
            influx_s = asyncio.run(raw_influx(platform.influx.url, batches))
            console.print("pipeline: raw nats.py JetStream publishes")
            nats_s = asyncio.run(raw_nats(platform.nats.url, batches))

            targets = {n: s.target for n, s in platform.services.items()}
            endpoints = Endpoints(**targets, simulation="127.0.0.1:1")
            with TwinstackClient(endpoints, timeout_s=120) as client:
                client.create_models(example_model_sources())
                for twin in range(TWINS):
                    client.create_twin(
                        f"bench-{twin:03d}", "dtmi:twinstack:examples:HydraulicPress;1"
                    )
                console.print("pipeline: end to end through twinstack")
                requests = [
                    IngestBatchRequest(points=[p.to_proto() for p in batch]) for batch in batches
                ]
                started = time.perf_counter()
                with ThreadPoolExecutor(CLIENT_THREADS) as pool:
                    list(pool.map(client.ingest_batch, requests))
                acked_s = time.perf_counter() - started
                deadline = time.monotonic() + 600
                while asyncio.run(stored_points(platform.influx.url)) < total_points:
                    if time.monotonic() > deadline:
                        raise TimeoutError("historian did not store every point within 600 s")
                    time.sleep(0.1)
                stored_s = time.perf_counter() - started
        finally:
            platform.stop()

    e2e_rate = total_points / stored_s
    influx_rate = total_points / influx_s
    nats_rate = total_points / nats_s
    results = {
        "points": total_points,
        "batch_points": batch_points,
        "values_per_point": values_per_point,
        "raw_influx_points_per_s": influx_rate,
        "raw_nats_points_per_s": nats_rate,
        "e2e_acked_points_per_s": total_points / acked_s,
        "e2e_stored_points_per_s": e2e_rate,
        "e2e_vs_raw_influx": e2e_rate / influx_rate,
        "e2e_vs_raw_nats": e2e_rate / nats_rate,
        "e2e_values_per_s": e2e_rate * values_per_point,
        "e2e_vs_thingsboard_2vcpu": e2e_rate * values_per_point / THINGSBOARD_2VCPU_VALUES_PER_S,
    }
    show(
        f"pipeline: {total_points:,} points of {values_per_point} values, {batch_points:,} a batch",
        [
            ("raw InfluxDB /write", f"{influx_rate:,.0f} points/s", "baseline"),
            ("raw nats.py JetStream publish", f"{nats_rate:,.0f} points/s", "baseline"),
            ("twinstack, acknowledged", f"{total_points / acked_s:,.0f} points/s", ""),
            ("twinstack, stored in InfluxDB", f"{e2e_rate:,.0f} points/s",
             f"{e2e_rate / influx_rate:.0%} of raw InfluxDB (target >= 70%)"),
            ("", "", f"{e2e_rate / nats_rate:.0%} of raw JetStream"),
            ("twinstack, values stored", f"{e2e_rate * values_per_point:,.0f} values/s",
             f"{e2e_rate * values_per_point / THINGSBOARD_2VCPU_VALUES_PER_S:.1f}x ThingsBoard "
             "2-vCPU (target >= 6x)"),
        ],
    )  # fmt: skip
    save("pipeline", results)
    return results


if __name__ == "__main__":
    run()
