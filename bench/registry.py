"""The registry: conditional twin updates against raw nats.py KV operations, and query
latency on 100,000 twins.

Each of CONCURRENCY clients patches its own twin over and over, each patch conditional on the
revision the previous one returned (the optimistic-concurrency loop a real client runs). The
baselines, on the same nats-server with the same concurrency: a raw KV ``put``, and a raw
``get`` + ``update(last=revision)``, the compare-and-set the registry performs; and the floor
of gRPC itself: the registry's own health check (an empty unary call answered from memory,
through the same grpc.aio server and client libraries), called the same way.

For queries, 100,000 twin documents and their relationships are written straight into the
registry bucket (2,000 lines, each containing 49 machines that feed one another in a chain);
the registry indexes them from its KV watch, then each query runs QUERY_RUNS times.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.js.api import KeyValueConfig

from bench.report import authorized_channel, console, curve, save, show
from twinstack.api.common.v1 import types_pb2
from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.common.nats import (
    REGISTRY_BUCKET,
    RELATIONSHIPS_KEY_PREFIX,
    NatsConnection,
    connect_nats,
    twin_key,
)
from twinstack.devstack import LocalPlatform
from twinstack.devstack.ontology import generate as generate_ontology
from twinstack.sdk.models import example_model_sources

CONCURRENCY = 16
OPERATIONS = 6000
TARGET_PER_S = 2000
TARGET_P99_MS = 20.0
AZURE_DIGITAL_TWINS_PATCHES_PER_S = 1000
MACHINES_PER_LINE = 49
# The query data set at 10,000, 100,000 and 1,000,000 twins (a line and its 49 machines each).
CURVE_LINES = [200, 2000, 20000]
INDEXED = "property filter, few matches (property index)"
FULL_SCAN = "same answer, unindexed (OR: full scan)"
WHOLE_SCANS = {
    INDEXED: "property index, every page",
    FULL_SCAN: "full scan, every page",
}
QUERY_RUNS = 40
QUERIES = {
    "model + property filter (page of 100)": (
        "WHERE IS_OF_MODEL('dtmi:twinstack:examples:Machine;1') AND rated_power_kw > 4000"
    ),
    "exact id ($id = ..., looked up)": "WHERE $id = 'machine-00199-48'",
    INDEXED: "WHERE rated_power_kw > 4999.5",
    # An OR is never answered by an index: the same matches, found by reading every twin.
    FULL_SCAN: "WHERE rated_power_kw > 4999.5 OR rated_power_kw > 1e9",
    "traversal: line -> 49 machines -> feeds chain, depth 3": (
        "FROM 'line-00100' FOLLOW contains, feeds DEPTH 3 WHERE rated_power_kw > 0"
    ),
}
_EXAMPLES = "dtmi:twinstack:examples:"


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


async def raw_kv(url: str, admin: dict[str, str]) -> dict[str, tuple[float, np.ndarray]]:
    client = await connect_nats(NatsConnection(url, admin["user"], admin["password"]), "bench-kv")
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


async def empty_unary_calls(target: str) -> tuple[float, np.ndarray]:
    """OPERATIONS calls of the registry's gRPC health check from CONCURRENCY workers: what a
    unary call costs this machine's grpc.aio client and server before any work is done."""
    async with grpc.aio.insecure_channel(target) as channel:
        # The published stubs of grpc_health declare no methods on HealthStub.
        stub: Any = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()

        async def check(_worker: int, _i: int) -> None:
            await stub.Check(request, timeout=10)

        return await measure(check)


async def registry_updates(
    target: str, token: str, *, twin_prefix: str = "bench", store_models: bool = True
) -> tuple[float, np.ndarray]:
    """OPERATIONS conditional updates of CONCURRENCY twins of their own (created first, named
    ``<twin_prefix>-<n>``); (seconds, latencies in ms)."""
    async with authorized_channel(target, token) as channel:
        stub: Any = registry_pb2_grpc.RegistryServiceStub(channel)
        if store_models:
            sources = example_model_sources()
            await stub.CreateModels(registry_pb2.CreateModelsRequest(sources=sources))
        revisions = {}
        for w in range(CONCURRENCY):
            twin = registry_pb2.Twin(id=f"{twin_prefix}-{w}", model_id=f"{_EXAMPLES}Pump;1")
            created = await stub.CreateTwin(registry_pb2.CreateTwinRequest(twin=twin))
            revisions[w] = created.twin.revision

        async def conditional_update(worker: int, i: int) -> None:
            response = await stub.UpdateTwin(
                registry_pb2.UpdateTwinRequest(
                    twin_id=f"{twin_prefix}-{worker}",
                    set_properties={"rated_power_kw": types_pb2.Value(double_value=float(i))},
                    expected_revision=revisions[worker],
                ),
                timeout=10,
            )
            revisions[worker] = response.twin.revision

        return await measure(conditional_update)


async def write_graph(url: str, admin: dict[str, str], lines: range) -> int:
    """Writes ``lines`` of the query data set straight into the registry bucket; returns the
    last revision."""
    client = await connect_nats(
        NatsConnection(url, admin["user"], admin["password"]), "bench-graph"
    )
    kv = await client.jetstream().key_value(REGISTRY_BUCKET)
    rng = np.random.default_rng(7)
    last = 0
    pending: list[Awaitable[int]] = []

    async def flush() -> None:
        nonlocal last, pending
        last = max([last, *await asyncio.gather(*pending)])
        pending = []

    for line in lines:
        line_id = f"line-{line:05d}"
        pending.append(kv.put(twin_key(line_id), registry_pb2.Twin(
            id=line_id, model_id=f"{_EXAMPLES}ProductionLine;1",
            properties={"target_rate_per_h": types_pb2.Value(double_value=120.0)},
        ).SerializeToString()))  # fmt: skip
        machines = [f"machine-{line:05d}-{m:02d}" for m in range(MACHINES_PER_LINE)]
        contains = []
        for m, machine_id in enumerate(machines):
            model = "HydraulicPress;1" if m % 2 else "Pump;1"
            power = float(rng.uniform(1, 5000))
            pending.append(kv.put(twin_key(machine_id), registry_pb2.Twin(
                id=machine_id, model_id=f"{_EXAMPLES}{model}",
                properties={"rated_power_kw": types_pb2.Value(double_value=power),
                            "site": types_pb2.Value(string_value=f"site-{line % 50}")},
            ).SerializeToString()))  # fmt: skip
            contains.append(registry_pb2.Relationship(
                id=f"contains-{machine_id}", source_id=line_id, name="contains",
                target_id=machine_id,
            ))  # fmt: skip
            if m + 1 < MACHINES_PER_LINE:
                feeds = registry_pb2.Relationship(
                    id=f"feeds-{machines[m + 1]}", source_id=machine_id, name="feeds",
                    target_id=machines[m + 1],
                )  # fmt: skip
                pending.append(kv.put(
                    f"{RELATIONSHIPS_KEY_PREFIX}{machine_id}",
                    registry_pb2.RelationshipSet(relationships=[feeds]).SerializeToString(),
                ))  # fmt: skip
        pending.append(kv.put(
            f"{RELATIONSHIPS_KEY_PREFIX}{line_id}",
            registry_pb2.RelationshipSet(relationships=contains).SerializeToString(),
        ))  # fmt: skip
        if len(pending) > 2000:
            await flush()
    await flush()
    await client.close()
    return last


async def query_latencies(stub: Any) -> dict[str, Any]:
    """QUERY_RUNS runs of each query, and one full scan read page by page to its end."""
    results: dict[str, Any] = {}
    for name, query in QUERIES.items():
        latencies = []
        matched = 0
        for _ in range(QUERY_RUNS):
            began = time.perf_counter()
            response = await stub.QueryTwins(
                registry_pb2.QueryTwinsRequest(
                    query=query, page=types_pb2.PageRequest(page_size=100)
                ),
                timeout=60,
            )
            latencies.append((time.perf_counter() - began) * 1000)
            matched = len(response.twins)
        results[name] = {
            "query": query,
            "page_matches": matched,
            "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)),
        }
    # The whole answer, page by page: a scan's pages are bounded (max_scanned twins each).
    for name, whole in WHOLE_SCANS.items():
        began = time.perf_counter()
        pages, token, found = 0, "", 0
        while True:
            response = await stub.QueryTwins(
                registry_pb2.QueryTwinsRequest(
                    query=QUERIES[name],
                    page=types_pb2.PageRequest(page_size=100, page_token=token),
                ),
                timeout=60,
            )
            pages, found = pages + 1, found + len(response.twins)
            token = response.page.next_page_token
            if not token:
                break
        elapsed_ms = (time.perf_counter() - began) * 1000
        results[whole] = {
            "query": f"{pages} pages",
            "page_matches": found,
            "p50_ms": elapsed_ms,
            "p99_ms": elapsed_ms,
        }
    return results


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def queries_by_registry_size(
    target: str, url: str, token: str, admin: dict[str, str], registry_pid: int
) -> dict[str, Any]:
    """The query data set grown to each of CURVE_LINES, the queries measured at each size, and
    the registry's resident memory per twin indexed."""
    by_size: dict[str, Any] = {}
    async with authorized_channel(target, token) as channel:
        stub: Any = registry_pb2_grpc.RegistryServiceStub(channel)
        baseline_mb = rss_mb(registry_pid)
        written = 0
        for lines in CURVE_LINES:
            started = time.perf_counter()
            last = await write_graph(url, admin, range(written, lines))
            written = lines
            # Read-your-write: the first query waits until the index holds every document.
            await stub.ListTwins(registry_pb2.ListTwinsRequest(min_revision=last), timeout=1800)
            twins = lines * (MACHINES_PER_LINE + 1)
            results = {"twins": twins, "load_s": time.perf_counter() - started}
            results |= await query_latencies(stub)
            results["index_mb"] = rss_mb(registry_pid) - baseline_mb
            results["index_bytes_per_twin"] = results["index_mb"] * 2**20 / twins
            by_size[str(twins)] = results
    return by_size


async def ontology_import(target: str, token: str) -> dict[str, float]:
    """validate_only of a generated 1,000-interface DTDL ontology, against parsing its JSON."""
    files = generate_ontology(interfaces=1000)
    sources = [
        registry_pb2.ModelSource(name=f.name, format=registry_pb2.MODEL_FORMAT_DTDL, content=f.text)
        for f in files
    ]
    request = registry_pb2.CreateModelsRequest(sources=sources, validate_only=True)
    async with authorized_channel(target, token) as channel:
        stub: Any = registry_pb2_grpc.RegistryServiceStub(channel)
        await stub.CreateModels(request, timeout=120)  # warm: pint's registry, code paths
        runs = []
        for _ in range(5):
            began = time.perf_counter()
            await stub.CreateModels(request, timeout=120)
            runs.append(time.perf_counter() - began)
    began = time.perf_counter()
    for _ in range(5):
        for f in files:
            json.loads(f.text.removeprefix("\ufeff"))
    json_s = (time.perf_counter() - began) / 5
    return {"interfaces": len(files), "validate_s": float(np.median(runs)), "json_s": json_s}


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
            raw = asyncio.run(raw_kv(platform.nats.url, platform.nats_admin))
            console.print("registry: empty unary gRPC calls (health check)")
            empty = asyncio.run(empty_unary_calls(platform.services["registry"].target))
            console.print("registry: conditional UpdateTwin through gRPC")
            twinstack = asyncio.run(
                registry_updates(platform.services["registry"].target, platform.admin_token)
            )
            console.print("registry: queries over 10,000, 100,000 and 1,000,000 twins")
            registry_pid = platform.services["registry"].process.pid
            assert registry_pid is not None
            by_size = asyncio.run(
                queries_by_registry_size(
                    platform.services["registry"].target,
                    platform.nats.url,
                    platform.admin_token,
                    platform.nats_admin,
                    registry_pid,
                )
            )
            queries = by_size[str(100_000)]
            console.print("registry: validate_only of a 1,000-interface DTDL ontology")
            ontology = asyncio.run(
                ontology_import(platform.services["registry"].target, platform.admin_token)
            )
        finally:
            platform.stop()

    def stats(seconds: float, latencies: np.ndarray) -> dict[str, float]:
        return {
            "per_s": len(latencies) / seconds,
            "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)),
        }

    put, get_update, updates = stats(*raw["put"]), stats(*raw["get_update"]), stats(*twinstack)
    grpc_floor = stats(*empty)
    results = {
        "concurrency": CONCURRENCY,
        "operations": OPERATIONS,
        "raw_kv_put": put,
        "raw_kv_get_update": get_update,
        "conditional_update": updates,
        "vs_raw_put": updates["per_s"] / put["per_s"],
        "vs_raw_get_update": updates["per_s"] / get_update["per_s"],
        "grpc_empty_unary": grpc_floor,
        "vs_grpc_empty_unary": updates["per_s"] / grpc_floor["per_s"],
        "queries": queries,
        "queries_by_registry_size": by_size,
        "ontology": ontology,
    }
    show(
        f"registry: conditional twin updates, {CONCURRENCY} concurrent clients",
        [
            ("raw nats.py KV put", f"{put['per_s']:,.0f}/s  p99 {put['p99_ms']:.1f} ms",
             "baseline"),
            ("raw KV get + update(last)", f"{get_update['per_s']:,.0f}/s  p99 "
             f"{get_update['p99_ms']:.1f} ms", "baseline (the same compare-and-set)"),
            ("empty unary gRPC call (health check)", f"{grpc_floor['per_s']:,.0f}/s  p99 "
             f"{grpc_floor['p99_ms']:.1f} ms", "baseline (grpc.aio's floor here)"),
            ("UpdateTwin, conditional",
             f"{updates['per_s']:,.0f}/s  p50 {updates['p50_ms']:.1f} ms",
             f"{updates['per_s'] / put['per_s']:.0%} of raw put, "
             f"{updates['per_s'] / get_update['per_s']:.0%} of raw get+update, "
             f"{updates['per_s'] / grpc_floor['per_s']:.0%} of an empty call"),
            ("", f"p99 {updates['p99_ms']:.1f} ms",
             f"target >= {TARGET_PER_S}/s, p99 <= {TARGET_P99_MS:.0f} ms; "
             f"{updates['per_s'] / AZURE_DIGITAL_TWINS_PATCHES_PER_S:.1f}x ADT's default limit"),
        ],
    )  # fmt: skip
    show(
        f"registry: QueryTwins on {queries['twins']:,} twins (indexed from the KV watch in "
        f"{queries['load_s']:.1f} s)",
        [
            (name, f"p50 {q['p50_ms']:.1f} ms  p99 {q['p99_ms']:.1f} ms",
             f"{q['page_matches']} twins on the first page")
            for name, q in queries.items()
            if isinstance(q, dict)
        ],
    )  # fmt: skip
    sizes = [by_size[size]["twins"] for size in by_size]
    results["curve_query_vs_registry_size"] = curve(
        "cost curve: QueryTwins p50 against registry size",
        "twins",
        sizes,
        {
            f"{name} (ms)": [by_size[str(size)][name]["p50_ms"] for size in sizes]
            for name in (*QUERIES, *WHOLE_SCANS.values())
        },
    )
    results["curve_index_memory"] = curve(
        "cost curve: the registry's resident memory over an empty registry",
        "twins",
        sizes,
        {
            "index memory (MB)": [by_size[str(size)]["index_mb"] for size in sizes],
            "per twin (KiB)": [
                by_size[str(size)]["index_bytes_per_twin"] / 2**10 for size in sizes
            ],
        },
    )
    show(
        "registry: CreateModels validate_only of a generated DTDL ontology",
        [
            (f"{ontology['interfaces']:,} interfaces in as many files",
             f"{ontology['validate_s'] * 1000:.0f} ms",
             f"{ontology['validate_s'] / ontology['json_s']:.0f}x json.loads of the same files "
             f"({ontology['json_s'] * 1000:.0f} ms); target well under 1 s"),
        ],
    )  # fmt: skip
    save("registry", results)
    return results


if __name__ == "__main__":
    run()
