"""Forecasts: Monte Carlo from a twin's live state over uncertain parameters and noisy inputs.

Per twin: the probability that each failure condition of its model holds within the horizon,
the time-to-failure distribution over the runs where it does, and quantile fans of every state
and output over time. The fans and risks are written to InfluxDB next to the telemetry (so the
forecast and what then happened can be plotted together), and likely conditions are published
as predicted-alert events.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from twinstack.api.common.v1 import events_pb2
from twinstack.common.errors import FieldViolation, InvalidArgumentError
from twinstack.common.events import ALERT_PREDICTED, EventPublisher
from twinstack.common.influx import InfluxPoint, InfluxStore
from twinstack.common.series import FORECAST_MEASUREMENT, RISK_MEASUREMENT, TWIN_ID_TAG
from twinstack.modeling.document import Condition
from twinstack.simulation.compiler import CompiledModel, RunPlan
from twinstack.simulation.rng import scenario_seeds
from twinstack.simulation.runs import check_trajectory_budget, record_every, starts
from twinstack.simulation.snapshot import Snapshot, TwinStart
from twinstack.simulation.sweep import Limits, SweepSpec, Target, plan_sweep

FloatArray = npt.NDArray[np.float64]

QUANTILES = (("p05", 5.0), ("p25", 25.0), ("p50", 50.0), ("p75", 75.0), ("p95", 95.0))
SEVERITIES = {
    "info": events_pb2.SEVERITY_INFO,
    "warning": events_pb2.SEVERITY_WARNING,
    "critical": events_pb2.SEVERITY_CRITICAL,
}


@dataclass(frozen=True)
class Risk:
    condition: Condition
    probability: float
    time_to_failure_s: tuple[float, float, float]  # p05, p50, p95; NaN when it never held


@dataclass(frozen=True)
class TwinOutlook:
    start: TwinStart
    risks: list[Risk]
    times_s: FloatArray
    fans: dict[str, FloatArray]  # observable -> (quantiles, times)


def forecast_twin(  # noqa: PLR0917 - one forecast's whole description
    model: CompiledModel,
    conditions: tuple[Condition, ...],
    start: TwinStart,
    twin_index: int,
    samples: int,
    uncertain: Mapping[str, tuple[float, float]],
    plan: RunPlan,
    seed: int,
) -> TwinOutlook:
    """Runs ``samples`` scenarios from ``start``; ``plan.record_every`` sets the fan's points."""
    spec = model.spec
    names = list(spec.parameters) + list(spec.inputs)
    values = np.array([[start.values[name]] * samples for name in names]).reshape(
        len(names), samples
    )
    # One stream per twin, so adding a twin to a forecast does not change the others' draws.
    rng = np.random.default_rng([seed, twin_index])
    for name, (low, high) in uncertain.items():
        values[names.index(name)] = rng.uniform(low, high, samples)
    initial = np.array([[start.initial[name]] * samples for name in spec.states]).reshape(
        len(spec.states), samples
    )
    outcome = model.run(
        initial,
        values[: len(spec.parameters)],
        values[len(spec.parameters) :],
        scenario_seeds(seed, samples, twin_index * samples),
        plan,
    )
    records = outcome.trajectory.shape[0]
    times_s = np.arange(records, dtype=np.float64) * (plan.record_every * plan.dt_s)
    fans = {
        name: np.percentile(outcome.trajectory[:, o, :], [q for _, q in QUANTILES], axis=1)
        for o, name in enumerate(spec.observables)
    }
    risks = []
    for c, condition in enumerate(conditions):
        first = outcome.first_true[c]
        held = first[np.isfinite(first)]
        if held.size:
            p05, p50, p95 = (float(v) for v in np.percentile(held, [5, 50, 95]))
        else:
            p05 = p50 = p95 = math.nan
        risks.append(Risk(condition, held.size / samples, (p05, p50, p95)))
    return TwinOutlook(start, risks, times_s, fans)


def influx_points(
    outlook: TwinOutlook, forecast_id: str, started: datetime, horizon_s: float
) -> list[InfluxPoint]:
    """The fans (``forecast``: one point per time and quantile, a field per observable) and
    the risks (``forecast_risk``: one point per condition at the start time)."""
    start_ns = int(started.timestamp() * 1e9)
    twin_id = outlook.start.twin_id
    points = []
    for index, offset_s in enumerate(outlook.times_s):
        for q, (quantile, _) in enumerate(QUANTILES):
            fields: dict[str, float] = {}
            for name, fan in outlook.fans.items():
                value = float(fan[q, index])
                if math.isfinite(value):
                    fields[name] = value
            if fields:
                points.append(
                    InfluxPoint(
                        FORECAST_MEASUREMENT,
                        {TWIN_ID_TAG: twin_id, "forecast_id": forecast_id, "quantile": quantile},
                        fields,
                        start_ns + round(offset_s * 1e9),
                    )
                )
    for risk in outlook.risks:
        fields = {"probability": risk.probability, "horizon_s": horizon_s}
        fields |= {
            f"time_to_failure_{name}_s": value
            for name, value in zip(("p05", "p50", "p95"), risk.time_to_failure_s, strict=True)
            if math.isfinite(value)
        }
        points.append(
            InfluxPoint(
                RISK_MEASUREMENT,
                {
                    TWIN_ID_TAG: twin_id,
                    "forecast_id": forecast_id,
                    "condition": risk.condition.name,
                },
                fields,
                start_ns,
            )
        )
    return points


@dataclass(frozen=True)
class Forecast:
    """A whole forecast: one outlook per twin, and which risks were published as alerts."""

    forecast_id: str
    model_id: str
    started: datetime
    outlooks: list[TwinOutlook]
    alerted: set[tuple[str, str]]  # (twin id, condition name)
    points_written: int


def predicted_alert(
    outlook: TwinOutlook, risk: Risk, forecast_id: str, started: datetime, horizon_s: float
) -> events_pb2.PredictedAlertEvent:
    """The event that announces a likely condition."""
    twin = outlook.start
    event = events_pb2.PredictedAlertEvent(
        twin_id=twin.twin_id,
        model_id=twin.model_id,
        condition=risk.condition.name,
        severity=SEVERITIES.get(risk.condition.severity, events_pb2.SEVERITY_UNSPECIFIED),
        message=risk.condition.message,
        probability=risk.probability,
        time_to_failure_p50_s=risk.time_to_failure_s[1],
        horizon_s=horizon_s,
        forecast_id=forecast_id,
        state_revision=twin.state_revision,
    )
    event.start_time.FromDatetime(started)
    return event


async def run_forecast(
    snapshot: Snapshot,
    spec: SweepSpec,
    *,
    alert_probability: float,
    max_points: int,
    limits: Limits,
    max_trajectory_values: int,
    influx: InfluxStore,
    events: EventPublisher,
) -> Forecast:
    """Forecasts every twin of the snapshot, stores the fans and risks in InfluxDB, and
    publishes a predicted alert for each condition at least ``alert_probability`` likely.

    ``spec.ranges`` are the uncertain parameters (drawn uniformly), ``spec.samples`` the runs
    per twin.

    Raises:
        InvalidArgumentError: The spec does not fit the model (fields named as the forecast
            request names them: ``uncertain[...]``).
        LimitExceededError: One twin's trajectories would hold more than
            ``max_trajectory_values``.
    """
    target = Target.of_kernel(snapshot.kernel)
    try:
        plan = plan_sweep(spec, target, starts(snapshot, target), limits)
    except InvalidArgumentError as error:
        renamed = [
            FieldViolation(v.field.replace("ranges[", "uncertain[", 1), v.description)
            for v in error.violations
        ]
        raise InvalidArgumentError("invalid forecast", renamed) from None
    run = dataclasses.replace(
        plan.run, record_every=record_every(spec.steps, max_points, "max_points")
    )
    # Twins are forecast one after the other: the budget is that of one twin's samples.
    check_trajectory_budget(
        spec.samples, spec.steps, run.record_every, len(target.observables),
        max_trajectory_values,
    )  # fmt: skip
    model = CompiledModel(snapshot.kernel)
    conditions = snapshot.model.dynamics.conditions
    forecast_id = uuid.uuid4().hex
    started = snapshot.taken_at
    uncertain = {name: (low, high) for name, (low, high, _) in spec.ranges.items()}
    outlooks: list[TwinOutlook] = []
    points: list[InfluxPoint] = []
    for index, twin in enumerate(snapshot.twins):
        outlook = await asyncio.to_thread(
            forecast_twin, model, conditions, twin, index, spec.samples, uncertain, run, spec.seed
        )
        outlooks.append(outlook)
        points += influx_points(outlook, forecast_id, started, spec.horizon_s)
    await influx.write(points)
    alerted: set[tuple[str, str]] = set()
    for outlook in outlooks:
        for risk in outlook.risks:
            if risk.probability < alert_probability:
                continue
            twin_id = outlook.start.twin_id
            alerted.add((twin_id, risk.condition.name))
            await events.publish(
                ALERT_PREDICTED,
                (twin_id,),
                predicted_alert(outlook, risk, forecast_id, started, spec.horizon_s),
                msg_id=f"{forecast_id}:{twin_id}:{risk.condition.name}",
            )
    return Forecast(forecast_id, snapshot.model_id, started, outlooks, alerted, len(points))
