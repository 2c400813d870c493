"""Sweeps on the session's real local Ray."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from twinstack.api.simulation.v1 import simulation_pb2, simulation_pb2_grpc
from twinstack.simulation.kernels import PUMP_THERMAL
from twinstack.simulation.service import SimulationApp
from twinstack.simulation.settings import SimulationSettings


@pytest.fixture
async def simulation(
    ray_address: str, serve_app: Any
) -> AsyncIterator[simulation_pb2_grpc.SimulationServiceAsyncStub]:
    settings = SimulationSettings(grpc_host="127.0.0.1", grpc_port=0, scenarios_per_task=2500)
    async with serve_app(settings, SimulationApp(settings)) as channel:
        yield simulation_pb2_grpc.SimulationServiceStub(channel)


def final_temperature(load: float, horizon_s: float) -> float:
    p = {**PUMP_THERMAL.parameters, "load": load}
    equilibrium = p["ambient_c"] + p["heat_kw"] * load / p["cooling_kw_per_k"]
    rate = p["cooling_kw_per_k"] / p["heat_capacity_kj_per_k"]
    return equilibrium + (p["initial_c"] - equilibrium) * math.exp(-rate * horizon_s)


async def test_sweep_fans_out_on_ray_and_is_reproducible(
    simulation: simulation_pb2_grpc.SimulationServiceAsyncStub,
) -> None:
    request = simulation_pb2.RunSweepRequest(
        model="pump_thermal",
        scenario_count=10_000,
        horizon_s=1800.0,
        step_s=2.0,
        seed=11,
        parameters={"load": simulation_pb2.ParameterRange(min=0.5, max=1.0)},
    )
    result = await simulation.RunSweep(request, timeout=120)
    assert result.scenario_count == 10_000
    assert result.task_count == 4
    kpis = {k.name: k for k in result.kpis}
    final = kpis["final_temperature_c"]
    assert final.min >= final_temperature(0.5, 1800.0) - 1e-6
    assert final.max <= final_temperature(1.0, 1800.0) + 1e-6
    assert final.p05 < final.p50 < final.p95
    # Uniform load and a final temperature linear in load: the median is the middle load's.
    assert final.p50 == pytest.approx(final_temperature(0.75, 1800.0), abs=0.3)
    assert kpis["time_above_alarm_s"].min == 0.0

    again = await simulation.RunSweep(request, timeout=120)
    assert again == result, "same seed, same results, bit for bit"


async def test_invalid_sweeps_get_details(
    simulation: simulation_pb2_grpc.SimulationServiceAsyncStub, details_of: Any
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await simulation.RunSweep(
            simulation_pb2.RunSweepRequest(
                model="warp_drive", scenario_count=0, horizon_s=-1, step_s=1
            ),
            timeout=10,
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = [v.field for v in details_of(raised.value)[1].field_violations]
    assert fields == ["model", "scenario_count", "horizon_s"]


async def test_a_sweep_past_its_deadline_frees_the_cluster(
    simulation: simulation_pb2_grpc.SimulationServiceAsyncStub, eventually: Any
) -> None:
    import ray

    long_sweep = simulation_pb2.RunSweepRequest(
        model="pump_thermal", scenario_count=1_000_000, horizon_s=360_000.0, step_s=1.0
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await simulation.RunSweep(long_sweep, timeout=1.0)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    async def idle_cpus() -> float:
        return float(ray.available_resources().get("CPU", 0.0))

    # The whole sweep is over a minute of work on 2 CPUs; cancelled, they are free in seconds.
    await eventually(idle_cpus, lambda cpus: cpus == 2.0, timeout_s=15)
