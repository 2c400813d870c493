"""A submitted sweep's job: everything its driver needs, as JSON in the results store.

The job is written once at submission, with the twins' snapshot pinned in it, so every driver
of the sweep (the first, and any that resumes it after a loss) plans exactly the same scenarios.
JSON, not pickles: a driver never runs code it reads from storage.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from twinstack.simulation.compiler import Integrator, KernelSpec
from twinstack.simulation.sampling import Sampler
from twinstack.simulation.summaries import Objective
from twinstack.simulation.sweep import Start, SweepPlan, SweepSpec, Target, Variable, build_plan


@dataclass(frozen=True)
class SweepJob:
    """A sweep as its driver runs it."""

    sweep_id: str
    target: Target
    spec: SweepSpec
    starts: tuple[Start, ...]
    scenarios_per_task: int
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @property
    def provenance_json(self) -> str:
        """The provenance as stored in the record and in every Parquet part's metadata."""
        return json.dumps(self.provenance, sort_keys=True)

    def plan(self) -> SweepPlan:
        return build_plan(self.spec, self.target, self.starts, self.scenarios_per_task)

    def objective(self, plan: SweepPlan) -> Objective | None:
        if not self.spec.objective:
            return None
        return Objective(
            plan.kpi_names.index(self.spec.objective), self.spec.maximize, self.spec.best_count
        )

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "sweep_id": self.sweep_id,
                "target": _target_json(self.target),
                "spec": _spec_json(self.spec),
                "starts": [
                    [s.twin_id, list(s.initial), list(s.values), s.twin_revision, s.state_revision]
                    for s in self.starts
                ],
                "scenarios_per_task": self.scenarios_per_task,
                "provenance": self.provenance,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SweepJob:
        document = json.loads(data)
        return cls(
            sweep_id=document["sweep_id"],
            target=_target_of(document["target"]),
            spec=_spec_of(document["spec"]),
            starts=tuple(
                Start(twin_id, tuple(initial), tuple(values), twin_revision, state_revision)
                for twin_id, initial, values, twin_revision, state_revision in document["starts"]
            ),
            scenarios_per_task=int(document["scenarios_per_task"]),
            provenance=document["provenance"],
        )


def _target_json(target: Target) -> dict[str, Any]:
    kernel = target.kernel
    return {
        "variables": [[v.name, v.default, v.minimum, v.maximum, v.kind] for v in target.variables],
        "builtin": target.builtin,
        "kernel": None
        if kernel is None
        else {
            "key": kernel.key,
            "source": kernel.source,
            "states": list(kernel.states),
            "parameters": list(kernel.parameters),
            "parameter_defaults": list(kernel.parameter_defaults),
            "inputs": list(kernel.inputs),
            "input_defaults": list(kernel.input_defaults),
            "outputs": list(kernel.outputs),
            "conditions": list(kernel.conditions),
            "bounds": {name: list(bounds) for name, bounds in kernel.bounds.items()},
        },
    }


def _target_of(document: Mapping[str, Any]) -> Target:
    kernel = document["kernel"]
    return Target(
        variables=tuple(Variable(*variable) for variable in document["variables"]),
        builtin=document["builtin"],
        kernel=None
        if kernel is None
        else KernelSpec(
            key=kernel["key"],
            source=kernel["source"],
            states=tuple(kernel["states"]),
            parameters=tuple(kernel["parameters"]),
            parameter_defaults=tuple(kernel["parameter_defaults"]),
            inputs=tuple(kernel["inputs"]),
            input_defaults=tuple(kernel["input_defaults"]),
            outputs=tuple(kernel["outputs"]),
            conditions=tuple(kernel["conditions"]),
            bounds={name: (low, high) for name, (low, high) in kernel["bounds"].items()},
        ),
    )


def _spec_json(spec: SweepSpec) -> dict[str, Any]:
    return {
        "horizon_s": spec.horizon_s,
        "step_s": spec.step_s,
        "sampler": spec.sampler.value,
        "ranges": {name: list(r) for name, r in spec.ranges.items()},
        "samples": spec.samples,
        "replicates": spec.replicates,
        "overrides": dict(spec.overrides),
        "input_noise": dict(spec.input_noise),
        "schedule": [[at_s, dict(values)] for at_s, values in spec.schedule],
        "integrator": spec.integrator.value,
        "seed": spec.seed,
        "thresholds": dict(spec.thresholds),
        "keep_rows": spec.keep_rows,
        "objective": spec.objective,
        "maximize": spec.maximize,
        "best_count": spec.best_count,
    }


def _spec_of(document: Mapping[str, Any]) -> SweepSpec:
    return SweepSpec(
        horizon_s=document["horizon_s"],
        step_s=document["step_s"],
        sampler=Sampler(document["sampler"]),
        # Tuples in the order they were given: the swept variables' column order.
        ranges={
            name: (low, high, levels) for name, (low, high, levels) in document["ranges"].items()
        },
        samples=document["samples"],
        replicates=document["replicates"],
        overrides=document["overrides"],
        input_noise=document["input_noise"],
        schedule=[(at_s, values) for at_s, values in document["schedule"]],
        integrator=Integrator(document["integrator"]),
        seed=document["seed"],
        thresholds=document["thresholds"],
        keep_rows=document["keep_rows"],
        objective=document["objective"],
        maximize=document["maximize"],
        best_count=document["best_count"],
    )
