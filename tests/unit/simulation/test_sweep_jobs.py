"""Pure parts of sweeps as jobs: mergeable summaries, the job document, sweep records."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from twinstack.api.registry.v1 import registry_pb2
from twinstack.api.simulation.v1 import simulation_pb2, sweep_pb2
from twinstack.common.access import Subgraph
from twinstack.common.catalog import ModelCatalog
from twinstack.common.gatekeeper import EVERY_TWIN, TwinScope
from twinstack.modeling.document import parse_model
from twinstack.simulation.compiler import kernel_spec
from twinstack.simulation.job import SweepJob
from twinstack.simulation.kernels import PUMP_THERMAL
from twinstack.simulation.records import SweepRecord, SweepState
from twinstack.simulation.sampling import Sampler
from twinstack.simulation.summaries import (
    SKETCH_SIZE,
    Objective,
    Partial,
    chunk_partial,
    correlations,
    kpi_stats,
    merge,
)
from twinstack.simulation.sweep import Start, SweepSpec, Target
from twinstack.simulation.sweep_messages import spec_of
from twinstack.simulation.sweep_service import sweep_in_scope


def partials_of(
    kpis: np.ndarray, swept: np.ndarray, size: int, objective: Objective | None
) -> Partial:
    merged = None
    for low in range(0, kpis.shape[1], size):
        part = chunk_partial(
            kpis[:, low : low + size], swept[:, low : low + size], low, objective, [0]
        )
        # Through bytes, as a ledger entry travels.
        part = Partial.from_bytes(part.to_bytes())
        merged = part if merged is None else merge(merged, part, objective)
    assert merged is not None
    return merged


def test_merged_summaries_match_the_whole_within_the_sketch_error() -> None:
    rng = np.random.default_rng(3)
    n = 200_000
    x = rng.uniform(0, 1, n)
    kpi = 3 * x + rng.normal(0, 0.5, n)
    kpi[rng.choice(n, 1000, replace=False)] = np.nan
    kpis = np.vstack([kpi, rng.lognormal(0, 1, n)])
    merged = partials_of(kpis, x[None, :], 7_000, Objective(0, True, 5))
    first, second = kpi_stats(["a", "b"], merged)
    finite = kpi[np.isfinite(kpi)]
    assert first.missing == 1000
    assert first.mean == pytest.approx(finite.mean(), rel=1e-9)
    assert (first.min, first.max) == (finite.min(), finite.max())
    for quantile, value in zip((5, 50, 95), (first.p05, first.p50, first.p95), strict=True):
        rank = (finite < value).mean()
        assert abs(rank - quantile / 100) <= 2 / SKETCH_SIZE
    assert sum(first.counts) == finite.size
    assert sum(second.counts) == n
    (correlation, other) = correlations(["x"], ["a", "b"], merged)
    assert correlation.correlation == pytest.approx(
        np.corrcoef(x[np.isfinite(kpi)], finite)[0, 1], abs=1e-9
    )
    assert abs(other.correlation) < 0.02
    best = np.argsort(-np.where(np.isfinite(kpi), kpi, -np.inf), kind="stable")[:5]
    assert merged.best_scenario.tolist() == best.tolist()


def test_merging_in_chunk_order_does_not_depend_on_the_chunking_of_extremes() -> None:
    kpis = np.arange(100, dtype=float)[None, :]
    merged = partials_of(kpis, np.empty((0, 100)), 10, None)
    (stats,) = kpi_stats(["k"], merged)
    assert (stats.min, stats.max, stats.mean) == (0.0, 99.0, 49.5)
    assert merged.diverged == 0
    nan = chunk_partial(np.array([[np.nan, 1.0]]), np.empty((0, 2)), 0, None, [0])
    assert nan.diverged == 1
    (empty,) = kpi_stats(
        ["k"], chunk_partial(np.full((1, 3), np.nan), np.empty((0, 3)), 0, None, [])
    )
    assert empty.missing == 3
    assert math.isnan(empty.p50)


def test_a_job_survives_its_json_and_plans_the_same_scenarios() -> None:
    model = parse_model(
        {
            "id": "dtmi:test:Tank;1",
            "dynamics": {
                "states": {"level": {"initial": 1.0}},
                "parameters": {"k": {"default": 0.5, "min": 0.1, "max": 2.0}},
                "inputs": {"inflow": {"default": 1.0}},
                "equations": {"level": "inflow - k * level"},
            },
        }
    )
    spec = kernel_spec(model.dynamics)
    target = Target.of_kernel(spec)
    sweep = SweepSpec(
        horizon_s=10.0,
        step_s=0.5,
        sampler=Sampler.LATIN_HYPERCUBE,
        ranges={"k": (0.2, 1.5, 0)},
        samples=100,
        replicates=2,
        input_noise={"inflow": 0.1},
        schedule=[(5.0, {"inflow": 2.0})],
        thresholds={"level": 1.5},
        keep_rows=False,
        objective="level.max",
        maximize=True,
        best_count=3,
    )
    job = SweepJob(
        "a" * 32, target, sweep, (Start("tank", (1.0,), (0.5, 1.0), 4, 9),), 64, {"x": 1}
    )
    again = SweepJob.from_json(job.to_json())
    assert again == job
    first, second = job.plan(), again.plan()
    assert first.scenario_count == second.scenario_count == 200
    assert np.array_equal(first.points(np.arange(100)), second.points(np.arange(100)))
    builtin = Target.of_builtin(PUMP_THERMAL)
    assert (
        SweepJob.from_json(
            SweepJob("b" * 32, builtin, SweepSpec(horizon_s=1.0, step_s=1.0), (), 10).to_json()
        ).target
        == builtin
    )


def test_a_record_survives_its_bytes() -> None:
    record = SweepRecord(
        sweep_id="c" * 32,
        state=SweepState.RUNNING,
        submitter="data",
        request_id="r",
        spec={"model": "pump_thermal"},
        created_at=1.5,
        scenarios_total=10,
        chunks_total=1,
        provenance_json="{}",
        results_uri="nats://sweep_results/sweeps/c/",
        keep_rows=True,
        summary={"kpis": [{"name": "k", "mean": math.nan}]},
    )
    again = SweepRecord.from_bytes(record.to_bytes())
    assert again.state is SweepState.RUNNING
    assert math.isnan(again.summary["kpis"][0]["mean"])  # type: ignore[index]
    assert SweepState.CANCELLED.terminal
    assert not SweepState.QUEUED.terminal


def test_a_spec_message_sweeps_its_variables_in_name_order() -> None:
    message = sweep_pb2.SweepSpec(
        ranges={
            "z": simulation_pb2.ParameterRange(min=0, max=1),
            "a": simulation_pb2.ParameterRange(min=0, max=1),
        },
        rows=sweep_pb2.RESULT_ROWS_SUMMARIES_ONLY,
        objective=sweep_pb2.Objective(kpi="a.max", maximize=True),
    )
    spec = spec_of(message)
    assert list(spec.ranges) == ["a", "z"]
    assert not spec.keep_rows
    assert (spec.objective, spec.maximize, spec.best_count) == ("a.max", True, 10)


def test_a_scoped_caller_sees_a_sweep_only_if_it_sees_every_forked_twin() -> None:
    catalog = ModelCatalog(None, follow_graph=True)  # type: ignore[arg-type]  # never started
    assert catalog.graph is not None
    catalog.graph.remember(
        "line-1",
        registry_pb2.RelationshipSet(
            relationships=[
                registry_pb2.Relationship(
                    id="c1", source_id="line-1", name="contains", target_id="pump-1"
                )
            ]
        ),
        1,
    )
    scope = TwinScope(frozenset(), frozenset({Subgraph("line-1", frozenset({"contains"}), 1)}))

    def forked(*twin_ids: str) -> SweepRecord:
        twins = [{"twin_id": t, "model_id": "dtmi:x:Pump;1"} for t in twin_ids]
        return SweepRecord(
            sweep_id="d" * 32, state=SweepState.QUEUED, submitter="a", request_id="",
            spec={}, created_at=1.0, scenarios_total=1, chunks_total=1,
            provenance_json=json.dumps({"snapshot": {"twins": twins}}), results_uri="",
            keep_rows=False,
        )  # fmt: skip

    assert sweep_in_scope(forked("pump-1"), scope, catalog)
    assert not sweep_in_scope(forked("pump-1", "pump-2"), scope, catalog)
    assert sweep_in_scope(forked(), scope, catalog), "a built-in model's sweep forks no twin"
    assert sweep_in_scope(forked("pump-2"), EVERY_TWIN, catalog)
    older = json.loads(forked("pump-1").to_bytes())
    del older["tenant"], older["scenario_steps"]
    before_tenants = SweepRecord.from_bytes(json.dumps(older).encode())
    assert (before_tenants.tenant, before_tenants.scenario_steps) == ("default", 0)
