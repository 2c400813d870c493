"""Calibration: parameters of a twin's model fitted to its telemetry history.

The history is resampled onto the simulation's time grid (InfluxDB means per step). States whose
initial value comes from a telemetry field are compared with that field; inputs that follow a
telemetry field are driven by its recorded values. ``scipy.optimize.least_squares`` then
minimises the residuals, each field scaled by its spread so that fields in different units
weigh alike, running the compiled kernel for every evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import least_squares

from twinstack.common.influx import InfluxStore, quote_identifier
from twinstack.common.series import NUMERIC_MEASUREMENTS, twin_tag
from twinstack.simulation.compiler import CompiledModel, Integrator, RunPlan

FloatArray = npt.NDArray[np.float64]


async def load_history(
    influx: InfluxStore,
    twin_id: str,
    fields: Sequence[str],
    *,
    start_ns: int,
    steps: int,
    step_ns: int,
) -> dict[str, FloatArray]:
    """Each field's mean per step on the grid ``start + k * step`` (NaN where no data)."""
    columns = ", ".join(
        f"mean({quote_identifier(name)}) AS {quote_identifier(name)}" for name in fields
    )
    end_ns = start_ns + steps * step_ns
    history = {name: np.full(steps, np.nan) for name in fields}
    # One statement per measurement (InfluxDB 1.x reads a field as one type within a
    # statement), sent in one request.
    influxql = "; ".join(
        f"SELECT {columns} FROM {quote_identifier(measurement)} "
        f"WHERE {twin_tag()} = $twin AND time >= {start_ns} AND time < {end_ns} "
        f"GROUP BY time({step_ns}ns, {start_ns % step_ns}ns) fill(none)"
        for measurement in NUMERIC_MEASUREMENTS
    )
    found = await influx.query(influxql, {"twin": twin_id})
    for series in found:
        for row in series.rows():
            index = (int(row["time"]) - start_ns) // step_ns
            if 0 <= index < steps:
                for name in fields:
                    value = row.get(name)
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        history[name][index] = float(value)
    return history


@dataclass(frozen=True)
class Fit:
    state: str
    field: str
    points: int
    rmse: float
    r_squared: float


@dataclass(frozen=True)
class Calibration:
    names: list[str]
    values: FloatArray
    initial: FloatArray
    std_errors: FloatArray
    bounds: list[tuple[float, float]]
    fits: list[Fit]
    converged: bool
    message: str
    evaluations: int


def _forward_filled(values: FloatArray) -> FloatArray:
    filled = values.copy()
    for index in range(1, filled.size):
        if math.isnan(filled[index]):
            filled[index] = filled[index - 1]
    return filled


def calibrate(  # noqa: PLR0917 - the whole fitting problem
    model: CompiledModel,
    start_values: Mapping[str, float],
    start_initial: Mapping[str, float],
    fit: Sequence[str],
    bounds: Mapping[str, tuple[float, float]],
    observed: Mapping[str, tuple[str, FloatArray]],
    driven: Mapping[str, FloatArray],
    step_s: float,
    integrator: Integrator,
) -> Calibration:
    """Fits ``fit`` (parameter names) so the states in ``observed`` (state -> (field, values
    on the grid)) follow the history, with inputs in ``driven`` (input -> values) replayed.

    Each state starts from its first observed value.
    """
    spec = model.spec
    steps = next(iter(observed.values()))[1].size
    names = list(spec.parameters) + list(spec.inputs)
    values = np.array([start_values[name] for name in names], dtype=np.float64)
    initial = np.array([start_initial[name] for name in spec.states], dtype=np.float64)
    for state, (_, series) in observed.items():
        finite = series[np.isfinite(series)]
        if finite.size:
            initial[spec.states.index(state)] = finite[0]
    schedule_values = np.full((steps, len(spec.inputs)), np.nan)
    for name, series in driven.items():
        schedule_values[:, spec.inputs.index(name)] = _forward_filled(series)
    plan = RunPlan(
        steps=steps - 1,
        dt_s=step_s,
        integrator=integrator,
        schedule_steps=np.arange(steps, dtype=np.int64),
        schedule_values=schedule_values,
        record_every=1,
    )
    rows = [spec.observables.index(state) for state in observed]
    targets = np.array([series for _, series in observed.values()])
    mask = np.isfinite(targets)
    spread = np.array(
        [
            max(float(np.nanstd(series)), 1e-9) if np.isfinite(series).any() else 1.0
            for series in targets
        ]
    )
    fit_index = [names.index(name) for name in fit]
    low = np.array([bounds[name][0] for name in fit])
    high = np.array([bounds[name][1] for name in fit])
    x0 = np.clip(values[fit_index], low, high)
    seeds = np.zeros(1, dtype=np.uint64)

    def simulate(theta: FloatArray) -> FloatArray:
        trial = values.copy()
        trial[fit_index] = theta
        outcome = model.run(
            initial[:, None],
            trial[: len(spec.parameters), None],
            trial[len(spec.parameters) :, None],
            seeds,
            plan,
        )
        return outcome.trajectory[:, rows, 0].T  # (observed states, steps)

    def residuals(theta: FloatArray) -> FloatArray:
        error = (simulate(theta) - targets) / spread[:, None]
        result: FloatArray = np.where(np.isfinite(error), error, 1e6)[mask]
        return result

    solution = least_squares(residuals, x0, bounds=(low, high), x_scale="jac")
    std_errors = np.full(len(fit), np.nan)
    dof = int(mask.sum()) - len(fit)
    if dof > 0:
        try:
            jac = np.asarray(solution.jac, dtype=np.float64)
            covariance = np.linalg.inv(jac.T @ jac) * (2.0 * solution.cost / dof)
            std_errors = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
        except np.linalg.LinAlgError:
            pass
    simulated = simulate(solution.x)
    fits = []
    for row, (state, (field, series)) in enumerate(observed.items()):
        seen = np.isfinite(series)
        difference = simulated[row][seen] - series[seen]
        total = float(np.sum((series[seen] - series[seen].mean()) ** 2)) if seen.any() else 0.0
        residual = float(np.sum(difference**2))
        fits.append(
            Fit(
                state,
                field,
                int(seen.sum()),
                math.sqrt(residual / seen.sum()) if seen.any() else math.nan,
                1.0 - residual / total if total > 0 else math.nan,
            )
        )
    return Calibration(
        names=list(fit),
        values=solution.x,
        initial=x0,
        std_errors=std_errors,
        bounds=list(zip(low.tolist(), high.tolist(), strict=True)),
        fits=fits,
        converged=bool(solution.success),
        message=str(solution.message),
        evaluations=int(solution.nfev),
    )
