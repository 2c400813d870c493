"""Each service image runs as the cluster runs it, against real NATS and InfluxDB.

``make image-test`` (after ``make images``): every container starts with a read-only root
filesystem, as user 10001, with every capability dropped and no privilege escalation, a
tmpfs at /tmp (the pod's emptyDir), on the host's network (NATS and InfluxDB on loopback). The
four together carry one twin through the platform: its model and twin created through the
registry image, a point ingested through the ingestion image and stored in InfluxDB, its live
state read from the state image, a scenario run by the simulation image; each also serves
gRPC health and /metrics. Then each gets SIGTERM and must exit 0 within its grace period.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from twinstack.common.influx import InfluxStore
from twinstack.devstack import LocalPlatform, free_port, wait_until
from twinstack.devstack.images import SERVICES, Podman, service_image
from twinstack.devstack.platform import grpc_serving
from twinstack.sdk import Client, ConnectConfig, Endpoints, Point
from twinstack.sdk.errors import NotFoundError
from twinstack.sdk.models import example_model_sources
from twinstack.sdk.values import to_python

TWIN = "image-pump-1"
PUMP = "dtmi:twinstack:examples:Pump;1"
# The restricted securityContext of deploy/k8s, as podman options.
LOCKED_DOWN = (
    "--read-only",
    "--user=10001:10001",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--tmpfs=/tmp:rw,size=512m,mode=1777",
    "--network=host",
)
JWKS_IN_CONTAINER = "/etc/twinstack/jwks.json"


@dataclass
class Container:
    service: str
    name: str
    port: int
    metrics_port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def podman() -> Podman:
    podman = Podman.here()
    missing = [s for s in SERVICES if not podman.exists(service_image(s))]
    if missing:
        pytest.fail(f"images not built: {missing} (make images)")
    return podman


@dataclass
class Backbone:
    """NATS, InfluxDB and the identity provider, with the service ports they are wired to."""

    platform: LocalPlatform
    ports: dict[str, int]
    directory: Path


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backbone]:
    ports = {service: free_port() for service in SERVICES}
    directory = tmp_path_factory.mktemp("image-test")
    platform = LocalPlatform(
        directory / "platform",
        nats_port=0,
        influx_port=0,
        service_ports=ports,
        services=(),
        # Sweeps need Ray, which is not part of this test: the simulation image serves without.
        service_env={"TWINSTACK_RAY_JOBS_ADDRESS": "", "TWINSTACK_LOG_FORMAT": "console"},
    )
    platform.start()
    try:
        yield Backbone(platform, ports, directory)
    finally:
        platform.stop()


@pytest.fixture(scope="module")
def containers(podman: Podman, backbone: Backbone) -> Iterator[dict[str, Container]]:
    started: dict[str, Container] = {}
    platform, ports = backbone.platform, backbone.ports
    # A copy the container's user may read (the local issuer keeps its files owner-only).
    jwks = backbone.directory / "jwks.json"
    shutil.copyfile(platform.issuer.jwks_path, jwks)
    jwks.chmod(0o644)
    try:
        for service in SERVICES:
            container = Container(service, f"twinstack-test-{service}", ports[service], free_port())
            env = platform.service_env(
                service, service, port=container.port, metrics_port=container.metrics_port
            ) | {"TWINSTACK_AUTH_JWKS": JWKS_IN_CONTAINER}
            subprocess.run(
                podman.command("rm", "-f", container.name), check=False, capture_output=True
            )
            podman.run(
                "run",
                "--detach",
                f"--name={container.name}",
                *podman.ulimits,
                *LOCKED_DOWN,
                # The identity provider's public keys, mounted as a ConfigMap would be.
                f"--volume={jwks}:{JWKS_IN_CONTAINER}:ro",
                *(f"--env={key}={value}" for key, value in env.items()),
                service_image(service),
                capture=True,
            )
            started[service] = container
        for container in started.values():
            wait_until(
                functools.partial(serving_or_exited, podman, container),
                timeout_s=180,
                interval_s=0.5,
                what=f"{container.service} serving",
            )
            assert running(podman, container), logs(podman, container)
        yield started
    finally:
        for container in started.values():
            subprocess.run(
                podman.command("rm", "-f", "-t", "5", container.name),
                check=False,
                capture_output=True,
            )


def serving_or_exited(podman: Podman, container: Container) -> bool:
    return grpc_serving(container.target) or not running(podman, container)


def running(podman: Podman, container: Container) -> bool:
    state = podman.run("inspect", "--format", "{{.State.Running}}", container.name, capture=True)
    return state.strip() == "true"


def logs(podman: Podman, container: Container) -> str:
    done = subprocess.run(
        podman.command("logs", container.name), capture_output=True, text=True, check=False
    )
    return done.stdout + done.stderr


def test_every_container_runs_locked_down(podman: Podman, containers: dict[str, Container]) -> None:
    for container in containers.values():
        config = podman.run(
            "inspect",
            "--format",
            "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}}",
            container.name,
            capture=True,
        )
        assert config.split()[:2] == ["10001:10001", "true"], config
        # The process itself, seen from inside: not root, and / refuses writes.
        whoami = podman.run("exec", container.name, "id", "-u", capture=True)
        assert whoami.strip() == "10001"
        write = subprocess.run(
            podman.command("exec", container.name, "touch", "/app/written"),
            capture_output=True,
            text=True,
            check=False,
        )
        assert write.returncode != 0
        assert "Read-only file system" in write.stderr


def test_every_container_serves_health_and_metrics(containers: dict[str, Container]) -> None:
    for container in containers.values():
        assert grpc_serving(container.target)
        metrics = httpx.get(f"http://127.0.0.1:{container.metrics_port}/metrics", timeout=10)
        assert metrics.status_code == 200
        assert "process_resident_memory_bytes" in metrics.text
        assert "rpc_server_duration_seconds_count" in metrics.text


def test_a_twin_goes_through_every_image(
    backbone: Backbone, containers: dict[str, Container]
) -> None:
    platform = backbone.platform
    endpoints = Endpoints(**{s: c.target for s, c in containers.items()})
    with Client(ConnectConfig(endpoints, token=platform.admin_token, timeout_s=30)) as client:
        client.registry.create_models(example_model_sources())
        client.registry.create_twin(TWIN, PUMP, {"rated_power_kw": 30.0})
        assert client.registry.get_twin(TWIN).model_id == PUMP
        sent_ns = time.time_ns()
        client.telemetry.ingest([Point(TWIN, {"temperature_c": 61.5, "load": 0.7}, sent_ns)])

        def live() -> bool:
            try:
                value = client.state.get_state(TWIN).reported.get("temperature_c")
            except NotFoundError:
                return False  # not applied yet
            return value is not None and to_python(value.value) == 61.5

        wait_until(live, timeout_s=60, interval_s=0.5, what="live state from the state image")
        wait_until(lambda: stored(platform) == 1, timeout_s=60, interval_s=0.5, what="point stored")
        # A what-if run: the simulation image reads the twin's model (registry) and live
        # state (state), and compiles its dynamics with numba into /tmp.
        ran = client.simulation.run_scenario([TWIN], horizon_s=600, step_s=10)
        assert [t.twin_id for t in ran.twins] == [TWIN], ran


def stored(platform: LocalPlatform) -> int:
    async def count() -> int:
        store = InfluxStore(platform.influx.url, "twinstack", **platform.influx.credentials)
        try:
            series = await store.query(
                "SELECT count(temperature_c) FROM telemetry WHERE twin_id::tag = $t", {"t": TWIN}
            )
        finally:
            await store.close()
        return int(series[0].values[0][1]) if series else 0

    return asyncio.run(count())


def test_the_simulation_image_compiles_kernels_into_tmp(podman: Podman) -> None:
    # numba caches compiled kernels of a module in NUMBA_CACHE_DIR (/tmp/numba, the only
    # writable place); the Ray client and job API (the image is also KubeRay's) import.
    probe = (
        "import os, numba, ray, ray.job_submission\n"
        "@numba.njit(cache=True)\n"
        "def twice(x): return 2 * x\n"
        "assert twice(21) == 42\n"
        "assert os.listdir('/tmp/numba'), 'no kernel cached'\n"
        "print('ok', numba.__version__, ray.__version__)\n"
    )
    output = podman.run(
        "run",
        "--rm",
        *podman.ulimits,
        *LOCKED_DOWN,
        f"--env=PROBE={probe}",
        "--entrypoint=sh",
        service_image("simulation"),
        "-c",
        'printf "%s" "$PROBE" > /tmp/probe.py && python /tmp/probe.py',
        capture=True,
    )
    assert output.startswith("ok ")


def test_sigterm_stops_every_container_cleanly(
    podman: Podman, containers: dict[str, Container]
) -> None:
    for container in reversed(list(containers.values())):
        podman.run("kill", "--signal=TERM", container.name, capture=True)
    for container in containers.values():
        exit_code = podman.run("wait", container.name, capture=True)
        assert exit_code.strip() == "0", logs(podman, container)
        assert "shutdown requested" in logs(podman, container)


def test_dependencies_and_code_are_separate_layers(podman: Podman) -> None:
    for service in SERVICES:
        copies = [
            size for made_by, size in podman.layers(service_image(service)) if " COPY " in made_by
        ]
        dependencies, code = copies[-2:]
        assert code < 20 * 2**20 < dependencies, (service, dependencies, code)
