"""Fixtures that start real infrastructure: nats-server with JetStream, influxd and Ray.

Every server runs on free ports with its data in a temporary directory and is stopped
afterwards. nats-server is started per test (it starts in a fraction of a second and gives each
test empty streams); influxd and Ray are shared by the session (each test gets its own InfluxDB
database), because they take seconds to start.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.nats import Backbone
from twinstack.common.server import GrpcServer, Service
from twinstack.common.settings import ServiceSettings
from twinstack.devstack import InfluxServer, NatsCluster, NatsServer
from twinstack.devstack.ray_cluster import RayCluster
from twinstack.sdk.models import example_model_sources, model_sources

# A permissive model (tests/models/device.yaml) for tests about something other than models.
TEST_MODELS_DIR = Path(__file__).parent / "models"

TESTS = Path(__file__).parent
# The image tests run containers of images `make images` builds (minutes of work, and podman):
# `make image-test` runs them; `make test` leaves them out.
collect_ignore = [] if os.environ.get("TWINSTACK_IMAGE_TEST") else ["images"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks each test by its folder: unit, integration or e2e."""
    for item in items:
        kind = Path(str(item.fspath)).relative_to(TESTS).parts[0]
        if kind in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    server = InfluxServer(tmp_path_factory.mktemp("influxd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three nats-servers routed into one JetStream cluster on loopback."""
    cluster = NatsCluster(tmp_path / "nats-cluster")
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_settings(
    nats_cluster: NatsCluster, influxd: InfluxServer, influx_database: str
) -> dict[str, Any]:
    """Settings fields that point a service at this test's NATS cluster, with every stream
    and bucket replicated three times."""
    return {
        "grpc_host": "127.0.0.1",
        "grpc_port": 0,
        "nats_url": nats_cluster.url,
        "nats_replicas": 3,
        "influx_url": influxd.url,
        "influx_database": influx_database,
        "log_format": "console",
        "auth_mode": "disabled",
    }


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """One real Ray cluster for the session: a head and a second node of 1 CPU each, on
    loopback, with the Jobs API and token authentication. Tests that lose a node add their own.
    """
    cluster = RayCluster(tmp_path_factory.mktemp("ray"), num_cpus=1, object_store_bytes=256 * 2**20)
    cluster.start()
    try:
        cluster.add_node(1)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def ray_env(ray_cluster: RayCluster) -> dict[str, str]:
    """Environment that points a simulation service process at the session's Ray cluster."""
    return {
        "TWINSTACK_RAY_JOBS_ADDRESS": ray_cluster.jobs_address,
        "TWINSTACK_RAY_AUTH_TOKEN_FILE": str(ray_cluster.token_path),
    }


@pytest.fixture(scope="session")
def ray_settings(ray_cluster: RayCluster) -> dict[str, Any]:
    """Simulation settings that point at the session's Ray cluster."""
    return {
        "ray_jobs_address": ray_cluster.jobs_address,
        "ray_auth_token_file": ray_cluster.token_path,
    }


@pytest.fixture
def influx_database() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def infra_settings(
    nats_server: NatsServer, influxd: InfluxServer, influx_database: str
) -> dict[str, Any]:
    """Settings fields that point a service at this test's servers."""
    return {
        "grpc_host": "127.0.0.1",
        "grpc_port": 0,
        "nats_url": nats_server.url,
        "influx_url": influxd.url,
        "influx_database": influx_database,
        "log_format": "console",
        # Functional tests call as the anonymous admin; tests/integration/test_access.py and
        # the platform's e2e tests run with authentication on.
        "auth_mode": "disabled",
    }


@pytest.fixture
async def backbone(infra_settings: dict[str, Any]) -> AsyncIterator[Backbone]:
    """A NATS connection with the platform's streams and buckets provisioned."""
    connection = await Backbone.connect(ServiceSettings(**infra_settings), "tests")
    yield connection
    await connection.close()


ServeApp = Callable[[ServiceSettings, Service], AbstractAsyncContextManager[grpc.aio.Channel]]


@pytest.fixture
def serve_app() -> ServeApp:
    """Runs a service in this process on a free port; yields a channel to it."""

    @asynccontextmanager
    async def serve(settings: ServiceSettings, app: Service) -> AsyncIterator[grpc.aio.Channel]:
        server = GrpcServer(settings, app)
        port = await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield channel
        finally:
            await server.stop()

    return serve


Eventually = Callable[..., Awaitable[Any]]


@pytest.fixture
def eventually() -> Eventually:
    """Awaits ``probe()`` until ``accept(result)`` holds; fails after ``timeout_s``."""

    async def wait(
        probe: Callable[[], Awaitable[Any]],
        accept: Callable[[Any], bool] = bool,
        *,
        timeout_s: float = 20.0,
        interval_s: float = 0.05,
    ) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            result = await probe()
            if accept(result):
                return result
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail(f"condition not met within {timeout_s} s; last result: {result!r}")
            await asyncio.sleep(interval_s)

    return wait


def rpc_details(error: grpc.aio.AioRpcError) -> list[Any]:
    """The rich details of a failed call (``ErrorInfo``, ``BadRequest``, ...)."""
    from google.rpc import status_pb2

    from twinstack.sdk.errors import unpack_details

    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return unpack_details(status_pb2.Status.FromString(value))
    return []


@pytest.fixture
def details_of() -> Callable[[grpc.aio.AioRpcError], list[Any]]:
    return rpc_details


def model_request_for_tests() -> registry_pb2.CreateModelsRequest:
    """The example models of the four use cases and the tests' own models."""
    return registry_pb2.CreateModelsRequest(
        sources=[*example_model_sources(), *model_sources([TEST_MODELS_DIR])]
    )


@pytest.fixture
def store_test_models() -> Callable[[Any], Awaitable[None]]:
    """Stores the example and test models through a registry stub (async or sync)."""

    async def store(registry: Any) -> None:
        response = registry.CreateModels(model_request_for_tests())
        if isinstance(response, Awaitable):
            await response

    return store
