"""A sweep from request to job: checked, planned over a built-in model or forked twins (the
snapshot pinned), with its provenance, before anything is queued."""

from __future__ import annotations

import logging
import platform
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import numba
import numpy as np
import ray

from twinstack.common.errors import FieldViolation, InvalidArgumentError
from twinstack.simulation.compiler import COMPILER_VERSION
from twinstack.simulation.job import SweepJob
from twinstack.simulation.kernels import BUILTIN_MODELS
from twinstack.simulation.runs import starts
from twinstack.simulation.snapshot import Snapshot, SnapshotTaker
from twinstack.simulation.sweep import Limits, Start, SweepPlan, SweepSpec, Target, plan_sweep

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
    job: SweepJob
    plan: SweepPlan

    @property
    def sweep_id(self) -> str:
        return self.job.sweep_id


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
        "model": {"model_id": snapshot.model_id, "kernel": snapshot.kernel.key},
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


def is_sweep_id(value: str) -> bool:
    return bool(SWEEP_ID.match(value))


class SweepPlanner:
    """Checks sweep requests and plans them into jobs.

    Args:
        snapshots: Forks the selected twins.
        limits: Bounds on a sweep (docs/limits.md).
    """

    def __init__(self, snapshots: SnapshotTaker, limits: Limits) -> None:
        self._snapshots = snapshots
        self._limits = limits

    async def plan(self, request: SweepRequest) -> PlannedSweep:
        """Checks the request and plans its scenarios.

        Raises:
            InvalidArgumentError: Neither or both of a built-in model and twins, an unknown
                model, or a spec that does not fit the model.
            LimitExceededError: The sweep goes over a limit.
        """
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
        sweep_id = uuid.uuid4().hex
        provenance.update(
            {
                "sweep_id": sweep_id,
                "created_at": datetime.now(UTC).isoformat(),
                "spec": dict(request.submitted),
                "seeds": {
                    "seed": request.spec.seed,
                    "scenario_seed": "splitmix64 of (seed, scenario index); see the seed column",
                },
                "scenarios": plan.scenario_count,
                "code_version": code_version(),
            }
        )
        job = SweepJob(
            sweep_id, target, request.spec, plan.starts, plan.scenarios_per_task, provenance
        )
        return PlannedSweep(job, plan)
