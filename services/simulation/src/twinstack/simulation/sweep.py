"""Sweeps: a parameter space times Monte Carlo seeds times twins, run in chunks as Ray tasks.

Scenario ``i`` of a sweep is ``(twin, point, replicate)`` with ``i = (twin * points + point) *
replicates + replicate``; its seed is a pure function of the sweep's seed and ``i``
(:func:`twinstack.simulation.rng.scenario_seeds`). A chunk is a contiguous range of scenarios,
so any chunk can be rebuilt from the plan alone: a retried task recomputes exactly its own
scenarios, and results land by index, so a retry never counts twice and never leaves a gap.

Each chunk runs the kernel over thousands of scenarios and reduces their trajectories to KPIs on
the worker. No process holds a whole sweep: a chunk's parameter points, seeds and inputs are
computed from its indices (:func:`chunk_inputs`), and its rows become one Parquet part
(:func:`chunk_table`) and one mergeable partial summary (:mod:`twinstack.simulation.summaries`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from twinstack.common.errors import FieldViolation, InvalidArgumentError
from twinstack.common.tenancy import external_id
from twinstack.simulation.compiler import (
    STATISTICS,
    CompiledModel,
    Integrator,
    KernelSpec,
    Outcome,
    RunPlan,
)
from twinstack.simulation.kernels import BUILTIN_MODELS, BuiltinModel
from twinstack.simulation.rng import scenario_seeds
from twinstack.simulation.sampling import Sampler, point_count, points_at, scale

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Variable:
    """A parameter or an input a scenario sets."""

    name: str
    default: float
    minimum: float | None
    maximum: float | None
    kind: str  # "parameter" or "input"


@dataclass(frozen=True)
class Target:
    """What a sweep runs: a built-in kernel, or compiled dynamics. Picklable (goes to Ray)."""

    variables: tuple[Variable, ...]
    builtin: str = ""
    kernel: KernelSpec | None = None

    @classmethod
    def of_builtin(cls, model: BuiltinModel) -> Target:
        return cls(
            tuple(
                Variable(name, default, low, high, "parameter")
                for name, (default, low, high) in model.parameters.items()
            ),
            builtin=model.name,
        )

    @classmethod
    def of_kernel(cls, spec: KernelSpec) -> Target:
        parameters = [
            Variable(name, default, *spec.bounds.get(name, (None, None)), "parameter")
            for name, default in zip(spec.parameters, spec.parameter_defaults, strict=True)
        ]
        inputs = [
            Variable(name, default, None, None, "input")
            for name, default in zip(spec.inputs, spec.input_defaults, strict=True)
        ]
        return cls(tuple(parameters + inputs), kernel=spec)

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variables]

    @property
    def observables(self) -> tuple[str, ...]:
        return self.kernel.observables if self.kernel else ()

    def kpi_names(self, thresholds: Mapping[str, float]) -> list[str]:
        """KPI columns in kernel order: per observable final/min/max/mean (and time above and
        first crossing where it has a threshold), then each condition's first time."""
        if self.kernel is None:
            return list(BUILTIN_MODELS[self.builtin].kpis)
        names = []
        for observable in self.kernel.observables:
            names += [f"{observable}.{statistic}" for statistic in STATISTICS]
            if observable in thresholds:
                names += [f"{observable}.time_above_s", f"{observable}.first_crossing_s"]
        names += [f"{condition}.first_s" for condition in self.kernel.conditions]
        return names


def kpi_matrix(outcome: Outcome, spec: KernelSpec, thresholds: Mapping[str, float]) -> FloatArray:
    """The outcome's KPIs as rows in :meth:`Target.kpi_names` order."""
    rows = []
    for o, observable in enumerate(spec.observables):
        rows.extend(outcome.statistics[o])
        if observable in thresholds:
            rows.extend(outcome.crossings[o])
    rows.extend(outcome.first_true)
    n = outcome.statistics.shape[2]
    return np.array(rows).reshape(-1, n) if rows else np.empty((0, n))


@dataclass(frozen=True)
class Start:
    """A twin's starting point (or the defaults of a built-in model, with no twin)."""

    twin_id: str
    initial: tuple[float, ...]  # states, in kernel order
    values: tuple[float, ...]  # variables, in Target.variables order
    twin_revision: int = 0
    state_revision: int = 0


@dataclass(frozen=True)
class SweepSpec:
    """A validated-on-plan description of a sweep (built from the RunSweep request)."""

    horizon_s: float
    step_s: float
    sampler: Sampler = Sampler.RANDOM
    ranges: Mapping[str, tuple[float, float, int]] = field(default_factory=dict)
    samples: int = 1
    replicates: int = 1
    overrides: Mapping[str, float] = field(default_factory=dict)
    input_noise: Mapping[str, float] = field(default_factory=dict)
    schedule: Sequence[tuple[float, Mapping[str, float]]] = ()
    integrator: Integrator = Integrator.RK4
    seed: int = 0
    thresholds: Mapping[str, float] = field(default_factory=dict)
    # False: summaries only, no rows stored (sweeps of 10^8 scenarios and more).
    keep_rows: bool = True
    # The KPI the best scenarios are ranked by ("" ranks none), and in which direction.
    objective: str = ""
    maximize: bool = False
    best_count: int = 10

    @property
    def steps(self) -> int:
        return max(1, math.ceil(self.horizon_s / self.step_s - 1e-9))


@dataclass(frozen=True)
class Limits:
    max_scenarios: int
    max_steps: int
    scenarios_per_task: int
    # Ranked best scenarios one sweep may keep.
    max_best_count: int = 1000
    # Scenarios x steps of one sweep: the compute a request may ask for.
    max_scenario_steps: int = 10**11
    # KPI values (8 bytes each) one sweep's results may hold.
    max_result_bytes: int = 4 * 2**30


def _finite(value: float) -> bool:
    return math.isfinite(value)


def spec_violations(
    spec: SweepSpec, target: Target, twins: int, limits: Limits
) -> list[FieldViolation]:
    """Every problem of ``spec`` against ``target``, with request field paths."""
    violations: list[FieldViolation] = []
    variables = {v.name: v for v in target.variables}
    if not (_finite(spec.horizon_s) and spec.horizon_s > 0):
        violations.append(FieldViolation("horizon_s", "must be a positive number of seconds"))
    if not (_finite(spec.step_s) and spec.step_s > 0):
        violations.append(FieldViolation("step_s", "must be a positive number of seconds"))
    elif _finite(spec.horizon_s) and spec.horizon_s / spec.step_s > limits.max_steps:
        violations.append(
            FieldViolation("step_s", f"horizon_s / step_s must be at most {limits.max_steps}")
        )
    for name, (low, high, levels) in spec.ranges.items():
        path = f"ranges[{name!r}]"
        variable = variables.get(name)
        if variable is None:
            violations.append(FieldViolation(path, f"no parameter or input {name!r}"))
            continue
        if not (_finite(low) and _finite(high) and low <= high):
            violations.append(FieldViolation(path, "min and max must be finite, min <= max"))
        elif (variable.minimum is not None and low < variable.minimum) or (
            variable.maximum is not None and high > variable.maximum
        ):
            violations.append(
                FieldViolation(
                    path, f"outside the model's range [{variable.minimum}, {variable.maximum}]"
                )
            )
        if spec.sampler is Sampler.GRID and levels < 1:
            violations.append(FieldViolation(f"{path}.levels", "a grid needs levels >= 1"))
    for name, value in spec.overrides.items():
        path = f"overrides[{name!r}]"
        if name not in variables:
            violations.append(FieldViolation(path, f"no parameter or input {name!r}"))
        elif not _finite(value):
            violations.append(FieldViolation(path, "must be finite"))
        elif name in spec.ranges:
            violations.append(FieldViolation(path, "is also swept in ranges"))
    for name, sigma in spec.input_noise.items():
        path = f"input_noise[{name!r}]"
        if name not in variables or variables[name].kind != "input":
            violations.append(FieldViolation(path, f"no input {name!r}"))
        elif not (_finite(sigma) and sigma >= 0):
            violations.append(FieldViolation(path, "must be a finite standard deviation >= 0"))
    for index, (at_s, values) in enumerate(spec.schedule):
        path = f"input_schedule[{index}]"
        if not (_finite(at_s) and at_s >= 0):
            violations.append(FieldViolation(f"{path}.at_s", "must be >= 0 seconds"))
        for name, value in values.items():
            if name not in variables or variables[name].kind != "input":
                violations.append(FieldViolation(f"{path}.values[{name!r}]", f"no input {name!r}"))
            elif not _finite(value):
                violations.append(FieldViolation(f"{path}.values[{name!r}]", "must be finite"))
    for name, value in spec.thresholds.items():
        path = f"thresholds[{name!r}]"
        if target.kernel is None:
            violations.append(FieldViolation(path, "built-in models have their own KPIs"))
        elif name not in target.observables:
            violations.append(
                FieldViolation(path, f"no state or output {name!r}: {list(target.observables)}")
            )
        elif not _finite(value):
            violations.append(FieldViolation(path, "must be finite"))
    if target.kernel is None and (spec.input_noise or spec.schedule):
        violations.append(
            FieldViolation("input_noise", "built-in models draw their own randomness")
        )
    if spec.sampler is not Sampler.GRID and spec.ranges and spec.samples < 1:
        violations.append(FieldViolation("samples", "give the number of points to draw"))
    if spec.replicates < 1:
        violations.append(FieldViolation("replicates", "must be at least 1"))
    kpi_names = target.kpi_names(spec.thresholds)
    if spec.objective and spec.objective not in kpi_names:
        violations.append(
            FieldViolation("objective.kpi", f"no KPI {spec.objective!r}: {kpi_names}")
        )
    if not 1 <= spec.best_count <= limits.max_best_count:
        violations.append(FieldViolation("best_count", f"between 1 and {limits.max_best_count}"))
    grid_levels = [levels for _, _, levels in spec.ranges.values()]
    total = twins * point_count(spec.sampler, spec.samples, grid_levels) * max(1, spec.replicates)
    if total > limits.max_scenarios:
        violations.append(
            FieldViolation(
                "samples",
                f"{total} scenarios in all; at most {limits.max_scenarios} per sweep "
                "(TWINSTACK_MAX_SCENARIOS)",
            )
        )
    elif _finite(spec.horizon_s) and _finite(spec.step_s) and spec.step_s > 0:
        steps = max(1, math.ceil(spec.horizon_s / spec.step_s))
        if total * steps > limits.max_scenario_steps:
            violations.append(
                FieldViolation(
                    "step_s",
                    f"{total} scenarios x {steps} steps; at most {limits.max_scenario_steps} "
                    "scenario-steps per sweep (TWINSTACK_MAX_SCENARIO_STEPS)",
                )
            )
        result_bytes = total * (len(kpi_names) + len(spec.ranges)) * 8
        if spec.keep_rows and result_bytes > limits.max_result_bytes:
            violations.append(
                FieldViolation(
                    "samples",
                    f"results of {result_bytes} bytes; at most {limits.max_result_bytes} per "
                    "sweep (TWINSTACK_MAX_SWEEP_RESULT_BYTES); or keep summaries only",
                )
            )
    return violations


@dataclass(frozen=True)
class SweepPlan:
    """Everything a chunk needs, computed once: scaled points, base values, the run plan."""

    target: Target
    spec: SweepSpec
    starts: tuple[Start, ...]
    ranged: tuple[int, ...]  # variable indices swept, in points' column order
    point_count: int
    bases: FloatArray  # (twins, variables): start values with overrides
    run: RunPlan
    scenarios_per_task: int

    @property
    def scenario_count(self) -> int:
        return len(self.starts) * self.point_count * self.spec.replicates

    @property
    def kpi_names(self) -> list[str]:
        return self.target.kpi_names(self.spec.thresholds)

    @property
    def swept_names(self) -> list[str]:
        return [self.target.variables[i].name for i in self.ranged]

    def points(self, index: npt.NDArray[np.int64]) -> FloatArray:
        """The swept variables' values ``(len(index), len(ranged))`` at these points."""
        names = self.target.names
        spec = self.spec
        levels = [levels for _, _, levels in spec.ranges.values()]
        unit = points_at(spec.sampler, index, spec.samples, levels, spec.seed)
        low = np.array([spec.ranges[names[i]][0] for i in self.ranged])
        high = np.array([spec.ranges[names[i]][1] for i in self.ranged])
        return scale(unit, low, high)

    @property
    def chunks(self) -> list[tuple[int, int]]:
        total, size = self.scenario_count, self.scenarios_per_task
        return [(start, min(start + size, total)) for start in range(0, total, size)]


def _run_plan(spec: SweepSpec, target: Target) -> RunPlan:
    if target.kernel is None:
        return RunPlan(steps=spec.steps, dt_s=spec.step_s)
    inputs = list(target.kernel.inputs)
    noise = np.array([spec.input_noise.get(name, 0.0) for name in inputs])
    schedule_steps = None
    schedule_values = None
    if spec.schedule:
        ordered = sorted(spec.schedule, key=lambda entry: entry[0])
        schedule_steps = np.array(
            [math.ceil(at_s / spec.step_s - 1e-9) for at_s, _ in ordered], dtype=np.int64
        )
        schedule_values = np.full((len(ordered), len(inputs)), np.nan)
        for row, (_, values) in enumerate(ordered):
            if row > 0:  # an input keeps its scheduled value until a later entry changes it
                schedule_values[row] = schedule_values[row - 1]
            for name, value in values.items():
                schedule_values[row, inputs.index(name)] = value
    thresholds = np.array([spec.thresholds.get(name, np.nan) for name in target.observables])
    return RunPlan(
        steps=spec.steps,
        dt_s=spec.step_s,
        integrator=spec.integrator,
        input_noise=noise,
        schedule_steps=schedule_steps,
        schedule_values=schedule_values,
        thresholds=thresholds,
    )


def plan_sweep(
    spec: SweepSpec, target: Target, starts: Sequence[Start], limits: Limits
) -> SweepPlan:
    """Validates and plans; InvalidArgumentError naming every bad field otherwise."""
    violations = spec_violations(spec, target, len(starts), limits)
    if violations:
        raise InvalidArgumentError("invalid sweep", violations)
    return build_plan(spec, target, starts, limits.scenarios_per_task)


def build_plan(
    spec: SweepSpec, target: Target, starts: Sequence[Start], scenarios_per_task: int
) -> SweepPlan:
    """Plans a spec that was validated when it was submitted (a driver rebuilding its job)."""
    names = target.names
    ranged = tuple(names.index(name) for name in spec.ranges)
    levels = [levels for _, _, levels in spec.ranges.values()]
    bases = np.array([start.values for start in starts], dtype=np.float64).reshape(
        len(starts), len(names)
    )
    for name, value in spec.overrides.items():
        bases[:, names.index(name)] = value
    return SweepPlan(
        target=target,
        spec=spec,
        starts=tuple(starts),
        ranged=ranged,
        point_count=point_count(spec.sampler, spec.samples, levels),
        bases=bases,
        run=_run_plan(spec, target),
        scenarios_per_task=scenarios_per_task,
    )


@dataclass(frozen=True)
class ChunkInputs:
    values: FloatArray  # (variables, n)
    initial: FloatArray  # (states, n)
    seeds: npt.NDArray[np.uint64]  # (n,)
    twin: npt.NDArray[np.int64]
    point: npt.NDArray[np.int64]
    replicate: npt.NDArray[np.int64]


def chunk_inputs(plan: SweepPlan, start: int, stop: int) -> ChunkInputs:
    """The scenarios ``start .. stop - 1`` of the plan, rebuilt from the plan alone."""
    index = np.arange(start, stop, dtype=np.int64)
    replicates = plan.spec.replicates
    points = plan.point_count
    replicate = index % replicates
    point = (index // replicates) % points
    twin = index // (replicates * points)
    values = plan.bases[twin].T.copy()
    if plan.ranged:
        values[list(plan.ranged)] = plan.points(point).T
    initial = (
        np.array([s.initial for s in plan.starts], dtype=np.float64)
        .reshape(len(plan.starts), -1)[twin]
        .T.copy()
    )
    return ChunkInputs(
        values, initial, scenario_seeds(plan.spec.seed, stop - start, start), twin, point, replicate
    )


def run_scenarios(
    target: Target, run: RunPlan, thresholds: Mapping[str, float], inputs: ChunkInputs
) -> FloatArray:
    """KPIs ``(kpis, n)`` of a chunk, in this process."""
    if target.kernel is None:
        return BUILTIN_MODELS[target.builtin].run(inputs.values, inputs.seeds, run.steps, run.dt_s)
    spec = target.kernel
    parameters = len(spec.parameters)
    outcome = CompiledModel(spec).run(
        inputs.initial, inputs.values[:parameters], inputs.values[parameters:], inputs.seeds, run
    )
    return kpi_matrix(outcome, spec, thresholds)


def chunk_table(plan: SweepPlan, start: int, inputs: ChunkInputs, kpis: FloatArray) -> pa.Table:
    """One row per scenario of a chunk: its coordinates, seed, every variable's value, and its
    KPIs."""
    # Rows name twins as their tenant's callers do (a results reader is one of them).
    twin_ids = [external_id(s.twin_id) for s in plan.starts]
    n = inputs.seeds.size
    columns: dict[str, Any] = {
        "scenario": pa.array(np.arange(start, start + n, dtype=np.int64)),
        "twin_id": pa.DictionaryArray.from_arrays(
            pa.array(inputs.twin.astype(np.int32)), pa.array(twin_ids, pa.string())
        ),
        "point": pa.array(inputs.point),
        "replicate": pa.array(inputs.replicate.astype(np.int32)),
        "seed": pa.array(inputs.seeds),
    }
    for row, name in enumerate(plan.target.names):
        columns[name] = pa.array(inputs.values[row])
    for row, name in enumerate(plan.kpi_names):
        columns[name] = pa.array(kpis[row])
    return pa.table(columns)
