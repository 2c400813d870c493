"""The simulation service's calls: scenario runs, sweeps, forecasts and calibration."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import grpc

from twinstack.api.simulation.v1 import simulation_pb2
from twinstack.sdk._transport import (
    AsyncArea,
    Reduction,
    Streamed,
    SyncArea,
    Unary,
    async_call,
    async_stream,
    sync_call,
    sync_stream,
)
from twinstack.sdk.errors import InternalError

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
"""Sampler names :meth:`Simulation.run_sweep` accepts."""

Range = tuple[float, float] | tuple[float, float, int]


def _choice(table: Mapping[str, Any], name: str, what: str) -> Any:
    if name not in table:
        raise ValueError(f"{what} must be one of {', '.join(sorted(table))}")
    return table[name]


def _selection(twin_ids: Sequence[str], query: str) -> simulation_pb2.TwinSelection:
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
        twins=_selection(twin_ids, query),
        overrides=overrides or {},
        horizon_s=horizon_s,
        step_s=step_s,
        integrator=_choice(INTEGRATORS, integrator, "integrator"),
        max_points=max_points,
        input_noise=input_noise or {},
        seed=seed,
        thresholds=thresholds or {},
    )
    return Unary("simulation", "RunScenario", request, timeout_s=timeout_s)


class _SweepOutcome(Reduction[simulation_pb2.SweepResult]):
    def __init__(
        self, on_progress: Callable[[simulation_pb2.RunSweepResponse], None] | None
    ) -> None:
        self._on_progress = on_progress
        self._result: simulation_pb2.SweepResult | None = None

    def feed(self, message: simulation_pb2.RunSweepResponse) -> bool:
        if self._on_progress is not None:
            self._on_progress(message)
        if message.HasField("result"):
            self._result = message.result
            return True
        return False

    def result(self) -> simulation_pb2.SweepResult:
        assert self._result is not None  # feed() said complete
        return self._result


def _no_result() -> InternalError:
    return InternalError(grpc.StatusCode.UNKNOWN, "the sweep ended without a result")


def run_sweep(
    model: str = "",
    *,
    twin_ids: Sequence[str] = (),
    query: str = "",
    horizon_s: float,
    step_s: float,
    sampler: str = "random",
    ranges: Mapping[str, Range] | None = None,
    samples: int = 0,
    replicates: int = 1,
    overrides: Mapping[str, float] | None = None,
    input_noise: Mapping[str, float] | None = None,
    input_schedule: Sequence[tuple[float, Mapping[str, float]]] = (),
    thresholds: Mapping[str, float] | None = None,
    integrator: str = "rk4",
    seed: int = 0,
    on_progress: Callable[[simulation_pb2.RunSweepResponse], None] | None = None,
    timeout_s: float = 3600.0,
) -> Streamed[simulation_pb2.SweepResult]:
    """Runs many scenarios of a built-in model, or of the selected twins' own dynamics.

    Args:
        model: A built-in model (see :meth:`Simulation.list_builtin_models`); empty to sweep
            the twins' models.
        twin_ids: The twins to fork (when ``model`` is empty).
        query: And/or the twins a registry query selects.
        horizon_s: How far ahead each scenario runs.
        step_s: The integration step.
        sampler: ``random``, ``grid``, ``lhs`` or ``sobol``.
        ranges: Parameter or input name → ``(min, max)``, or ``(min, max, levels)`` for the
            grid sampler.
        samples: Scenarios to draw (the grid's size follows from its levels).
        replicates: Monte Carlo replicates of each scenario (with ``input_noise``).
        overrides: Name → value fixed in every scenario.
        input_noise: Input name → standard deviation of noise added per step.
        input_schedule: ``(at_s, {input: value})`` changes during the run.
        thresholds: KPI name → threshold.
        integrator: ``rk4`` or ``euler``.
        seed: Seed of sampling and noise.
        on_progress: Sees every progress message (scenarios done, elapsed).
        timeout_s: Deadline of the whole sweep; interrupting the call (KeyboardInterrupt,
            task cancellation) cancels the sweep on the cluster too.

    Returns:
        The sweep's id, summary statistics and best scenarios; the per-scenario table is
        fetched with :meth:`Simulation.fetch_sweep_results`.
    """
    request = simulation_pb2.RunSweepRequest(
        model=model,
        twins=_selection(twin_ids, query),
        sampler=_choice(SAMPLERS, sampler, "sampler"),
        ranges={
            name: simulation_pb2.ParameterRange(
                min=span[0], max=span[1], levels=int(span[2]) if len(span) > 2 else 0
            )
            for name, span in (ranges or {}).items()
        },
        samples=samples,
        replicates=replicates,
        overrides=overrides or {},
        input_noise=input_noise or {},
        input_schedule=[
            simulation_pb2.InputStep(at_s=at_s, values=values) for at_s, values in input_schedule
        ],
        horizon_s=horizon_s,
        step_s=step_s,
        integrator=_choice(INTEGRATORS, integrator, "integrator"),
        seed=seed,
        thresholds=thresholds or {},
    )
    return Streamed(
        "simulation",
        "RunSweep",
        request,
        _SweepOutcome(on_progress),
        timeout_s=timeout_s,
        incomplete=_no_result,
    )


class _Joined(Reduction[bytes]):
    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def feed(self, message: simulation_pb2.FetchSweepResultsResponse) -> bool:
        self._chunks.append(message.data)
        return False

    def result(self) -> bytes:
        return b"".join(self._chunks)


def fetch_sweep_results(sweep_id: str, timeout_s: float = 600.0) -> Streamed[bytes]:
    """A finished sweep's Parquet file: one row per scenario, provenance in its metadata.

    ``twinstack.sdk.results.sweep_frame`` (with the ``results`` extra) reads it into pandas.
    """
    request = simulation_pb2.FetchSweepResultsRequest(sweep_id=sweep_id)
    return Streamed("simulation", "FetchSweepResults", request, _Joined(), timeout_s=timeout_s)


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
        twins=_selection(twin_ids, query),
        samples=samples,
        horizon_s=horizon_s,
        step_s=step_s,
        integrator=_choice(INTEGRATORS, integrator, "integrator"),
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
        integrator=_choice(INTEGRATORS, integrator, "integrator"),
    )
    if start is not None:
        request.start_time.FromDatetime(start)
    if end is not None:
        request.end_time.FromDatetime(end)
    return Unary("simulation", "Calibrate", request, timeout_s=timeout_s)


class Simulation(SyncArea):
    """Scenario runs, sweeps, forecasts and calibration (``client.simulation``)."""

    list_builtin_models = sync_call(list_builtin_models)
    run_scenario = sync_call(run_scenario)
    run_sweep = sync_stream(run_sweep)
    fetch_sweep_results = sync_stream(fetch_sweep_results)
    forecast = sync_call(forecast)
    calibrate = sync_call(calibrate)


class AsyncSimulation(AsyncArea):
    """Scenario runs, sweeps, forecasts and calibration (``client.simulation`` of an
    :class:`AsyncClient`)."""

    list_builtin_models = async_call(list_builtin_models)
    run_scenario = async_call(run_scenario)
    run_sweep = async_stream(run_sweep)
    fetch_sweep_results = async_stream(fetch_sweep_results)
    forecast = async_call(forecast)
    calibrate = async_call(calibrate)
