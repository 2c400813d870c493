"""The whole platform as real processes (python -m twinstack.<service>), driven by the SDK.

Walks the skeleton path, with the SDK and with the CLI: twin created, points ingested, live
state shows them, the points are in InfluxDB, a sweep runs on Ray. Then stops everything with
SIGTERM, checks every service exited cleanly, restarts on the same data directory and finds the
data again.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import twinstack.sdk.models as sdk_models
from twinstack.api.simulation.v1 import sweep_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.cli.main import app
from twinstack.common.influx import InfluxStore
from twinstack.devstack import InfluxServer, LocalPlatform, free_port, wait_until
from twinstack.sdk import ApiError, Client, ConnectConfig, Endpoints, Point, sweep_spec
from twinstack.sdk.examples import SensorFeeder, ensure_example_twins
from twinstack.sdk.models import example_model_sources
from twinstack.sdk.results import apply_scenario, best_scenario, sweep_frame
from twinstack.sdk.values import to_python

EX = "dtmi:twinstack:examples:"
ALL_FREE_PORTS = {"registry": 0, "ingestion": 0, "state": 0, "simulation": 0}


def start_platform(
    data_dir: Path,
    ray_env: dict[str, str],
    extra_env: dict[str, str] | None = None,
    *,
    ha: bool = False,
) -> LocalPlatform:
    platform = LocalPlatform(
        data_dir,
        nats_port=0,
        influx_port=0,
        service_ports=ALL_FREE_PORTS,
        service_env={
            **ray_env,
            "TWINSTACK_LOG_FORMAT": "console",
            **(extra_env or {}),
        },
        ha=ha,
    )
    platform.start()
    return platform


def client_for(platform: LocalPlatform) -> Client:
    return Client(
        ConnectConfig(Endpoints(**platform.targets()), token=platform.admin_token, timeout_s=30)
    )


def influx_count(influx: InfluxServer, twin_id: str) -> int:
    async def count() -> int:
        store = InfluxStore(influx.url, "twinstack", **influx.credentials)
        try:
            series = await store.query(
                "SELECT count(temperature_c) FROM telemetry WHERE twin_id::tag = $t", {"t": twin_id}
            )
        finally:
            await store.close()
        return int(series[0].values[0][1]) if series else 0

    return asyncio.run(count())


def state_of(client: Client, twin_id: str) -> float | None:
    try:
        reported = client.state.get_state(twin_id).reported.get("temperature_c")
    except ApiError:
        return None
    return None if reported is None else float(to_python(reported.value))


def walk_with_the_cli(platform: LocalPlatform, client: Client) -> None:
    """status, demo, state get, twin patch (conditional, then stale), twin list."""
    cli_env = {
        **platform.client_env(),
        "TWINSTACK_INFLUX_URL": platform.influx.url,
        # Wide enough that rich never folds a cell the assertions look for.
        "COLUMNS": "250",
    }
    status = CliRunner().invoke(app, ["status"], env=cli_env)
    assert status.exit_code == 0, status.output
    assert status.output.count("SERVING") == 4
    demo = CliRunner().invoke(app, ["demo", "--points", "50"], env=cli_env)
    assert demo.exit_code == 0, demo.output
    for step in ("twin created", "acknowledged", "latest value", "InfluxDB", "sweep"):
        assert step in demo.output, demo.output
    state_table = CliRunner().invoke(app, ["state", "get", "press-7"], env=cli_env)
    assert " 159 " in state_table.output, state_table.output
    as_json = CliRunner().invoke(app, ["--json", "state", "get", "press-7"], env=cli_env)
    reported = json.loads(as_json.output)["states"][0]["reported"]
    assert reported["temperature_c"]["value"] == 159.0
    current = client.registry.get_twin("press-7").revision
    patched = CliRunner().invoke(
        app,
        [
            "twin",
            "patch",
            "press-7",
            "--set",
            "rated_power_kw=55",
            "--expected-revision",
            str(current),
        ],
        env=cli_env,
    )
    assert patched.exit_code == 0, patched.output
    stale = CliRunner().invoke(
        app,
        [
            "twin",
            "patch",
            "press-7",
            "--set",
            "rated_power_kw=60",
            "--expected-revision",
            str(current),
        ],
        env=cli_env,
    )
    assert stale.exit_code == 1
    assert "ABORTED" in stale.output
    assert "(REVISION_MISMATCH)" in stale.output
    assert "Traceback" not in stale.output
    listing = CliRunner().invoke(app, ["twin", "list"], env=cli_env)
    assert "press-7" in listing.output
    assert "rated_power_kw=55" in listing.output
    assert client.registry.get_twin("press-7").properties["rated_power_kw"].double_value == 55.0
    walk_the_graph_with_the_cli(cli_env)
    walk_the_telemetry_commands(cli_env, platform.data_dir)
    walk_a_second_tenant(cli_env)


def walk_a_second_tenant(cli_env: dict[str, str]) -> None:
    """auth tenants create / list / set-quotas, and the new tenant's first admin key, which
    sees none of the default tenant's twins and holds twins under the same ids."""

    def run(*args: str, code: int = 0, env: dict[str, str] = cli_env) -> str:
        result = CliRunner().invoke(app, list(args), env=env)
        assert result.exit_code == code, result.output
        return result.output

    created = json.loads(
        run("--json", "auth", "tenants", "create", "e2e-plant", "--quota", "max_twins=2",
            "--admin-key")
    )  # fmt: skip
    assert created["tenant"]["quotas"] == {"max_twins": "2"}
    listed = run("auth", "tenants", "list")
    assert "e2e-plant" in listed
    assert "max_twins=2" in listed
    assert "settings" in listed, "the default tenant's quotas"
    plant = {**cli_env, "TWINSTACK_AUTH_TOKEN": created["admin_key_secret"]}
    assert "e2e-plant" in run("auth", "whoami", env=plant)
    assert "press-7" not in run("twin", "list", env=plant)
    run("model", "apply", str(Path(sdk_models.__file__).parent / "models"), env=plant)
    press = "dtmi:twinstack:examples:HydraulicPress;1"
    run("twin", "create", "press-7", "--model", press, env=plant)
    assert "press-7" in run("twin", "list", env=plant)
    run("twin", "create", "press-8", "--model", press, env=plant)
    refused = run("twin", "create", "press-9", "--model", press, env=plant, code=1)
    assert "RESOURCE_EXHAUSTED" in refused
    assert "max_twins=3" in run("auth", "tenants", "set-quotas", "e2e-plant", "--quota",
                                "max_twins=3")  # fmt: skip
    run("auth", "tenants", "list", env=plant, code=1)


def walk_the_graph_with_the_cli(cli_env: dict[str, str]) -> None:
    """model apply (DTDL, dry run) / list / get, twin create / relate / query / graph."""

    def run(*args: str) -> str:
        result = CliRunner().invoke(app, list(args), env=cli_env)
        assert result.exit_code == 0, result.output
        return result.output

    dtdl = str(Path(__file__).parents[1] / "data" / "dtdl")
    applied = run("model", "apply", dtdl, "--dry-run")
    assert "dtmi:com:example:Room;1" in applied
    assert "not mapped" in applied
    assert "dtmi:com:example" not in run("model", "list"), "a dry run stores nothing"
    assert "ProductionLine;1" in run("model", "list", "--prefix", "dtmi:twinstack:examples:")
    assert '"rated_flow_m3_h"' in run("model", "get", "dtmi:twinstack:examples:Pump;1")
    assert '"serial_number"' in run("model", "get", "dtmi:twinstack:examples:Pump;1", "--resolved")
    run("twin", "create", "line-9", "--model", "dtmi:twinstack:examples:ProductionLine;1")
    run("twin", "relate", "line-9", "contains", "press-7", "--prop", "position=1")
    found = run("twin", "query", "FROM 'line-9' FOLLOW contains WHERE rated_power_kw > 50")
    assert "press-7" in found
    graph = run("twin", "graph", "line-9")
    assert "-> contains press-7" in graph


def walk_the_telemetry_commands(cli_env: dict[str, str], scratch: Path) -> None:
    """ingest --csv (with a rejected batch), state get / watch / desire, history with a chart
    and a PNG, alerts apply / list / ack / rules / delete."""

    def run(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(app, list(args), env=cli_env)
        assert result.exit_code == code, result.output
        return result.output

    start_s = time.time() - 300
    rows = ["twin_id,time,temperature_c,cycles"]
    rows += [f"press-7,{int((start_s + i) * 1e9)},{60 + i % 40},{1000 + i}" for i in range(250)]
    rows.append(f"press-7,{int((start_s + 251) * 1e9)},999,1251")  # above the model's maximum
    csv_path = scratch / "press.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    rejected = run("ingest", "--csv", str(csv_path), "--batch-rows", "100", code=1)
    assert "200 row(s) durable, 1 batch(es) rejected" in rejected
    assert "frames[0].columns[0].values[50]: 999.0 is above the maximum 250" in rejected

    rules = scratch / "rules.yaml"
    rules.write_text(
        "id: press-hot\nmodelId: dtmi:twinstack:examples:HydraulicPress;1\nfield: temperature_c\n"
        "severity: SEVERITY_CRITICAL\n"
        "threshold: {direction: DIRECTION_ABOVE, raiseAt: 150, clearAt: 140}\n"
        "message: press overheating\n"
    )
    assert "rule press-hot stored" in run("alerts", "apply", str(rules))
    assert "threshold" in run("alerts", "rules")
    run("ingest", "press-7", "temperature_c=170.5")
    wait_until(
        lambda: "press-hot" in run("alerts", "list"), timeout_s=30, interval_s=0.2, what="alert"
    )
    assert "acknowledged press-7/press-hot" in run(
        "alerts", "ack", "press-7", "press-hot", "--by", "ops"
    )
    assert "ops" in run("alerts", "list")

    state = run("state", "get", "press-7")
    for expected in ("170.5", "online", "press-hot"):
        assert expected in state
    desired = json.loads(run("--json", "state", "desire", "press-7", "temperature_c=80"))
    assert desired["desired"]["temperature_c"]["value"] == 80
    assert desired["delta"] == {"temperature_c": 80}
    watched = run("state", "watch", "press-7", "--seconds", "2")
    assert watched.count("press-7 rev=") == 1, "not a terminal: one line per change"

    png = scratch / "history.png"
    charted = run(
        "history", "press-7", "-f", "temperature_c", "-f", "cycles", "--since", "10m",
        "--agg", "max", "--window", "1m", "--png", str(png),
    )  # fmt: skip
    assert "cycles" in charted
    assert any(block in charted for block in "▁▂▃▄▅▆▇█"), "a terminal chart"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    raw = run(
        "history", "press-7", "-f", "cycles", "--since", "10m", "--agg", "none", "--points", "1000"
    )
    assert "1199" in raw, "the last durable row of the CSV"
    assert "rule press-hot deleted" in run("alerts", "delete", "press-hot")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "platform"


def test_skeleton_path_through_all_four_services(data_dir: Path, ray_env: dict[str, str]) -> None:
    platform = start_platform(data_dir, ray_env)
    try:
        with client_for(platform) as client:
            assert set(client.health().values()) == {"SERVING"}
            client.registry.create_models(example_model_sources())
            twin = client.registry.create_twin(
                "press-7", "dtmi:twinstack:examples:HydraulicPress;1", {"rated_power_kw": 45.0}
            )
            assert client.registry.get_twin("press-7").revision == twin.revision

            start_ns = time.time_ns() - 600 * 10**9
            points = [
                Point("press-7", {"temperature_c": 40.0 + i, "cycles": i}, start_ns + i * 10**9)
                for i in range(120)
            ]
            response = client.telemetry.ingest(points)
            assert response.accepted_points == 120

            wait_until(lambda: state_of(client, "press-7") == 159.0, timeout_s=30, what="state")
            wait_until(
                lambda: influx_count(platform.influx, "press-7") == 120,
                timeout_s=30,
                what="history",
            )

            with pytest.raises(ApiError) as raised:
                client.telemetry.ingest([Point("press-7", {"temperature_c": float("nan")})])
            assert raised.value.code.name == "INVALID_ARGUMENT"

            walk_with_the_cli(platform, client)

            sweep = client.sweeps.run(
                sweep_spec(
                    "pump_thermal",
                    horizon_s=600,
                    step_s=1.0,
                    seed=3,
                    ranges={"load": (0.2, 1.0)},
                    samples=5000,
                )
            )
            assert sweep.state == sweep_pb2.SWEEP_STATE_SUCCEEDED, sweep.failure_reason
            assert sweep.scenarios_total == sweep.scenarios_done == 5000
            peak = next(k for k in sweep.summary.kpis if k.name == "peak_temperature_c")
            assert 25.0 < peak.min <= peak.p50 <= peak.max
    finally:
        platform.stop()
    for service in platform.services.values():
        assert not service.process.running()

    restarted = start_platform(data_dir, ray_env)
    try:
        with client_for(restarted) as client:
            assert (
                client.registry.get_twin("press-7").properties["rated_power_kw"].double_value
                == 55.0
            )
            # The CLI walk's last sample, and its 200 durable CSV rows plus that one sample.
            assert state_of(client, "press-7") == 170.5
            assert influx_count(restarted.influx, "press-7") == 120 + 200 + 1
    finally:
        restarted.stop()


class SteadyIngest:
    """Ingests one batch after another from a thread, each until it is acknowledged, and counts
    what the platform answered."""

    BATCH = 10

    def __init__(self, client: Client, twin_id: str) -> None:
        self._client = client
        self._twin_id = twin_id
        self.acknowledged = 0
        self.refusals: list[str] = []
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start_ns = time.time_ns() - 3600 * 10**9

    def start(self) -> None:
        self._thread.start()

    @staticmethod
    def value(seq: int) -> float:
        """The temperature sent as sample ``seq`` (within the model's range)."""
        return 20.0 + seq % 100

    def _run(self) -> None:
        try:
            self._produce()
        except BaseException as error:
            self.failure = error
            raise

    def _produce(self) -> None:
        while not self._stop.is_set():
            first = self.acknowledged * self.BATCH
            points = [
                Point(
                    self._twin_id, {"temperature_c": self.value(seq)}, self._start_ns + seq * 10**7
                )
                for seq in range(first, first + self.BATCH)
            ]
            try:
                self._client.telemetry.ingest(points)
            except ApiError as error:
                self.refusals.append(f"{error.code.name}: {error}"[:300])
                time.sleep(0.2)  # a careful client's pause before sending the batch again
                continue
            self.acknowledged += 1
            time.sleep(0.05)  # the producer's pace, not a synchronisation

    def progressed(self, batches: int) -> None:
        goal = self.acknowledged + batches

        def reached() -> bool:
            if self.failure is not None:
                raise AssertionError(f"the producer failed: {self.failure!r}")
            return self.acknowledged >= goal

        wait_until(
            reached,
            timeout_s=60,
            what=f"ingest progress ({self.acknowledged} batches, refusals {self.refusals[-5:]})",
        )

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=60)
        return self.acknowledged * self.BATCH


def test_ha_platform_rolling_restart_under_ingest(data_dir: Path, ray_env: dict[str, str]) -> None:
    """The highly available layout (3 NATS nodes at R3, two replicas of each service) with every
    replica sent SIGTERM and started again, one replica of each service at a time, under steady
    ingest: the client sees at most UNAVAILABLE, which it retries, and nothing acknowledged is
    lost. Each replica stops cleanly
    even with traces and metrics going to a collector that is down: its export timeout bounds
    the shutdown, so no service outlives the stop and is killed (exit code -9)."""
    unreachable_collector = f"http://127.0.0.1:{free_port()}"
    platform = start_platform(
        data_dir, ray_env, {"TWINSTACK_OTEL_EXPORTER_OTLP_ENDPOINT": unreachable_collector}, ha=True
    )
    try:
        cli_env = {**platform.client_env(), "COLUMNS": "250"}
        status = CliRunner().invoke(app, ["--json", "status"], env=cli_env)
        assert status.exit_code == 0, status.output
        shown = json.loads(status.output)
        assert {name: len(replicas) for name, replicas in shown["services"].items()} == {
            name: 2 for name in platform.replicas
        }
        cluster = shown["cluster"]
        assert len(cluster["natsServers"]) == 3
        telemetry = next(s for s in cluster["streams"] if s["name"] == "TELEMETRY")
        assert telemetry["replicas"] == 3
        assert telemetry["leader"].startswith("twinstack-")
        assert {p["member"] for p in cluster["partitions"]} == {"state", "state-2"}
        table = CliRunner().invoke(app, ["status"], env=cli_env)
        assert "telemetry partitions" in table.output, table.output

        with client_for(platform) as client:
            client.registry.create_models(example_model_sources())
            client.registry.create_twin("roll-1", f"{EX}Pump;1", {"rated_power_kw": 30.0})
            ingest = SteadyIngest(client, "roll-1")
            ingest.start()
            ingest.progressed(5)
            # As a rollout of every Deployment does: the services roll together, each one
            # replica at a time.
            for index in range(2):
                rolling = [replicas[index] for replicas in platform.replicas.values()]
                for replica in rolling:
                    code = replica.process.stop()
                    assert code == 0, f"{replica.name} exited with {code}"
                    log = (data_dir / "logs" / f"{replica.name}.log").read_text()
                    assert "twinstack.common.server: stopped" in log, replica.name
                ingest.progressed(3)
                for replica in rolling:
                    replica.process.launch()
                for replica in rolling:
                    replica.process.wait_ready(timeout_s=120)
                ingest.progressed(3)
            points = ingest.stop()
            assert {r.split(":")[0] for r in ingest.refusals} <= {"UNAVAILABLE"}, ingest.refusals
            wait_until(
                lambda: influx_count(platform.influx, "roll-1") == points,
                timeout_s=60,
                what="every acknowledged point in InfluxDB",
            )
            wait_until(
                lambda: state_of(client, "roll-1") == SteadyIngest.value(points - 1),
                timeout_s=30,
                what="live state of the last point",
            )
    finally:
        platform.stop()
    for replica in platform.all_replicas:
        assert not replica.process.running()


def forecast_points(influx: InfluxServer, forecast_id: str) -> int:
    async def count() -> int:
        store = InfluxStore(influx.url, "twinstack", **influx.credentials)
        try:
            series = await store.query(
                "SELECT count(temperature) FROM forecast WHERE forecast_id = $f", {"f": forecast_id}
            )
        finally:
            await store.close()
        return int(series[0].values[0][1]) if series else 0

    return asyncio.run(count())


def test_fed_example_twins_to_sweep_parquet_apply_and_forecast(
    data_dir: Path, ray_env: dict[str, str]
) -> None:
    platform = start_platform(data_dir, ray_env)
    try:
        with client_for(platform) as client:
            ensure_example_twins(client)
            feeder = SensorFeeder(client, period_s=0.1)
            feeder.start()
            try:
                wait_until(
                    lambda: "load" in reported(client, "line1-press-3"),
                    timeout_s=30,
                    what="the press's live state",
                )
            finally:
                feeder.stop()
            # Once silent long enough the press turns stale, and its state stops changing.
            wait_until(
                lambda: (
                    client.state.get_state("line1-press-3").connectivity
                    == state_pb2.CONNECTIVITY_STALE
                ),
                timeout_s=30,
                what="the press's state to settle",
            )
            machines = (
                f"FROM 'plant-north' FOLLOW contains DEPTH 2 WHERE IS_OF_MODEL('{EX}Machine;1')"
            )
            with pytest.raises(ApiError) as raised:
                client.sweeps.submit(sweep_spec(query=machines, horizon_s=60, step_s=1.0))
            # The pump has no telemetry yet: its temperature cannot start a scenario.
            assert raised.value.code.name == "FAILED_PRECONDITION"
            assert "line1-pump-1" in raised.value.message

            progress: list[int] = []
            result = client.sweeps.run(
                sweep_spec(
                    twin_ids=["line1-press-3"],
                    sampler="sobol",
                    ranges={"load": (0.3, 1.2)},
                    samples=1024,
                    replicates=2,
                    input_noise={"load": 0.05},
                    thresholds={"temperature": 60.0},
                    horizon_s=3600,
                    step_s=1.0,
                    seed=7,
                ),
                on_progress=lambda sweep: progress.append(sweep.scenarios_done),
            )
            assert result.state == sweep_pb2.SWEEP_STATE_SUCCEEDED, result.failure_reason
            assert result.scenarios_total == 2048
            assert result.submitter == "user:local-admin", "the authenticated caller"
            assert progress[-1] == 2048
            downloaded = client.sweeps.download_results(result.sweep_id, data_dir.parent / "press")
            frame = sweep_frame(downloaded)
            provenance = frame.attrs["provenance"]
            pinned = provenance["snapshot"]["twins"][0]
            assert pinned["twin_id"] == "line1-press-3"
            assert pinned["model_id"] == f"{EX}HydraulicPress;1"
            assert pinned["state_revision"] == client.state.get_state("line1-press-3").revision
            assert provenance["code_version"]["numba"]
            assert len(frame) == 2048
            # Steady temperature is ambient + heat_rise * load: hotter for more load.
            assert frame[["load", "temperature.final"]].corr(method="spearman").iloc[0, 1] > 0.9

            best = best_scenario(frame, "temperature.max")
            state = apply_scenario(client, frame, best)
            assert to_python(state.desired["load"].value) == pytest.approx(best["load"])
            client.telemetry.ingest([Point("line1-press-3", {"load": 0.5})])
            wait_until(
                lambda: reported(client, "line1-press-3").get("load") == 0.5,
                timeout_s=30,
                what="the new report",
            )
            with pytest.raises(ApiError) as raised:
                apply_scenario(client, frame, best)
            assert raised.value.code.name == "ABORTED", "the twin moved on since the snapshot"

            forecast = client.simulation.forecast(
                ["line1-press-3"],
                horizon_s=1800,
                step_s=1.0,
                samples=500,
                uncertain={"heat_rise": (35.0, 55.0)},
                input_noise={"load": 0.05},
                max_points=31,
            )
            walk_simulation_with_the_cli(platform, data_dir.parent / "sim-cli")
            risks = {r.condition: r for r in forecast.twins[0].risks}
            assert set(risks) == {"overheat", "worn"}
            assert 0.0 <= risks["overheat"].probability <= 1.0
            wait_until(
                lambda: forecast_points(platform.influx, forecast.forecast_id) == 31 * 5,
                timeout_s=30,
                what="forecast points in InfluxDB",
            )
    finally:
        platform.stop()


def reported(client: Client, twin_id: str) -> dict[str, object]:
    try:
        state = client.state.get_state(twin_id)
    except ApiError:
        return {}
    return {name: to_python(field.value) for name, field in state.reported.items()}


def walk_simulation_with_the_cli(platform: LocalPlatform, scratch: Path) -> None:
    """sim models, run (with a PNG report), submit --watch (progress, table), status, list,
    results (Parquet parts), report (HTML), cancel, forecast and calibrate, against the fed
    example twins."""
    scratch.mkdir(parents=True, exist_ok=True)
    env = {
        **platform.client_env(),
        "TWINSTACK_INFLUX_URL": platform.influx.url,
        "COLUMNS": "250",
    }

    def run(*args: str) -> str:
        result = CliRunner().invoke(app, ["sim", *args], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    assert "production_line" in run("models")
    scenario_png = scratch / "scenario.png"
    ran = run("run", "--twin", "line1-press-3", "--horizon-s", "600", "--set", "load=1.4",
              "--threshold", "temperature=70", "--report", str(scenario_png))  # fmt: skip
    assert "temperature.time_above_s" in ran
    assert scenario_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results, report = scratch / "line", scratch / "line.html"
    swept = run("submit", "--model", "production_line", "--sampler", "grid",
                "--range", "buffer_capacity=2:42:3", "--replicates", "20", "--horizon-s", "7200",
                "--step-s", "10", "--watch")  # fmt: skip
    assert "60/60 scenarios" in swept
    assert "throughput_per_h" in swept
    assert "succeeded" in run("status", "latest")
    assert "succeeded" in run("list", "--state", "succeeded")
    assert "1 part(s)" in run("results", "latest", str(results))
    assert sweep_frame(results).shape[0] == 60
    run("report", "latest", "--output", str(report), "--results-dir", str(results))
    assert "throughput_per_h" in report.read_text()
    assert "<img src='data:image/png" in report.read_text()
    queued = run("submit", "--model", "pump_thermal", "--samples", "20000000",
                 "--range", "load=0.5:1.0", "--summaries-only")  # fmt: skip
    assert "20,000,000 scenarios" in queued
    assert "cancelled" in run("cancel", "latest")
    forecast = run("forecast", "--twin", "line1-press-3", "--horizon-s", "600",
                   "--samples", "200", "--uncertain", "heat_rise=35:55")  # fmt: skip
    assert "overheat" in forecast
    calibrated = run("calibrate", "line1-press-3", "--parameter", "heat_rise", "--minutes", "2")
    assert "heat_rise" in calibrated
    assert "R²" in calibrated
