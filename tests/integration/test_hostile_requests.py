"""Generated and hostile requests to every RPC of the four running services (real nats-server,
influxd and Ray): none gets INTERNAL (or UNKNOWN), every service is still SERVING afterwards,
and a refused ingest leaves nothing published.

Requests are built from each RPC's request descriptor, so a new RPC or field is covered without
changing this file. Values mix what attackers and careless clients send (NaN, infinities,
extreme integers, unknown enum numbers, timestamps out of range, ids that would be NATS
subjects or InfluxQL, megabyte strings, deep nesting) with ids that exist, so that requests get
past the first checks too. Raw bytes that are no protobuf at all go to every method as well.

Profiles: ``ci`` (default, bounded, a couple of minutes) and ``long`` (set
``HYPOTHESIS_PROFILE=long``) for local runs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinstack.api.ingestion.v1 import ingestion_pb2
from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.api.simulation.v1 import simulation_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.common.nats import TELEMETRY_STREAM, Backbone
from twinstack.common.server import GrpcServer
from twinstack.devstack import free_port
from twinstack.ingestion.app import IngestionApp
from twinstack.ingestion.settings import IngestionSettings
from twinstack.registry.app import RegistryApp
from twinstack.registry.settings import RegistrySettings
from twinstack.simulation.app import SimulationApp
from twinstack.simulation.settings import SimulationSettings
from twinstack.state.app import StateApp
from twinstack.state.settings import StateSettings

settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("TWINSTACK_FUZZ_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
settings.register_profile(
    "long", max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck)
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

DEVICE = "dtmi:twinstack:test:Device;1"
CALL_TIMEOUT_S = 5.0
# A Watch that was accepted runs until its deadline: a short one keeps the run short.
STREAM_TIMEOUT_S = 1.5
# Statuses that mean the service failed, not the request.
FAILURES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNIMPLEMENTED}

# Ids that exist, so that generated requests also reach the checks behind the first ones.
KNOWN = ["fuzz-1", DEVICE, "temp", "seq", "pump_thermal", "0" * 32]
HOSTILE = [
    "",
    " ",
    "a.b",
    "tel.>",
    "*",
    ">",
    "..",
    "../../etc/passwd",
    "twin_id",
    "time",
    "fuzz-1' OR 1=1 --",
    'temp" FROM x; DROP DATABASE twinstack',
    "\x00",
    "\n\r\t",
    "\ufeff{}",
    "é" * 200,
    "x" * 300,
    "{" * 2000,
    '{"a":' * 900 + "1" + "}" * 900,
    "WHERE " + " OR ".join(["power > 1"] * 300),
    "FROM 'fuzz-1' FOLLOW * DEPTH 99",
    "x" + "^x" * 300,
    "dtmi:" + "a:" * 200 + "X;1",
    "x" * 1_100_000,
]
INT64 = (-(2**63), 2**63 - 1)


def _strings() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(KNOWN), st.sampled_from(HOSTILE), st.text(max_size=40))


def _scalar(field: pb_descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    fd = pb_descriptor.FieldDescriptor
    if kind == fd.TYPE_STRING:
        return _strings()
    if kind == fd.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == fd.TYPE_BOOL:
        return st.booleans()
    if kind in (fd.TYPE_DOUBLE, fd.TYPE_FLOAT):
        special = st.sampled_from([0.0, -0.0, 1e-320, 1e308, -1e308, 5e-10])
        finite = st.floats(
            allow_nan=True, allow_infinity=True, width=32 if kind == fd.TYPE_FLOAT else 64
        )
        return st.one_of(special, finite)
    if kind == fd.TYPE_ENUM:
        assert field.enum_type is not None
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-5, 1000))
    if kind in (fd.TYPE_INT32, fd.TYPE_SINT32, fd.TYPE_SFIXED32):
        return st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, 1, -1, 65536]))
    if kind in (fd.TYPE_UINT32, fd.TYPE_FIXED32):
        return st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 65536, 2**32 - 1]))
    if kind in (fd.TYPE_UINT64, fd.TYPE_FIXED64):
        return st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63, 2**64 - 1]))
    return st.one_of(st.integers(*INT64), st.sampled_from([0, 1, -1, *INT64]))


def _timestamps() -> st.SearchStrategy[dict[str, int]]:
    # Inside and far outside the range a Timestamp may hold (0001-01-01 .. 9999-12-31).
    return st.fixed_dictionaries(
        {
            "seconds": st.one_of(
                st.integers(-(2**40), 2**40), st.sampled_from([0, 1_700_000_000, -62135596801])
            ),
            "nanos": st.one_of(st.integers(0, 999_999_999), st.sampled_from([-1, 10**9])),
        }
    )


def messages(descriptor: pb_descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor`` with any subset of fields set to generated values."""
    cls = _message_class(descriptor)
    if descriptor.full_name == "google.protobuf.Timestamp":
        return _timestamps().map(lambda d: cls(**d))
    if descriptor.full_name == "google.protobuf.Duration":
        return _timestamps().map(lambda d: cls(**d))
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        value = _field_values(field, depth)
        if value is not None:
            fields[field.name] = value
    return st.fixed_dictionaries({}, optional=fields).map(lambda values: _build(cls, values))


def _field_values(
    field: pb_descriptor.FieldDescriptor, depth: int
) -> st.SearchStrategy[Any] | None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        values = _single(value_field, depth + 1)
        if values is None:
            return None
        return st.dictionaries(_scalar(key_field), values, max_size=4)
    single = _single(field, depth)
    if single is None:
        return None
    if field.is_repeated:
        return st.lists(single, max_size=4)
    return single


def _single(field: pb_descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    if field.message_type is None:
        return _scalar(field)
    if depth >= 3:
        return None
    return messages(field.message_type, depth + 1)


def _build(cls: type[Message], values: dict[str, Any]) -> Message:
    message = cls()
    for name, value in values.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if isinstance(item, Message):
                    target[key].CopyFrom(item)
                else:
                    target[key] = item
        elif field.is_repeated:
            if field.message_type is not None:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif field.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def _message_class(descriptor: pb_descriptor.Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


@dataclass(frozen=True)
class Method:
    service: str
    name: str
    port: int
    request: pb_descriptor.Descriptor
    client_streaming: bool
    server_streaming: bool

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"


def _methods(ports: dict[str, int]) -> list[Method]:
    found = []
    for module in (registry_pb2, ingestion_pb2, state_pb2, simulation_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                found.append(
                    Method(
                        service.full_name,
                        method.name,
                        ports[service.full_name],
                        method.input_type,
                        method.client_streaming,
                        method.server_streaming,
                    )
                )
    return found


def _call(channel: grpc.Channel, method: Method, payload: bytes) -> grpc.StatusCode:
    """Sends one request (serialized, so malformed bytes can be sent too); the status."""
    identity = lambda data: data  # noqa: E731 - bytes in, bytes out
    try:
        if method.client_streaming and method.server_streaming:
            stub = channel.stream_stream(method.path, identity, identity)
            for _ in stub(iter([payload, payload]), timeout=CALL_TIMEOUT_S):
                pass
        elif method.client_streaming:
            channel.stream_unary(method.path, identity, identity)(
                iter([payload]), timeout=CALL_TIMEOUT_S
            )
        elif method.server_streaming:
            responses = channel.unary_stream(method.path, identity, identity)(
                payload, timeout=STREAM_TIMEOUT_S if method.name == "Watch" else CALL_TIMEOUT_S
            )
            for count, _ in enumerate(responses):
                if count >= 20:
                    responses.cancel()
                    break
        else:
            channel.unary_unary(method.path, identity, identity)(payload, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


@dataclass
class Services:
    ports: dict[str, int]
    backbone: Backbone
    loop: asyncio.AbstractEventLoop

    def telemetry_messages(self) -> int:
        future = asyncio.run_coroutine_threadsafe(
            self.backbone.js.stream_info(TELEMETRY_STREAM), self.loop
        )
        return int(future.result(timeout=10).state.messages)


@pytest.fixture
async def services(
    infra_settings: dict[str, Any],
    store_test_models: Any,
    ray_settings: dict[str, Any],
    backbone: Backbone,
    tmp_path: Path,
) -> AsyncIterator[Services]:
    registry_port = free_port()
    registry_settings = RegistrySettings(**{**infra_settings, "grpc_port": registry_port})
    apps: list[tuple[Any, Any]] = [
        (registry_settings, RegistryApp(registry_settings)),
        (settings_ := IngestionSettings(**infra_settings), IngestionApp(settings_)),
        (state_ := StateSettings(**infra_settings), StateApp(state_)),
    ]
    simulation = SimulationSettings(
        **infra_settings,
        registry_target=f"127.0.0.1:{registry_port}",
        scenarios_per_task=2500,
        **ray_settings,
    )
    apps.append((simulation, SimulationApp(simulation)))
    servers = []
    ports: dict[str, int] = {}
    try:
        for app_settings, app in apps:
            server = GrpcServer(app_settings, app)
            port = await server.start()
            servers.append(server)
            for name in app.service_names:
                ports[name] = port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{registry_port}") as channel:
            registry = registry_pb2_grpc.RegistryServiceStub(channel)
            await store_test_models(registry)
            await registry.CreateTwin(
                registry_pb2.CreateTwinRequest(twin=registry_pb2.Twin(id="fuzz-1", model_id=DEVICE))
            )
        yield Services(ports, backbone, asyncio.get_running_loop())
    finally:
        for server in reversed(servers):
            await server.stop()


def _assert_serving(services: Services) -> None:
    for name, port in services.ports.items():
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health: Any = health_pb2_grpc.HealthStub(channel)
            answer = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, name


def _fuzz(services: Services) -> None:
    methods = _methods(services.ports)
    channels = {
        port: grpc.insecure_channel(f"127.0.0.1:{port}") for port in services.ports.values()
    }
    failures: list[str] = []

    def check(method: Method, payload: bytes) -> None:
        ingest = method.name.startswith("Ingest")
        before = services.telemetry_messages() if ingest else 0
        code = _call(channels[method.port], method, payload)
        if code in FAILURES:
            failures.append(f"{method.path}: {code.name} for {payload[:200]!r}")
        if ingest and code != grpc.StatusCode.OK and method.name == "IngestBatch":
            # A refused request publishes nothing, not even its valid part.
            assert services.telemetry_messages() == before, f"{method.path} published a part"

    try:
        for method in methods:
            _run_examples(method, check)
    finally:
        for channel in channels.values():
            channel.close()
    assert failures == [], "\n".join(failures[:20])


def _run_examples(method: Method, check: Any) -> None:
    """Generated requests, then bytes that are no request at all, to one method."""

    @settings(settings.get_profile(PROFILE))
    @given(request=messages(method.request))
    def generated(request: Message) -> None:
        check(method, request.SerializeToString())

    @settings(settings.get_profile(PROFILE))
    @given(payload=st.binary(max_size=256))
    def malformed(payload: bytes) -> None:
        check(method, payload)

    generated()
    malformed()


async def test_hostile_requests_never_fail_the_services(services: Services) -> None:
    # Hypothesis drives blocking calls from a thread while the services run on this loop.
    await asyncio.to_thread(_fuzz, services)
    await asyncio.to_thread(_assert_serving, services)


def test_the_generator_reaches_every_field_kind() -> None:
    """The strategies build every request type, with values of every field kind set."""
    seen: set[str] = set()

    for module in (registry_pb2, ingestion_pb2, state_pb2, simulation_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if method.input_type.fields:
                    example = _first_nonempty(messages(method.input_type))
                    seen.update(field.name for field, _ in example.ListFields())
    assert {"twin_id", "twin", "frames", "points", "query"} <= seen


def _first_nonempty(strategy: st.SearchStrategy[Message]) -> Message:
    found: list[Message] = []

    @settings(max_examples=50, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(message=strategy)
    def collect(message: Message) -> None:
        if message.ListFields():
            found.append(message)

    collect()
    assert found, "the strategy never set a field"
    return found[0]
