"""End-to-end ingest (gRPC -> JetStream -> historian -> InfluxDB), against raw baselines, and
telemetry-to-state latency at a fixed rate.

The same points, in the same batch size, are written in one run on the same servers: straight
to InfluxDB (pre-built line protocol POSTed to /write), straight to JetStream (pre-serialised
batches published with nats.py), and through twinstack, timed until InfluxDB holds every
point: once as frames (the columnar form) and once as single points.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
from nats.js.api import StreamConfig

from bench.report import console, curve, save, show
from twinstack.api.common.v1 import events_pb2, types_pb2
from twinstack.api.ingestion.v1.ingestion_pb2 import IngestBatchRequest
from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.frames import frame_lines
from twinstack.common.influx import InfluxStore
from twinstack.common.nats import (
    REGISTRY_BUCKET,
    TELEMETRY_STREAM,
    NatsConnection,
    connect_nats,
    message_headers,
    twin_key,
)
from twinstack.common.series import (
    ALL_MEASUREMENTS,
    MEASUREMENTS,
    TWIN_ID_TAG,
    from_clause,
    twin_tag,
)
from twinstack.devstack import InfluxServer, LocalPlatform
from twinstack.sdk import (
    Client,
    ConnectConfig,
    Endpoints,
    Point,
    ResourceExhaustedError,
    make_frame,
)
from twinstack.sdk.models import example_model_sources

TWINS = 20
SAMPLES_PER_TWIN_PER_BATCH = 250
BATCHES = 40
CLIENT_THREADS = 2
THINGSBOARD_2VCPU_VALUES_PER_S = 15_000
MODEL = "dtmi:twinstack:examples:HydraulicPress;1"
HISTORIAN_DURABLE = "historian"
START_NS = (time.time_ns() // 10**9 - 86_400) * 10**9
# Latency: this many points a second, sent as small batches every LATENCY_TICK_S.
LATENCY_POINTS_PER_S = 10_000
LATENCY_TICK_S = 0.02
LATENCY_DURATION_S = 6.0
# The latency target holds on every run: the bench reports the worst p99 of this many rounds.
LATENCY_ROUNDS = 3
# Throughput against raw InfluxDB: this many rounds, each of the raw baseline, then frames,
# then single points, and the median of the rounds' ratios. One pair of one-second runs is
# at the mercy of this kind of VM, whose speed drifts by tens of percent from minute to minute.
THROUGHPUT_ROUNDS = 3
# Cost curve against distinct twins: the same points over 1, 100 and 10,000 twins; the Watch
# follows at most CURVE_WATCHED of them.
CURVE_TWINS = [1, 100, 10_000]
CURVE_POINTS = 100_000
CURVE_BATCH_POINTS = 5_000
CURVE_WATCHED = 100
# Each latency round (and the curve's latency part) sends samples this much later than the
# ingest before it: live state keeps the newest sample, so older ones would change nothing.
CURVE_LATER_NS = 3600 * 10**9
LATENCY_TWINS = [f"lat-{t:03d}" for t in range(TWINS)]


def make_frames(twin_prefix: str) -> list[list[types_pb2.TelemetryFrame]]:
    """BATCHES requests of one frame per twin, SAMPLES_PER_TWIN_PER_BATCH rows each."""
    batches = []
    for b in range(BATCHES):
        rows = range(b * SAMPLES_PER_TWIN_PER_BATCH, (b + 1) * SAMPLES_PER_TWIN_PER_BATCH)
        columns: dict[str, list[Any]] = {
            "temperature_c": [40.0 + n % 50 / 7 for n in rows],
            "vibration_mm_s": [2.5 + n % 13 / 10 for n in rows],
            "cycles": list(rows),
        }
        times = [START_NS + n * 10**6 for n in rows]
        batches.append([make_frame(f"{twin_prefix}-{t:03d}", times, columns) for t in range(TWINS)])
    return batches


def as_points(frames: list[types_pb2.TelemetryFrame]) -> list[types_pb2.TelemetryPoint]:
    points = []
    for frame in frames:
        names = [column.field for column in frame.columns]
        columns = [
            column.double_values.values or column.int_values.values for column in frame.columns
        ]
        for row, time_ns in enumerate(frame.time_unix_ns):
            fields = {name: values[row] for name, values in zip(names, columns, strict=True)}
            points.append(Point(frame.twin_id, fields, time_ns).to_proto())
    return points


async def raw_influx(influx: InfluxServer, batches: list[list[types_pb2.TelemetryFrame]]) -> float:
    database = f"raw_{uuid.uuid4().hex[:8]}"
    bodies = [
        "\n".join(
            line for f in batch for line in frame_lines(f, MEASUREMENTS, TWIN_ID_TAG)
        ).encode()
        for batch in batches
    ]
    credentials = influx.credentials
    auth = {"u": credentials["username"], "p": credentials["password"]} if credentials else {}
    # The HTTP client the historian uses, so that the ratio compares pipelines, not clients.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        async with http.post(
            f"{influx.url}/query", params={"q": f'CREATE DATABASE "{database}"', **auth}
        ) as created:
            created.raise_for_status()
        started = time.perf_counter()
        for body in bodies:
            async with http.post(
                f"{influx.url}/write",
                params={"db": database, "precision": "ns", **auth},
                data=body,
            ) as response:
                response.raise_for_status()
        return time.perf_counter() - started


async def raw_nats(
    url: str,
    admin: dict[str, str],
    batches: list[list[types_pb2.TelemetryFrame]],
    *,
    replicas: int = 1,
) -> float:
    client = await connect_nats(NatsConnection(url, admin["user"], admin["password"]), "bench-raw")
    js = client.jetstream()
    await js.add_stream(StreamConfig(name="BENCH", subjects=["bench.>"], num_replicas=replicas))
    messages = [
        [
            (
                f"bench.{f.twin_id}",
                events_pb2.TelemetryBatch(frame=f).SerializeToString(),
                f"{b}-{f.twin_id}",
            )
            for f in batch
        ]
        for b, batch in enumerate(batches)
    ]
    started = time.perf_counter()
    for batch_messages in messages:
        await asyncio.gather(
            *(js.publish(s, data, headers=message_headers(i)) for s, data, i in batch_messages)
        )
    elapsed = time.perf_counter() - started
    await js.delete_stream("BENCH")
    await client.close()
    return elapsed


async def stored_points(influx: InfluxServer, prefix: str) -> int:
    store = InfluxStore(influx.url, "twinstack", **influx.credentials)
    try:
        series = await store.query(
            f"SELECT count(cycles) FROM {from_clause(ALL_MEASUREMENTS)} "
            f"WHERE {twin_tag()} =~ /^{prefix}-/"
        )
    finally:
        await store.close()
    return sum(int(found.values[0][1]) for found in series)


async def caught_up(
    nats_url: str, admin: dict[str, str], deadline_s: float, *, only: str | None = None
) -> None:
    """Returns once the durable consumers of the TELEMETRY stream (``only`` that one) have
    acknowledged every message in the stream now.

    The historian acknowledges a message only after InfluxDB accepted its points, so for it
    this is the moment they are stored; polling InfluxDB with a count instead would load the
    server being measured with queries over everything written so far. For the state service's
    partition consumers it is the moment live state holds everything sent.
    """
    client = await connect_nats(NatsConnection(nats_url, admin["user"], admin["password"]), "bench")
    try:
        js = client.jetstream()
        names = [only] if only else [c.name for c in await js.consumers_info(TELEMETRY_STREAM)]
        deadline = time.monotonic() + deadline_s
        for name in names:
            # Counted over the consumer's own filter (a state partition's subjects), which an
            # ack floor compared with the stream's last sequence would not be.
            while True:
                info = await js.consumer_info(TELEMETRY_STREAM, name)
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} did not catch up within {deadline_s} s")
                await asyncio.sleep(0.01)
    finally:
        await client.close()


def end_to_end(
    client: Client, platform: LocalPlatform, prefix: str, requests: list[IngestBatchRequest]
) -> tuple[float, float]:
    """Seconds until every request was acknowledged, and until the historian stored every
    point; then checks that InfluxDB holds them all."""
    total = sum(len(r.points) + sum(len(f.time_unix_ns) for f in r.frames) for r in requests)

    def ingest(request: IngestBatchRequest) -> None:
        # Pushed back (more messages in flight than ingestion allows): again after the pause it
        # asks for, as a client should; the de-duplication ids make a repeat store nothing.
        while True:
            try:
                client.telemetry.ingest_batch(request)
                return
            except ResourceExhaustedError as error:
                time.sleep(error.retry_after_s or 0.5)

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(ingest, requests))
    acked_s = time.perf_counter() - started
    asyncio.run(caught_up(platform.nats.url, platform.nats_admin, 600, only=HISTORIAN_DURABLE))
    stored_s = time.perf_counter() - started
    stored = asyncio.run(stored_points(platform.influx, prefix))
    if stored != total:
        raise AssertionError(f"InfluxDB holds {stored} of the {total} points sent")
    return acked_s, stored_s


class CyclesWatch:
    """Milliseconds from sending a ``cycles`` value of a twin to that value being visible in a
    Watch (a watcher that lags behind skips to the latest state: not every send is seen)."""

    def __init__(self, client: Client, twin_ids: list[str], timeout_s: float) -> None:
        self.sent_at: dict[tuple[str, int], float] = {}
        self.latencies: list[float] = []
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, args=(client, twin_ids, timeout_s), daemon=True
        )

    def _watch(self, client: Client, twin_ids: list[str], timeout_s: float) -> None:
        for response in client.state.watch(twin_ids, timeout_s=timeout_s):
            self._ready.set()
            state = response.state
            cycles = state.reported["cycles"].value.int_value if "cycles" in state.reported else -1
            sent = self.sent_at.pop((state.twin_id, cycles), None)
            if sent is not None:
                self.latencies.append((time.perf_counter() - sent) * 1000)
            if self._stop.is_set() and not self.sent_at:
                return

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(30)

    def finish(self, timeout_s: float) -> list[float]:
        self._stop.set()
        self._thread.join(timeout_s)
        return self.latencies


def state_latency(
    client: Client,
    platform: LocalPlatform,
    twin_ids: list[str],
    watched: list[str] | None = None,
    *,
    start_ns: int = START_NS,
) -> list[float]:
    """Milliseconds from sending a batch to its newest sample being visible in a Watch of
    ``watched`` (all of ``twin_ids`` by default). LATENCY_POINTS_PER_S points a second go to
    ``twin_ids``: to each of them every tick, or, when there are more twins than points in a
    tick, to the next ones in turn. Sample times start at ``start_ns``: later than any sample
    the twins already have, or live state (newest wins) would not change."""
    watched = watched or twin_ids
    # Steady state, not the drain of a backlog that an earlier measurement left behind.
    asyncio.run(caught_up(platform.nats.url, platform.nats_admin, 600))
    watch = CyclesWatch(client, watched, LATENCY_DURATION_S + 15)
    sent_at = watch.sent_at
    watched_set = set(watched)
    client.telemetry.ingest(frames=[make_frame(t, [start_ns], {"cycles": [0]}) for t in watched])
    watch.start()
    per_tick = int(LATENCY_POINTS_PER_S * LATENCY_TICK_S)
    twins_per_tick = min(len(twin_ids), per_tick)
    rows = per_tick // twins_per_tick
    sequence = 1
    turn = 0
    next_tick = time.perf_counter()
    end = next_tick + LATENCY_DURATION_S
    while next_tick < end:
        tick_twins = [twin_ids[(turn + j) % len(twin_ids)] for j in range(twins_per_tick)]
        turn = (turn + twins_per_tick) % len(twin_ids)
        cycles = list(range(sequence, sequence + rows))
        times = [start_ns + c * 10**6 for c in cycles]
        frames = [make_frame(twin_id, times, {"cycles": cycles}) for twin_id in tick_twins]
        now = time.perf_counter()
        for twin_id in tick_twins:
            if twin_id in watched_set:
                sent_at[(twin_id, sequence + rows - 1)] = now
        client.telemetry.ingest(frames=frames)
        sequence += rows
        next_tick += LATENCY_TICK_S
        time.sleep(max(0.0, next_tick - time.perf_counter()))
    return watch.finish(15)


async def register_twins(nats_url: str, admin: dict[str, str], twin_ids: list[str]) -> int:
    """Twin documents written straight into the registry bucket (as an import would); returns
    the last revision."""
    client = await connect_nats(NatsConnection(nats_url, admin["user"], admin["password"]), "bench")
    try:
        kv = await client.jetstream().key_value(REGISTRY_BUCKET)
        last = 0
        for start in range(0, len(twin_ids), 1000):
            revisions = await asyncio.gather(
                *(
                    kv.put(twin_key(t), registry_pb2.Twin(id=t, model_id=MODEL).SerializeToString())
                    for t in twin_ids[start : start + 1000]
                )
            )
            last = max(last, *revisions)
        return last
    finally:
        await client.close()


def spread_over_twins(prefix: str, twins: int) -> list[IngestBatchRequest]:
    """CURVE_POINTS points in batches of CURVE_BATCH_POINTS, spread evenly over ``twins``: a
    frame per twin per batch, or, with more twins than points in a batch, one row for each of
    the next twins in turn."""
    twins_per_batch = min(twins, CURVE_BATCH_POINTS)
    rows_per_twin = CURVE_BATCH_POINTS // twins_per_batch
    sequence = [0] * twins
    turn = 0
    requests = []
    for _ in range(CURVE_POINTS // CURVE_BATCH_POINTS):
        frames = []
        for j in range(twins_per_batch):
            twin = (turn + j) % twins
            rows = range(sequence[twin], sequence[twin] + rows_per_twin)
            sequence[twin] += rows_per_twin
            columns: dict[str, list[Any]] = {
                "temperature_c": [40.0 + n % 50 / 7 for n in rows],
                "vibration_mm_s": [2.5 + n % 13 / 10 for n in rows],
                "cycles": list(rows),
            }
            times = [START_NS + n * 10**6 for n in rows]
            frames.append(make_frame(f"{prefix}-{twin:05d}", times, columns))
        turn = (turn + twins_per_batch) % twins
        requests.append(IngestBatchRequest(frames=frames))
    return requests


def twins_curve(client: Client, platform: LocalPlatform) -> dict[str, Any]:
    """Ingest (stored) and telemetry-to-state latency against the number of distinct twins."""
    ids = {n: [f"curve{n}-{t:05d}" for t in range(n)] for n in CURVE_TWINS}
    last = asyncio.run(
        register_twins(platform.nats.url, platform.nats_admin, [t for n in ids.values() for t in n])
    )
    # Read-your-write: the registry's index holds them all (ingest reads the bucket on a miss).
    next(iter(client.registry.list_twins(min_revision=last, page_size=1)), None)
    per_point_us, p99_ms = [], []
    for n in CURVE_TWINS:
        console.print(f"pipeline: cost curve, {n:,} distinct twins")
        _, stored_s = end_to_end(client, platform, f"curve{n}", spread_over_twins(f"curve{n}", n))
        per_point_us.append(stored_s / CURVE_POINTS * 1e6)
        step = max(1, n // CURVE_WATCHED)
        latencies = state_latency(
            client,
            platform,
            ids[n],
            ids[n][::step][:CURVE_WATCHED],
            start_ns=START_NS + LATENCY_ROUNDS * CURVE_LATER_NS,
        )
        p99_ms.append(percentile(latencies, 99))
    return curve(
        f"cost curve: ingest of {CURVE_POINTS:,} points (frames, stored) and telemetry -> state "
        f"at {LATENCY_POINTS_PER_S:,} points/s, against distinct twins",
        "twins",
        CURVE_TWINS,
        {"ingest time per point (us)": per_point_us, "state p99 (ms)": p99_ms},
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def run() -> dict[str, Any]:
    total_points = TWINS * SAMPLES_PER_TWIN_PER_BATCH * BATCHES
    batch_points = TWINS * SAMPLES_PER_TWIN_PER_BATCH
    values_per_point = 3
    frames = make_frames("raw")
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
            console.print("pipeline: raw nats.py JetStream publishes")
            nats_s = asyncio.run(raw_nats(platform.nats.url, platform.nats_admin, frames))

            targets = {n: s.target for n, s in platform.services.items()}
            endpoints = Endpoints(**targets, simulation="127.0.0.1:1")
            with Client(
                ConnectConfig(endpoints, token=platform.admin_token, timeout_s=120)
            ) as client:
                client.registry.create_models(example_model_sources())
                prefixes = [f"{kind}{r}" for r in range(THROUGHPUT_ROUNDS) for kind in "fp"]
                for prefix in [*prefixes, "lat"]:
                    for twin in range(TWINS):
                        client.registry.create_twin(f"{prefix}-{twin:03d}", MODEL)
                throughput = []
                for r in range(THROUGHPUT_ROUNDS):
                    console.print(
                        f"pipeline: round {r + 1} of {THROUGHPUT_ROUNDS}: raw InfluxDB writes "
                        f"({BATCHES} x {batch_points} points), then twinstack frames, then "
                        "single points"
                    )
                    influx_s = asyncio.run(raw_influx(platform.influx, frames))
                    frame_requests = [
                        IngestBatchRequest(frames=batch) for batch in make_frames(f"f{r}")
                    ]
                    frame_times = end_to_end(client, platform, f"f{r}", frame_requests)
                    point_requests = [
                        IngestBatchRequest(points=as_points(batch))
                        for batch in make_frames(f"p{r}")
                    ]
                    point_times = end_to_end(client, platform, f"p{r}", point_requests)
                    throughput.append((influx_s, frame_times, point_times))
                console.print(
                    f"pipeline: telemetry to live state at {LATENCY_POINTS_PER_S:,} points/s"
                )
                rounds = [
                    state_latency(
                        client, platform, LATENCY_TWINS, start_ns=START_NS + r * CURVE_LATER_NS
                    )
                    for r in range(LATENCY_ROUNDS)
                ]
                twins_cost = twins_curve(client, platform)
        finally:
            platform.stop()

    # Each rate is the median over the rounds, and each ratio the median of the rounds' ratios.
    influx_rates = [total_points / raw_s for raw_s, _, _ in throughput]
    frame_rates = [total_points / stored_s for _, (_, stored_s), _ in throughput]
    point_rates = [total_points / stored_s for _, _, (_, stored_s) in throughput]
    frame_ratios = [e / i for e, i in zip(frame_rates, influx_rates, strict=True)]
    point_ratios = [p / i for p, i in zip(point_rates, influx_rates, strict=True)]
    influx_rate = statistics.median(influx_rates)
    e2e_rate = statistics.median(frame_rates)
    points_rate = statistics.median(point_rates)
    frames_acked_rate = statistics.median(total_points / a for _, (a, _), _ in throughput)
    points_acked_rate = statistics.median(total_points / a for _, _, (a, _) in throughput)
    frame_ratio = statistics.median(frame_ratios)
    point_ratio = statistics.median(point_ratios)
    nats_rate = total_points / nats_s
    latencies = [latency for measured in rounds for latency in measured]
    p50 = percentile(latencies, 50)
    round_p99s = [percentile(measured, 99) for measured in rounds]
    p99 = max(round_p99s)
    results = {
        "points": total_points,
        "batch_points": batch_points,
        "values_per_point": values_per_point,
        "throughput_rounds": THROUGHPUT_ROUNDS,
        "raw_influx_points_per_s": influx_rate,
        "raw_influx_points_per_s_by_round": influx_rates,
        "raw_nats_points_per_s": nats_rate,
        "e2e_acked_points_per_s": frames_acked_rate,
        "e2e_stored_points_per_s": e2e_rate,
        "e2e_stored_points_per_s_by_round": frame_rates,
        "e2e_vs_raw_influx": frame_ratio,
        "e2e_vs_raw_influx_by_round": frame_ratios,
        "e2e_vs_raw_nats": e2e_rate / nats_rate,
        "e2e_values_per_s": e2e_rate * values_per_point,
        "e2e_vs_thingsboard_2vcpu": e2e_rate * values_per_point / THINGSBOARD_2VCPU_VALUES_PER_S,
        "e2e_single_points_acked_points_per_s": points_acked_rate,
        "e2e_single_points_stored_points_per_s": points_rate,
        "e2e_single_points_stored_points_per_s_by_round": point_rates,
        "e2e_single_points_vs_raw_influx": point_ratio,
        "e2e_single_points_vs_raw_influx_by_round": point_ratios,
        "state_latency_rate_points_per_s": LATENCY_POINTS_PER_S,
        "state_latency_samples": len(latencies),
        "state_latency_p50_ms": p50,
        "state_latency_p99_ms": p99,
        "state_latency_p99_ms_by_round": round_p99s,
        "state_latency_mean_ms": statistics.fmean(latencies),
        "curve_vs_twins": twins_cost,
    }

    def by_round(ratios: list[float]) -> str:
        return "rounds " + " / ".join(f"{r:.0%}" for r in ratios)

    show(
        f"pipeline: {total_points:,} points of {values_per_point} values, {batch_points:,} a "
        f"batch; medians of {THROUGHPUT_ROUNDS} interleaved rounds",
        [
            ("raw InfluxDB /write", f"{influx_rate:,.0f} points/s",
             "baseline; " + " / ".join(f"{r:,.0f}" for r in influx_rates)),
            ("raw nats.py JetStream publish", f"{nats_rate:,.0f} points/s", "baseline"),
            ("twinstack frames, acknowledged", f"{frames_acked_rate:,.0f} points/s", ""),
            ("twinstack frames, stored in InfluxDB", f"{e2e_rate:,.0f} points/s",
             f"{frame_ratio:.0%} of raw InfluxDB (target >= 70%)"),
            ("", "", by_round(frame_ratios)),
            ("", "", f"{e2e_rate / nats_rate:.0%} of raw JetStream"),
            ("twinstack frames, values stored", f"{e2e_rate * values_per_point:,.0f} values/s",
             f"{e2e_rate * values_per_point / THINGSBOARD_2VCPU_VALUES_PER_S:.1f}x ThingsBoard "
             "2-vCPU (target >= 6x)"),
            ("twinstack single points, stored", f"{points_rate:,.0f} points/s",
             f"{point_ratio:.0%} of raw InfluxDB (target >= 50%)"),
            ("", "", by_round(point_ratios)),
            (f"telemetry -> state at {LATENCY_POINTS_PER_S:,}/s, p50", f"{p50:.1f} ms", ""),
            (f"telemetry -> state at {LATENCY_POINTS_PER_S:,}/s, p99, worst of {LATENCY_ROUNDS}",
             f"{p99:.1f} ms",
             f"rounds {' / '.join(f'{r:.0f}' for r in round_p99s)} ms (target <= 50 ms)"),
        ],
    )  # fmt: skip
    save("pipeline", results)
    return results


if __name__ == "__main__":
    run()
