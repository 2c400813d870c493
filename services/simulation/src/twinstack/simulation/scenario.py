"""Scenario runs: the selected twins forked from a consistent snapshot and run once each, with
their trajectories recorded."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

import numpy as np

from twinstack.simulation.compiler import CompiledModel
from twinstack.simulation.runs import check_trajectory_budget, record_every, starts
from twinstack.simulation.snapshot import Snapshot, TwinStart
from twinstack.simulation.sweep import (
    Limits,
    SweepSpec,
    Target,
    chunk_inputs,
    kpi_matrix,
    plan_sweep,
)


@dataclass(frozen=True)
class TwinRun:
    """One twin's run: where it started, the values it ran with, what it did."""

    start: TwinStart
    values: dict[str, float]
    times_s: list[float]
    series: dict[str, list[float]]
    kpis: dict[str, float]


@dataclass(frozen=True)
class ScenarioRun:
    model_id: str
    kernel_key: str
    twins: list[TwinRun]


async def run_scenario(
    snapshot: Snapshot,
    spec: SweepSpec,
    *,
    max_points: int,
    limits: Limits,
    max_trajectory_values: int,
) -> ScenarioRun:
    """Runs the snapshot's twins once each under ``spec`` (its overrides, noise, thresholds).

    Raises:
        InvalidArgumentError: The spec does not fit the model.
        LimitExceededError: The trajectories would hold more than ``max_trajectory_values``.
    """
    target = Target.of_kernel(snapshot.kernel)
    plan = plan_sweep(spec, target, starts(snapshot, target), limits)
    run = dataclasses.replace(
        plan.run, record_every=record_every(spec.steps, max_points, "max_points")
    )
    check_trajectory_budget(
        plan.scenario_count, spec.steps, run.record_every, len(target.observables),
        max_trajectory_values,
    )  # fmt: skip
    model = CompiledModel(snapshot.kernel)
    inputs = chunk_inputs(plan, 0, plan.scenario_count)
    parameters = len(snapshot.kernel.parameters)
    # The kernel holds the GIL only between steps; off the loop, other calls keep flowing.
    outcome = await asyncio.to_thread(
        model.run,
        inputs.initial,
        inputs.values[:parameters],
        inputs.values[parameters:],
        inputs.seeds,
        run,
    )
    names = target.kpi_names(spec.thresholds)
    kpis = kpi_matrix(outcome, snapshot.kernel, spec.thresholds)
    times = (np.arange(outcome.trajectory.shape[0]) * run.record_every * run.dt_s).tolist()
    return ScenarioRun(
        model_id=snapshot.model_id,
        kernel_key=snapshot.kernel.key,
        twins=[
            TwinRun(
                start=twin,
                values=dict(zip(target.names, inputs.values[:, index].tolist(), strict=True)),
                times_s=times,
                series={
                    name: outcome.trajectory[:, o, index].tolist()
                    for o, name in enumerate(snapshot.kernel.observables)
                },
                kpis={name: float(kpis[row, index]) for row, name in enumerate(names)},
            )
            for index, twin in enumerate(snapshot.twins)
        ],
    )
