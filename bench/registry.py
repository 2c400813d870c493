"""Conditional twin updates through the registry, against raw nats.py KV operations.

Each of CONCURRENCY clients patches its own twin over and over, each patch conditional on the
revision the previous one returned (the optimistic-concurrency loop a real client runs). The
baselines, on the same nats-server with the same concurrency: a raw KV ``put``, and a raw
``get`` + ``update(last=revision)``, the compare-and-set the registry performs.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from nats.js.api import KeyValueConfig

from bench.report import console, save, show
from twinstack.api.common.v1 import types_pb2
from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.common.nats import connect_nats
from twinstack.devstack import LocalPlatform

CONCURRENCY = 16
OPERATIONS = 6000
TARGET_PER_S = 2000
TARGET_P99_MS = 20.0
AZURE_DIGITAL_TWINS_PATCHES_PER_S = 1000


async def measure(
    operation: Callable[[int, int], Awaitable[None]],
) -> tuple[float, np.ndarray]:
    """Runs OPERATIONS calls of ``operation(worker, i)`` from CONCURRENCY workers; returns
    (seconds, latencies in ms)."""
    latencies: list[float] = []
    per_worker = OPERATIONS // CONCURRENCY

    async def worker(index: int) -> None:
        for i in range(per_worker):
            started = time.perf_counter()
            await operation(index, i)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
    return time.perf_counter() - started, np.array(latencies)


async def raw_kv(url: str) -> dict[str, tuple[float, np.ndarray]]:
    client = await connect_nats(url, "bench-kv")
    js = client.jetstream()
    kv = await js.create_key_value(KeyValueConfig(bucket="bench_raw", history=5))
    value = registry_pb2.Twin(id="x", model_id="dtmi:bench:Pump;1").SerializeToString()
    for w in range(CONCURRENCY):
        await kv.put(f"w{w}", value)

    async def put(worker: int, _: int) -> None:
        await kv.put(f"w{worker}", value)

    async def get_and_update(worker: int, _: int) -> None:
        entry = await kv.get(f"w{worker}")
        await kv.update(f"w{worker}", value, last=entry.revision)

    results = {"put": await measure(put), "get_update": await measure(get_and_update)}
    await js.delete_key_value("bench_raw")
    await client.close()
    return results


async def registry_updates(target: str) -> tuple[float, np.ndarray]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub: Any = registry_pb2_grpc.RegistryServiceStub(channel)
        revisions = {}
        for w in range(CONCURRENCY):
            twin = registry_pb2.Twin(id=f"bench-{w}", model_id="dtmi:bench:Pump;1")
            created = await stub.CreateTwin(registry_pb2.CreateTwinRequest(twin=twin))
            revisions[w] = created.twin.revision

        async def conditional_update(worker: int, i: int) -> None:
            response = await stub.UpdateTwin(
                registry_pb2.UpdateTwinRequest(
                    twin_id=f"bench-{worker}",
                    set_properties={"setpoint_c": types_pb2.Value(double_value=float(i))},
                    expected_revision=revisions[worker],
                ),
                timeout=10,
            )
            revisions[worker] = response.twin.revision

        return await measure(conditional_update)


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="twinstack-bench-") as scratch:
        platform = LocalPlatform(
            Path(scratch),
            nats_port=0,
            influx_port=0,
            service_ports={"registry": 0},
            services=("registry",),
        )
        console.print("[bold]registry[/bold]: starting nats-server and the registry")
        platform.start()
        try:
            console.print(f"registry: raw KV baselines, {OPERATIONS} operations x {CONCURRENCY}")
            raw = asyncio.run(raw_kv(platform.nats.url))
            console.print("registry: conditional UpdateTwin through gRPC")
            twinstack = asyncio.run(registry_updates(platform.services["registry"].target))
        finally:
            platform.stop()

    def stats(seconds: float, latencies: np.ndarray) -> dict[str, float]:
        return {
            "per_s": len(latencies) / seconds,
            "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)),
        }

    put, get_update, updates = stats(*raw["put"]), stats(*raw["get_update"]), stats(*twinstack)
    results = {
        "concurrency": CONCURRENCY,
        "operations": OPERATIONS,
        "raw_kv_put": put,
        "raw_kv_get_update": get_update,
        "conditional_update": updates,
        "vs_raw_put": updates["per_s"] / put["per_s"],
        "vs_raw_get_update": updates["per_s"] / get_update["per_s"],
    }
    show(
        f"registry: conditional twin updates, {CONCURRENCY} concurrent clients",
        [
            ("raw nats.py KV put", f"{put['per_s']:,.0f}/s  p99 {put['p99_ms']:.1f} ms",
             "baseline"),
            ("raw KV get + update(last)", f"{get_update['per_s']:,.0f}/s  p99 "
             f"{get_update['p99_ms']:.1f} ms", "baseline (the same compare-and-set)"),
            ("UpdateTwin, conditional",
             f"{updates['per_s']:,.0f}/s  p50 {updates['p50_ms']:.1f} ms",
             f"{updates['per_s'] / put['per_s']:.0%} of raw put, "
             f"{updates['per_s'] / get_update['per_s']:.0%} of raw get+update"),
            ("", f"p99 {updates['p99_ms']:.1f} ms",
             f"target >= {TARGET_PER_S}/s, p99 <= {TARGET_P99_MS:.0f} ms; "
             f"{updates['per_s'] / AZURE_DIGITAL_TWINS_PATCHES_PER_S:.1f}x ADT's default limit"),
        ],
    )  # fmt: skip
    save("registry", results)
    return results


if __name__ == "__main__":
    run()
