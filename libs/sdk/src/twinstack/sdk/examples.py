"""Example twins of the four seed use cases, and simulated sensors that feed them."""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twinstack.sdk import AlreadyExistsError, ApiError, Client, Point
from twinstack.sdk.models import example_model_sources
from twinstack.sdk.values import Scalar


@dataclass(frozen=True)
class ExampleTwin:
    twin_id: str
    model_id: str
    use_case: str
    properties: dict[str, Any]
    # Seconds since start -> field values (deterministic shape plus sensor noise); None for
    # twins that report no telemetry (sites, wards, districts...).
    signal: Callable[[float, random.Random], dict[str, Scalar]] | None = None
    # How its readings arrive: gRPC (the SDK), "mqtt" (JSON on twins/<id>/telemetry) or
    # "sparkplug" (a Sparkplug B device; EXAMPLE_DEVICE_MAPPING binds it).
    transport: str = "grpc"


def _press(t: float, rng: random.Random) -> dict[str, Scalar]:
    load = 0.7 + 0.2 * math.sin(t / 60)
    return {
        "temperature_c": 45 + 20 * load + rng.gauss(0, 0.3),
        "vibration_mm_s": 2.0 + 1.5 * load + abs(rng.gauss(0, 0.2)),
        "load": load,
        "cycles": int(t // 4),
    }


def _pump(t: float, rng: random.Random) -> dict[str, Scalar]:
    load = 0.6 + 0.15 * math.sin(t / 40)
    return {
        "temperature_c": 38 + 25 * load + rng.gauss(0, 0.3),
        "vibration_mm_s": 1.5 + 2.0 * load + abs(rng.gauss(0, 0.2)),
        "load": load,
        "cycles": int(t),
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
        "payload_kg": 3200.0,
    }


_M = "dtmi:twinstack:examples:"

EXAMPLE_TWINS = (
    # manufacturing: site -> line -> machines
    ExampleTwin("plant-north", f"{_M}Site;1", "manufacturing",
                {"name": "Plant North", "timezone": "Europe/Berlin",
                 "location": {"lat": 53.55, "lon": 9.99}}),
    ExampleTwin("line-1", f"{_M}ProductionLine;1", "manufacturing",
                {"target_rate_per_h": 240.0}),
    ExampleTwin("line1-press-3", f"{_M}HydraulicPress;1", "manufacturing",
                {"site": "plant-north", "rated_power_kw": 45.0, "tonnage_t": 250.0,
                 "serial_number": "HP-2291"}, _press),
    ExampleTwin("line1-pump-1", f"{_M}Pump;1", "manufacturing",
                {"site": "plant-north", "rated_power_kw": 30.0, "rated_flow_m3_h": 90.0,
                 "motor": {"rated_speed_rpm": 2950.0, "insulation_class": "F"}},
                _pump, transport="mqtt"),
    # healthcare: hospital -> ward -> device
    ExampleTwin("st-mary", f"{_M}Hospital;1", "healthcare", {"name": "St Mary"}),
    ExampleTwin("ward-3", f"{_M}Ward;1", "healthcare", {"beds": 24, "specialty": "icu"}),
    ExampleTwin("ward3-infusion-pump-12", f"{_M}InfusionPump;1", "healthcare",
                {"ward": "ward-3", "drug": "heparin", "dose_rate_mg_h": 1000.0,
                 "patient_weight_kg": 72.0}, _infusion_pump),
    # smart city: district -> roads (a network with a cycle) -> sensor
    ExampleTwin("district-7", f"{_M}District;1", "smart city",
                {"name": "Harbour", "population": 41000}),
    ExampleTwin("district7-road-a12", f"{_M}RoadSegment;1", "smart city",
                {"district": "district-7", "lanes": 2, "length_km": 1.4}, _road_segment),
    ExampleTwin("district7-road-a13", f"{_M}RoadSegment;1", "smart city",
                {"district": "district-7", "lanes": 3, "length_km": 0.8}),
    ExampleTwin("district7-sensor-4", f"{_M}TrafficSensor;1", "smart city",
                {"serial_number": "TS-0004"}),
    # logistics: depot -> vehicles
    ExampleTwin("depot-2", f"{_M}Depot;1", "logistics", {"name": "Depot South", "chargers": 6}),
    ExampleTwin("depot2-truck-17", f"{_M}ElectricTruck;1", "logistics",
                {"depot": "depot-2", "battery_kwh": 300.0,
                 "route": ["depot-2", "harbour", "old-town"]}, _truck),
    ExampleTwin("depot2-truck-18", f"{_M}ElectricTruck;1", "logistics",
                {"depot": "depot-2", "battery_kwh": 400.0}, _truck, transport="sparkplug"),
)  # fmt: skip

# (source, relationship, target, properties)
EXAMPLE_RELATIONSHIPS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("plant-north", "contains", "line-1", {}),
    ("line-1", "contains", "line1-press-3", {"position": 1}),
    ("line-1", "contains", "line1-pump-1", {"position": 2}),
    ("line1-press-3", "feeds", "line1-pump-1", {}),
    ("st-mary", "contains", "ward-3", {}),
    ("ward-3", "contains", "ward3-infusion-pump-12", {}),
    ("district-7", "contains", "district7-road-a12", {}),
    ("district-7", "contains", "district7-road-a13", {}),
    ("district7-road-a12", "connects_to", "district7-road-a13", {}),
    ("district7-road-a13", "connects_to", "district7-road-a12", {}),
    ("district7-road-a12", "monitored_by", "district7-sensor-4", {}),
    ("depot-2", "houses", "depot2-truck-17", {}),
    ("depot-2", "houses", "depot2-truck-18", {}),
)

FED_TWINS = tuple(
    example
    for example in EXAMPLE_TWINS
    if example.signal is not None and example.transport == "grpc"
)

# The device gateway's mapping of the Sparkplug B example: truck 18's telematics unit, a
# device behind the depot's edge node, with metric names of its own.
SPARKPLUG_EXAMPLE: dict[str, Any] = {
    "group": "depot-2",
    "edge_node": "telematics-gw",
    "device": "truck-18",
    "twin": "depot2-truck-18",
    "metrics": {
        "Battery/SoC": "state_of_charge_pct",
        "Drive/Speed": "speed_kmh",
        "Load/Payload": "payload_kg",
    },
}
EXAMPLE_DEVICE_MAPPING = {"sparkplug": [SPARKPLUG_EXAMPLE]}


def ensure_example_twins(client: Client) -> None:
    """Stores the example models, and creates the example twins and relationships that do not
    exist yet."""
    client.registry.create_models(example_model_sources())
    for example in EXAMPLE_TWINS:
        with contextlib.suppress(AlreadyExistsError):
            client.registry.create_twin(example.twin_id, example.model_id, example.properties)
    for source, name, target, properties in EXAMPLE_RELATIONSHIPS:
        with contextlib.suppress(AlreadyExistsError):
            client.registry.create_relationship(source, name, target, properties)


class SensorFeeder:
    """Sends one sample per example twin every ``period_s`` from a background thread."""

    def __init__(self, client: Client, period_s: float = 1.0, seed: int = 7) -> None:
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
            points = [
                Point(e.twin_id, e.signal(elapsed, self._rng))
                for e in FED_TWINS
                if e.signal is not None
            ]
            try:
                self._client.telemetry.ingest(points)
                self.sent_points += len(points)
                self.last_error = None
            except ApiError as error:
                self.last_error = str(error)
