"""Sweeps: parameters sampled for many scenarios, run in chunks as Ray tasks.

Each task runs the compiled kernel over thousands of scenarios and returns only their KPIs;
the caller gets the KPI distributions.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import ray

from twinstack.common.errors import FieldViolation, InvalidArgumentError
from twinstack.simulation.kernels import BUILTIN_MODELS, BuiltinModel, FloatArray


@dataclass(frozen=True)
class SweepSpec:
    """What to run: a model, how many scenarios, over what horizon, sampled how."""

    model: str
    scenario_count: int
    horizon_s: float
    step_s: float
    seed: int = 0
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return max(1, math.ceil(self.horizon_s / self.step_s - 1e-9))


@dataclass(frozen=True)
class KpiStats:
    name: str
    mean: float
    min: float
    max: float
    p05: float
    p50: float
    p95: float


@dataclass(frozen=True)
class SweepResult:
    scenario_count: int
    task_count: int
    kpis: list[KpiStats]


def validate(spec: SweepSpec, *, max_scenarios: int, max_steps: int) -> BuiltinModel:
    """The spec's model; InvalidArgumentError naming every bad field otherwise."""
    violations = []
    model = BUILTIN_MODELS.get(spec.model)
    if model is None:
        known = ", ".join(sorted(BUILTIN_MODELS))
        violations.append(FieldViolation("model", f"unknown model; built-in models: {known}"))
    if not 1 <= spec.scenario_count <= max_scenarios:
        violations.append(FieldViolation("scenario_count", f"must be 1 to {max_scenarios}"))
    if not (math.isfinite(spec.horizon_s) and spec.horizon_s > 0):
        violations.append(FieldViolation("horizon_s", "must be a positive number"))
    if not (math.isfinite(spec.step_s) and spec.step_s > 0):
        violations.append(FieldViolation("step_s", "must be a positive number"))
    elif math.isfinite(spec.horizon_s) and spec.horizon_s / spec.step_s > max_steps:
        violations.append(FieldViolation("step_s", f"horizon_s / step_s must be <= {max_steps}"))
    for name, (low, high) in spec.ranges.items():
        path = f"parameters[{name!r}]"
        if model is not None and name not in model.parameters:
            violations.append(FieldViolation(path, f"{spec.model} has no parameter {name!r}"))
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            violations.append(FieldViolation(path, "min and max must be finite, min <= max"))
    if violations or model is None:
        raise InvalidArgumentError("invalid sweep", violations)
    return model


def sample_parameters(model: BuiltinModel, spec: SweepSpec) -> FloatArray:
    """``(parameters, scenarios)``: defaults, with ranged parameters drawn uniformly.

    The same seed always gives the same scenarios.
    """
    rng = np.random.default_rng(spec.seed)
    params = np.empty((len(model.parameters), spec.scenario_count))
    for row, (name, default) in enumerate(model.parameters.items()):
        if name in spec.ranges:
            low, high = spec.ranges[name]
            params[row] = rng.uniform(low, high, spec.scenario_count)
        else:
            params[row] = default
    return params


def summarize(model: BuiltinModel, kpis: FloatArray) -> list[KpiStats]:
    """Distribution of each KPI over the scenarios."""
    stats = []
    for row, name in enumerate(model.kpis):
        values = kpis[row]
        p05, p50, p95 = np.percentile(values, [5, 50, 95])
        stats.append(
            KpiStats(
                name=name,
                mean=float(values.mean()),
                min=float(values.min()),
                max=float(values.max()),
                p05=float(p05),
                p50=float(p50),
                p95=float(p95),
            )
        )
    return stats


@ray.remote(max_retries=3)  # type: ignore[untyped-decorator]
def run_chunk(model_name: str, params: FloatArray, steps: int, dt_s: float) -> FloatArray:
    """One Ray task: the kernel over one chunk of scenarios. Retried if its worker dies."""
    return BUILTIN_MODELS[model_name].run(params, steps, dt_s)


async def run_sweep(spec: SweepSpec, model: BuiltinModel, scenarios_per_task: int) -> SweepResult:
    """Runs a validated sweep on the connected Ray cluster."""
    params = sample_parameters(model, spec)
    bounds = range(0, spec.scenario_count, scenarios_per_task)
    refs = [
        run_chunk.remote(
            spec.model, params[:, start : start + scenarios_per_task], spec.steps, spec.step_s
        )
        for start in bounds
    ]
    try:
        chunks = [await ref for ref in refs]
    except asyncio.CancelledError:
        # The caller went away (cancelled, or past its deadline): free the cluster. force=True
        # because a running numba kernel cannot be interrupted, only its worker stopped.
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    kpis = np.concatenate(chunks, axis=1)
    return SweepResult(
        scenario_count=spec.scenario_count, task_count=len(refs), kpis=summarize(model, kpis)
    )
