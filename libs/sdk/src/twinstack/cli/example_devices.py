"""The example devices `twinstack up` runs beside the gRPC sensor feed, so every path into the
platform is in use: the pump of line 1 speaks MQTT (JSON readings, and it follows its desired
load and answers the stop command), and truck 18 is a Sparkplug B device behind its depot's
edge node."""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
import pysparkplug as spb

from twinstack.sdk.examples import EXAMPLE_TWINS, SPARKPLUG_EXAMPLE, ExampleTwin


class ExampleDevices:
    """Publishes the MQTT and Sparkplug B example twins' readings from a background thread.

    Args:
        mqtt_url: nats-server's MQTT listener (``mqtt://host:port``).
        period_s: Seconds between readings.
    """

    def __init__(self, mqtt_url: str, period_s: float = 1.0, seed: int = 11) -> None:
        parts = urlsplit(mqtt_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 1883
        self._period_s = period_s
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="example-devices", daemon=True)
        self._mqtt_twins = [e for e in EXAMPLE_TWINS if e.transport == "mqtt"]
        (self._truck,) = [e for e in EXAMPLE_TWINS if e.transport == "sparkplug"]
        # What the platform wants of each MQTT twin; the device follows it.
        self._desired: dict[str, dict[str, Any]] = {}
        self._client = paho.Client(client_id="twinstack-example-devices")
        self._client.on_connect = self._subscribe
        self._client.on_message = self._on_message
        self._node: spb.EdgeNode | None = None
        self.sent_readings = 0

    def start(self) -> None:
        self._client.connect_async(self._host, self._port)
        self._client.loop_start()
        self._node = self._sparkplug_node()
        self._node.connect(self._host, port=self._port, blocking=False)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._client.disconnect()
        self._client.loop_stop()
        if self._node is not None:
            self._node.disconnect()

    def _subscribe(self, client: paho.Client, *_: Any) -> None:
        for twin in self._mqtt_twins:
            client.subscribe(f"twins/{twin.twin_id}/desired", qos=1)
            client.subscribe(f"twins/{twin.twin_id}/commands/+", qos=1)

    def _on_message(self, client: paho.Client, _: Any, message: paho.MQTTMessage) -> None:
        levels = message.topic.split("/")
        twin_id = levels[1]
        try:
            body = json.loads(message.payload)
        except json.JSONDecodeError:
            return
        if levels[2] == "desired":
            self._desired[twin_id] = dict(body.get("desired", {}))
        elif levels[2] == "commands":
            # The example pump accepts every command it is sent.
            client.publish(body["response_topic"], json.dumps({"response": {"accepted": True}}))

    def _sparkplug_node(self) -> spb.EdgeNode:
        node = spb.EdgeNode(
            str(SPARKPLUG_EXAMPLE["group"]), str(SPARKPLUG_EXAMPLE["edge_node"]), metrics=()
        )
        node.register(spb.Device(str(SPARKPLUG_EXAMPLE["device"]), self._truck_metrics(0.0)))
        return node

    def _truck_metrics(self, elapsed_s: float) -> list[spb.Metric]:
        assert self._truck.signal is not None
        values = self._truck.signal(elapsed_s, self._rng)
        names: dict[str, str] = SPARKPLUG_EXAMPLE["metrics"]
        now = spb.get_current_timestamp()
        return [
            spb.Metric(
                timestamp=now, name=metric, datatype=spb.DataType.DOUBLE, value=float(values[field])
            )
            for metric, field in names.items()
        ]

    def _reading(self, twin: ExampleTwin, elapsed_s: float) -> dict[str, Any]:
        assert twin.signal is not None
        values = dict(twin.signal(elapsed_s, self._rng))
        # A device that does what it is asked: desired values become its readings.
        values.update({k: v for k, v in self._desired.get(twin.twin_id, {}).items() if k in values})
        return values

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self._period_s):
            elapsed = time.monotonic() - started
            for twin in self._mqtt_twins:
                payload = json.dumps(self._reading(twin, elapsed))
                self._client.publish(f"twins/{twin.twin_id}/telemetry", payload, qos=1)
                self.sent_readings += 1
            if self._node is not None:
                try:
                    self._node.update_device(
                        str(SPARKPLUG_EXAMPLE["device"]), self._truck_metrics(elapsed)
                    )
                    self.sent_readings += 1
                except (ValueError, OSError):
                    continue  # not connected yet
