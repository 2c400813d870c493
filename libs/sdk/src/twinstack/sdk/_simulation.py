"""The simulation service's calls: scenario runs, forecasts and calibration (sweeps are
jobs: ``_sweeps``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from twinstack.api.simulation.v1 import simulation_pb2
from twinstack.sdk._transport import (
    AsyncArea,
    SyncArea,
    Unary,
    async_call,
    sync_call,
)

INTEGRATORS: dict[str, Any] = {
    "rk4": simulation_pb2.INTEGRATOR_RK4,
    "euler": simulation_pb2.INTEGRATOR_EULER,
}
"""Integrator names the simulation calls accept."""

SAMPLERS: dict[str, Any] = {
    "grid": simulation_pb2.SAMPLER_GRID,
    "random": simulation_pb2.SAMPLER_RANDOM,
    "lhs": simulation_pb2.SAMPLER_LATIN_HYPERCUBE,
    "latin_hypercube": simulation_pb2.SAMPLER_LATIN_HYPERCUBE,
    "sobol": simulation_pb2.SAMPLER_SOBOL,
}
"""Sampler names a sweep spec accepts."""

Range = tuple[float, float] | tuple[float, float, int]


def choice(table: Mapping[str, Any], name: str, what: str) -> Any:
    if name not in table:
        raise ValueError(f"{what} must be one of {', '.join(sorted(table))}")
    return table[name]


def selection(twin_ids: Sequence[str], query: str) -> simulation_pb2.TwinSelection:
    return simulation_pb2.TwinSelection(twin_ids=twin_ids, query=query)


def list_builtin_models() -> Unary[list[simulation_pb2.BuiltinModel]]:
    """The built-in models a sweep can run without twins, with their parameters and KPIs."""
    request = simulation_pb2.ListBuiltinModelsRequest()
    return Unary("simulation", "ListBuiltinModels", request, lambda r: list(r.models))


def run_scenario(
    twin_ids: Sequence[str] = (),
    *,
    query: str = "",
    horizon_s: float,
    step_s: float,
    overrides: Mapping[str, float] | None = None,
    input_noise: Mapping[str, float] | None = None,
    thresholds: Mapping[str, float] | None = None,
    integrator: str = "rk4",
    max_points: int = 200,
    seed: int = 0,
    timeout_s: float = 300.0,
) -> Unary[simulation_pb2.RunScenarioResponse]:
    """Forks the live twins and runs one what-if scenario of each.

    Args:
        twin_ids: The twins to fork.
        query: And/or the twins a registry query selects.
        horizon_s: How far ahead to simulate.
        step_s: The integration step.
        overrides: Parameter or input name → value, replacing the live one.
        input_noise: Input name → standard deviation of noise added per step.
        thresholds: KPI name → threshold (time above, first crossing).
        integrator: ``rk4`` or ``euler``.
        max_points: Trajectory points returned per series (downsampled).
        seed: Seed of the noise.
        timeout_s: Deadline of the call.

    Returns:
        Per twin: trajectories, KPIs, and the revisions the run started from.
    """
    request = simulation_pb2.RunScenarioRequest(
        twins=selection(twin_ids, query),
        overrides=overrides or {},
        horizon_s=horizon_s,
        step_s=step_s,
        integrator=choice(INTEGRATORS, integrator, "integrator"),
        max_points=max_points,
        input_noise=input_noise or {},
        seed=seed,
        thresholds=thresholds or {},
    )
    return Unary("simulation", "RunScenario", request, timeout_s=timeout_s)


def forecast(
    twin_ids: Sequence[str] = (),
    *,
    query: str = "",
    horizon_s: float,
    step_s: float,
    samples: int = 1000,
    uncertain: Mapping[str, tuple[float, float]] | None = None,
    input_noise: Mapping[str, float] | None = None,
    alert_probability: float = 0.5,
    integrator: str = "rk4",
    max_points: int = 100,
    seed: int = 0,
    timeout_s: float = 600.0,
) -> Unary[simulation_pb2.ForecastResponse]:
    """A Monte Carlo forecast from the twins' live state.

    The fan (quantiles over time) is stored in InfluxDB; conditions likely to fail within the
    horizon are published as predicted alerts.

    Args:
        twin_ids: The twins.
        query: And/or the twins a registry query selects.
        horizon_s: How far ahead.
        step_s: The integration step.
        samples: Monte Carlo samples per twin.
        uncertain: Parameter name → ``(min, max)`` drawn uniformly per sample.
        input_noise: Input name → standard deviation of noise added per step.
        alert_probability: Publish a predicted alert at or above this probability.
        integrator: ``rk4`` or ``euler``.
        max_points: Fan points returned per series.
        seed: Seed of the draws.
        timeout_s: Deadline of the call.
    """
    request = simulation_pb2.ForecastRequest(
        twins=selection(twin_ids, query),
        samples=samples,
        horizon_s=horizon_s,
        step_s=step_s,
        integrator=choice(INTEGRATORS, integrator, "integrator"),
        uncertain={
            name: simulation_pb2.ParameterRange(min=low, max=high)
            for name, (low, high) in (uncertain or {}).items()
        },
        input_noise=input_noise or {},
        seed=seed,
        alert_probability=alert_probability,
        max_points=max_points,
    )
    return Unary("simulation", "Forecast", request, timeout_s=timeout_s)


def calibrate(
    twin_id: str,
    parameters: Sequence[str] = (),
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    step_s: float = 1.0,
    integrator: str = "rk4",
    timeout_s: float = 600.0,
) -> Unary[simulation_pb2.CalibrateResponse]:
    """Fits parameters of a twin's model to its stored history (least squares).

    Args:
        twin_id: The twin.
        parameters: The parameters to fit (empty: every parameter with a min and a max).
        start: From (default: an hour before ``end``).
        end: To (default: now).
        step_s: The integration step.
        integrator: ``rk4`` or ``euler``.
        timeout_s: Deadline of the call.

    Returns:
        Fitted values with standard errors, RMSE and R² per field.
    """
    request = simulation_pb2.CalibrateRequest(
        twin_id=twin_id,
        parameters=parameters,
        step_s=step_s,
        integrator=choice(INTEGRATORS, integrator, "integrator"),
    )
    if start is not None:
        request.start_time.FromDatetime(start)
    if end is not None:
        request.end_time.FromDatetime(end)
    return Unary("simulation", "Calibrate", request, timeout_s=timeout_s)


class Simulation(SyncArea):
    """Scenario runs, forecasts and calibration (``client.simulation``)."""

    list_builtin_models = sync_call(list_builtin_models)
    run_scenario = sync_call(run_scenario)
    forecast = sync_call(forecast)
    calibrate = sync_call(calibrate)


class AsyncSimulation(AsyncArea):
    """Scenario runs, forecasts and calibration (``client.simulation`` of an
    :class:`AsyncClient`)."""

    list_builtin_models = async_call(list_builtin_models)
    run_scenario = async_call(run_scenario)
    forecast = async_call(forecast)
    calibrate = async_call(calibrate)
