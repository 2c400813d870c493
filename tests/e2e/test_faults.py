"""Process crashes, against real service processes: nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from twinstack.api.ingestion.v1.ingestion_pb2 import IngestStreamRequest
from twinstack.common.influx import InfluxStore
from twinstack.devstack import InfluxServer, LocalPlatform, wait_until
from twinstack.sdk import ApiError, Client, ConnectConfig, Endpoints, Point
from twinstack.sdk.models import model_sources

TWINS = 10
# How often the streaming producer of the SIGTERM test sends a batch.
PRODUCER_PERIOD_S = 0.01
T0_NS = (time.time_ns() // 10**9 - 7200) * 10**9


def batch(first_seq: int, samples_per_twin: int) -> list[Point]:
    return [
        Point(f"crash-{t}", {"seq": first_seq + s}, T0_NS + (first_seq + s) * 10**6)
        for t in range(TWINS)
        for s in range(samples_per_twin)
    ]


def stored_count(influx: InfluxServer) -> int:
    async def count() -> int:
        store = InfluxStore(influx.url, "twinstack", **influx.credentials)
        try:
            series = await store.query("SELECT count(seq) FROM telemetry_integer")
        finally:
            await store.close()
        return int(series[0].values[0][1]) if series else 0

    return asyncio.run(count())


def acknowledged(client: Client, points: list[Point]) -> bool:
    try:
        client.telemetry.ingest(points)
    except ApiError:
        return False
    return True


def test_ingestion_killed_while_its_historian_writes(tmp_path: Path) -> None:
    platform = LocalPlatform(
        tmp_path / "platform",
        nats_port=0,
        influx_port=0,
        service_ports={"registry": 0, "ingestion": 0},
        services=("registry", "ingestion"),
        # Messages the killed historian held come back after the ack wait: keep it short here.
        service_env={"TWINSTACK_LOG_FORMAT": "console", "TWINSTACK_HISTORIAN_ACK_WAIT_S": "3"},
    )
    platform.start()
    try:
        targets = {name: service.target for name, service in platform.services.items()}
        with Client(
            ConnectConfig(Endpoints(**targets), token=platform.admin_token, timeout_s=10)
        ) as client:
            client.registry.create_models(model_sources([Path(__file__).parents[1] / "models"]))
            for t in range(TWINS):
                client.registry.create_twin(f"crash-{t}", "dtmi:twinstack:test:Device;1")
            client.telemetry.ingest(batch(0, 2000))  # 20,000 points acknowledged
            platform.services["ingestion"].process.kill()  # SIGKILL while they are written
            platform.services["ingestion"].process.start(timeout_s=60)
            late = batch(2000, 500)
            wait_until(
                lambda: acknowledged(client, late), timeout_s=60, interval_s=0.2, what="ingest"
            )
            wait_until(
                lambda: stored_count(platform.influx) >= TWINS * 2500,
                timeout_s=60,
                interval_s=0.2,
                what="every acknowledged point in InfluxDB",
            )
        assert stored_count(platform.influx) == TWINS * 2500, "each point exactly once"
    finally:
        platform.stop()


def test_ingestion_sent_sigterm_during_a_streaming_ingest(tmp_path: Path) -> None:
    """The client streams batches while the ingestion service is stopped with SIGTERM and
    started again; the SDK resends what was not acknowledged. Afterwards every acknowledged
    point is in InfluxDB exactly once."""
    platform = LocalPlatform(
        tmp_path / "platform",
        nats_port=0,
        influx_port=0,
        service_ports={"registry": 0, "ingestion": 0},
        services=("registry", "ingestion"),
        service_env={
            "TWINSTACK_LOG_FORMAT": "console",
            "TWINSTACK_HISTORIAN_ACK_WAIT_S": "3",
            # The drain lets the open stream go on this long before the server ends it.
            "TWINSTACK_SHUTDOWN_GRACE_S": "1",
        },
    )
    platform.start()
    ingestion = platform.services["ingestion"].process
    samples_per_twin = 5
    acknowledged_batches: list[int] = []
    restarted = threading.Event()
    sent: list[int] = []

    def requests() -> Iterator[IngestStreamRequest]:
        b = 0
        after_restart = 0
        while after_restart < 50:
            if b == 40:
                # SIGTERM with batches in flight, then a fresh process on the same port.
                threading.Thread(target=restart, daemon=True).start()
            after_restart += restarted.is_set()
            yield IngestStreamRequest(
                points=[p.to_proto() for p in batch(b * samples_per_twin, samples_per_twin)]
            )
            sent.append(b)
            b += 1
            # The scenario is a device that sends a batch every PRODUCER_PERIOD_S: its pace is
            # what is tested (the restart lands mid-stream), no wait for anything to happen.
            time.sleep(PRODUCER_PERIOD_S)

    exit_codes: list[int | None] = []
    finished = threading.Event()

    def restart() -> None:
        exit_codes.append(ingestion.stop())
        ingestion.start(timeout_s=60)
        restarted.set()
        # The process is tied to the thread that started it (parent-death signal).
        finished.wait()

    try:
        targets = {name: service.target for name, service in platform.services.items()}
        with Client(
            ConnectConfig(Endpoints(**targets), token=platform.admin_token, timeout_s=10)
        ) as client:
            client.registry.create_models(model_sources([Path(__file__).parents[1] / "models"]))
            for t in range(TWINS):
                client.registry.create_twin(f"crash-{t}", "dtmi:twinstack:test:Device;1")
            for ack in client.telemetry.ingest_stream(requests(), reconnect_timeout_s=60):
                assert ack.code == 0, ack.message
                acknowledged_batches.append(ack.sequence)
            assert restarted.is_set()
            assert exit_codes == [0], "a clean exit on SIGTERM"
            assert acknowledged_batches == list(range(1, len(sent) + 1)), "every batch, in order"
            expected = len(sent) * samples_per_twin * TWINS
            wait_until(
                lambda: stored_count(platform.influx) >= expected,
                timeout_s=60,
                interval_s=0.2,
                what="every acknowledged point in InfluxDB",
            )
        assert stored_count(platform.influx) == expected, "each point exactly once"
    finally:
        platform.stop()
        finished.set()
