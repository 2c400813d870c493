"""Calibration: parameters of a twin's model fitted to its telemetry history.

The history is resampled onto the simulation's time grid (InfluxDB means per step). States whose
initial value comes from a telemetry field are compared with that field; inputs that follow a
telemetry field are driven by its recorded values. ``scipy.optimize.least_squares`` then
minimises the residuals, each field scaled by its spread so that fields in different units
weigh alike, running the compiled kernel for every evaluation.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from scipy.optimize import least_squares

from twinstack.common.errors import FailedPreconditionError, FieldViolation, InvalidArgumentError
from twinstack.common.influx import InfluxStore, quote_identifier
from twinstack.common.series import NUMERIC_MEASUREMENTS, twin_tag
from twinstack.simulation.compiler import CompiledModel, Integrator, RunPlan
from twinstack.simulation.snapshot import SnapshotTaker

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


MIN_STEP_S = 1e-3


@dataclass(frozen=True)
class CalibrationRequest:
    """What to fit: which parameters of which twin, against its history in ``[start, end)``
    resampled every ``step_s``."""

    twin_id: str
    parameters: Sequence[str]
    start: datetime
    end: datetime
    step_s: float
    integrator: Integrator


async def calibrate_twin(
    snapshots: SnapshotTaker, influx: InfluxStore, request: CalibrationRequest, *, max_steps: int
) -> Calibration:
    """Fits parameters of a twin's model to its stored telemetry.

    The states whose initial value is a telemetry field are compared with that field; inputs
    that follow a telemetry field are driven by it. Without named parameters, every parameter
    with a min and a max is fitted.

    Raises:
        InvalidArgumentError: The window, step or parameters do not fit the model.
        FailedPreconditionError: No history of the compared fields in the window.
    """
    violations = []
    step_s = request.step_s
    if not (math.isfinite(step_s) and step_s >= MIN_STEP_S):
        # History is resampled on a grid of whole nanoseconds, InfluxDB windows of at least a
        # millisecond.
        violations.append(FieldViolation("step_s", f"at least {MIN_STEP_S} s (a millisecond)"))
    elif not 3 <= (request.end - request.start).total_seconds() / step_s <= max_steps:
        violations.append(
            FieldViolation("start_time", f"the window must hold 3 to {max_steps} steps of step_s")
        )
    if violations:
        raise InvalidArgumentError("invalid calibration", violations)
    snapshot = await snapshots.take([request.twin_id], "twin_id")
    model = snapshot.model
    dynamics = model.dynamics
    bounds = {
        p.name: (p.minimum, p.maximum)
        for p in dynamics.parameters
        if p.minimum is not None and p.maximum is not None
    }
    fit = list(dict.fromkeys(request.parameters)) or list(bounds)
    known = {p.name for p in dynamics.parameters}
    for index, name in enumerate(fit):
        if name not in known:
            violations.append(
                FieldViolation(f"parameters[{index}]", f"no parameter {name!r}: {sorted(known)}")
            )
        elif name not in bounds:
            violations.append(
                FieldViolation(
                    f"parameters[{index}]", f"{name!r} needs a min and a max to be fitted"
                )
            )
    if not fit:
        violations.append(FieldViolation("parameters", "no parameter with min and max to fit"))
    observed_fields = {
        state.name: state.initial
        for state in dynamics.states
        if isinstance(state.initial, str) and state.initial in model.telemetry
    }
    driven_fields = {item.name: item.telemetry for item in dynamics.inputs if item.telemetry}
    if not observed_fields:
        violations.append(
            FieldViolation(
                "twin_id",
                f"{model.id} has no state whose initial value is a telemetry field, so there is "
                "nothing to compare with",
            )
        )
    if violations:
        raise InvalidArgumentError("invalid calibration", violations)
    step_ns = round(step_s * 1e9)
    steps = int((request.end - request.start).total_seconds() / step_s)
    history = await load_history(
        influx,
        request.twin_id,
        sorted(set(observed_fields.values()) | set(driven_fields.values())),
        start_ns=int(request.start.timestamp() * 1e9),
        steps=steps,
        step_ns=step_ns,
    )
    if not any(np.isfinite(history[f]).any() for f in observed_fields.values()):
        raise FailedPreconditionError(
            f"no history of {request.twin_id} in the window",
            [FieldViolation("start_time", f"no values of {sorted(set(observed_fields.values()))}")],
            violation_type="NO_HISTORY",
        )
    twin = snapshot.twins[0]
    return await asyncio.to_thread(
        calibrate,
        CompiledModel(snapshot.kernel),
        twin.values,
        twin.initial,
        fit,
        bounds,
        {state: (f, history[f]) for state, f in observed_fields.items()},
        {name: history[f] for name, f in driven_fields.items()},
        step_s,
        request.integrator,
    )
