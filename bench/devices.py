"""Devices over MQTT: readings published with QoS 1 by a paho-mqtt client to nats-server's MQTT
listener, through the device gateway (validation, TELEMETRY, historian) into InfluxDB, against
the same messages published into a plain JetStream stream through the same listener, in one
run; and the latency from an MQTT publish to the reading visible in live state (a Watch) at
1,000 readings a second.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from nats.js.api import StreamConfig

from bench.pipeline import CyclesWatch, percentile, stored_points
from bench.report import console, save, show
from twinstack.common.nats import NatsConnection, connect_nats
from twinstack.devstack import LocalPlatform, wait_until
from twinstack.sdk import Client, ConnectConfig, Endpoints
from twinstack.sdk.models import example_model_sources

TWINS = 20
READINGS = 20_000
VALUES_PER_READING = 3
MODEL = "dtmi:twinstack:examples:HydraulicPress;1"
START_MS = time.time_ns() // 10**6 - 86_400_000
LATENCY_READINGS_PER_S = 1_000
LATENCY_DURATION_S = 10.0
# QoS 1 messages a client has in flight before it waits for PUBACKs.
IN_FLIGHT = 1_000


class Publisher:
    """One paho client publishing QoS 1 and counting PUBACKs."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.acknowledged = 0
        self._done = threading.Condition()
        self.client = paho.Client(client_id=f"bench-{time.time_ns()}")
        self.client.username_pw_set(user, password)
        self.client.max_inflight_messages_set(IN_FLIGHT)
        self.client.max_queued_messages_set(0)
        connected = threading.Event()

        def on_connect(_c: Any, _u: Any, _f: Any, rc: int) -> None:
            if rc == 0:
                connected.set()

        def on_publish(_c: Any, _u: Any, _mid: int) -> None:
            with self._done:
                self.acknowledged += 1
                self._done.notify_all()

        self.client.on_connect = on_connect
        self.client.on_publish = on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not connected.wait(10):
            raise TimeoutError("the MQTT listener did not accept the connection")

    def publish_all(self, messages: list[tuple[str, bytes]]) -> float:
        """Seconds until every message was PUBACKed."""
        self.acknowledged = 0
        started = time.perf_counter()
        for topic, payload in messages:
            self.client.publish(topic, payload, qos=1)
        with self._done:
            if not self._done.wait_for(lambda: self.acknowledged >= len(messages), 600):
                raise TimeoutError("not every message was acknowledged")
        return time.perf_counter() - started

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def readings(prefix: str, topic: str) -> list[tuple[str, bytes]]:
    out = []
    for number in range(READINGS):
        twin = f"{prefix}-{number % TWINS:03d}"
        reading = {
            "ts": START_MS + number,
            "values": {"temperature_c": 40.0 + number % 50, "load": 0.5, "cycles": number},
        }
        out.append((topic.format(twin=twin), json.dumps(reading).encode()))
    return out


def _admin(platform: LocalPlatform) -> NatsConnection:
    admin = platform.nats_admin
    return NatsConnection(platform.nats.url, admin["user"], admin["password"])


async def raw_stream_messages(platform: LocalPlatform) -> int:
    nc = await connect_nats(_admin(platform), "bench-devices")
    try:
        info = await nc.jetstream().stream_info("BENCH_MQTT")
        return int(info.state.messages)
    finally:
        await nc.close()


async def create_raw_stream(platform: LocalPlatform) -> None:
    nc = await connect_nats(_admin(platform), "bench-devices")
    try:
        await nc.jetstream().add_stream(StreamConfig(name="BENCH_MQTT", subjects=["bench.>"]))
    finally:
        await nc.close()


def latency(client: Client, publisher: Publisher) -> list[float]:
    """Milliseconds from an MQTT publish to its reading visible in a Watch."""
    twin_ids = [f"mlat-{t:03d}" for t in range(TWINS)]
    watch = CyclesWatch(client, twin_ids, LATENCY_DURATION_S + 30)
    sent_at = watch.sent_at
    watch.start()
    interval_s = 1 / LATENCY_READINGS_PER_S
    next_at = time.perf_counter()
    end = next_at + LATENCY_DURATION_S
    number = 0
    while next_at < end:
        twin = twin_ids[number % TWINS]
        reading = {"ts": START_MS + 10**7 + number, "values": {"cycles": number}}
        sent_at[(twin, number)] = time.perf_counter()
        publisher.client.publish(f"twins/{twin}/telemetry", json.dumps(reading), qos=1)
        number += 1
        next_at += interval_s
        # The publish pace (a device sending 1,000 readings a second), not a synchronisation.
        time.sleep(max(0.0, next_at - time.perf_counter()))
    return watch.finish(30)


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="twinstack-bench-") as scratch:
        platform = LocalPlatform(
            Path(scratch),
            nats_port=0,
            influx_port=0,
            mqtt_port=0,
            service_ports={"registry": 0, "ingestion": 0, "state": 0},
            services=("registry", "ingestion", "state"),
            device_mapping=yaml.safe_dump({}),
        )
        console.print("[bold]devices[/bold]: starting nats-server (MQTT), influxd, services")
        platform.start()
        mqtt_port = int(platform.nats.mqtt_url.rsplit(":", 1)[1])
        # As the NATS admin, so the raw baseline may publish outside the device topics.
        publisher = Publisher(mqtt_port, **platform.nats_admin)
        try:
            targets = {n: s.target for n, s in platform.services.items()}
            endpoints = Endpoints(**targets, simulation="127.0.0.1:1")
            with Client(ConnectConfig(endpoints, token=platform.admin_token)) as client:
                client.registry.create_models(example_model_sources())
                for prefix in ("mqtt", "mlat"):
                    for t in range(TWINS):
                        client.registry.create_twin(f"{prefix}-{t:03d}", MODEL)
                asyncio.run(create_raw_stream(platform))
                console.print(f"devices: raw MQTT publishes into JetStream, {READINGS:,} readings")
                raw_s = publisher.publish_all(readings("raw", "bench/{twin}"))
                stored = asyncio.run(raw_stream_messages(platform))
                if stored != READINGS:
                    raise RuntimeError(f"the raw stream holds {stored}, not {READINGS}")
                console.print("devices: through the gateway into InfluxDB")
                started = time.perf_counter()
                acked_s = publisher.publish_all(readings("mqtt", "twins/{twin}/telemetry"))
                wait_until(
                    lambda: asyncio.run(stored_points(platform.influx, "mqtt")) >= READINGS,
                    timeout_s=600,
                    what="every MQTT reading in InfluxDB",
                )
                stored_s = time.perf_counter() - started
                console.print(
                    f"devices: MQTT publish -> live state at {LATENCY_READINGS_PER_S:,} readings/s"
                )
                latencies = latency(client, publisher)
        finally:
            publisher.close()
            platform.stop()
    raw_rate = READINGS / raw_s
    stored_rate = READINGS / stored_s
    results = {
        "readings": READINGS,
        "values_per_reading": VALUES_PER_READING,
        "raw_mqtt_into_jetstream_readings_per_s": round(raw_rate),
        "mqtt_acknowledged_readings_per_s": round(READINGS / acked_s),
        "mqtt_stored_readings_per_s": round(stored_rate),
        "mqtt_stored_values_per_s": round(stored_rate * VALUES_PER_READING),
        "stored_vs_raw": round(stored_rate / raw_rate, 3),
        "latency_readings_per_s": LATENCY_READINGS_PER_S,
        "latency_samples": len(latencies),
        "publish_to_state_p50_ms": round(percentile(latencies, 50), 1),
        "publish_to_state_p99_ms": round(percentile(latencies, 99), 1),
    }
    show(
        "devices: MQTT (QoS 1, one reading of 3 values per message)",
        [
            ("raw MQTT publishes into JetStream", f"{raw_rate:,.0f} readings/s", "baseline"),
            (
                "MQTT -> gateway -> InfluxDB, stored",
                f"{stored_rate:,.0f} readings/s ({stored_rate * VALUES_PER_READING:,.0f} values/s)",
                f"{stored_rate / raw_rate:.0%} of raw",
            ),
            (
                f"publish -> live state at {LATENCY_READINGS_PER_S:,}/s",
                f"p50 {results['publish_to_state_p50_ms']} ms",
                f"p99 {results['publish_to_state_p99_ms']} ms",
            ),
        ],
    )
    save("devices", results)
    return results


if __name__ == "__main__":
    run()
