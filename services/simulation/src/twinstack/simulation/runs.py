"""What scenario runs and forecasts share: the starts of forked twins and the bounds on the
trajectories they record."""

from __future__ import annotations

import math

from twinstack.common.errors import FieldViolation, InvalidArgumentError, LimitExceededError
from twinstack.simulation.snapshot import Snapshot
from twinstack.simulation.sweep import Start, Target

DEFAULT_POINTS = 200
MAX_POINTS = 10_000


def starts(snapshot: Snapshot, target: Target) -> list[Start]:
    """One start per forked twin: its initial states, its values of the target's variables
    and the revisions they were read at."""
    return [
        Start(
            twin.twin_id,
            tuple(twin.initial[name] for name in snapshot.kernel.states),
            tuple(twin.values[name] for name in target.names),
            twin.twin_revision,
            twin.state_revision,
        )
        for twin in snapshot.twins
    ]


def record_every(steps: int, max_points: int, field: str) -> int:
    """Steps between recorded trajectory points so that at most ``max_points`` are kept."""
    if max_points > MAX_POINTS:
        raise InvalidArgumentError(
            "too many points", [FieldViolation(field, f"at most {MAX_POINTS}")]
        )
    return max(1, math.ceil(steps / max(1, (max_points or DEFAULT_POINTS) - 1)))


def check_trajectory_budget(
    runs: int, steps: int, every: int, observables: int, maximum: int
) -> None:
    """Refuses, before anything is allocated, a request whose recorded trajectories (runs x
    recorded points x observables) would hold more than ``maximum`` values."""
    values = runs * (steps // every + 2) * max(1, observables)
    if values > maximum:
        raise LimitExceededError(
            f"the trajectories would hold {values} values, more than {maximum} per request",
            limit="TWINSTACK_MAX_TRAJECTORY_VALUES",
            maximum=maximum,
            requested=values,
            violations=[FieldViolation("max_points", "fewer points, samples or twins")],
        )
