"""The example twin graphs of the four seed use cases, as `make up` creates and feeds them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from twinstack.cli.example_devices import ExampleDevices
from twinstack.devstack import LocalPlatform, wait_until
from twinstack.sdk import Client, ConnectConfig, Endpoints
from twinstack.sdk.examples import (
    EXAMPLE_DEVICE_MAPPING,
    EXAMPLE_TWINS,
    FED_TWINS,
    SensorFeeder,
    ensure_example_twins,
)

EX = "dtmi:twinstack:examples:"


def test_example_graphs_are_created_idempotently_and_fed(tmp_path: Path) -> None:
    platform = LocalPlatform(
        tmp_path / "platform",
        nats_port=0,
        influx_port=0,
        service_ports={"registry": 0, "ingestion": 0},
        services=("registry", "ingestion"),
        service_env={"TWINSTACK_LOG_FORMAT": "console"},
        device_mapping=yaml.safe_dump(EXAMPLE_DEVICE_MAPPING),
    )
    platform.start()
    try:
        targets = {name: service.target for name, service in platform.services.items()}
        with Client(
            ConnectConfig(Endpoints(**targets), token=platform.admin_token, timeout_s=10)
        ) as client:
            ensure_example_twins(client)
            ensure_example_twins(client)  # a restarted `make up` finds them all there
            assert {t.id for t in client.registry.list_twins()} == {
                e.twin_id for e in EXAMPLE_TWINS
            }

            def reached(query: str) -> list[str]:
                return [t.id for t in client.registry.query_twins(query)]

            assert reached(f"FROM 'plant-north' FOLLOW contains DEPTH 2 "
                           f"WHERE IS_OF_MODEL('{EX}Machine;1')") == [
                "line1-press-3", "line1-pump-1",
            ]  # fmt: skip
            assert reached("FROM 'st-mary' FOLLOW contains DEPTH 2") == [
                "ward-3", "ward3-infusion-pump-12",
            ]  # fmt: skip
            assert reached("FROM 'district7-road-a12' FOLLOW connects_to DEPTH 5") == [
                "district7-road-a13"
            ], "the road network's cycle ends"
            assert reached("FROM 'depot-2' FOLLOW houses WHERE battery_kwh > 350") == [
                "depot2-truck-18"
            ]
            pump = client.registry.get_twin("line1-pump-1")
            motor = pump.properties["motor"].map_value.fields
            assert motor["insulation_class"].string_value == "F"

            feeder = SensorFeeder(client, period_s=0.1)
            feeder.start()
            devices = ExampleDevices(platform.nats.mqtt_url, period_s=0.2)
            devices.start()
            try:
                wait_until(
                    lambda: feeder.sent_points >= 3 * len(FED_TWINS),
                    timeout_s=30,
                    what="the feeder's points acknowledged",
                )
                # The MQTT and Sparkplug B examples arrive through the device gateway; so does
                # a stock client's reading, sent without credentials as `make up` allows on
                # loopback.
                mqtt_port = platform.nats.mqtt_url.rsplit(":", 1)[1]
                subprocess.run(
                    ["mosquitto_pub", "-h", "127.0.0.1", "-p", mqtt_port, "-q", "1",
                     "-t", "twins/line1-press-3/telemetry", "-m", '{"temperature_c": 61.5}'],
                    check=True,
                    timeout=20,
                )  # fmt: skip

                def heard() -> dict[str, int]:
                    return {d.device_id: d.messages for d in client.devices.list()}

                wait_until(
                    lambda: all(
                        heard().get(device, 0) >= count
                        for device, count in (
                            ("mqtt:twins/line1-pump-1", 3),
                            ("spb:depot-2/telematics-gw/truck-18", 3),
                            ("mqtt:twins/line1-press-3", 1),
                        )
                    ),
                    timeout_s=60,
                    what="the example devices' readings taken by the gateway",
                )
                sparkplug = {d.device_id: d for d in client.devices.list("sparkplug")}
                truck = sparkplug["spb:depot-2/telematics-gw/truck-18"]
                assert list(truck.twin_ids) == ["depot2-truck-18"]
                assert truck.rejected_messages == 0, truck.last_error
            finally:
                devices.stop()
                feeder.stop()
            assert feeder.last_error is None
    finally:
        platform.stop()
