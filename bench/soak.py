"""``make soak``: the highly available platform under mixed load for a while (30 minutes by
default), with a fault every few minutes, then a reckoning.

Load: ingest (a batch of one point per twin every 0.1 s, each batch sent until acknowledged),
a Watch of every twin, conditional twin updates, and a small sweep every 2 minutes. Faults, in
turn: the TELEMETRY leader SIGKILLed, a NATS node paused for 10 s, a state replica SIGKILLed,
the registry bucket's leader SIGKILLed, an ingestion replica sent SIGTERM, every NATS node
restarted in turn. At the end every acknowledged point must be in InfluxDB exactly once.

Writes ``bench/results/soak.json`` (acknowledged vs stored points, p99 latencies per minute,
each process's RSS slope, the faults) and ``bench/results/soak.png``.

    python -m bench.soak --minutes 30 --fault-interval-s 180
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cluster import stream_leader
from bench.pipeline import percentile
from bench.report import RESULTS, console, save, show
from twinstack.api.simulation.v1 import sweep_pb2
from twinstack.common.influx import InfluxStore
from twinstack.common.nats import REGISTRY_BUCKET
from twinstack.devstack import LocalPlatform, ManagedProcess, NatsCluster
from twinstack.sdk import ApiError, Client, ConnectConfig, Endpoints, Point, sweep_spec
from twinstack.sdk.models import example_model_sources

TWINS = 20
MODEL = "dtmi:twinstack:examples:Pump;1"
INGEST_PERIOD_S = 0.1
UPDATE_PERIOD_S = 0.05
SWEEP_PERIOD_S = 120.0
RSS_PERIOD_S = 15.0
FAULT_DOWN_S = 10.0
START_NS = (time.time_ns() // 10**9 - 2 * 86_400) * 10**9


class Minutes:
    """Latencies (ms) of each kind, per minute since the start."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        self._lock = threading.Lock()

    def add(self, kind: str, milliseconds: float) -> None:
        minute = int((time.monotonic() - self.started) // 60)
        with self._lock:
            self._values[kind][minute].append(milliseconds)

    def table(self) -> list[dict[str, Any]]:
        minutes = sorted({m for per_kind in self._values.values() for m in per_kind})
        rows = []
        for minute in minutes:
            row: dict[str, Any] = {"minute": minute}
            for kind, per_minute in self._values.items():
                values = per_minute.get(minute, [])
                row[f"{kind}_calls"] = len(values)
                row[f"{kind}_p99_ms"] = percentile(values, 99) if values else None
            rows.append(row)
        return rows


class Load:
    """The mixed load, each kind on its own thread, until stopped."""

    def __init__(self, client: Client, minutes: Minutes) -> None:
        self._client = client
        self._minutes = minutes
        self._stop = threading.Event()
        self.acknowledged_points = 0
        self.refusals: Counter[str] = Counter()
        self.updates: Counter[str] = Counter()
        self.sweeps: list[dict[str, Any]] = []
        self.watch_changes = 0
        self._threads = [
            threading.Thread(target=self._guarded(run), daemon=True, name=run.__name__)
            for run in (self._ingest, self._update, self._watch, self._sweep)
        ]
        self.failures: list[str] = []

    def _guarded(self, run: Callable[[], None]) -> Callable[[], None]:
        def guarded() -> None:
            try:
                run()
            except Exception as error:
                self.failures.append(f"{run.__name__}: {error!r}")
                raise

        return guarded

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _ingest(self) -> None:
        for seq in itertools.count():
            if self._stop.is_set():
                return
            points = [
                Point(f"soak-{t:03d}", {"temperature_c": 20.0 + seq % 100}, START_NS + seq * 10**8)
                for t in range(TWINS)
            ]
            while True:  # a careful client sends a batch until it is acknowledged
                sent = time.perf_counter()
                try:
                    self._client.telemetry.ingest(points)
                    break
                except ApiError as error:
                    self.refusals[f"ingest {error.code.name}"] += 1
                    time.sleep(0.2)
            self._minutes.add("ingest", (time.perf_counter() - sent) * 1000)
            self.acknowledged_points += len(points)
            self._stop.wait(INGEST_PERIOD_S)

    def _update(self) -> None:
        for n in itertools.count():
            if self._stop.wait(UPDATE_PERIOD_S):
                return
            twin_id = f"soak-{n % TWINS:03d}"
            sent = time.perf_counter()
            try:
                twin = self._client.registry.get_twin(twin_id)
                self._client.registry.update_twin(
                    twin_id,
                    {"rated_power_kw": 10.0 + n % 50},
                    expected_revision=twin.revision,
                )
            except ApiError as error:
                self.updates[error.code.name] += 1
                continue
            self.updates["OK"] += 1
            self._minutes.add("update", (time.perf_counter() - sent) * 1000)

    def _watch(self) -> None:
        twin_ids = [f"soak-{t:03d}" for t in range(TWINS)]
        while not self._stop.is_set():
            try:
                for change in self._client.state.watch(twin_ids, timeout_s=30):
                    received = change.state.last_received_time.ToNanoseconds()
                    if not change.catching_up and received:
                        self._minutes.add("state_lag", (time.time_ns() - received) / 1e6)
                    self.watch_changes += 1
                    if self._stop.is_set():
                        return
            except ApiError as error:
                self.refusals[f"watch {error.code.name}"] += 1

    def _sweep(self) -> None:
        while not self._stop.wait(SWEEP_PERIOD_S):
            started = time.perf_counter()
            try:
                sweep = self._client.sweeps.run(
                    sweep_spec(
                        "pump_thermal",
                        horizon_s=600,
                        step_s=1.0,
                        ranges={"load": (0.2, 1.0)},
                        samples=2000,
                        summaries_only=True,
                    ),
                    submitter="soak",
                )
                outcome = sweep_pb2.SweepState.Name(sweep.state)
            except ApiError as error:
                outcome = error.code.name
            self.sweeps.append({"duration_s": time.perf_counter() - started, "state": outcome})


class Faults:
    """Each fault in turn: what it does and to whom, recorded with its time."""

    def __init__(self, platform: LocalPlatform, minutes: Minutes) -> None:
        assert isinstance(platform.nats, NatsCluster)
        self._platform = platform
        self._cluster = platform.nats
        self._minutes = minutes
        self.injected: list[dict[str, Any]] = []
        self._kinds = itertools.cycle(
            [
                self.telemetry_leader_killed,
                self.nats_node_paused,
                self.state_replica_killed,
                self.registry_leader_killed,
                self.ingestion_replica_stopped,
                self.nats_rolling_restart,
            ]
        )

    def next(self) -> None:
        fault = next(self._kinds)
        at = time.monotonic() - self._minutes.started
        target = fault()
        self.injected.append({"at_s": round(at, 1), "fault": fault.__name__, "target": target})
        console.print(f"soak: {at / 60:5.1f} min  {fault.__name__} ({target})")

    def telemetry_leader_killed(self) -> str:
        node = self._cluster.node(asyncio.run(stream_leader(self._platform)))
        node.kill()
        time.sleep(FAULT_DOWN_S)
        node.start()
        return node.server_name

    def nats_node_paused(self) -> str:
        node = self._cluster.nodes[int(time.monotonic()) % len(self._cluster.nodes)]
        node.process.pause()
        time.sleep(FAULT_DOWN_S)
        node.process.resume()
        return node.server_name

    def state_replica_killed(self) -> str:
        replica = self._platform.replicas["state"][len(self.injected) % 2]
        replica.process.kill()
        replica.process.start(timeout_s=180)
        return replica.name

    def registry_leader_killed(self) -> str:
        name = asyncio.run(stream_leader(self._platform, f"KV_{REGISTRY_BUCKET}"))
        node = self._cluster.node(name)
        node.kill()
        time.sleep(FAULT_DOWN_S)
        node.start()
        return name

    def ingestion_replica_stopped(self) -> str:
        replica = self._platform.replicas["ingestion"][len(self.injected) % 2]
        replica.process.stop()
        replica.process.start(timeout_s=180)
        return replica.name

    def nats_rolling_restart(self) -> str:
        for node in self._cluster.nodes:
            node.stop()
            node.start()
        return "every node"


def rss_mb(process: ManagedProcess) -> float | None:
    if process.pid is None:
        return None
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
    except OSError:
        return None
    line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), None)
    return None if line is None else int(line.split()[1]) / 1024


def processes(platform: LocalPlatform) -> dict[str, ManagedProcess]:
    assert isinstance(platform.nats, NatsCluster)
    found = {node.server_name: node.process for node in platform.nats.nodes}
    found["influxd"] = platform.influx.process
    found |= {replica.name: replica.process for replica in platform.all_replicas}
    return found


def slope_mb_per_h(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) in MB per hour."""
    times = [t for t, _ in samples]
    values = [v for _, v in samples]
    mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
    spread = sum((t - mean_t) ** 2 for t in times)
    return (
        0.0 if not spread else sum((t - mean_t) * (v - mean_v) for t, v in samples) / spread * 3600
    )


def rss_slopes(samples: dict[tuple[str, int], list[tuple[float, float]]]) -> dict[str, Any]:
    """Per process, the slope over its longest life without a restart (at least 10 minutes)."""
    lives: dict[str, list[tuple[float, float]]] = {}
    for (name, _), life in samples.items():
        if len(life) > len(lives.get(name, [])):
            lives[name] = life
    return {
        name: {
            "mb_per_h": round(slope_mb_per_h(life), 2),
            "first_mb": round(life[0][1], 1),
            "last_mb": round(life[-1][1], 1),
            "minutes": round((life[-1][0] - life[0][0]) / 60, 1),
        }
        for name, life in sorted(lives.items())
        if life[-1][0] - life[0][0] >= 600
    }


async def stored_points(platform: LocalPlatform) -> int:
    store = InfluxStore(platform.influx.url, "twinstack", **platform.influx.credentials)
    try:
        series = await store.query(
            "SELECT count(temperature_c) FROM telemetry WHERE twin_id::tag =~ /^soak-/"
        )
    finally:
        await store.close()
    return int(series[0].values[0][1]) if series else 0


def plot(per_minute: list[dict[str, Any]], faults: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4))
    for kind in ("ingest", "update", "state_lag"):
        # A minute without a value is a gap in the line (NaN), not a line drawn across it.
        axis.plot(
            [r["minute"] for r in per_minute],
            [r.get(f"{kind}_p99_ms") or math.nan for r in per_minute],
            marker=".",
            label=f"{kind} p99",
        )
    for fault in faults:
        axis.axvline(fault["at_s"] / 60, color="grey", linewidth=0.8, linestyle=":")
    axis.set_yscale("log")
    axis.set_xlabel("minute (dotted: a fault)")
    axis.set_ylabel("ms")
    axis.legend()
    axis.set_title("soak: p99 latencies per minute under faults")
    figure.tight_layout()
    figure.savefig(path)


def run(minutes: float, fault_interval_s: float, name: str = "soak") -> dict[str, Any]:
    # Kept afterwards: every process's log is there for whoever reads the results.
    scratch = tempfile.mkdtemp(prefix="twinstack-soak-")
    platform = LocalPlatform(
        Path(scratch),
        nats_port=0,
        influx_port=0,
        service_ports=dict.fromkeys(("registry", "ingestion", "state", "simulation"), 0),
        ha=True,
    )
    console.print("[bold]soak[/bold]: starting the HA platform")
    platform.start()
    clock = Minutes()
    rss: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    try:
        endpoints = Endpoints(**platform.targets())
        with Client(ConnectConfig(endpoints, token=platform.admin_token, timeout_s=60)) as client:
            client.registry.create_models(example_model_sources())
            for t in range(TWINS):
                client.registry.create_twin(f"soak-{t:03d}", MODEL, {"rated_power_kw": 10.0})
            load = Load(client, clock)
            faults = Faults(platform, clock)
            load.start()
            end = time.monotonic() + minutes * 60
            next_fault = time.monotonic() + fault_interval_s
            next_rss = time.monotonic()
            while time.monotonic() < end:
                if time.monotonic() >= next_rss:
                    now = time.monotonic() - clock.started
                    for process_name, process in processes(platform).items():
                        value = rss_mb(process)
                        if value is not None and process.pid is not None:
                            rss[(process_name, process.pid)].append((now, value))
                    next_rss += RSS_PERIOD_S
                if time.monotonic() >= next_fault and time.monotonic() < end - 60:
                    faults.next()
                    next_fault = time.monotonic() + fault_interval_s
                time.sleep(1.0)
            load.stop()
            acknowledged = load.acknowledged_points
            deadline = time.monotonic() + 300
            stored = asyncio.run(stored_points(platform))
            while stored != acknowledged and time.monotonic() < deadline:
                time.sleep(2.0)
                stored = asyncio.run(stored_points(platform))
    finally:
        with contextlib.suppress(Exception):
            platform.stop()

    per_minute = clock.table()
    slopes = rss_slopes(rss)
    results = {
        "minutes": minutes,
        "fault_interval_s": fault_interval_s,
        "acknowledged_points": acknowledged,
        "stored_points": stored,
        "lost_points": acknowledged - stored,
        "faults": faults.injected,
        "refusals": dict(load.refusals),
        "conditional_updates": dict(load.updates),
        "watch_changes": load.watch_changes,
        "sweeps": load.sweeps,
        "load_failures": load.failures,
        "per_minute": per_minute,
        "rss": slopes,
    }
    path = save(name, results)
    plot(per_minute, faults.injected, RESULTS / f"{name}.png")
    worst = {
        kind: max((r.get(f"{kind}_p99_ms") or 0.0) for r in per_minute)
        for kind in ("ingest", "update", "state_lag")
    }
    steepest = max(slopes.items(), key=lambda item: item[1]["mb_per_h"], default=None)
    show(
        f"soak: {minutes:g} minutes, {len(faults.injected)} faults",
        [
            ("points acknowledged", f"{acknowledged:,}", ""),
            ("points stored in InfluxDB", f"{stored:,}",
             "exactly once" if stored == acknowledged else f"{acknowledged - stored:+,} MISSING"),
            ("conditional updates", f"{load.updates['OK']:,} won", str(dict(load.updates))),
            ("sweeps", f"{len(load.sweeps)}", str(Counter(s["state"] for s in load.sweeps))),
            ("worst minute's ingest p99", f"{worst['ingest']:.0f} ms", ""),
            ("worst minute's update p99", f"{worst['update']:.0f} ms", ""),
            ("worst minute's state lag p99", f"{worst['state_lag']:.0f} ms", ""),
            ("steepest RSS slope",
             f"{steepest[1]['mb_per_h']:+.1f} MB/h" if steepest else "-",
             steepest[0] if steepest else ""),
        ],
    )  # fmt: skip
    console.print(f"written: {path} and {RESULTS / f'{name}.png'}; logs in {scratch}/logs")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--fault-interval-s", type=float, default=180.0)
    parser.add_argument("--name", default="soak", help="bench/results/<name>.json and .png")
    arguments = parser.parse_args()
    results = run(arguments.minutes, arguments.fault_interval_s, arguments.name)
    if results["lost_points"] or results["load_failures"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
