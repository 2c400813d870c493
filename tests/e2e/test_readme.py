"""The README walked as a new user would, on a fresh platform: every command of its shell
blocks and every Python block, exactly as written, and the Python blocks of docs/ too.

The platform runs as `make up` runs it (example twins, fed by simulated sensors and example
devices), on free ports: the documented default ports are mapped to the platform's through the
same TWINSTACK_<SERVICE>_ADDR variables a user would set, and in the grpcurl and mosquitto
lines. `make` and
`kubectl` lines are not run here (`make test` is this run; there is no cluster).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from docs_blocks import DOCUMENTS, ROOT, blocks, shell_commands

from twinstack.cli.example_devices import ExampleDevices
from twinstack.devstack import LocalPlatform
from twinstack.sdk import Client, ConnectConfig, Endpoints
from twinstack.sdk.examples import EXAMPLE_DEVICE_MAPPING, SensorFeeder, ensure_example_twins

README = ROOT / "README.md"
NOT_RUN_HERE = ("make ", "kubectl ", "docker ")
DEFAULT_PORTS = {"registry": 50051, "ingestion": 50052, "state": 50053, "simulation": 50054}


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, ray_env: dict[str, str]
) -> Iterator[LocalPlatform]:
    platform = LocalPlatform(
        tmp_path_factory.mktemp("readme") / "platform",
        nats_port=0,
        influx_port=0,
        service_ports=dict.fromkeys(DEFAULT_PORTS, 0),
        service_env={**ray_env, "TWINSTACK_LOG_FORMAT": "console"},
        device_mapping=yaml.safe_dump(EXAMPLE_DEVICE_MAPPING),
    )
    platform.start()
    targets = {name: service.target for name, service in platform.services.items()}
    client = Client(ConnectConfig(Endpoints(**targets), token=platform.admin_token, timeout_s=30))
    # As `make up` runs them: the sensor feed and the example devices (MQTT, Sparkplug B).
    feeder = SensorFeeder(client, period_s=0.5)
    devices = ExampleDevices(platform.nats.mqtt_url, period_s=0.5)
    try:
        ensure_example_twins(client)
        feeder.start()
        devices.start()
        yield platform
    finally:
        devices.stop()
        feeder.stop()
        client.close()
        platform.stop()


@pytest.fixture(scope="module")
def user(platform: LocalPlatform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a user's shell pointed at the platform; a scratch working directory
    that has the repository's examples/ (files the commands write stay out of the repo)."""
    workdir = tmp_path_factory.mktemp("user")
    (workdir / "examples").symlink_to(ROOT / "examples")
    env = {
        **os.environ,
        **platform.client_env(),
        "UV_PROJECT": str(ROOT),
        "UV_FROZEN": "1",
        "COLUMNS": "200",
        "PWD": str(workdir),
    }
    assert shutil.which("uv", path=env.get("PATH")), "the README's commands run through uv"
    return env


def localised(command: str, platform: LocalPlatform) -> str:
    for name, port in DEFAULT_PORTS.items():
        command = command.replace(f"localhost:{port}", platform.services[name].target)
    mqtt_port = platform.nats.mqtt_url.rsplit(":", 1)[1]
    command = command.replace("-h localhost -p 1883", f"-h 127.0.0.1 -p {mqtt_port}")
    return command.replace(".local/twinstack/auth/", f"{platform.issuer.directory}/")


def run(command: list[str] | str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        shell=isinstance(command, str),
        cwd=env["PWD"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def commands_of(path: Path) -> list[str]:
    return [
        command
        for block in blocks(path, "bash")
        for command in shell_commands(block)
        if not command.startswith(NOT_RUN_HERE)
    ]


def test_every_readme_command_works_as_written(
    platform: LocalPlatform, user: dict[str, str]
) -> None:
    commands = commands_of(README)
    assert len(commands) >= 20
    outputs = {}
    for command in commands:
        done = run(localised(command, platform), user)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stdout + done.stderr, command
        outputs[command] = done.stdout
    assert outputs["uv run twinstack status"].count("SERVING") == 4
    assert "deleted" in outputs["uv run twinstack demo"]
    assert "120 row(s) durable" in outputs["uv run twinstack ingest --csv examples/readings.csv"]
    assert (Path(user["PWD"]) / "t.png").read_bytes()[:4] == b"\x89PNG"
    demo_again = run("uv run twinstack demo", user)
    assert demo_again.returncode == 0, demo_again.stderr


# Every command of every page, three sweeps as Ray jobs among them, on a 2-core machine.
@pytest.mark.timeout(900)
def test_every_command_of_the_docs_works_as_written(
    platform: LocalPlatform, user: dict[str, str]
) -> None:
    commands = [c for path in DOCUMENTS if path != README for c in commands_of(path)]
    assert len(commands) >= 5
    for command in commands:
        started = time.monotonic()
        done = run(localised(command, platform), user)
        took = f"{time.monotonic() - started:.0f} s"
        assert done.returncode == 0, f"{command} ({took})\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stdout + done.stderr, command
    parts = sorted((Path(user["PWD"]) / "press-results").glob("part-*.parquet"))
    assert parts
    assert parts[0].read_bytes()[:4] == b"PAR1"


def test_every_python_block_runs_as_written(platform: LocalPlatform, user: dict[str, str]) -> None:
    python_blocks = [block for path in DOCUMENTS for block in blocks(path, "python")]
    assert len(python_blocks) >= 4
    for block in python_blocks:
        done = run([sys.executable, "-c", block.text], user)
        assert done.returncode == 0, f"{block.where}\n{done.stdout}\n{done.stderr}"
    sdk_example = blocks(README, "python")[0]
    again = run([sys.executable, "-c", sdk_example.text], user)
    assert again.returncode == 0, f"the SDK example runs twice\n{again.stderr}"
    assert "pumps of plant-north: ['line1-pump-1', 'pump-7']" in again.stdout
    assert "peak_temperature_c" in again.stdout


def test_user_errors_are_one_line_and_an_exit_code(user: dict[str, str]) -> None:
    cases = {
        "uv run twinstack model apply no-such-folder/": 2,
        "uv run twinstack twin get no-such-twin": 1,
        "uv run twinstack history line1-press-3 -f no_such_field": 2,
        "uv run twinstack alerts apply examples/readings.csv": 2,
    }
    for command, code in cases.items():
        done = run(command, user)
        assert done.returncode == code, f"{command}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stdout + done.stderr, command
        assert done.stderr.strip(), f"{command} says what is wrong"
    unknown = run("uv run twinstack history line1-press-3 -f no_such_field", user)
    assert "temperature_c" in unknown.stderr, "the known fields are named"
