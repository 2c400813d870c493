"""Devices both ways, against a real nats-server with its MQTT listener, with clients no one
here wrote: Debian's mosquitto_pub/mosquitto_sub, paho-mqtt, pysparkplug's encoder and an
asyncua server. Registry, ingestion (with the device gateway) and state run as in production."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import paho.mqtt.client as paho
import pysparkplug as spb
import pytest
import yaml
from google.protobuf import timestamp_pb2

from twinstack.api.common.v1 import types_pb2
from twinstack.api.devices.v1 import devices_pb2, devices_pb2_grpc
from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.api.state.v1 import state_pb2, state_pb2_grpc
from twinstack.common.consumer import DEAD_LETTER_REASON_HEADER
from twinstack.common.nats import EVENTS_STREAM, Backbone
from twinstack.common.nats_permissions import SERVICES
from twinstack.devstack import ManagedProcess, NatsServer, free_port
from twinstack.devstack.platform import grpc_serving
from twinstack.ingestion.app import IngestionApp
from twinstack.ingestion.settings import IngestionSettings
from twinstack.registry.app import RegistryApp
from twinstack.registry.settings import RegistrySettings
from twinstack.state.app import StateApp
from twinstack.state.settings import StateSettings

PUMP = "dtmi:twinstack:examples:Pump;1"
TRUCK = "dtmi:twinstack:examples:ElectricTruck;1"
S = 10**9


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """nats-server with JetStream and its MQTT listener (anyone may log on: no authorization
    block; tests/integration/test_nats_permissions.py covers device users)."""
    server = NatsServer(tmp_path / "nats", mqtt_port=0)
    server.start()
    yield server
    server.stop()


@dataclass
class Devices:
    registry: registry_pb2_grpc.RegistryServiceAsyncStub
    state: state_pb2_grpc.StateServiceAsyncStub
    devices: devices_pb2_grpc.DeviceServiceAsyncStub
    mqtt_port: int
    nats: NatsServer
    clients: list[paho.Client] = field(default_factory=list)

    async def twin(self, twin_id: str, model_id: str = PUMP) -> None:
        twin = registry_pb2.Twin(id=twin_id, model_id=model_id)
        await self.registry.CreateTwin(registry_pb2.CreateTwinRequest(twin=twin), timeout=10)

    async def get(self, twin_id: str) -> state_pb2.TwinState | None:
        try:
            request = state_pb2.GetStateRequest(twin_id=twin_id)
            return (await self.state.GetState(request, timeout=5)).state
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    async def history(self, twin_id: str, field_name: str) -> list[float]:
        return [float(v) for v in await self._history(twin_id, field_name, "double_values")]

    async def history_ints(self, twin_id: str, field_name: str) -> list[int]:
        return [int(v) for v in await self._history(twin_id, field_name, "int_values")]

    async def _history(self, twin_id: str, field_name: str, kind: str) -> list[Any]:
        start = timestamp_pb2.Timestamp()
        start.FromNanoseconds(time.time_ns() - 3600 * S)
        end = timestamp_pb2.Timestamp()
        end.FromNanoseconds(time.time_ns() + 3600 * S)
        request = state_pb2.QueryHistoryRequest(
            twin_ids=[twin_id], fields=[field_name], start_time=start, end_time=end
        )
        values: list[Any] = []
        async for response in self.state.QueryHistory(request, timeout=10):
            for series in response.series:
                values += list(getattr(series, kind).values)
        return values

    def mqtt(self, client_id: str | None = None) -> MqttDevice:
        device = MqttDevice(self.mqtt_port, client_id or f"test-{uuid.uuid4().hex[:8]}")
        self.clients.append(device.client)
        return device


class MqttDevice:
    """A paho-mqtt client that keeps what it receives."""

    def __init__(self, port: int, client_id: str) -> None:
        self.received: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.client = paho.Client(client_id=client_id)
        self.client.on_message = lambda _c, _u, m: self.received.put(
            (m.topic, m.payload, bool(m.retain))
        )
        connected = threading.Event()
        self._subscribed: set[int] = set()
        self._acknowledged = threading.Condition()

        def on_connect(_c: Any, _u: Any, _f: Any, rc: int) -> None:
            if rc == 0:
                connected.set()

        def on_subscribe(_c: Any, _u: Any, mid: int, _q: Any) -> None:
            with self._acknowledged:
                self._subscribed.add(mid)
                self._acknowledged.notify_all()

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        # Publishing before the server's CONNACK would be dropped (QoS 0) or held back.
        assert connected.wait(10), "the MQTT listener did not accept the connection"

    def subscribe(self, topic: str) -> None:
        """Subscribes and waits for the server's SUBACK."""
        result, mid = self.client.subscribe(topic, qos=1)
        assert result == paho.MQTT_ERR_SUCCESS
        with self._acknowledged:
            assert self._acknowledged.wait_for(lambda: mid in self._subscribed, 10)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(10)
        assert info.is_published()

    async def next(self, topic_part: str, timeout_s: float = 20.0) -> tuple[str, bytes, bool]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                topic, payload, retained = await asyncio.to_thread(self.received.get, True, 0.5)
            except queue.Empty:
                continue
            if topic_part in topic:
                return topic, payload, retained
        pytest.fail(f"nothing on a topic with {topic_part!r} within {timeout_s} s")


PlatformFactory = Callable[..., AbstractAsyncContextManager[Devices]]


@pytest.fixture
def device_platform(
    infra_settings: dict[str, Any],
    nats_server: NatsServer,
    serve_app: Any,
    store_test_models: Any,
    tmp_path: Path,
) -> PlatformFactory:
    """Starts registry, ingestion (gateway leader, with ``mapping``) and state."""

    @asynccontextmanager
    async def start(mapping: dict[str, Any] | None = None) -> AsyncIterator[Devices]:
        mapping_file = tmp_path / f"mapping-{uuid.uuid4().hex[:6]}.yaml"
        mapping_file.write_text(yaml.safe_dump(mapping or {}))
        registry_settings = RegistrySettings(**infra_settings)
        ingestion_settings = IngestionSettings(
            **infra_settings,
            mqtt_url=nats_server.mqtt_url,
            device_mapping_file=mapping_file,
            device_directory_flush_interval_s=0.2,
        )
        state_settings = StateSettings(**infra_settings, state_staleness_check_interval_s=0.2)
        async with (
            serve_app(registry_settings, RegistryApp(registry_settings)) as registry_channel,
            serve_app(ingestion_settings, IngestionApp(ingestion_settings)) as ingestion_channel,
            serve_app(state_settings, StateApp(state_settings)) as state_channel,
        ):
            registry = registry_pb2_grpc.RegistryServiceStub(registry_channel)
            await store_test_models(registry)
            assert nats_server.mqtt_port is not None
            platform = Devices(
                registry,
                state_pb2_grpc.StateServiceStub(state_channel),
                devices_pb2_grpc.DeviceServiceStub(ingestion_channel),
                nats_server.mqtt_port,
                nats_server,
            )
            try:
                yield platform
            finally:
                for client in platform.clients:
                    # Disconnect first: paho's loop thread ends only once nothing awaits an
                    # acknowledgement or the connection is closed.
                    client.disconnect()
                    client.loop_stop()

    return start


def mosquitto_pub(port: int, topic: str, message: str, *options: str) -> None:
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic,
         "-m", message, *options],
        check=True,
        timeout=20,
    )  # fmt: skip


async def test_mosquitto_reading_reaches_live_state_and_history(
    device_platform: PlatformFactory, eventually: Any
) -> None:
    async with device_platform() as platform:
        await platform.twin("pump-7")
        mosquitto_pub(platform.mqtt_port, "twins/pump-7/telemetry", '{"temperature_c": 61.5}')
        state = await eventually(
            lambda: platform.get("pump-7"),
            lambda s: s is not None and "temperature_c" in s.reported,
        )
        assert state.reported["temperature_c"].value.double_value == 61.5
        assert state.connectivity == state_pb2.CONNECTIVITY_ONLINE
        # An array of readings with their own times (ThingsBoard's form, and RFC 3339).
        now_ms = time.time_ns() // 10**6
        mosquitto_pub(
            platform.mqtt_port,
            "twins/pump-7/telemetry",
            json.dumps(
                [
                    {"ts": now_ms - 2000, "values": {"temperature_c": 62.0, "cycles": 3}},
                    {"ts": now_ms - 1000, "values": {"temperature_c": 63.0}},
                ]
            ),
        )
        stored = await eventually(
            lambda: platform.history("pump-7", "temperature_c"), lambda v: len(v) == 3
        )
        assert sorted(stored) == [61.5, 62.0, 63.0]
        state = await eventually(lambda: platform.get("pump-7"), lambda s: "cycles" in s.reported)
        assert state.reported["cycles"].value.int_value == 3
        listed = await eventually(
            lambda: platform.devices.ListDevices(devices_pb2.ListDevicesRequest(), timeout=5),
            lambda r: any(d.messages == 2 for d in r.devices),
        )
        (device,) = listed.devices
        assert device.device_id == "mqtt:twins/pump-7"
        assert device.protocol == devices_pb2.PROTOCOL_MQTT
        assert list(device.twin_ids) == ["pump-7"]
        assert device.status == devices_pb2.DEVICE_STATUS_ONLINE


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("twins/pump-8/telemetry", "{not json", "malformed JSON"),
        ("twins/no-such-pump/telemetry", '{"temperature_c": 20}', "unknown twin"),
        ("twins/pump-8/telemetry", '{"colour": "red"}', "colour"),
        ("twins/pump-8/telemetry", '{"temperature_c": NaN}', "NaN"),
        ("twins/pump-8/telemetry", '{"temperature_c": 900}', "above the maximum 250"),
        ("twins/pump-8/telemetry", '{"temperature_c": null}', "null"),
        ("twins/pump-8/telemetry", "[]", "no readings"),
        pytest.param(
            "twins/pump-8/telemetry",
            "[" * 50_000 + "]" * 50_000,
            "nested too deeply",
            id="deeply-nested",
        ),
    ],
)
async def test_bad_readings_are_answered_on_the_error_topic_and_dead_lettered(
    device_platform: PlatformFactory,
    backbone: Backbone,
    eventually: Any,
    topic: str,
    payload: str,
    reason: str,
) -> None:
    async with device_platform() as platform:
        await platform.twin("pump-8")
        errors_topic = topic.rsplit("/", 1)[0] + "/errors"
        listener = await asyncio.create_subprocess_exec(
            "mosquitto_sub", "-h", "127.0.0.1", "-p", str(platform.mqtt_port), "-q", "1",
            "-t", errors_topic, "-C", "1", "-W", "30",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        dead_letters = await backbone.client.subscribe("evt.ingestion.deadletter.>")
        await backbone.client.flush()  # subscribed before anything is published
        try:
            # mosquitto_sub subscribes once it is connected: publish until it has an answer.
            for _ in range(40):
                mosquitto_pub(platform.mqtt_port, topic, payload)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(listener.wait(), 0.5)
                    break
            assert listener.stdout is not None
            error = json.loads(await listener.stdout.read())
            assert reason in json.dumps(error), error
            assert error["topic"] == topic
            assert error["stored"] is False
            letter = await dead_letters.next_msg(timeout=10)
            assert letter.headers is not None
            assert reason in letter.headers[DEAD_LETTER_REASON_HEADER]
        finally:
            if listener.returncode is None:
                listener.kill()
                await listener.wait()
            await dead_letters.unsubscribe()
        # The good reading after the bad ones goes through; nothing of the bad ones is stored.
        mosquitto_pub(platform.mqtt_port, "twins/pump-8/telemetry", '{"temperature_c": 30}')
        await eventually(lambda: platform.history("pump-8", "temperature_c"), lambda v: v == [30.0])
        info = await backbone.js.stream_info(EVENTS_STREAM)
        assert info.state.messages >= 1


async def test_desired_values_reach_the_device_which_clears_the_delta(
    device_platform: PlatformFactory, eventually: Any
) -> None:
    async with device_platform() as platform:
        await platform.twin("pump-9")
        # A device online when the value is set gets it as it is published...
        device = platform.mqtt()
        device.subscribe("twins/pump-9/desired")
        request = state_pb2.SetDesiredRequest(
            twin_id="pump-9", set={"load": types_pb2.Value(double_value=0.9)}
        )
        await platform.state.SetDesired(request, timeout=10)
        topic, payload, _ = await device.next("desired")
        assert topic == "twins/pump-9/desired"
        # ...and one that subscribes later gets it too: the message is retained.
        late = platform.mqtt()
        late.subscribe("twins/pump-9/desired")
        _, late_payload, retained = await late.next("desired")
        assert retained
        assert late_payload == payload
        document = json.loads(payload)
        assert document["desired"] == {"load": 0.9}
        assert document["pending"] == ["load"]
        state = await platform.get("pump-9")
        assert state is not None
        assert "load" in state.delta
        device.publish("twins/pump-9/telemetry", json.dumps({"load": 0.9}))
        state = await eventually(lambda: platform.get("pump-9"), lambda s: not s.delta)
        assert state.reported["load"].value.double_value == 0.9


async def test_commands_go_to_the_device_and_its_answer_comes_back(
    device_platform: PlatformFactory,
) -> None:
    async with device_platform() as platform:
        await platform.twin("pump-10")
        device = platform.mqtt()
        device.subscribe("twins/pump-10/commands/+")

        async def answer_once() -> dict[str, Any]:
            topic, payload, _ = await device.next("commands")
            request = json.loads(payload)
            assert topic == "twins/pump-10/commands/stop"
            device.publish(request["response_topic"], json.dumps({"response": {"accepted": True}}))
            return dict(request)

        answering = asyncio.create_task(answer_once())
        stop = types_pb2.Value(
            map_value=types_pb2.ValueMap(
                fields={"reason": types_pb2.Value(string_value="maintenance")}
            )
        )
        response = await platform.devices.InvokeCommand(
            devices_pb2.InvokeCommandRequest(
                twin_id="pump-10", command="stop", request=stop, timeout_ms=5000
            ),
            timeout=10,
        )
        sent = await answering
        assert sent["request"] == {"reason": "maintenance"}
        assert sent["request_id"] == response.request_id
        assert response.response.map_value.fields["accepted"].bool_value is True

        # Nobody answers: DEADLINE_EXCEEDED with the request id.
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await platform.devices.InvokeCommand(
                devices_pb2.InvokeCommandRequest(
                    twin_id="pump-10", command="stop", request=stop, timeout_ms=300
                ),
                timeout=10,
            )
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # Undeclared commands and requests the schema refuses never reach the device.
        for bad in (
            devices_pb2.InvokeCommandRequest(twin_id="pump-10", command="explode"),
            devices_pb2.InvokeCommandRequest(
                twin_id="pump-10", command="stop", request=types_pb2.Value(int_value=3)
            ),
            devices_pb2.InvokeCommandRequest(twin_id="pump-10", command="stop", timeout_ms=10**7),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await platform.devices.InvokeCommand(bad, timeout=10)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await platform.devices.InvokeCommand(
                devices_pb2.InvokeCommandRequest(twin_id="nobody", command="stop"), timeout=10
            )
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


SPARKPLUG_MAPPING = {
    "sparkplug": [
        {
            "group": "depot.2",
            "edge_node": "gw-1",
            "device": "truck-18",
            "twin": "truck-18",
            "metrics": {"Battery/SoC": "state_of_charge_pct", "Speed": "speed_kmh"},
        }
    ]
}


def _metric(name: str, value: float, alias: int, *, with_name: bool = True) -> spb.Metric:
    return spb.Metric(
        timestamp=spb.get_current_timestamp(),
        name=name if with_name else None,
        alias=alias,
        datatype=spb.DataType.DOUBLE,
        value=value,
    )


async def test_sparkplug_births_data_with_aliases_deaths_and_rebirth_requests(
    device_platform: PlatformFactory, eventually: Any
) -> None:
    async with device_platform(SPARKPLUG_MAPPING) as platform:
        await platform.twin("truck-18", TRUCK)
        node = platform.mqtt("gw-1")
        node.subscribe("spBv1.0/depot.2/NCMD/gw-1")
        node.subscribe("spBv1.0/depot.2/DCMD/gw-1/truck-18")
        base = "spBv1.0/depot.2"
        now = spb.get_current_timestamp()
        bd_seq = spb.Metric(timestamp=now, name="bdSeq", datatype=spb.DataType.INT64, value=4)
        node.publish(f"{base}/NBIRTH/gw-1", spb.NBirth(now, 0, (bd_seq,)).encode(), qos=0)
        birth = spb.DBirth(
            now,
            1,
            (
                _metric("Battery/SoC", 80.0, 1),
                _metric("Speed", 20.0, 2),
                _metric("Odometer", 1234.0, 3),  # not mapped: not forwarded
            ),
        )
        node.publish(f"{base}/DBIRTH/gw-1/truck-18", birth.encode(include_dtypes=True), qos=0)
        state = await eventually(
            lambda: platform.get("truck-18"),
            lambda s: s is not None and "speed_kmh" in s.reported,
        )
        assert state.reported["state_of_charge_pct"].value.double_value == 80.0
        assert "Odometer" not in state.reported
        assert state.connectivity == state_pb2.CONNECTIVITY_ONLINE
        # Data by alias only, as Sparkplug devices send it after their birth.
        data = spb.DData(now + 1000, 2, (_metric("Speed", 42.0, 2, with_name=False),))
        node.publish(f"{base}/DDATA/gw-1/truck-18", data.encode(), qos=0)
        await eventually(
            lambda: platform.get("truck-18"),
            lambda s: s.reported["speed_kmh"].value.double_value == 42.0,
        )
        # seq jumps from 2 to 9: messages were lost, the node is asked for a rebirth.
        data = spb.DData(now + 2000, 9, (_metric("Speed", 43.0, 2, with_name=False),))
        node.publish(f"{base}/DDATA/gw-1/truck-18", data.encode(), qos=0)
        _, payload, _ = await node.next("NCMD")
        command = spb.NCmd.decode(payload)
        assert [(m.name, m.value) for m in command.metrics] == [("Node Control/Rebirth", True)]
        # Desired speed reaches the device as a DCMD of its metric, typed as born.
        await platform.state.SetDesired(
            state_pb2.SetDesiredRequest(
                twin_id="truck-18", set={"speed_kmh": types_pb2.Value(double_value=30.0)}
            ),
            timeout=10,
        )
        _, payload, _ = await node.next("DCMD")
        dcmd = spb.DCmd.decode(payload)
        assert [(m.name, m.value, m.datatype) for m in dcmd.metrics] == [
            ("Speed", 30.0, spb.DataType.DOUBLE)
        ]
        # A death of an older session changes nothing; the node's own death makes it stale.
        old = spb.Metric(timestamp=now, name="bdSeq", datatype=spb.DataType.INT64, value=3)
        node.publish(f"{base}/NDEATH/gw-1", spb.NDeath(now, old).encode(), qos=0)
        node.publish(f"{base}/NDEATH/gw-1", spb.NDeath(now, bd_seq).encode(), qos=0)
        state = await eventually(
            lambda: platform.get("truck-18"),
            lambda s: s.connectivity == state_pb2.CONNECTIVITY_STALE,
        )
        # The node and its device are both listed offline (the directory is written every
        # 0.2 s here, so the listing may show the death a moment after the state does).
        listed = await eventually(
            lambda: platform.devices.ListDevices(
                devices_pb2.ListDevicesRequest(protocol=devices_pb2.PROTOCOL_SPARKPLUG_B),
                timeout=5,
            ),
            lambda r: (
                len(r.devices) == 2
                and all(d.status == devices_pb2.DEVICE_STATUS_OFFLINE for d in r.devices)
            ),
        )
        by_id = {d.device_id: d for d in listed.devices}
        assert set(by_id) == {"spb:depot.2/gw-1", "spb:depot.2/gw-1/truck-18"}
        device = by_id["spb:depot.2/gw-1/truck-18"]
        assert list(device.twin_ids) == ["truck-18"]
        assert device.details["bdSeq"] == "4"
        assert "older session" in device.last_error or "seq" in device.last_error
        edge_node = by_id["spb:depot.2/gw-1"]
        assert list(edge_node.twin_ids) == []
        assert edge_node.details["bdSeq"] == "4"
        assert "older session" in edge_node.last_error


def test_non_finite_readings_are_refused_before_they_reach_influxdb() -> None:
    # json.loads takes NaN and Infinity; the validator is what refuses them (above). This
    # guards the parser's own part: a timestamp cannot be one.
    from twinstack.ingestion.devices.readings import ReadingError, parse_readings

    with pytest.raises(ReadingError):
        parse_readings(b'{"ts": NaN, "values": {"x": 1}}', max_readings=10)
    assert math.isnan(parse_readings(b'{"x": NaN}', max_readings=10)[0].values["x"])


async def _opcua_server(port: int) -> Any:
    """An asyncua server with a press's temperature and a writable load."""

    from asyncua.server.server import Server

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/press/")
    namespace = await server.register_namespace("urn:twinstack:test:press")
    press = await server.nodes.objects.add_object(namespace, "Press")
    await press.add_variable(f"ns={namespace};s=Temperature", "Temperature", 20.0)
    load = await press.add_variable(f"ns={namespace};s=Load", "Load", 0.5)
    await load.set_writable()
    await server.start()
    return server


async def test_opcua_subscriptions_feed_the_twin_survive_a_restart_and_take_desired_values(
    device_platform: PlatformFactory, eventually: Any
) -> None:
    from asyncua import ua

    port = free_port()
    server = await _opcua_server(port)
    mapping = {
        "opcua": [
            {
                "endpoint": f"opc.tcp://127.0.0.1:{port}/press/",
                "sampling_interval_ms": 50,
                "publishing_interval_ms": 50,
                "items": [
                    {"node_id": "ns=2;s=Temperature", "twin": "press-5", "field": "temperature_c"},
                    {
                        "node_id": "ns=2;s=Load",
                        "twin": "press-5",
                        "field": "load",
                        "writable": True,
                    },
                ],
            }
        ]
    }

    async def write(node_id: str, value: float) -> None:
        await server.get_node(node_id).write_value(ua.Variant(value, ua.VariantType.Double))

    async def reported(field_name: str) -> float | None:
        state = await platform.get("press-5")
        if state is None or field_name not in state.reported:
            return None
        return float(state.reported[field_name].value.double_value)

    try:
        async with device_platform(mapping) as platform:
            await platform.twin("press-5")
            await write("ns=2;s=Temperature", 55.5)
            await eventually(lambda: reported("temperature_c"), lambda v: v == 55.5)
            # The server goes away and comes back: the connector subscribes again by itself.
            await server.stop()
            server = await _opcua_server(port)
            await write("ns=2;s=Temperature", 66.0)
            await eventually(lambda: reported("temperature_c"), lambda v: v == 66.0, timeout_s=40)
            # A desired load is written to the writable node; the node's value then comes back
            # as reported, and the delta clears.
            await platform.state.SetDesired(
                state_pb2.SetDesiredRequest(
                    twin_id="press-5", set={"load": types_pb2.Value(double_value=0.8)}
                ),
                timeout=10,
            )

            async def node_load() -> float:
                return float(await server.get_node("ns=2;s=Load").read_value())

            await eventually(node_load, lambda v: v == 0.8)
            await eventually(lambda: platform.get("press-5"), lambda s: not s.delta)
            listed = await platform.devices.ListDevices(
                devices_pb2.ListDevicesRequest(protocol=devices_pb2.PROTOCOL_OPC_UA), timeout=5
            )
            (device,) = listed.devices
            assert device.device_id == f"opcua:opc.tcp://127.0.0.1:{port}/press/"
            assert device.status == devices_pb2.DEVICE_STATUS_ONLINE
            assert list(device.twin_ids) == ["press-5"]
    finally:
        await server.stop()


def _gateway_process(
    name: str, settings: dict[str, Any], mqtt_url: str, data_dir: Path
) -> ManagedProcess:
    """An ingestion replica (the gateway's leader once it holds the lease) as its own process."""
    port = free_port()
    env = {
        "TWINSTACK_GRPC_HOST": "127.0.0.1",
        "TWINSTACK_GRPC_PORT": str(port),
        "TWINSTACK_METRICS_PORT": "0",
        "TWINSTACK_NATS_URL": settings["nats_url"],
        "TWINSTACK_INFLUX_URL": settings["influx_url"],
        "TWINSTACK_INFLUX_DATABASE": settings["influx_database"],
        "TWINSTACK_AUTH_MODE": "disabled",
        "TWINSTACK_LOG_FORMAT": "console",
        "TWINSTACK_MQTT_URL": mqtt_url,
        "TWINSTACK_DEVICE_ACK_WAIT_S": "5",
    }
    target = f"127.0.0.1:{port}"
    return ManagedProcess(
        name,
        [sys.executable, "-m", "twinstack.ingestion"],
        log_path=data_dir / f"{name}.log",
        env=env,
        ready=lambda: grpc_serving(target),
    )


async def test_qos1_readings_survive_the_gateway_being_killed_mid_stream(
    infra_settings: dict[str, Any],
    nats_server: NatsServer,
    serve_app: Any,
    store_test_models: Any,
    tmp_path: Path,
    eventually: Any,
) -> None:
    registry_settings = RegistrySettings(**infra_settings)
    state_settings = StateSettings(**infra_settings)
    gateway = _gateway_process("gateway", infra_settings, nats_server.mqtt_url, tmp_path)
    await asyncio.to_thread(gateway.start, timeout_s=120)
    try:
        async with (
            serve_app(registry_settings, RegistryApp(registry_settings)) as registry_channel,
            serve_app(state_settings, StateApp(state_settings)) as state_channel,
        ):
            registry = registry_pb2_grpc.RegistryServiceStub(registry_channel)
            await store_test_models(registry)
            assert nats_server.mqtt_port is not None
            platform = Devices(
                registry,
                state_pb2_grpc.StateServiceStub(state_channel),
                devices_pb2_grpc.DeviceServiceStub(registry_channel),  # unused here
                nats_server.mqtt_port,
                nats_server,
            )
            await platform.twin("pump-11")
            device = platform.mqtt()
            acknowledged: list[int] = []
            base_ms = time.time_ns() // 10**6 - 600_000

            def send(first: int, count: int) -> None:
                for number in range(first, first + count):
                    reading = {"ts": base_ms + number, "values": {"cycles": number}}
                    # Blocks until the PUBACK: only then is the reading the platform's.
                    device.publish("twins/pump-11/telemetry", json.dumps(reading))
                    acknowledged.append(number)

            sender = asyncio.create_task(asyncio.to_thread(send, 0, 600))
            await eventually(
                lambda: platform.history_ints("pump-11", "cycles"), lambda v: len(v) > 50
            )
            gateway.kill()  # mid-stream: readings keep coming and are PUBACKed by NATS meanwhile
            await sender
            await asyncio.to_thread(send, 600, 200)
            await asyncio.to_thread(gateway.start, timeout_s=120)
            stored = await eventually(
                lambda: platform.history_ints("pump-11", "cycles"),
                lambda v: len(v) >= len(acknowledged),
                timeout_s=60,
            )
            assert sorted(stored) == sorted(acknowledged), "every PUBACKed reading, once"
            for client in platform.clients:
                client.disconnect()
                client.loop_stop()
    finally:
        gateway.stop()


async def test_device_credentials_allow_only_the_devices_own_topics(tmp_path: Path) -> None:
    import nats as nats_client

    from twinstack.common.nats_permissions import DeviceUser, authorization_block

    devices = [
        DeviceUser("press-1", "press-secret", "default", ("press-1",)),
        DeviceUser("acme-pump", "acme-secret", "acme", ("pump-1",)),
    ]
    server = NatsServer(
        tmp_path / "nats",
        authorization=authorization_block({s: s for s in SERVICES}, "adm1n", devices),
        mqtt_port=0,
    )
    server.start()
    admin = await nats_client.connect(server.url, user="admin", password="adm1n")
    try:
        seen = await admin.subscribe(">")
        await admin.flush()

        def device(user: str, password: str) -> paho.Client:
            client = paho.Client(client_id=f"{user}-{uuid.uuid4().hex[:6]}")
            client.username_pw_set(user, password)
            answered: queue.Queue[int] = queue.Queue()
            client.on_connect = lambda _c, _u, _f, rc: answered.put(rc)
            assert server.mqtt_port is not None
            client.connect("127.0.0.1", server.mqtt_port)
            client.loop_start()
            code = answered.get(timeout=10)
            if code != 0:
                client.loop_stop()
                raise PermissionError(code)
            return client

        with pytest.raises(PermissionError):
            device("press-1", "guess")
        press = device("press-1", "press-secret")
        acme = device("acme-pump", "acme-secret")
        try:
            # Refused ones go first: had nats-server let them through, they would arrive
            # before the allowed one from the same connection.
            for client, refused, allowed in (
                (press, "twins/other-twin/telemetry", "twins/press-1/telemetry"),
                (press, "twins/press-1/desired", "twins/press-1/telemetry"),
                (acme, "twins/pump-1/telemetry", "tenants/acme/twins/pump-1/telemetry"),
            ):
                client.publish(refused, b'{"x": 1}', qos=0)
                client.publish(allowed, b'{"x": 2}', qos=0).wait_for_publish(10)
                while True:
                    message = await seen.next_msg(timeout=10)
                    if not message.subject.startswith("$"):
                        break
                assert message.subject == allowed.replace("/", ".")
                assert message.data == b'{"x": 2}'
        finally:
            for client in (press, acme):
                client.disconnect()
                client.loop_stop()
    finally:
        await admin.close()
        server.stop()
