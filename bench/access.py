"""The cost of authentication and authorization on the hot paths: the same work on the same
machine, once with every call checked (a JWT verified, the verb decided, writes audited) and
once with authentication disabled.

Measured: conditional UpdateTwin with CONCURRENCY clients (the registry's hot path), acknowledged
ingest of frames (the telemetry front door), and telemetry-to-Watch latency at a fixed rate.
The target is at most 10% slower with authorization on. On a busy 2-core machine the
end-to-end figures vary by more than that between runs of the same configuration, so the
in-process cost of admitting one call is reported too.
"""

from __future__ import annotations

import asyncio
import statistics
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
from twinstack.common.gatekeeper import Gatekeeper
from twinstack.common.settings import ServiceSettings
from twinstack.devstack import LocalIssuer, LocalPlatform
from twinstack.sdk import Client, ConnectConfig, Endpoints

TARGET_SLOWDOWN = 0.10
CLIENT_THREADS = 2
INGEST_ROUNDS = ("ingest-a", "ingest-b", "ingest-c")


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
                for prefix in (*INGEST_ROUNDS, "lat"):
                    for twin in range(TWINS):
                        client.registry.create_twin(f"{prefix}-{twin:03d}", MODEL)
                # A round takes about a second: the median of three, each on twins of its own
                # (a batch sent again would be a duplicate, which costs less).
                rates = []
                for prefix in INGEST_ROUNDS:
                    requests = [IngestBatchRequest(frames=batch) for batch in make_frames(prefix)]
                    points = sum(sum(len(f.time_unix_ns) for f in r.frames) for r in requests)
                    started = time.perf_counter()
                    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
                        list(pool.map(client.telemetry.ingest_batch, requests))
                    rates.append(points / (time.perf_counter() - started))
                watch = state_latency(client)
        finally:
            platform.stop()
    return {
        "updates_per_s": len(latencies) / seconds,
        "update_p99_ms": float(np.percentile(latencies, 99)),
        "ingest_acked_points_per_s": statistics.median(rates),
        "watch_p50_ms": percentile(watch, 50),
        "watch_p99_ms": percentile(watch, 99),
    }


async def admission_cost_us(directory: Path) -> dict[str, float]:
    """Microseconds the gatekeeper adds to one call, measured in process: authenticating a JWT
    (the first time, and from the cache of verified tokens after) and deciding the verb. (The
    audit record is queued only on a server with NATS: the end-to-end figures include it.)"""
    issuer = LocalIssuer(directory / "auth").ensure()
    gatekeeper = Gatekeeper(ServiceSettings(**issuer.service_settings()))
    token = issuer.issue("bench", roles=("operator",))
    metadata = {"authorization": f"Bearer {token}"}
    method = "/twinstack.api.ingestion.v1.IngestionService/IngestBatch"
    started = time.perf_counter()
    principal = await gatekeeper.authenticate(metadata, dict)
    first_us = (time.perf_counter() - started) * 1e6
    calls = 20_000
    started = time.perf_counter()
    for _ in range(calls):
        principal = await gatekeeper.authenticate(metadata, dict)
        gatekeeper.authorize(principal, method)
    return {"first_call_us": first_us, "per_call_us": (time.perf_counter() - started) / calls * 1e6}


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="twinstack-bench-access-") as scratch:
        admission = asyncio.run(admission_cost_us(Path(scratch)))
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
    results = {
        "admission": admission,
        "without_auth": without,
        "with_auth": with_auth,
        "slowdown": slowdowns,
    }

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
            (
                "admission of one call (JWT from cache, verb)",
                f"{admission['per_call_us']:.1f} us",
                f"first sight of a token: {admission['first_call_us']:.0f} us",
            ),
        ],
    )
    console.print(f"saved {save('access', results)}")
    return results
