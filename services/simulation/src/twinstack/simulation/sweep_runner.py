"""A sweep from request to results: planned over a built-in model or forked twins, run as Ray
tasks, summarised, and written to Parquet with its provenance."""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numba
import numpy as np
import ray

from twinstack.common.errors import FieldViolation, InvalidArgumentError, NotFoundError
from twinstack.simulation.compiler import COMPILER_VERSION
from twinstack.simulation.kernels import BUILTIN_MODELS
from twinstack.simulation.runs import starts
from twinstack.simulation.snapshot import Snapshot, SnapshotTaker
from twinstack.simulation.sweep import (
    KpiStats,
    Limits,
    Progress,
    Start,
    SweepPlan,
    SweepSpec,
    Target,
    execute,
    plan_sweep,
    results_table,
    summarize,
    write_results,
)

logger = logging.getLogger(__name__)

SWEEP_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class SweepRequest:
    """A sweep as asked for: of a built-in ``model``, or of the twins selected by ids and a
    registry query; ``submitted`` is the request as sent, kept in the provenance."""

    spec: SweepSpec
    model: str
    twin_ids: Sequence[str]
    query: str
    submitted: Mapping[str, Any]


@dataclass(frozen=True)
class PlannedSweep:
    sweep_id: str
    plan: SweepPlan
    provenance: dict[str, Any]
    started: float  # perf_counter() when planning began


@dataclass(frozen=True)
class SweepOutcome:
    sweep_id: str
    scenario_count: int
    task_count: int
    summaries: list[KpiStats]
    results_bytes: int
    provenance_json: str
    diverged: int
    elapsed_s: float

    @property
    def results_path(self) -> str:
        """Where the results live, relative to the results store."""
        return f"sweeps/{self.sweep_id}/results.parquet"


def code_version() -> dict[str, str]:
    """The versions that produced a result, for its provenance."""
    return {
        "twinstack_simulation": metadata.version("twinstack-simulation"),
        "compiler": COMPILER_VERSION,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "ray": ray.__version__,
        "python": platform.python_version(),
    }


def snapshot_provenance(snapshot: Snapshot) -> dict[str, Any]:
    """What a sweep of forked twins started from: the model, kernel and pinned revisions."""
    return {
        "model": {"model_id": snapshot.model.id, "kernel": snapshot.kernel.key},
        "snapshot": {
            "taken_at": snapshot.taken_at.isoformat(),
            "twins": [
                {
                    "twin_id": twin.twin_id,
                    "model_id": twin.model_id,
                    "twin_revision": twin.twin_revision,
                    "state_revision": twin.state_revision,
                }
                for twin in snapshot.twins
            ],
        },
        # Inputs that follow a telemetry field: what "apply best scenario" sets as desired.
        "desired_fields": {
            item.name: item.telemetry for item in snapshot.model.dynamics.inputs if item.telemetry
        },
    }


class SweepRunner:
    """Plans and runs sweeps on the connected Ray cluster.

    Args:
        snapshots: Forks the selected twins.
        limits: Bounds on a sweep (docs/limits.md).
        results_dir: Where result files are written.
        tasks_in_flight: Ray tasks submitted at once.
    """

    def __init__(
        self, snapshots: SnapshotTaker, limits: Limits, results_dir: Path, tasks_in_flight: int
    ) -> None:
        self._snapshots = snapshots
        self._limits = limits
        self._results_dir = results_dir
        self._tasks_in_flight = tasks_in_flight

    async def plan(self, request: SweepRequest) -> PlannedSweep:
        """Checks the request and plans its scenarios.

        Raises:
            InvalidArgumentError: Neither or both of a built-in model and twins, an unknown
                model, or a spec that does not fit the model.
            LimitExceededError: The sweep goes over a limit.
        """
        started = time.perf_counter()
        selected = bool(request.twin_ids or request.query)
        if request.model:
            builtin = BUILTIN_MODELS.get(request.model)
            violations = []
            if builtin is None:
                known = ", ".join(sorted(BUILTIN_MODELS))
                violations.append(FieldViolation("model", f"unknown; built-in models: {known}"))
            if selected:
                violations.append(
                    FieldViolation("twins", "give a built-in model or twins, not both")
                )
            if builtin is None or violations:
                raise InvalidArgumentError("invalid sweep", violations)
            target = Target.of_builtin(builtin)
            start = Start("", (), tuple(v.default for v in target.variables))
            plan = plan_sweep(request.spec, target, [start], self._limits)
            provenance: dict[str, Any] = {"model": {"builtin": builtin.name}}
        elif selected:
            ids = await self._snapshots.twin_ids(request.twin_ids, request.query, "twins")
            snapshot = await self._snapshots.take(ids)
            target = Target.of_kernel(snapshot.kernel)
            plan = plan_sweep(request.spec, target, starts(snapshot, target), self._limits)
            provenance = snapshot_provenance(snapshot)
        else:
            raise InvalidArgumentError(
                "nothing to sweep",
                [FieldViolation("model", "give a built-in model, or twins to fork")],
            )
        provenance["spec"] = dict(request.submitted)
        provenance["seeds"] = {
            "seed": request.spec.seed,
            "scenario_seed": "splitmix64 of (seed, scenario index); see the seed column",
        }
        return PlannedSweep(uuid.uuid4().hex, plan, provenance, started)

    async def run(self, planned: PlannedSweep) -> AsyncIterator[Progress | SweepOutcome]:
        """Runs a planned sweep: Progress after each finished Ray task, then the outcome once
        the results are written. Leaving the iteration early cancels the Ray tasks."""
        plan = planned.plan
        kpis = None
        async for item in execute(plan, tasks_in_flight=self._tasks_in_flight):
            if isinstance(item, Progress):
                yield item
            else:
                kpis = item
        assert kpis is not None  # execute() ends with the KPI matrix
        tasks = len(plan.chunks)
        names = plan.target.kpi_names(plan.spec.thresholds)
        provenance_json = json.dumps(
            {
                "sweep_id": planned.sweep_id,
                "created_at": datetime.now(UTC).isoformat(),
                **planned.provenance,
                "scenarios": plan.scenario_count,
                "tasks": tasks,
                "code_version": code_version(),
            },
            sort_keys=True,
        )
        # Percentiles over millions of scenarios and the table take seconds: off the event loop.
        summaries = await asyncio.to_thread(summarize, names, kpis)
        table = await asyncio.to_thread(results_table, plan, kpis)
        size = await asyncio.to_thread(
            write_results, table, self._results_file(planned.sweep_id), provenance_json
        )
        finals = [row for row, name in enumerate(names) if name.endswith(".final")]
        diverged = int((~np.isfinite(kpis[finals])).any(axis=0).sum()) if finals else 0
        logger.info(
            "sweep finished",
            extra={"sweep_id": planned.sweep_id, "scenarios": plan.scenario_count, "tasks": tasks},
        )
        yield SweepOutcome(
            sweep_id=planned.sweep_id,
            scenario_count=plan.scenario_count,
            task_count=tasks,
            summaries=summaries,
            results_bytes=size,
            provenance_json=provenance_json,
            diverged=diverged,
            elapsed_s=time.perf_counter() - planned.started,
        )

    def _results_file(self, sweep_id: str) -> Path:
        return self._results_dir / f"{sweep_id}.parquet"

    def results(self, sweep_id: str) -> Path:
        """The results file of a finished sweep.

        Raises:
            InvalidArgumentError: Not a sweep id.
            NotFoundError: No results of that sweep here.
        """
        if not SWEEP_ID.match(sweep_id):
            raise InvalidArgumentError(
                "invalid sweep id", [FieldViolation("sweep_id", "32 lowercase hex digits")]
            )
        path = self._results_file(sweep_id)
        if not path.exists():
            raise NotFoundError("sweep", sweep_id, f"no results for {sweep_id}")
        return path
