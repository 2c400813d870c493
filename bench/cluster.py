"""The highly available layout next to the single-node one, in one run: ingest throughput and
telemetry-to-state latency with a 3-node NATS cluster (R3) and two replicas of each service,
against raw JetStream publishes on the same servers, and the time to recover from each fault.

Faults, each on the running HA platform:

* the TELEMETRY stream's leader SIGKILLed: from the kill to the first ingest call started
  after it that is acknowledged;
* a state replica SIGKILLed: from the kill to every partition held by the survivor, and to a
  sample of a twin whose partition moved being visible in its live state.

And the cost of flushing every write to disk (``sync_interval: always``, the manifests'
choice) against the server's default, on raw R3 publishes.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.pipeline import (
    BATCHES,
    LATENCY_TWINS,
    MODEL,
    SAMPLES_PER_TWIN_PER_BATCH,
    START_NS,
    TWINS,
    end_to_end,
    make_frames,
    percentile,
    raw_nats,
    state_latency,
)
from bench.report import console, save, show
from twinstack.api.ingestion.v1.ingestion_pb2 import IngestBatchRequest
from twinstack.common.ids import partition_of
from twinstack.common.nats import TELEMETRY_STREAM, NatsConnection, connect_nats
from twinstack.devstack import LocalPlatform, NatsCluster, wait_until
from twinstack.sdk import ApiError, Client, ConnectConfig, Endpoints, Point
from twinstack.sdk.models import example_model_sources

SERVICES = ("registry", "ingestion", "state")
PARTITIONS = 8  # TWINSTACK_TELEMETRY_PARTITIONS's default, which the platforms run with
SYNC_MESSAGES = 20_000
SYNC_LATENCY_SAMPLES = 300


def started(scratch: Path, *, ha: bool) -> LocalPlatform:
    platform = LocalPlatform(
        scratch,
        nats_port=0,
        influx_port=0,
        service_ports=dict.fromkeys(SERVICES, 0),
        services=SERVICES,
        ha=ha,
    )
    platform.start()
    return platform


def client_of(platform: LocalPlatform) -> Client:
    endpoints = Endpoints(**platform.targets(), simulation="127.0.0.1:1")
    return Client(ConnectConfig(endpoints, token=platform.admin_token, timeout_s=120))


def measure_pipeline(platform: LocalPlatform, *, replicas: int) -> dict[str, float]:
    """Raw JetStream publishes, end-to-end ingest until stored, and state latency."""
    frames = make_frames("frames")
    total = TWINS * SAMPLES_PER_TWIN_PER_BATCH * BATCHES
    nats_s = asyncio.run(
        raw_nats(platform.nats.url, platform.nats_admin, frames, replicas=replicas)
    )
    with client_of(platform) as client:
        client.registry.create_models(example_model_sources())
        for prefix in ("frames", "lat"):
            for twin in range(TWINS):
                client.registry.create_twin(f"{prefix}-{twin:03d}", MODEL)
        requests = [IngestBatchRequest(frames=batch) for batch in frames]
        _, stored_s = end_to_end(client, platform, "frames", requests)
        latencies = state_latency(client, platform, LATENCY_TWINS)
    return {
        "raw_nats_points_per_s": total / nats_s,
        "e2e_stored_points_per_s": total / stored_s,
        "state_latency_p50_ms": percentile(latencies, 50),
        "state_latency_p99_ms": percentile(latencies, 99),
    }


async def stream_leader(platform: LocalPlatform, stream: str = TELEMETRY_STREAM) -> str:
    """The server name of a stream's leader on the HA platform."""
    admin = platform.nats_admin
    client = await connect_nats(
        NatsConnection(platform.nats.url, admin["user"], admin["password"]), "bench-leader"
    )
    try:
        info = await client.jetstream().stream_info(stream)
    finally:
        await client.close()
    assert info.cluster is not None
    return info.cluster.leader or ""


def ingest_once(client: Client, twin_id: str, seq: int) -> bool:
    try:
        client.telemetry.ingest([Point(twin_id, {"cycles": seq}, START_NS + seq * 10**6)])
    except ApiError:
        return False
    return True


def leader_loss_recovery_s(platform: LocalPlatform, client: Client) -> float:
    """From SIGKILL of the TELEMETRY leader to the first acknowledged ingest started after."""
    assert isinstance(platform.nats, NatsCluster)
    client.registry.create_twin("fault-000", MODEL)
    leader = platform.nats.node(asyncio.run(stream_leader(platform)))
    leader.kill()
    killed = time.perf_counter()
    seq = 0
    while not ingest_once(client, "fault-000", seq):
        seq += 1
        time.sleep(0.01)  # the measurement's resolution, so a refusing cluster is not hammered
    recovered = time.perf_counter() - killed
    leader.start()
    return recovered


def state_replica_loss_s(platform: LocalPlatform, client: Client) -> tuple[float, float]:
    """From SIGKILL of one of two state replicas to every partition held by the other, and to
    a sample of a twin of a moved partition being live."""
    victim = platform.replicas["state"][1]
    # After the previous fault the replicas may still be sharing the partitions out again.
    wait_until(
        lambda: (
            {p.member for p in client.state.cluster_status().partitions}
            == {replica.name for replica in platform.replicas["state"]}
        ),
        timeout_s=60,
        interval_s=0.2,
        what="the partitions shared by both state replicas",
    )
    owners = {p.partition: p.member for p in client.state.cluster_status().partitions}
    moved = [p for p, member in owners.items() if member == victim.name]
    twin_number = next(
        n for n in range(1000) if partition_of(f"moved-{n:03d}", PARTITIONS) in moved
    )
    moved_twin = f"moved-{twin_number:03d}"
    client.registry.create_twin(moved_twin, MODEL)
    victim.process.kill()
    killed = time.perf_counter()

    def all_held() -> bool:
        try:
            status = client.state.cluster_status()
        except ApiError:
            return False
        return all(p.member == platform.replicas["state"][0].name for p in status.partitions)

    wait_until(all_held, timeout_s=60, interval_s=0.1, what="partitions moved")
    held_s = time.perf_counter() - killed
    client.telemetry.ingest([Point(moved_twin, {"cycles": 7}, START_NS)])

    def live() -> bool:
        try:
            state = client.state.get_state(moved_twin)
        except ApiError:
            return False
        return "cycles" in state.reported

    wait_until(live, timeout_s=60, interval_s=0.05, what="state of a moved twin")
    live_s = time.perf_counter() - killed
    victim.process.start(timeout_s=120)
    return held_s, live_s


async def publish_rate(url: str) -> tuple[float, float, float]:
    """R3 publishes: messages/s with 256 in flight, then one at a time p50 and p99 (ms)."""
    client = await connect_nats(url, "bench-sync")
    js = client.jetstream()
    await js.add_stream(name="SYNC", subjects=["sync.>"], num_replicas=3)
    payload = b"x" * 200
    started_at = time.perf_counter()
    pending: list[Any] = []
    for i in range(SYNC_MESSAGES):
        pending.append(await js.publish_async(f"sync.{i % 8}", payload))
        if len(pending) >= 256:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    rate = SYNC_MESSAGES / (time.perf_counter() - started_at)
    latencies = []
    for _ in range(SYNC_LATENCY_SAMPLES):
        sent = time.perf_counter()
        await js.publish("sync.one", payload)
        latencies.append((time.perf_counter() - sent) * 1000)
    await client.close()
    return rate, percentile(latencies, 50), percentile(latencies, 99)


def sync_costs(scratch: Path) -> dict[str, tuple[float, float, float]]:
    found = {}
    for name, config in (("default", None), ("always", "jetstream { sync_interval: always }\n")):
        cluster = NatsCluster(scratch / f"sync-{name}", authorization=config)
        cluster.start()
        try:
            found[name] = asyncio.run(publish_rate(cluster.url))
        finally:
            cluster.stop()
    return found


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="twinstack-bench-cluster-") as scratch:
        console.print("[bold]cluster[/bold]: single node, one replica of each service")
        single_platform = started(Path(scratch) / "single", ha=False)
        try:
            single = measure_pipeline(single_platform, replicas=1)
        finally:
            single_platform.stop()
        console.print("cluster: 3 NATS nodes (R3), two replicas of each service")
        ha_platform = started(Path(scratch) / "ha", ha=True)
        try:
            ha = measure_pipeline(ha_platform, replicas=3)
            with client_of(ha_platform) as client:
                console.print("cluster: SIGKILL of the TELEMETRY leader")
                leader_s = leader_loss_recovery_s(ha_platform, client)
                console.print("cluster: SIGKILL of a state replica")
                held_s, live_s = state_replica_loss_s(ha_platform, client)
        finally:
            ha_platform.stop()
        console.print("cluster: sync_interval default vs always, raw R3 publishes")
        sync = sync_costs(Path(scratch))

    results = {
        "single": single,
        "ha": ha,
        "ha_vs_single_stored_throughput": ha["e2e_stored_points_per_s"]
        / single["e2e_stored_points_per_s"],
        "ha_e2e_vs_raw_r3_nats": ha["e2e_stored_points_per_s"] / ha["raw_nats_points_per_s"],
        "telemetry_leader_loss_to_first_ack_s": leader_s,
        "state_replica_loss_to_partitions_held_s": held_s,
        "state_replica_loss_to_moved_twin_live_s": live_s,
        "sync_default": dict(zip(("msgs_per_s", "p50_ms", "p99_ms"), sync["default"], strict=True)),
        "sync_always": dict(zip(("msgs_per_s", "p50_ms", "p99_ms"), sync["always"], strict=True)),
    }
    default, always = sync["default"], sync["always"]
    one_raw, one_stored = single["raw_nats_points_per_s"], single["e2e_stored_points_per_s"]
    ha_raw, ha_stored = ha["raw_nats_points_per_s"], ha["e2e_stored_points_per_s"]
    show(
        "cluster: the HA layout next to one node (same points, same run)",
        [
            ("one node: raw nats.py publish (R1)", f"{one_raw:,.0f} points/s", "baseline"),
            ("one node: twinstack, stored", f"{one_stored:,.0f} points/s",
             f"{one_stored / one_raw:.0%} of raw R1"),
            ("one node: telemetry -> state p99", f"{single['state_latency_p99_ms']:.1f} ms", ""),
            ("HA: raw nats.py publish (R3)", f"{ha_raw:,.0f} points/s", "baseline"),
            ("HA: twinstack, stored", f"{ha_stored:,.0f} points/s",
             f"{ha_stored / ha_raw:.0%} of raw R3, {ha_stored / one_stored:.0%} of one node"),
            ("HA: telemetry -> state p99", f"{ha['state_latency_p99_ms']:.1f} ms",
             "target <= 50 ms"),
            ("TELEMETRY leader killed -> first ack", f"{leader_s:.2f} s", ""),
            ("state replica killed -> partitions held", f"{held_s:.1f} s", "lease TTL 10 s"),
            ("state replica killed -> moved twin live", f"{live_s:.1f} s", ""),
            ("R3 publish, sync default (2 min)", f"{default[0]:,.0f} msgs/s",
             f"p50 {default[1]:.2f} ms, p99 {default[2]:.2f} ms"),
            ("R3 publish, sync_interval: always", f"{always[0]:,.0f} msgs/s",
             f"{always[0] / default[0]:.0%}; p50 {always[1]:.2f} ms, p99 {always[2]:.2f} ms"),
        ],
    )  # fmt: skip
    save("cluster", results)
    return results


if __name__ == "__main__":
    run()
