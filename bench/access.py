"""The cost of authentication and authorization on the hot paths: the same work on the same
machine, once with every call checked (a JWT verified, the verb decided, writes audited) and
once with authentication disabled.

Measured: conditional UpdateTwin with CONCURRENCY clients (the registry's hot path), acknowledged
ingest of frames (the telemetry front door), and telemetry-to-Watch latency at a fixed rate.
The target is at most 10% slower with authorization on.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.pipeline import MODEL, TWINS, make_frames, percentile, state_latency
from bench.registry import CONCURRENCY, registry_updates
from bench.report import console, save, show
from twinstack.api.ingestion.v1.ingestion_pb2 import IngestBatchRequest
from twinstack.devstack import LocalPlatform
from twinstack.sdk import Client, ConnectConfig, Endpoints

TARGET_SLOWDOWN = 0.10
CLIENT_THREADS = 2


def measure(auth: bool) -> dict[str, float]:
    """Updates/s and p99, acknowledged ingest points/s, Watch latency p50/p99."""
    mode = "required" if auth else "disabled"
    with tempfile.TemporaryDirectory(prefix="twinstack-bench-access-") as scratch:
        platform = LocalPlatform(
            Path(scratch),
            nats_port=0,
            influx_port=0,
            service_ports={"registry": 0, "ingestion": 0, "state": 0},
            service_env={"TWINSTACK_AUTH_MODE": mode},
            services=("registry", "ingestion", "state"),
        )
        console.print(f"access: starting registry, ingestion and state with auth {mode}")
        platform.start()
        try:
            token = platform.admin_token
            seconds, latencies = asyncio.run(
                registry_updates(platform.services["registry"].target, token)
            )
            targets = {n: s.target for n, s in platform.services.items()}
            endpoints = Endpoints(**targets, simulation="127.0.0.1:1")
            # registry_updates stored the example models the twins use.
            with Client(ConnectConfig(endpoints, token=token, timeout_s=120)) as client:
                for prefix in ("frames", "lat"):
                    for twin in range(TWINS):
                        client.registry.create_twin(f"{prefix}-{twin:03d}", MODEL)
                requests = [IngestBatchRequest(frames=batch) for batch in make_frames("frames")]
                points = sum(sum(len(f.time_unix_ns) for f in r.frames) for r in requests)
                started = time.perf_counter()
                with ThreadPoolExecutor(CLIENT_THREADS) as pool:
                    list(pool.map(client.telemetry.ingest_batch, requests))
                ingest_s = time.perf_counter() - started
                watch = state_latency(client)
        finally:
            platform.stop()
    return {
        "updates_per_s": len(latencies) / seconds,
        "update_p99_ms": float(np.percentile(latencies, 99)),
        "ingest_acked_points_per_s": points / ingest_s,
        "watch_p50_ms": percentile(watch, 50),
        "watch_p99_ms": percentile(watch, 99),
    }


def run() -> dict[str, Any]:
    without = measure(auth=False)
    with_auth = measure(auth=True)
    rates = ("updates_per_s", "ingest_acked_points_per_s")
    slowdowns = {
        **{name: 1 - with_auth[name] / without[name] for name in rates},
        **{
            name: with_auth[name] / without[name] - 1
            for name in ("update_p99_ms", "watch_p50_ms", "watch_p99_ms")
        },
    }
    results = {"without_auth": without, "with_auth": with_auth, "slowdown": slowdowns}

    def row(label: str, name: str, unit: str) -> tuple[str, str, str]:
        return (
            label,
            f"{with_auth[name]:,.1f} {unit} (without: {without[name]:,.1f})",
            f"{slowdowns[name]:+.0%} (target <= {TARGET_SLOWDOWN:.0%} slower)",
        )

    show(
        "access: the same work with every call authenticated, authorized and audited",
        [
            row(f"conditional updates, {CONCURRENCY} clients", "updates_per_s", "/s"),
            row("conditional updates, p99", "update_p99_ms", "ms"),
            row("ingest of frames, acknowledged", "ingest_acked_points_per_s", "points/s"),
            row("telemetry -> Watch, p50", "watch_p50_ms", "ms"),
            row("telemetry -> Watch, p99", "watch_p99_ms", "ms"),
        ],
    )
    console.print(f"saved {save('access', results)}")
    return results
