"""Scenario runs, sweeps, forecasts and calibration against real nats-server, influxd and the
session's local Ray cluster (sweeps run there as Ray jobs), with the registry, ingestion and
state services in front as in production."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from twinstack.api.common.v1 import events_pb2, types_pb2
from twinstack.api.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.api.simulation.v1 import (
    simulation_pb2,
    simulation_pb2_grpc,
    sweep_pb2,
    sweep_pb2_grpc,
)
from twinstack.api.state.v1 import state_pb2, state_pb2_grpc
from twinstack.common.influx import InfluxStore
from twinstack.common.nats import EVENTS_STREAM, Backbone
from twinstack.devstack import free_port
from twinstack.ingestion.app import IngestionApp
from twinstack.ingestion.settings import IngestionSettings
from twinstack.registry.app import RegistryApp
from twinstack.registry.settings import RegistrySettings
from twinstack.sdk import make_frame
from twinstack.simulation.app import SimulationApp
from twinstack.simulation.settings import SimulationSettings
from twinstack.state.app import StateApp
from twinstack.state.settings import StateSettings

TANK = "dtmi:twinstack:test:Tank;1"
DRIFT = "dtmi:twinstack:test:Drift;1"
S = 10**9


@dataclass
class Platform:
    registry: registry_pb2_grpc.RegistryServiceAsyncStub
    ingestion: ingestion_pb2_grpc.IngestionServiceAsyncStub
    state: state_pb2_grpc.StateServiceAsyncStub
    simulation: simulation_pb2_grpc.SimulationServiceAsyncStub
    sweeps: sweep_pb2_grpc.SweepServiceAsyncStub
    downloads: Path

    async def results_of(self, sweep: sweep_pb2.Sweep) -> pa.Table:
        """A succeeded sweep's rows, read through ReadSweepResults part by part."""
        directory = self.downloads / sweep.sweep_id
        directory.mkdir(parents=True, exist_ok=True)
        parts: dict[str, bytearray] = {}
        request = sweep_pb2.ReadSweepResultsRequest(sweep_id=sweep.sweep_id)
        async for piece in self.sweeps.ReadSweepResults(request, timeout=60):
            data = parts.setdefault(piece.part, bytearray())
            assert piece.offset == len(data)
            data += piece.data
        assert len(parts) == sweep.results.part_count
        for name, data in parts.items():
            (directory / name).write_bytes(data)
        return pq.read_table(directory).sort_by("scenario")

    async def twin(self, twin_id: str, model_id: str, **properties: float) -> None:
        twin = registry_pb2.Twin(
            id=twin_id,
            model_id=model_id,
            properties={k: types_pb2.Value(double_value=v) for k, v in properties.items()},
        )
        await self.registry.CreateTwin(registry_pb2.CreateTwinRequest(twin=twin), timeout=10)

    async def ingest(self, twin_id: str, times_ns: Sequence[int], **columns: Sequence[Any]) -> None:
        frame = make_frame(twin_id, times_ns, columns)
        await self.ingestion.IngestBatch(
            ingestion_pb2.IngestBatchRequest(frames=[frame]), timeout=10
        )

    async def twin_state(self, twin_id: str) -> state_pb2.TwinState | None:
        """The twin's live state, or None while nothing has been reported or desired for it."""
        try:
            response = await self.state.GetState(
                state_pb2.GetStateRequest(twin_id=twin_id), timeout=5
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return response.state

    async def reported(self, twin_id: str) -> dict[str, float]:
        state = await self.twin_state(twin_id)
        if state is None:
            return {}
        return {name: f.value.double_value for name, f in state.reported.items()}

    async def sweep(
        self, spec: sweep_pb2.SweepSpec, deadline_s: float = 180
    ) -> tuple[list[sweep_pb2.Sweep], sweep_pb2.Sweep]:
        """Submits and watches a sweep to its end (RunSweep)."""
        request = sweep_pb2.RunSweepRequest(spec=spec)
        messages = [m.sweep async for m in self.sweeps.RunSweep(request, timeout=deadline_s)]
        return messages, messages[-1]


@pytest.fixture
async def platform(
    infra_settings: dict[str, Any],
    serve_app: Any,
    store_test_models: Any,
    ray_settings: dict[str, Any],
    tmp_path: Path,
    eventually: Any,
) -> AsyncIterator[Platform]:
    # A port known before it serves: the simulation service reaches the registry for twin
    # selections given as queries.
    registry_port = free_port()
    registry_settings = RegistrySettings(**{**infra_settings, "grpc_port": registry_port})
    ingestion_settings = IngestionSettings(**infra_settings)
    # Frequent staleness checks: a test that pins a snapshot waits for its twin to go stale,
    # after which nothing changes its state revision.
    state_settings = StateSettings(**infra_settings, state_staleness_check_interval_s=0.2)
    async with (
        serve_app(registry_settings, RegistryApp(registry_settings)) as registry_channel,
        serve_app(ingestion_settings, IngestionApp(ingestion_settings)) as ingestion_channel,
        serve_app(state_settings, StateApp(state_settings)) as state_channel,
    ):
        registry = registry_pb2_grpc.RegistryServiceStub(registry_channel)
        await store_test_models(registry)
        simulation_settings = SimulationSettings(
            **infra_settings,
            registry_target=f"127.0.0.1:{registry_port}",
            scenarios_per_task=2500,
            **ray_settings,
            sweep_schedule_interval_s=1.0,
        )
        async with serve_app(
            simulation_settings, SimulationApp(simulation_settings)
        ) as simulation_channel:
            health: Any = health_pb2_grpc.HealthStub(simulation_channel)
            sweep_service = sweep_pb2.DESCRIPTOR.services_by_name["SweepService"].full_name

            async def sweeps_serving() -> bool:
                check = health_pb2.HealthCheckRequest(service=sweep_service)
                response = await health.Check(check, timeout=5)
                return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

            await eventually(sweeps_serving, timeout_s=60)
            yield Platform(
                registry,
                ingestion_pb2_grpc.IngestionServiceStub(ingestion_channel),
                state_pb2_grpc.StateServiceStub(state_channel),
                simulation_pb2_grpc.SimulationServiceStub(simulation_channel),
                sweep_pb2_grpc.SweepServiceStub(simulation_channel),
                tmp_path / "downloads",
            )


def pump_final_temperature(load: float, horizon_s: float) -> float:
    """The pump_thermal built-in's closed form at its defaults."""
    equilibrium = 25.0 + 30.0 * load / 0.6
    return equilibrium + (25.0 - equilibrium) * math.exp(-0.6 / 400.0 * horizon_s)


async def test_builtin_sweep_runs_as_a_job_stores_parquet_parts_and_is_reproducible(
    platform: Platform,
) -> None:
    spec = sweep_pb2.SweepSpec(
        model="pump_thermal",
        sampler=simulation_pb2.SAMPLER_LATIN_HYPERCUBE,
        ranges={"load": simulation_pb2.ParameterRange(min=0.5, max=1.0)},
        samples=10_000,
        horizon_s=1800.0,
        step_s=2.0,
        seed=11,
        objective=sweep_pb2.Objective(kpi="final_temperature_c", maximize=True),
        best_count=3,
    )
    messages, sweep = await platform.sweep(spec)
    assert sweep.state == sweep_pb2.SWEEP_STATE_SUCCEEDED, sweep.failure_reason
    assert sweep.scenarios_total == sweep.scenarios_done == 10_000
    assert sweep.chunks_total == sweep.chunks_done == 4
    assert messages[0].state in (sweep_pb2.SWEEP_STATE_QUEUED, sweep_pb2.SWEEP_STATE_RUNNING)
    done = [m.scenarios_done for m in messages]
    assert done == sorted(done)
    revisions = [m.revision for m in messages]
    assert revisions == sorted(set(revisions))
    kpis = {k.name: k for k in sweep.summary.kpis}
    final = kpis["final_temperature_c"]
    assert final.min >= pump_final_temperature(0.5, 1800.0) - 1e-6
    assert final.max <= pump_final_temperature(1.0, 1800.0) + 1e-6
    # Latin hypercube on a final temperature linear in load: the median is the middle load's.
    assert final.p50 == pytest.approx(pump_final_temperature(0.75, 1800.0), abs=0.05)
    assert sum(final.counts) == 10_000 - final.missing
    assert len(final.bin_edges) == len(final.counts) + 1
    # The hottest scenarios are those with the most load; load drives temperature up.
    assert [b.objective for b in sweep.summary.best] == sorted(
        (b.objective for b in sweep.summary.best), reverse=True
    )
    assert sweep.summary.best[0].objective == pytest.approx(final.max)
    assert sweep.summary.best[0].values["load"] > 0.99
    sensitivity = {(s.variable, s.kpi): s.correlation for s in sweep.summary.sensitivity}
    assert sensitivity[("load", "final_temperature_c")] > 0.99

    table = await platform.results_of(sweep)
    assert table.num_rows == 10_000
    assert table.column("scenario").to_pylist() == list(range(10_000))
    assert set(table.column_names) >= {"scenario", "seed", "load", "final_temperature_c"}
    provenance = json.loads(table.schema.metadata[b"twinstack.provenance"])
    assert provenance == json.loads(sweep.provenance_json)
    assert provenance["model"] == {"builtin": "pump_thermal"}
    assert provenance["spec"]["seed"] == "11"
    assert provenance["code_version"]["compiler"]
    # Every stratum of the Latin hypercube is visited exactly once.
    strata = np.floor((table.column("load").to_numpy() - 0.5) / 0.5 * 10_000)
    assert sorted(strata.astype(int).tolist()) == list(range(10_000))
    load = table.column("load").to_numpy()
    expected = [pump_final_temperature(x, 1800.0) for x in load[:50]]
    np.testing.assert_allclose(
        table.column("final_temperature_c").to_numpy()[:50], expected, rtol=1e-6
    )

    _, again = await platform.sweep(spec)
    assert again.sweep_id != sweep.sweep_id
    second = await platform.results_of(again)
    assert second.drop(["twin_id"]).equals(table.drop(["twin_id"])), "bit for bit"
    assert again.summary == sweep.summary


async def test_stochastic_builtins_are_reproducible_per_seed(platform: Platform) -> None:
    request = sweep_pb2.SweepSpec(
        model="production_line",
        sampler=simulation_pb2.SAMPLER_GRID,
        ranges={"buffer_capacity": simulation_pb2.ParameterRange(min=2, max=42, levels=3)},
        replicates=40,
        horizon_s=8 * 3600.0,
        step_s=10.0,
        seed=5,
    )
    _, first = await platform.sweep(request)
    _, second = await platform.sweep(request)
    table = (await platform.results_of(first)).to_pandas()
    assert len(table) == 120
    assert table.equals((await platform.results_of(second)).to_pandas())
    by_buffer = table.groupby("buffer_capacity")["throughput_per_h"].mean()
    # Buffers decouple failures: more buffer, more throughput; never above the bottleneck.
    assert by_buffer.iloc[0] < by_buffer.iloc[1] < by_buffer.iloc[2] <= 0.45 * 3600
    assert table.groupby("buffer_capacity")["throughput_per_h"].std().min() > 0, "seeds differ"


async def test_invalid_sweeps_get_every_problem_named(platform: Platform, details_of: Any) -> None:
    bad = [
        (
            sweep_pb2.SweepSpec(model="warp_drive", horizon_s=-1, step_s=1),
            ["model"],
        ),
        (
            sweep_pb2.SweepSpec(
                model="pump_thermal",
                horizon_s=math.inf,
                step_s=0,
                ranges={
                    "load": simulation_pb2.ParameterRange(min=2.0, max=1.0),
                    "warp": simulation_pb2.ParameterRange(min=0.0, max=1.0),
                    "ambient_c": simulation_pb2.ParameterRange(min=-500.0, max=1.0),
                },
                samples=10,
                thresholds={"x": 1.0},
            ),
            [
                "horizon_s",
                "step_s",
                "ranges['load']",
                "ranges['warp']",
                "ranges['ambient_c']",
                "thresholds['x']",
            ],
        ),
        (
            sweep_pb2.SweepSpec(
                model="pump_thermal",
                horizon_s=10.0,
                step_s=1.0,
                ranges={"load": simulation_pb2.ParameterRange(min=0.0, max=1.0)},
                samples=2_000_000_000,
            ),
            ["samples"],
        ),
        (
            # 65536 levels in four dimensions: 2^64 scenarios, which an int64 count wrapped to 0.
            sweep_pb2.SweepSpec(
                model="pump_thermal",
                horizon_s=10.0,
                step_s=1.0,
                sampler=simulation_pb2.SAMPLER_GRID,
                ranges={
                    name: simulation_pb2.ParameterRange(min=low, max=high, levels=65536)
                    for name, low, high in (
                        ("load", 0.2, 1.0),
                        ("ambient_c", 0.0, 30.0),
                        ("heat_kw", 10.0, 20.0),
                        ("cooling_kw_per_k", 0.1, 1.0),
                    )
                },
            ),
            ["samples"],
        ),
        (sweep_pb2.SweepSpec(horizon_s=10.0, step_s=1.0), ["model"]),
        (
            sweep_pb2.SweepSpec(
                twins=simulation_pb2.TwinSelection(twin_ids=["bad id!"]), horizon_s=1, step_s=1
            ),
            ["twins.twin_ids[0]"],
        ),
        (
            sweep_pb2.SweepSpec(
                twins=simulation_pb2.TwinSelection(query="FROM WHERE ((("),
                horizon_s=1,
                step_s=1,
            ),
            ["twins.query"],
        ),
    ]
    for request, fields in bad:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await platform.sweep(request, deadline_s=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        found = [v.field for v in details_of(raised.value)[1].field_violations]
        assert found[: len(fields)] == fields or sorted(found) == sorted(fields), found
    for sweep_id, code in (
        ("../../etc/passwd", grpc.StatusCode.INVALID_ARGUMENT),
        ("0" * 32, grpc.StatusCode.NOT_FOUND),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in platform.sweeps.ReadSweepResults(
                sweep_pb2.ReadSweepResultsRequest(sweep_id=sweep_id), timeout=10
            ):
                pass
        assert raised.value.code() == code
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await platform.sweeps.GetSweep(sweep_pb2.GetSweepRequest(sweep_id=sweep_id), timeout=10)
        assert raised.value.code() == code
    # Nothing invalid was queued.
    queued = await platform.sweeps.ListSweeps(sweep_pb2.ListSweepsRequest(), timeout=10)
    assert list(queued.sweeps) == []
    tiny_step = simulation_pb2.CalibrateRequest(twin_id="nobody", step_s=1e-10)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await platform.simulation.Calibrate(tiny_step, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details_of(raised.value)[1].field_violations] == ["step_s"]
    # Still serving.
    listed = await platform.simulation.ListBuiltinModels(
        simulation_pb2.ListBuiltinModelsRequest(), timeout=10
    )
    assert {m.use_case for m in listed.models} == {
        "manufacturing",
        "healthcare",
        "smart_city",
        "logistics",
    }


def ray_task_processes(name: str) -> list[int]:
    """Pids of Ray workers running a task called ``name`` (Ray names their processes so)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if command.startswith(f"ray::{name}"):
            found.append(int(entry.name))
    return found


async def test_a_sweep_survives_a_lost_worker_and_counts_nothing_twice(
    platform: Platform, eventually: Any
) -> None:
    spec = sweep_pb2.SweepSpec(
        model="pump_thermal",
        ranges={"load": simulation_pb2.ParameterRange(min=0.2, max=1.0)},
        samples=10_000,
        horizon_s=100_000.0,
        step_s=1.0,
        seed=3,
    )
    _, undisturbed = await platform.sweep(spec)
    submitted = await platform.sweeps.SubmitSweep(
        sweep_pb2.SubmitSweepRequest(spec=spec), timeout=30
    )
    victims = await eventually(
        lambda: asyncio.to_thread(ray_task_processes, "run_chunk"), timeout_s=60
    )
    os.kill(victims[0], signal.SIGKILL)
    watched = [
        m.sweep
        async for m in platform.sweeps.WatchSweep(
            sweep_pb2.WatchSweepRequest(sweep_id=submitted.sweep.sweep_id), timeout=180
        )
    ]
    sweep = watched[-1]
    assert sweep.state == sweep_pb2.SWEEP_STATE_SUCCEEDED, sweep.failure_reason
    assert sweep.scenarios_done == 10_000
    assert sweep.chunks_done == sweep.chunks_total
    rows = await platform.results_of(sweep)
    assert rows.drop(["twin_id"]).equals((await platform.results_of(undisturbed)).drop(["twin_id"]))
    assert sweep.summary == undisturbed.summary


async def test_cancelling_a_sweep_frees_the_cluster(platform: Platform, eventually: Any) -> None:
    long_sweep = sweep_pb2.SweepSpec(
        model="pump_thermal",
        ranges={"load": simulation_pb2.ParameterRange(min=0.2, max=1.0)},
        samples=200_000,
        horizon_s=360_000.0,
        step_s=1.0,
    )
    submitted = await platform.sweeps.SubmitSweep(
        sweep_pb2.SubmitSweepRequest(spec=long_sweep), timeout=30
    )
    sweep_id = submitted.sweep.sweep_id
    await eventually(lambda: asyncio.to_thread(ray_task_processes, "run_chunk"), timeout_s=60)
    cancelled = await platform.sweeps.CancelSweep(
        sweep_pb2.CancelSweepRequest(sweep_id=sweep_id), timeout=30
    )
    assert cancelled.sweep.state == sweep_pb2.SWEEP_STATE_CANCELLED

    async def busy_workers() -> list[int]:
        return await asyncio.to_thread(ray_task_processes, "run_chunk")

    # The whole sweep is many minutes of work on 2 CPUs; cancelled, they are free in seconds.
    await eventually(busy_workers, lambda pids: pids == [], timeout_s=30)
    got = await platform.sweeps.GetSweep(sweep_pb2.GetSweepRequest(sweep_id=sweep_id), timeout=10)
    assert got.sweep.state == sweep_pb2.SWEEP_STATE_CANCELLED
    assert got.sweep.chunks_done < got.sweep.chunks_total
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await platform.sweeps.CancelSweep(
            sweep_pb2.CancelSweepRequest(sweep_id=sweep_id), timeout=10
        )
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in platform.sweeps.ReadSweepResults(
            sweep_pb2.ReadSweepResultsRequest(sweep_id=sweep_id), timeout=10
        ):
            pass
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_scenario_forks_live_twins_and_matches_the_closed_form(
    platform: Platform, eventually: Any
) -> None:
    await platform.twin("tank-a", TANK, outflow_rate=0.5)
    await platform.twin("tank-b", TANK, outflow_rate=0.25)
    now = time.time_ns()
    await platform.ingest("tank-a", [now], level=[6.0], inflow=[2.0])
    await platform.ingest("tank-b", [now], level=[1.0], inflow=[1.0])
    for twin_id in ("tank-a", "tank-b"):
        await eventually(lambda t=twin_id: platform.reported(t), lambda r: "inflow" in r)

    response = await platform.simulation.RunScenario(
        simulation_pb2.RunScenarioRequest(
            twins=simulation_pb2.TwinSelection(query=f"WHERE IS_OF_MODEL('{TANK}')"),
            overrides={"gain": 1.5},
            horizon_s=20.0,
            step_s=0.05,
            max_points=41,
            thresholds={"level": 3.5},
        ),
        timeout=60,
    )
    assert response.model_id == TANK
    assert [t.twin_id for t in response.twins] == ["tank-a", "tank-b"]
    for twin, k, level0, inflow in (
        (response.twins[0], 0.5, 6.0, 2.0),
        (response.twins[1], 0.25, 1.0, 1.0),
    ):
        assert twin.state_revision > 0
        assert twin.twin_revision > 0
        assert twin.values["k"] == k
        assert twin.values["gain"] == 1.5
        assert twin.values["inflow"] == inflow
        steady = 1.5 * inflow / k
        times = np.array(twin.times_s)
        assert len(times) == 41
        assert times[-1] == pytest.approx(20.0)
        level = np.array(next(s.values for s in twin.series if s.name == "level"))
        np.testing.assert_allclose(
            level, steady + (level0 - steady) * np.exp(-k * times), rtol=1e-7
        )
        headroom = np.array(next(s.values for s in twin.series if s.name == "headroom"))
        np.testing.assert_allclose(headroom, 10 - level)
        assert twin.kpis["level.final"] == pytest.approx(level[-1])
    # tank-a falls from 6 towards 6 (steady = 1.5 * 2 / 0.5): above 3.5 throughout.
    assert response.twins[0].kpis["level.time_above_s"] == pytest.approx(20.0)
    # tank-b rises from 1 towards 6; it crosses 3.5 at ln(5 / 2.5) / 0.25 s.
    assert response.twins[1].kpis["level.first_crossing_s"] == pytest.approx(
        math.log(2) / 0.25, abs=0.05
    )
    assert math.isnan(response.twins[1].kpis["overflow.first_s"])


async def test_twin_sweep_provenance_pins_the_snapshot(platform: Platform, eventually: Any) -> None:
    await platform.twin("tank-s", TANK, outflow_rate=0.5)
    await platform.ingest("tank-s", [time.time_ns()], level=[2.0], inflow=[1.0])
    # Going stale bumps the revision; wait for it so the revision read below is the snapshot's.
    settled = await eventually(
        lambda: platform.twin_state("tank-s"),
        lambda s: (
            s is not None
            and "inflow" in s.reported
            and s.connectivity == state_pb2.CONNECTIVITY_STALE
        ),
    )
    request = sweep_pb2.SweepSpec(
        twins=simulation_pb2.TwinSelection(twin_ids=["tank-s"]),
        sampler=simulation_pb2.SAMPLER_SOBOL,
        ranges={"inflow": simulation_pb2.ParameterRange(min=0.0, max=8.0)},
        samples=256,
        replicates=4,
        input_noise={"inflow": 0.5},
        horizon_s=60.0,
        step_s=0.1,
        seed=9,
        thresholds={"level": 10.0},
    )
    _, result = await platform.sweep(request)
    assert result.state == sweep_pb2.SWEEP_STATE_SUCCEEDED, result.failure_reason
    table = await platform.results_of(result)
    provenance = json.loads(table.schema.metadata[b"twinstack.provenance"])
    pinned = provenance["snapshot"]["twins"][0]
    assert pinned["twin_id"] == "tank-s"
    assert pinned["state_revision"] == settled.revision
    assert provenance["model"]["model_id"] == TANK
    assert provenance["desired_fields"] == {"inflow": "inflow"}
    frame = table.to_pandas()
    assert len(frame) == 1024
    assert frame["seed"].nunique() == 1024
    # Steady level = inflow / k: a tank fed above 5 overflows more often than one fed below.
    high = frame[frame["inflow"] > 6]["overflow.first_s"].notna().mean()
    low = frame[frame["inflow"] < 4]["overflow.first_s"].notna().mean()
    assert high > 0.9
    assert low == 0.0
    assert result.summary.diverged == 0


async def test_forecast_probability_matches_the_known_answer(
    platform: Platform,
    backbone: Backbone,
    infra_settings: dict[str, Any],
    eventually: Any,
    details_of: Any,
) -> None:
    await platform.twin("drift-1", DRIFT)
    events = await backbone.js.subscribe("evt.forecast.>", stream=EVENTS_STREAM)
    response = await platform.simulation.Forecast(
        simulation_pb2.ForecastRequest(
            twins=simulation_pb2.TwinSelection(twin_ids=["drift-1"]),
            samples=20_000,
            horizon_s=1.0,
            step_s=0.001,
            uncertain={"rate": simulation_pb2.ParameterRange(min=0.0, max=4.0)},
            seed=1,
            max_points=11,
        ),
        timeout=60,
    )
    risk = response.twins[0].risks[0]
    # x = rate * t breaches 1 within 1 s exactly when rate > 1: probability 3/4 for U(0, 4).
    assert risk.condition == "breach"
    assert risk.probability == pytest.approx(0.75, abs=0.015)
    # Time to failure 1 / rate for rate ~ U(1, 4): median 1 / 2.5.
    assert risk.time_to_failure_p50_s == pytest.approx(0.4, abs=0.005)
    assert risk.alerted
    fan = response.twins[0].fans[0]
    assert fan.name == "x"
    assert fan.p50[-1] == pytest.approx(2.0, abs=0.05)

    message = await events.next_msg(timeout=10)
    event = events_pb2.PredictedAlertEvent.FromString(message.data)
    assert message.subject == "evt.forecast.predicted.drift-1"
    assert event.condition == "breach"
    assert event.probability == risk.probability

    influx = InfluxStore(infra_settings["influx_url"], infra_settings["influx_database"])
    await influx.connect()
    try:
        series = await influx.query(
            "SELECT count(x) FROM forecast WHERE forecast_id = $id AND quantile = 'p50'",
            {"id": response.forecast_id},
        )
        assert series[0].rows()[0]["count"] == 11
        risks = await influx.query(
            "SELECT probability FROM forecast_risk WHERE forecast_id = $id",
            {"id": response.forecast_id},
        )
        assert risks[0].rows()[0]["probability"] == pytest.approx(risk.probability)
    finally:
        await influx.close()
    assert response.points_written == 11 * 5 + 1

    # 100,000 samples x 10,000 recorded points would be 8 GB of trajectories: refused first.
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await platform.simulation.Forecast(
            simulation_pb2.ForecastRequest(
                twins=simulation_pb2.TwinSelection(twin_ids=["drift-1"]),
                samples=100_000,
                horizon_s=10.0,
                step_s=0.001,
                max_points=10_000,
            ),
            timeout=30,
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    quota = [d for d in details_of(raised.value) if d.DESCRIPTOR.name == "QuotaFailure"]
    assert quota[0].violations[0].subject == "TWINSTACK_MAX_TRAJECTORY_VALUES"


async def test_calibration_recovers_parameters_from_history(
    platform: Platform, infra_settings: dict[str, Any], eventually: Any
) -> None:
    await platform.twin("tank-cal", TANK, outflow_rate=0.2)
    k, gain, steps = 0.05, 1.5, 600
    start_ns = (time.time_ns() // S - 3600) * S
    inflow = 1.0 + 0.8 * np.sin(np.arange(steps) / 40.0)
    level = np.empty(steps)
    level[0] = 3.0
    dt = 1.0
    for i in range(steps - 1):  # RK4 with the inflow held over each second, as recorded
        feed = gain * inflow[i]
        a = feed - k * level[i]
        b = feed - k * (level[i] + dt / 2 * a)
        c = feed - k * (level[i] + dt / 2 * b)
        d = feed - k * (level[i] + dt * c)
        level[i + 1] = level[i] + dt / 6 * (a + 2 * b + 2 * c + d)
    noisy = level + np.random.default_rng(0).normal(0, 0.02, steps)
    times = [start_ns + i * S for i in range(steps)]
    await platform.ingest("tank-cal", times, level=noisy.tolist(), inflow=inflow.tolist())

    influx = InfluxStore(infra_settings["influx_url"], infra_settings["influx_database"])
    await influx.connect()

    async def stored() -> int:
        series = await influx.query(
            "SELECT count(level) FROM telemetry WHERE twin_id::tag = 'tank-cal'"
        )
        return int(series[0].rows()[0]["count"]) if series else 0

    try:
        await eventually(stored, lambda count: count == steps)
    finally:
        await influx.close()

    request = simulation_pb2.CalibrateRequest(
        twin_id="tank-cal", parameters=["k", "gain"], step_s=1.0
    )
    request.start_time.FromNanoseconds(start_ns)
    request.end_time.FromNanoseconds(start_ns + steps * S)
    response = await platform.simulation.Calibrate(request, timeout=60)
    fitted = {p.name: p for p in response.parameters}
    assert response.converged
    assert fitted["k"].initial == pytest.approx(0.2)
    assert fitted["k"].value == pytest.approx(k, rel=0.03)
    assert fitted["gain"].value == pytest.approx(gain, rel=0.03)
    assert 0 < fitted["k"].std_error < 0.01
    fit = response.fits[0]
    assert (fit.state, fit.field, fit.points) == ("level", "level", steps)
    assert fit.rmse == pytest.approx(0.02, rel=0.3)
    assert fit.r_squared > 0.99

    empty = simulation_pb2.CalibrateRequest(twin_id="tank-cal", parameters=["k"])
    empty.end_time.FromNanoseconds(start_ns - 7200 * S)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await platform.simulation.Calibrate(empty, timeout=30)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    for bad in (
        simulation_pb2.CalibrateRequest(twin_id="tank-cal", parameters=["nope"]),
        simulation_pb2.CalibrateRequest(twin_id="tank-cal", step_s=-1),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await platform.simulation.Calibrate(bad, timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
