"""The platform on a 3-node JetStream cluster (R3) with replicated services, under faults:
a stream leader killed, a node paused, every node restarted in turn, a state replica killed
and conditional writers spread over two registry replicas. Every acknowledged point reaches
InfluxDB and every acknowledged write is there afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import nats

from twinstack.api.common.v1 import events_pb2, types_pb2
from twinstack.api.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.api.state.v1 import state_pb2, state_pb2_grpc
from twinstack.common.ids import partition_of
from twinstack.common.influx import InfluxStore
from twinstack.common.kv_watch import scan
from twinstack.common.nats import (
    EVENTS_STREAM,
    REGISTRY_BUCKET,
    STATE_OWNERSHIP_BUCKET,
    TELEMETRY_STREAM,
    Backbone,
    JetStreamLayout,
    connect_nats,
    provision_jetstream,
)
from twinstack.common.server import GrpcServer, Service
from twinstack.common.settings import ServiceSettings
from twinstack.devstack import InfluxServer, ManagedProcess, NatsCluster, free_port
from twinstack.devstack.platform import grpc_serving
from twinstack.ingestion.app import IngestionApp
from twinstack.ingestion.settings import IngestionSettings
from twinstack.registry.app import RegistryApp
from twinstack.registry.settings import RegistrySettings
from twinstack.sdk import AsyncClient, ConnectConfig, Endpoints, Point
from twinstack.sdk.models import example_model_sources, model_sources
from twinstack.state.app import StateApp
from twinstack.state.cluster import layout_streams
from twinstack.state.ownership import PARTITION_KEY_PREFIX
from twinstack.state.settings import StateSettings

DEVICE = "dtmi:twinstack:test:Device;1"
POINTS_PER_BATCH = 20
T0_NS = (time.time_ns() // 10**9 - 7200) * 10**9
# A paused node stays paused this long: longer than JetStream's leader election.
PAUSE_S = 10.0
# Pace of the test's producer: steady load that two cores sustain beside three servers.
PRODUCER_PAUSE_S = 0.05


@contextlib.asynccontextmanager
async def serving(settings: ServiceSettings, app: Service) -> AsyncIterator[str]:
    """Runs a service in this process on a free port; yields its address."""
    server = GrpcServer(settings, app)
    port = await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop()


async def stream_leader(cluster: NatsCluster, stream: str) -> str:
    client = await connect_nats(cluster.url, "test-leader")
    try:
        info = await client.jetstream().stream_info(stream)
    finally:
        await client.close()
    assert info.cluster is not None
    assert info.cluster.leader
    return info.cluster.leader


def seq_batch(twin_id: str, number: int) -> ingestion_pb2.IngestBatchRequest:
    points = []
    for i in range(POINTS_PER_BATCH):
        seq = number * POINTS_PER_BATCH + i
        point = types_pb2.TelemetryPoint(
            twin_id=twin_id, fields={"seq": types_pb2.Value(int_value=seq)}
        )
        point.time.FromNanoseconds(T0_NS + seq * 10**6)
        points.append(point)
    return ingestion_pb2.IngestBatchRequest(points=points)


async def test_every_stream_and_bucket_made_on_one_replica_is_raised_to_three(
    nats_cluster: NatsCluster,
) -> None:
    client = await connect_nats(nats_cluster.url, "test-replicas")
    js = client.jetstream()
    try:
        await provision_jetstream(js, JetStreamLayout(replicas=1))
        await provision_jetstream(js, JetStreamLayout(replicas=3))
        names = layout_streams(JetStreamLayout())
        replicas = {name: (await js.stream_info(name)).config.num_replicas for name in names}
    finally:
        await client.close()
    assert len(replicas) == 14
    assert set(replicas.values()) == {3}, replicas


class Producer:
    """Sends numbered batches one after another, each until it is acknowledged, as a careful
    client does; counts the acknowledged ones."""

    def __init__(self, ingestion: ingestion_pb2_grpc.IngestionServiceAsyncStub, twin_id: str):
        self._ingestion = ingestion
        self._twin_id = twin_id
        self.acknowledged = 0
        self.refusals: Counter[grpc.StatusCode] = Counter()
        self._stop = asyncio.Event()
        # Notified on every acknowledgement, so waiting for progress is not polling.
        self._acknowledged = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            request = seq_batch(self._twin_id, self.acknowledged)
            while True:
                try:
                    await self._ingestion.IngestBatch(request, timeout=5)
                    break
                except grpc.aio.AioRpcError as error:
                    self.refusals[error.code()] += 1
                    await asyncio.sleep(0.1)  # a careful client's pause before resending
            async with self._acknowledged:
                self.acknowledged += 1
                self._acknowledged.notify_all()
            await asyncio.sleep(PRODUCER_PAUSE_S)  # the load's pace, not a synchronisation

    async def progressed(self, batches: int, *, timeout_s: float = 60.0) -> None:
        """Waits until ``batches`` more batches are acknowledged."""
        assert self._task is not None
        assert not self._task.done(), "the producer never gives up"
        goal = self.acknowledged + batches
        try:
            async with self._acknowledged:
                await asyncio.wait_for(
                    self._acknowledged.wait_for(lambda: self.acknowledged >= goal), timeout_s
                )
        except TimeoutError:
            raise TimeoutError(f"ingest stalled at {self.acknowledged} batches") from None

    async def stop(self) -> int:
        self._stop.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, 60)
        return self.acknowledged


async def test_ingest_and_watch_survive_a_killed_leader_a_paused_node_and_a_rolling_restart(
    cluster_settings: dict[str, Any],
    nats_cluster: NatsCluster,
    influxd: InfluxServer,
    influx_database: str,
    eventually: Any,
    store_test_models: Any,
) -> None:
    settings = {**cluster_settings, "nats_request_timeout_s": 2.0}
    registry_settings = RegistrySettings(**settings)
    ingestion_settings = IngestionSettings(**settings, historian_retry_max_backoff_s=0.2)
    state_settings = StateSettings(**settings, watch_fetch_timeout_s=0.5)
    async with (
        serving(registry_settings, RegistryApp(registry_settings)) as registry_target,
        serving(ingestion_settings, IngestionApp(ingestion_settings)) as ingestion_target,
        serving(state_settings, StateApp(state_settings)) as state_target,
        grpc.aio.insecure_channel(registry_target) as registry_channel,
        grpc.aio.insecure_channel(ingestion_target) as ingestion_channel,
        AsyncClient(ConnectConfig(Endpoints(state=state_target))) as client,
    ):
        registry = registry_pb2_grpc.RegistryServiceStub(registry_channel)
        await store_test_models(registry)
        await registry.CreateTwin(
            registry_pb2.CreateTwinRequest(twin=registry_pb2.Twin(id="ha-1", model_id=DEVICE))
        )
        watched: list[int] = []

        async def watch() -> None:
            async for change in client.state.watch(["ha-1"]):
                if "seq" in change.state.reported:
                    watched.append(change.state.reported["seq"].value.int_value)

        watcher = asyncio.create_task(watch())
        producer = Producer(ingestion_pb2_grpc.IngestionServiceStub(ingestion_channel), "ha-1")
        producer.start()
        await producer.progressed(5)

        # 1. The TELEMETRY stream's leader dies mid-ingest, and comes back.
        leader = nats_cluster.node(await stream_leader(nats_cluster, TELEMETRY_STREAM))
        leader.kill()
        await producer.progressed(10)
        leader.start()

        # 2. A node stops answering (paused, not dead) for PAUSE_S under load.
        paused = nats_cluster.node(await stream_leader(nats_cluster, TELEMETRY_STREAM))
        paused_at = time.monotonic()
        paused.process.pause()
        try:
            await producer.progressed(5)
            # The fault lasts its full time, however quickly the others took over.
            await asyncio.sleep(max(0.0, PAUSE_S - (time.monotonic() - paused_at)))  # the fault
        finally:
            paused.process.resume()
        await producer.progressed(5)

        # 3. Every node restarted in turn (SIGTERM, start, healthy) under steady ingest.
        for node in nats_cluster.nodes:
            node.stop()
            await producer.progressed(3)
            node.start()
            await producer.progressed(3)

        batches = await producer.stop()
        expected = list(range(batches * POINTS_PER_BATCH))
        store = InfluxStore(influxd.url, influx_database)
        await store.connect()

        async def stored() -> list[int]:
            series = await store.query(
                "SELECT seq FROM telemetry_integer WHERE twin_id::tag = $t", {"t": "ha-1"}
            )
            return sorted(row["seq"] for row in series[0].rows()) if series else []

        try:
            assert await eventually(stored, lambda seqs: seqs == expected, timeout_s=90) == expected
        finally:
            await store.close()
        await eventually(
            lambda: asyncio.sleep(0, watched[-1:]), lambda last: last == [expected[-1]]
        )
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        assert watched == sorted(watched), "the watch never went back in time"
        assert set(producer.refusals) <= {
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        }


async def test_conditional_writers_over_two_registry_replicas_while_the_bucket_leader_dies(
    cluster_settings: dict[str, Any], nats_cluster: NatsCluster, store_test_models: Any
) -> None:
    settings = RegistrySettings(**cluster_settings, nats_request_timeout_s=2.0)
    async with (
        serving(settings, RegistryApp(settings)) as first,
        serving(settings, RegistryApp(settings)) as second,
        grpc.aio.insecure_channel(first) as first_channel,
        grpc.aio.insecure_channel(second) as second_channel,
    ):
        replicas = [
            registry_pb2_grpc.RegistryServiceStub(first_channel),
            registry_pb2_grpc.RegistryServiceStub(second_channel),
        ]
        await store_test_models(replicas[0])
        twin = registry_pb2.Twin(
            id="hot-1", model_id=DEVICE, properties={"n": types_pb2.Value(double_value=0)}
        )
        created = (await replicas[0].CreateTwin(registry_pb2.CreateTwinRequest(twin=twin))).twin
        wins: list[tuple[int, int]] = []  # (revision expected, revision produced)
        unknown = 0  # writes whose answer was lost: applied or not
        killed = asyncio.Event()

        async def writer(number: int) -> None:
            nonlocal unknown
            registry = replicas[number % 2]
            while True:
                try:
                    current = (
                        await registry.GetTwin(
                            registry_pb2.GetTwinRequest(twin_id="hot-1"), timeout=5
                        )
                    ).twin
                except grpc.aio.AioRpcError:
                    continue
                try:
                    updated = await registry.UpdateTwin(
                        registry_pb2.UpdateTwinRequest(
                            twin_id="hot-1",
                            set_properties={
                                "n": types_pb2.Value(
                                    double_value=current.properties["n"].double_value + 1
                                )
                            },
                            expected_revision=current.revision,
                        ),
                        timeout=5,
                    )
                except grpc.aio.AioRpcError as error:
                    # ABORTED: another writer won this revision. Otherwise the answer was lost
                    # and the write may have been applied: read again and retry, as a careful
                    # client of a conditional write does.
                    if error.code() != grpc.StatusCode.ABORTED:
                        unknown += 1
                    continue
                wins.append((current.revision, updated.twin.revision))
                if len(wins) == 15 and not killed.is_set():
                    killed.set()
                    leader = await stream_leader(nats_cluster, f"KV_{REGISTRY_BUCKET}")
                    nats_cluster.node(leader).kill()
                return

        await asyncio.gather(*(writer(n) for n in range(50)))
        assert killed.is_set()
        final = (await replicas[1].GetTwin(registry_pb2.GetTwinRequest(twin_id="hot-1"))).twin
        expected = [expected for expected, _ in wins]
        assert len(set(expected)) == len(wins), "exactly one winner per revision"
        assert len({produced for _, produced in wins}) == len(wins)
        assert min(expected) == created.revision
        assert len(wins) == 50
        # Every acknowledged increment is there; a write whose answer was lost may be too.
        assert 50 <= final.properties["n"].double_value <= 50 + unknown


def state_replica(
    name: str, settings: dict[str, Any], data_dir: Path
) -> tuple[ManagedProcess, str]:
    """A state service process (killable, unlike one in this process) and its address."""
    port = free_port()
    env = {
        "TWINSTACK_GRPC_HOST": "127.0.0.1",
        "TWINSTACK_GRPC_PORT": str(port),
        "TWINSTACK_METRICS_PORT": "0",
        "TWINSTACK_NATS_URL": settings["nats_url"],
        "TWINSTACK_NATS_REPLICAS": "3",
        "TWINSTACK_INFLUX_URL": settings["influx_url"],
        "TWINSTACK_INFLUX_DATABASE": settings["influx_database"],
        "TWINSTACK_AUTH_MODE": "disabled",
        "TWINSTACK_LOG_FORMAT": "console",
        "TWINSTACK_STATE_MEMBER": name,
        "TWINSTACK_STATE_LEASE_RENEW_INTERVAL_S": "0.5",
        "TWINSTACK_STATE_ACK_WAIT_S": "5",
    }
    target = f"127.0.0.1:{port}"
    process = ManagedProcess(
        name,
        [sys.executable, "-m", "twinstack.state"],
        log_path=data_dir / f"{name}.log",
        env=env,
        ready=lambda: grpc_serving(target),
    )
    return process, target


async def owners(backbone: Backbone) -> dict[int, str]:
    bucket = await backbone.js.key_value(STATE_OWNERSHIP_BUCKET)
    entries = await scan(bucket, f"{PARTITION_KEY_PREFIX}>")
    return {
        int(e.key.removeprefix(PARTITION_KEY_PREFIX)): (e.value or b"").decode() for e in entries
    }


async def test_a_killed_state_replica_hands_its_partitions_to_the_other(
    cluster_settings: dict[str, Any],
    tmp_path: Path,
    eventually: Any,
    store_test_models: Any,
) -> None:
    settings = {**cluster_settings, "nats_request_timeout_s": 2.0}
    registry_settings = RegistrySettings(**settings)
    ingestion_settings = IngestionSettings(**settings)
    backbone = await Backbone.connect(ServiceSettings(**settings), "test-state-failover")
    replica_a, target_a = state_replica("state-a", settings, tmp_path)
    replica_b, _ = state_replica("state-b", settings, tmp_path)
    replica_a.launch()
    replica_b.launch()
    partitions = ServiceSettings(auth_mode="disabled").telemetry_partitions
    # Two twins in every partition.
    twin_ids: list[str] = []
    for n in range(500):
        twin_id = f"fo-{n}"
        if (
            sum(partition_of(t, partitions) == partition_of(twin_id, partitions) for t in twin_ids)
            < 2
        ):
            twin_ids.append(twin_id)
    assert len(twin_ids) == 2 * partitions
    try:
        replica_a.wait_ready(timeout_s=120)
        replica_b.wait_ready(timeout_s=120)
        async with (
            serving(registry_settings, RegistryApp(registry_settings)) as registry_target,
            serving(ingestion_settings, IngestionApp(ingestion_settings)) as ingestion_target,
            grpc.aio.insecure_channel(registry_target) as registry_channel,
            grpc.aio.insecure_channel(ingestion_target) as ingestion_channel,
            grpc.aio.insecure_channel(target_a) as state_channel,
        ):
            registry = registry_pb2_grpc.RegistryServiceStub(registry_channel)
            ingestion = ingestion_pb2_grpc.IngestionServiceStub(ingestion_channel)
            state = state_pb2_grpc.StateServiceStub(state_channel)
            await store_test_models(registry)
            for twin_id in twin_ids:
                await registry.CreateTwin(
                    registry_pb2.CreateTwinRequest(
                        twin=registry_pb2.Twin(id=twin_id, model_id=DEVICE)
                    )
                )
            shared = await eventually(
                lambda: owners(backbone),
                lambda found: (
                    len(found) == partitions and set(found.values()) == {"state-a", "state-b"}
                ),
                timeout_s=30,
            )
            rule = state_pb2.AlertRule(
                id="too-hot",
                model_id=DEVICE,
                field="temp",
                severity=events_pb2.SEVERITY_CRITICAL,
                threshold=state_pb2.ThresholdCondition(
                    direction=state_pb2.ThresholdCondition.DIRECTION_ABOVE, raise_at=90, clear_at=80
                ),
            )
            await state.PutAlertRule(state_pb2.PutAlertRuleRequest(rule=rule), timeout=5)

            async def ingest(step: int) -> None:
                points = []
                for twin_id in twin_ids:
                    point = types_pb2.TelemetryPoint(
                        twin_id=twin_id, fields={"temp": types_pb2.Value(double_value=100 + step)}
                    )
                    point.time.FromNanoseconds(T0_NS + step * 10**9)
                    points.append(point)
                await ingestion.IngestBatch(
                    ingestion_pb2.IngestBatchRequest(points=points), timeout=10
                )

            async def all_at(step: int) -> bool:
                response = await state.BatchGetStates(
                    state_pb2.BatchGetStatesRequest(twin_ids=twin_ids), timeout=5
                )
                return len(response.states) == len(twin_ids) and all(
                    s.reported["temp"].value.double_value == 100 + step for s in response.states
                )

            await ingest(0)
            await eventually(lambda: all_at(0), timeout_s=30)
            # Every twin is hot: one alert raised each, by whichever replica owns it.
            replica_b.kill()
            killed_at = time.monotonic()
            for step in range(1, 6):
                await ingest(step)
            await eventually(
                lambda: owners(backbone),
                lambda found: set(found.values()) == {"state-a"} and len(found) == partitions,
                timeout_s=30,
            )
            taken_over_s = time.monotonic() - killed_at
            await eventually(lambda: all_at(5), timeout_s=30)
            caught_up_s = time.monotonic() - killed_at
            print(
                f"partitions moved in {taken_over_s:.1f} s, state caught up in {caught_up_s:.1f} s"
            )
            assert taken_over_s < 20, "a lease lives 10 s; the survivor claims within a round after"
            assert [p for p, owner in shared.items() if owner == "state-b"], "b had partitions"

            raised: Counter[str] = Counter()
            events = await backbone.js.subscribe(
                "evt.alert.raised.>", stream=EVENTS_STREAM, ordered_consumer=True
            )
            try:
                while True:
                    try:
                        message = await events.next_msg(timeout=2)
                    except nats.errors.TimeoutError:
                        break
                    raised[message.subject] += 1
            finally:
                await events.unsubscribe()
            assert raised == Counter({f"evt.alert.raised.{t}.too-hot": 1 for t in twin_ids}), (
                "each twin's alert raised once, across the handover"
            )
    finally:
        replica_a.stop()
        replica_b.stop()
        await backbone.close()


async def test_a_watch_outlives_the_servers_connection_age(infra_settings: dict[str, Any]) -> None:
    """Servers close every connection after its maximum age (so clients spread over new
    replicas); an SDK watch opens again after the last change it delivered."""
    settings = {**infra_settings, "grpc_max_connection_age_s": 1.0}
    registry_settings = RegistrySettings(**settings)
    ingestion_settings = IngestionSettings(**settings)
    state_settings = StateSettings(
        **settings, grpc_max_connection_age_grace_s=0.5, watch_fetch_timeout_s=0.5
    )
    async with (
        serving(registry_settings, RegistryApp(registry_settings)) as registry_target,
        serving(ingestion_settings, IngestionApp(ingestion_settings)) as ingestion_target,
        serving(state_settings, StateApp(state_settings)) as state_target,
        AsyncClient(
            ConnectConfig(
                Endpoints(registry=registry_target, ingestion=ingestion_target, state=state_target)
            )
        ) as client,
    ):
        tests_models = Path(__file__).parents[1] / "models"
        await client.registry.create_models(
            [*example_model_sources(), *model_sources([tests_models])]
        )
        await client.registry.create_twin("aged-1", DEVICE)
        seen: list[int] = []
        last_sent: list[int] = []
        caught_up = asyncio.Event()

        async def watch() -> None:
            async for change in client.state.watch(["aged-1"]):
                if "seq" in change.state.reported:
                    seen.append(change.state.reported["seq"].value.int_value)
                    if seen[-1:] == last_sent:
                        caught_up.set()

        watcher = asyncio.create_task(watch())
        started = time.monotonic()
        seq = 0
        # Longer than three connection lifetimes (age plus grace).
        while time.monotonic() - started < 5.0:
            await client.telemetry.ingest([Point("aged-1", {"seq": seq}, T0_NS + seq * 10**6)])
            seq += 1
            await asyncio.sleep(0.1)  # the load's pace over the connection lifetimes, not a wait
        last = seq - 1
        last_sent.append(last)
        if seen[-1:] == last_sent:
            caught_up.set()
        waiting = asyncio.create_task(caught_up.wait())
        await asyncio.wait({watcher, waiting}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        assert not watcher.done(), f"the watch ended: {watcher.exception()!r}"
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        assert seen[-1] == last, "the watch kept up through every reconnection"
        assert seen == sorted(set(seen)), "no change twice, none out of order"


def test_a_cluster_whose_picked_port_was_taken_meanwhile_picks_others(tmp_path: Path) -> None:
    cluster = NatsCluster(tmp_path / "squatted")
    picked = cluster.nodes[1].port
    with socket.socket() as squatter:
        # What an outgoing connection from another process can do between pick and bind.
        squatter.bind(("127.0.0.1", picked))
        squatter.listen()
        cluster.start()
        try:
            assert picked not in [node.port for node in cluster.nodes]
            assert all(node.process.running() for node in cluster.nodes)
        finally:
            cluster.stop()
