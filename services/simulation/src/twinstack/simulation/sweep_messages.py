"""Sweeps between their API messages and the domain: specs in, records and summaries out."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from google.protobuf import json_format

from twinstack.api.simulation.v1 import simulation_pb2, sweep_pb2
from twinstack.common.errors import FieldViolation, InvalidArgumentError
from twinstack.simulation.compiler import Integrator
from twinstack.simulation.records import Stored, SweepState
from twinstack.simulation.sampling import Sampler
from twinstack.simulation.summaries import Objective, Partial, correlations, kpi_stats
from twinstack.simulation.sweep import SweepPlan, SweepSpec, chunk_inputs

INTEGRATORS = {
    simulation_pb2.INTEGRATOR_UNSPECIFIED: Integrator.RK4,
    simulation_pb2.INTEGRATOR_RK4: Integrator.RK4,
    simulation_pb2.INTEGRATOR_EULER: Integrator.EULER,
}
SAMPLERS = {
    simulation_pb2.SAMPLER_UNSPECIFIED: Sampler.RANDOM,
    simulation_pb2.SAMPLER_GRID: Sampler.GRID,
    simulation_pb2.SAMPLER_RANDOM: Sampler.RANDOM,
    simulation_pb2.SAMPLER_LATIN_HYPERCUBE: Sampler.LATIN_HYPERCUBE,
    simulation_pb2.SAMPLER_SOBOL: Sampler.SOBOL,
}
STATES = {
    SweepState.QUEUED: sweep_pb2.SWEEP_STATE_QUEUED,
    SweepState.RUNNING: sweep_pb2.SWEEP_STATE_RUNNING,
    SweepState.SUCCEEDED: sweep_pb2.SWEEP_STATE_SUCCEEDED,
    SweepState.FAILED: sweep_pb2.SWEEP_STATE_FAILED,
    SweepState.CANCELLED: sweep_pb2.SWEEP_STATE_CANCELLED,
}
STATE_OF_MESSAGE = {value: state for state, value in STATES.items()}
DEFAULT_BEST_COUNT = 10


def integrator_of(value: int) -> Integrator:
    integrator: Integrator | None = INTEGRATORS.get(value)  # type: ignore[call-overload]
    if integrator is None:
        raise InvalidArgumentError(
            "unknown integrator", [FieldViolation("integrator", "RK4 or EULER")]
        )
    return integrator


def sampler_of(value: int) -> Sampler:
    sampler: Sampler | None = SAMPLERS.get(value)  # type: ignore[call-overload]
    if sampler is None:
        raise InvalidArgumentError(
            "unknown sampler", [FieldViolation("sampler", "GRID, RANDOM, LHS or SOBOL")]
        )
    return sampler


def spec_of(message: sweep_pb2.SweepSpec) -> SweepSpec:
    """The domain spec of a SweepSpec message (ranges in name order, so that the same spec
    always sweeps its variables in the same column order)."""
    if message.rows not in (
        sweep_pb2.RESULT_ROWS_UNSPECIFIED,
        sweep_pb2.RESULT_ROWS_ALL,
        sweep_pb2.RESULT_ROWS_SUMMARIES_ONLY,
    ):
        raise InvalidArgumentError(
            "unknown rows", [FieldViolation("rows", "ALL or SUMMARIES_ONLY")]
        )
    return SweepSpec(
        horizon_s=message.horizon_s,
        step_s=message.step_s,
        sampler=sampler_of(message.sampler),
        ranges={
            name: (message.ranges[name].min, message.ranges[name].max, message.ranges[name].levels)
            for name in sorted(message.ranges)
        },
        samples=message.samples,
        replicates=message.replicates or 1,
        overrides=dict(message.overrides),
        input_noise=dict(message.input_noise),
        schedule=[(step.at_s, dict(step.values)) for step in message.input_schedule],
        integrator=integrator_of(message.integrator),
        seed=message.seed,
        thresholds=dict(message.thresholds),
        keep_rows=message.rows != sweep_pb2.RESULT_ROWS_SUMMARIES_ONLY,
        objective=message.objective.kpi,
        maximize=message.objective.maximize,
        best_count=message.best_count or DEFAULT_BEST_COUNT,
    )


def summary_document(
    plan: SweepPlan, merged: Partial, objective: Objective | None
) -> dict[str, Any]:
    """The summary kept in the sweep's record (JSON): KPI distributions, best scenarios,
    sensitivities and the divergence count."""
    names = plan.target.names
    twin_ids = [start.twin_id for start in plan.starts]
    best = []
    for scenario, value in zip(
        merged.best_scenario.tolist(), merged.best_objective.tolist(), strict=True
    ):
        inputs = chunk_inputs(plan, scenario, scenario + 1)
        best.append(
            {
                "scenario": scenario,
                "twin_id": twin_ids[int(inputs.twin[0])],
                "point": int(inputs.point[0]),
                "replicate": int(inputs.replicate[0]),
                "seed": int(inputs.seeds[0]),
                "values": {name: float(inputs.values[row, 0]) for row, name in enumerate(names)},
                "objective": value,
            }
        )
    return {
        "kpis": [asdict(stats) for stats in kpi_stats(plan.kpi_names, merged)],
        "best": best,
        "sensitivity": [asdict(c) for c in correlations(plan.swept_names, plan.kpi_names, merged)],
        "diverged": merged.diverged,
    }


def _timestamp(message: Any, seconds: float) -> None:
    if seconds:
        message.FromNanoseconds(int(seconds * 1e9))


def _summary_message(document: dict[str, Any]) -> sweep_pb2.SweepSummary:
    def number(value: float | None) -> float:
        return math.nan if value is None else value

    return sweep_pb2.SweepSummary(
        kpis=[
            sweep_pb2.KpiSummary(
                name=k["name"],
                mean=number(k["mean"]),
                min=number(k["min"]),
                max=number(k["max"]),
                p05=number(k["p05"]),
                p50=number(k["p50"]),
                p95=number(k["p95"]),
                missing=k["missing"],
                bin_edges=k["bin_edges"],
                counts=k["counts"],
            )
            for k in document["kpis"]
        ],
        best=[sweep_pb2.BestScenario(**b) for b in document["best"]],
        sensitivity=[
            sweep_pb2.Sensitivity(
                variable=s["variable"], kpi=s["kpi"], correlation=number(s["correlation"])
            )
            for s in document["sensitivity"]
        ],
        diverged=document["diverged"],
    )


def sweep_message(stored: Stored) -> sweep_pb2.Sweep:
    """The Sweep message of a stored record."""
    record = stored.record
    message = sweep_pb2.Sweep(
        sweep_id=record.sweep_id,
        state=STATES[record.state],
        submitter=record.submitter,
        request_id=record.request_id,
        scenarios_total=record.scenarios_total,
        scenarios_done=record.scenarios_done,
        chunks_total=record.chunks_total,
        chunks_done=record.chunks_done,
        attempts=record.attempt,
        failure_reason=record.failure_reason,
        revision=stored.revision,
        provenance_json=record.provenance_json,
        retried_chunks=record.retried_chunks,
    )
    json_format.ParseDict(dict(record.spec), message.spec)
    _timestamp(message.create_time, record.created_at)
    _timestamp(message.start_time, record.started_at)
    _timestamp(message.end_time, record.ended_at)
    rows = sweep_pb2.RESULT_ROWS_ALL if record.keep_rows else sweep_pb2.RESULT_ROWS_SUMMARIES_ONLY
    message.results.CopyFrom(
        sweep_pb2.SweepResults(
            uri=record.results_uri,
            part_count=record.chunks_total if record.keep_rows else 0,
            bytes=record.results_bytes,
            rows=rows,
        )
    )
    if record.summary is not None:
        message.summary.CopyFrom(_summary_message(dict(record.summary)))
    return message
