"""Example twins of the four seed use cases, and simulated sensors that feed them."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from twinstack.common.values import Scalar
from twinstack.sdk.client import ApiError, Point, TwinstackClient


@dataclass(frozen=True)
class ExampleTwin:
    twin_id: str
    model_id: str
    use_case: str
    properties: dict[str, Scalar]
    # Seconds since start -> field values; deterministic shape plus sensor noise.
    signal: Callable[[float, random.Random], dict[str, Scalar]]


def _press(t: float, rng: random.Random) -> dict[str, Scalar]:
    load = 0.7 + 0.2 * math.sin(t / 60)
    return {
        "temperature_c": 45 + 20 * load + rng.gauss(0, 0.3),
        "vibration_mm_s": 2.0 + 1.5 * load + abs(rng.gauss(0, 0.2)),
        "cycles": int(t // 4),
    }


def _infusion_pump(t: float, rng: random.Random) -> dict[str, Scalar]:
    return {
        "flow_ml_h": 120 + rng.gauss(0, 1.0),
        "line_pressure_kpa": 35 + 3 * math.sin(t / 20) + rng.gauss(0, 0.4),
        "occlusion": False,
    }


def _road_segment(t: float, rng: random.Random) -> dict[str, Scalar]:
    flow = 40 + 25 * math.sin(t / 90) ** 2
    return {
        "vehicles_per_min": max(0.0, flow + rng.gauss(0, 3)),
        "mean_speed_kmh": max(5.0, 60 - 0.6 * flow + rng.gauss(0, 2)),
    }


def _truck(t: float, rng: random.Random) -> dict[str, Scalar]:
    return {
        "state_of_charge_pct": max(5.0, 95 - t / 120),
        "speed_kmh": max(0.0, 55 + 20 * math.sin(t / 45) + rng.gauss(0, 4)),
        "payload_kg": 3200,
    }


EXAMPLE_TWINS = (
    ExampleTwin("line1-press-3", "dtmi:twinstack:examples:HydraulicPress;1", "manufacturing",
                {"site": "plant-north", "rated_power_kw": 45.0}, _press),
    ExampleTwin("ward3-infusion-pump-12", "dtmi:twinstack:examples:InfusionPump;1", "healthcare",
                {"ward": "ward-3", "drug": "heparin"}, _infusion_pump),
    ExampleTwin("district7-road-a12", "dtmi:twinstack:examples:RoadSegment;1", "smart city",
                {"district": "district-7", "lanes": 2}, _road_segment),
    ExampleTwin("depot2-truck-17", "dtmi:twinstack:examples:ElectricTruck;1", "logistics",
                {"depot": "depot-2", "battery_kwh": 300.0}, _truck),
)  # fmt: skip


def ensure_example_twins(client: TwinstackClient) -> None:
    """Creates the example twins that do not exist yet."""
    for example in EXAMPLE_TWINS:
        try:
            client.create_twin(example.twin_id, example.model_id, example.properties)
        except ApiError as error:
            if error.code != grpc.StatusCode.ALREADY_EXISTS:
                raise


class SensorFeeder:
    """Sends one sample per example twin every ``period_s`` from a background thread."""

    def __init__(self, client: TwinstackClient, period_s: float = 1.0, seed: int = 7) -> None:
        self._client = client
        self._period_s = period_s
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sensor-feeder", daemon=True)
        self.sent_points = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self._period_s):
            elapsed = time.monotonic() - started
            points = [Point(e.twin_id, e.signal(elapsed, self._rng)) for e in EXAMPLE_TWINS]
            try:
                self._client.ingest(points)
                self.sent_points += len(points)
                self.last_error = None
            except ApiError as error:
                self.last_error = str(error)
