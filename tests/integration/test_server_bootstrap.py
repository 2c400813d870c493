"""What every service gets from the bootstrap: health, reflection, statuses, auth, shutdown."""

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.common.errors import NotFoundError
from twinstack.common.server import GrpcServer
from twinstack.registry.app import RegistryApp
from twinstack.registry.service import SERVICE_NAME
from twinstack.registry.settings import RegistrySettings
from twinstack.sdk import Client, ConnectConfig, Endpoints


async def health(channel: grpc.aio.Channel, service: str = "") -> int:
    stub: Any = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(response.status)


async def test_health_and_reflection(infra_settings: dict[str, Any], serve_app: Any) -> None:
    settings = RegistrySettings(**infra_settings)
    async with serve_app(settings, RegistryApp(settings)) as channel:
        assert await health(channel) == health_pb2.HealthCheckResponse.SERVING
        assert await health(channel, SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING
        # The published grpc_reflection stubs leave this stub untyped.
        stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name async for r in responses for s in r.list_services_response.service}
        assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


async def test_domain_errors_become_rich_statuses(
    infra_settings: dict[str, Any], serve_app: Any, details_of: Any
) -> None:
    settings = RegistrySettings(**infra_settings)
    async with serve_app(settings, RegistryApp(settings)) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetTwin(registry_pb2.GetTwinRequest(twin_id="nope-1"), timeout=5)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        info, resource = details_of(raised.value)
        assert info.reason == "NOT_FOUND"
        assert resource.resource_name == "nope-1"


async def test_oversized_messages_are_refused_and_the_server_keeps_serving(
    infra_settings: dict[str, Any], serve_app: Any
) -> None:
    settings = RegistrySettings(**infra_settings, grpc_max_message_bytes=64 * 1024)
    async with serve_app(settings, RegistryApp(settings)) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetTwin(registry_pb2.GetTwinRequest(twin_id="x" * 100_000), timeout=5)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await health(channel) == health_pb2.HealthCheckResponse.SERVING


async def test_shutdown_reports_not_serving_before_it_stops(
    infra_settings: dict[str, Any], eventually: Any
) -> None:
    settings = RegistrySettings(**infra_settings, shutdown_not_serving_delay_s=1.0)
    server = GrpcServer(settings, RegistryApp(settings))
    port = await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stopping = asyncio.create_task(server.stop())
        await eventually(
            lambda: health(channel), lambda s: s == health_pb2.HealthCheckResponse.NOT_SERVING
        )
        assert not stopping.done(), "still draining while probes see NOT_SERVING"
        await stopping
        with pytest.raises(grpc.aio.AioRpcError):
            await health(channel)


class _Misbehaving:
    """A service whose handlers fail in the ways the bootstrap must contain."""

    service_names = ("test.Misbehaving",)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def register(self, server: grpc.aio.Server) -> None:
        async def explode(request: bytes, context: Any) -> bytes:
            raise RuntimeError("secret internal detail")

        async def hang(request: bytes, context: Any) -> bytes:
            await asyncio.Event().wait()
            return b""

        async def stream_then_fail(request: bytes, context: Any) -> AsyncIterator[bytes]:
            yield b"first"
            raise NotFoundError("twinstack.io/Twin", "pump-1", "gone mid-stream")

        identity = {"request_deserializer": None, "response_serializer": None}
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "test.Misbehaving",
                    {
                        "Explode": grpc.unary_unary_rpc_method_handler(explode, **identity),
                        "Hang": grpc.unary_unary_rpc_method_handler(hang, **identity),
                        "Stream": grpc.unary_stream_rpc_method_handler(
                            stream_then_fail, **identity
                        ),
                    },
                )
            ]
        )


async def test_failures_are_contained_and_the_server_keeps_serving(
    serve_app: Any, details_of: Any
) -> None:
    settings = RegistrySettings(
        grpc_host="127.0.0.1", grpc_port=0, grpc_default_deadline_s=0.3, auth_mode="disabled"
    )
    async with serve_app(settings, _Misbehaving()) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await channel.unary_unary("/test.Misbehaving/Explode")(b"", timeout=5)
        assert raised.value.code() == grpc.StatusCode.INTERNAL
        assert "secret" not in (raised.value.details() or "")
        assert details_of(raised.value)[0].reason == "INTERNAL"

        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await channel.unary_unary("/test.Misbehaving/Hang")(b"")
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "default deadline" in (raised.value.details() or "")

        call = channel.unary_stream("/test.Misbehaving/Stream")(b"", timeout=5)
        assert await call.read() == b"first"
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call.read()
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert details_of(raised.value)[1].resource_name == "pump-1"

        assert await health(channel) == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, made with the openssl command."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_serves_verified_clients_only(
    infra_settings: dict[str, Any], self_signed: tuple[Path, Path]
) -> None:
    cert, key = self_signed
    settings = RegistrySettings(**infra_settings, tls_cert_file=cert, tls_key_file=key)
    server = GrpcServer(settings, RegistryApp(settings))
    port = await server.start()
    try:
        target = f"127.0.0.1:{port}"
        config = ConnectConfig(Endpoints(registry=target), tls=True, root_certificates_file=cert)
        with Client(config) as client:
            health_by_service = await asyncio.to_thread(client.health)
        assert health_by_service["registry"] == "SERVING"
        async with grpc.aio.insecure_channel(target) as plaintext:
            with pytest.raises(grpc.aio.AioRpcError):
                await health(plaintext)
        untrusted = grpc.ssl_channel_credentials()  # system roots do not know this cert
        async with grpc.aio.secure_channel(target, untrusted) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await health(channel)
    finally:
        await server.stop()
