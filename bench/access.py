"""The cost of authentication and authorization on the hot paths: the same work on the same
machine, with every call checked (a JWT verified, the verb decided, writes audited) and with
authentication disabled.

Measured: conditional UpdateTwin with CONCURRENCY clients (the registry's hot path), acknowledged
ingest of frames (the telemetry front door), and telemetry-to-Watch latency at a fixed rate.
The target is at most 10% slower with authorization on.

On a busy 2-core machine the end-to-end figures drift by more than that within one run, so both
platforms run side by side and take turns: ROUNDS rounds, each measuring one and then the other
(the order alternating), and the slowdown is the median of the rounds' paired ratios. The
in-process cost of admitting one call is reported too.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.pipeline import LATENCY_TWINS, MODEL, TWINS, make_frames, percentile, state_latency
from bench.registry import CONCURRENCY, registry_updates
from bench.report import console, save, show
from twinstack.api.ingestion.v1.ingestion_pb2 import IngestBatchRequest
from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.gatekeeper import Gatekeeper
from twinstack.common.settings import ServiceSettings
from twinstack.common.tenancy import DEFAULT_IDS, IdTranslator, ids_of
from twinstack.devstack import LocalIssuer, LocalPlatform
from twinstack.sdk import Client, ConnectConfig, Endpoints

TARGET_SLOWDOWN = 0.10
CLIENT_THREADS = 2
ROUNDS = 5
MODES = ("disabled", "required")


def started_platform(scratch: Path, mode: str) -> LocalPlatform:
    platform = LocalPlatform(
        scratch / mode,
        nats_port=0,
        influx_port=0,
        service_ports={"registry": 0, "ingestion": 0, "state": 0},
        service_env={"TWINSTACK_AUTH_MODE": mode},
        services=("registry", "ingestion", "state"),
    )
    console.print(f"access: starting registry, ingestion and state with auth {mode}")
    platform.start()
    return platform


def client_of(platform: LocalPlatform) -> Client:
    targets = {n: s.target for n, s in platform.services.items()}
    endpoints = Endpoints(**targets, simulation="127.0.0.1:1")
    return Client(ConnectConfig(endpoints, token=platform.admin_token, timeout_s=120))


def one_round(platform: LocalPlatform, client: Client, index: int) -> dict[str, float]:
    """Conditional updates/s and p99, and acknowledged ingest points/s, on twins of the round's
    own (a batch sent again would be a duplicate, which costs less)."""
    seconds, latencies = asyncio.run(
        registry_updates(
            platform.services["registry"].target,
            platform.admin_token,
            twin_prefix=f"round{index}",
            store_models=index == 0,
        )
    )
    prefix = f"ingest{index}"
    for twin in range(TWINS):
        client.registry.create_twin(f"{prefix}-{twin:03d}", MODEL)
    requests = [IngestBatchRequest(frames=batch) for batch in make_frames(prefix)]
    points = sum(sum(len(f.time_unix_ns) for f in r.frames) for r in requests)
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(client.telemetry.ingest_batch, requests))
    return {
        "updates_per_s": len(latencies) / seconds,
        "update_p99_ms": float(np.percentile(latencies, 99)),
        "ingest_acked_points_per_s": points / (time.perf_counter() - started),
    }


def measure() -> dict[str, list[dict[str, float]]]:
    """Per mode, the figures of each round, then of the Watch latency run."""
    rounds: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="twinstack-bench-access-"))
        platforms = {}
        clients = {}
        for mode in MODES:
            platforms[mode] = started_platform(Path(scratch), mode)
            stack.callback(platforms[mode].stop)
            clients[mode] = stack.enter_context(client_of(platforms[mode]))
        for index in range(ROUNDS):
            for mode in MODES if index % 2 == 0 else reversed(MODES):
                rounds[mode].append(one_round(platforms[mode], clients[mode], index))
                console.print(f"access: round {index + 1}/{ROUNDS}, auth {mode}: done")
        for mode in MODES:
            for twin in range(TWINS):
                clients[mode].registry.create_twin(f"lat-{twin:03d}", MODEL)
            watch = state_latency(clients[mode], platforms[mode], LATENCY_TWINS)
            rounds[mode].append(
                {"watch_p50_ms": percentile(watch, 50), "watch_p99_ms": percentile(watch, 99)}
            )
    return rounds


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
    per_call_us = (time.perf_counter() - started) / calls * 1e6
    return {"first_call_us": first_us, "per_call_us": per_call_us, **translation_cost_us()}


def translation_cost_us() -> dict[str, float]:
    """Microseconds the tenant id translation adds to one conditional update: qualifying the
    request's ids and stripping the response's, for the default tenant and another."""
    translator = IdTranslator()
    request = registry_pb2.UpdateTwinRequest(twin_id="pump-17", expected_revision=3)
    request.set_properties["rated_power_kw"].double_value = 30.0
    twin = registry_pb2.Twin(id="pump-17", model_id="dtmi:twinstack:examples:Pump;1")
    for name in ("site", "serial_number", "rated_power_kw", "rated_flow_m3_h"):
        twin.properties[name].string_value = "x"
    figures = {}
    calls = 20_000
    for label, ids in (("default", DEFAULT_IDS), ("tenant", ids_of("bench-tenant"))):
        stored = registry_pb2.UpdateTwinResponse()
        stored.twin.CopyFrom(twin)
        stored.twin.id, stored.twin.model_id = ids.inner(twin.id), ids.inner(twin.model_id)
        wire_request, wire_response = request.SerializeToString(), stored.SerializeToString()
        messages = [
            (
                registry_pb2.UpdateTwinRequest.FromString(wire_request),
                registry_pb2.UpdateTwinResponse.FromString(wire_response),
            )
            for _ in range(calls)
        ]
        started = time.perf_counter()
        for inbound, outbound in messages:
            translator.qualify(inbound, ids)
            translator.strip(outbound, ids)
        figures[f"id_translation_{label}_us"] = (time.perf_counter() - started) / calls * 1e6
    return figures


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="twinstack-bench-access-") as scratch:
        admission = asyncio.run(admission_cost_us(Path(scratch)))
    rounds = measure()
    off, on = rounds["disabled"], rounds["required"]
    paired = list(zip(off[:ROUNDS], on[:ROUNDS], strict=True))

    def median(figures: list[dict[str, float]], name: str) -> float:
        return statistics.median(f[name] for f in figures[:ROUNDS])

    without = {name: median(off, name) for name in off[0]}
    with_auth = {name: median(on, name) for name in on[0]}
    for name in ("watch_p50_ms", "watch_p99_ms"):
        without[name], with_auth[name] = off[-1][name], on[-1][name]
    # Rates: how much lower with auth; latencies: how much higher (the median of the rounds).
    slowdowns = {
        **{
            name: statistics.median(1 - b[name] / a[name] for a, b in paired)
            for name in ("updates_per_s", "ingest_acked_points_per_s")
        },
        "update_p99_ms": statistics.median(
            b["update_p99_ms"] / a["update_p99_ms"] - 1 for a, b in paired
        ),
        **{name: with_auth[name] / without[name] - 1 for name in ("watch_p50_ms", "watch_p99_ms")},
    }
    results = {
        "admission": admission,
        "rounds": ROUNDS,
        "without_auth": without,
        "with_auth": with_auth,
        "slowdown": slowdowns,
        "each_round": rounds,
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
                "tenant id translation of one update (request and response)",
                f"{admission['id_translation_tenant_us']:.1f} us",
                f"default tenant: {admission['id_translation_default_us']:.1f} us",
            ),
            (
                "admission of one call (JWT from cache, verb)",
                f"{admission['per_call_us']:.1f} us",
                f"first sight of a token: {admission['first_call_us']:.0f} us",
            ),
        ],
    )
    console.print(f"saved {save('access', results)}")
    return results
