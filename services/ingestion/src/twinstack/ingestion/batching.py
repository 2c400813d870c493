"""Validation of ingest requests and their grouping into stream messages.

Pure functions over protobuf messages, testable without a network. A request is accepted or
rejected whole: every bad point is named in the rejection, none is dropped silently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from twinstack.api.common.v1 import events_pb2, types_pb2
from twinstack.common.errors import FieldViolation, InvalidArgumentError
from twinstack.common.ids import twin_id_violation
from twinstack.common.values import named_value_violations

# A rejection names at most this many points; more would only bloat the status.
MAX_REPORTED_VIOLATIONS = 100


def check_size(points: Sequence[types_pb2.TelemetryPoint], max_points: int) -> None:
    """Raises InvalidArgumentError for an empty or oversized request, before any lookup."""
    if not points:
        raise InvalidArgumentError("no points", [FieldViolation("points", "must not be empty")])
    if len(points) > max_points:
        raise InvalidArgumentError(
            f"{len(points)} points in one request; at most {max_points}",
            [FieldViolation("points", f"at most {max_points} points per request")],
        )


def check_points(
    points: Sequence[types_pb2.TelemetryPoint],
    known_models: Mapping[str, str | None],
    *,
    latest_allowed_ns: int,
) -> None:
    """Raises InvalidArgumentError naming every bad point.

    Args:
        points: The request's points.
        known_models: Twin id to its model id, None for twins the registry does not have.
        latest_allowed_ns: Source timestamps after this are rejected.
    """
    violations: list[FieldViolation] = []
    for index, point in enumerate(points):
        violations.extend(point_violations(index, point, known_models, latest_allowed_ns))
        if len(violations) >= MAX_REPORTED_VIOLATIONS:
            break
    if violations:
        raise InvalidArgumentError(
            f"{len(violations)} invalid point field(s); nothing was ingested",
            violations[:MAX_REPORTED_VIOLATIONS],
        )


def point_violations(
    index: int,
    point: types_pb2.TelemetryPoint,
    known_models: Mapping[str, str | None],
    latest_allowed_ns: int,
) -> list[FieldViolation]:
    """Everything wrong with one point."""
    path = f"points[{index}]"
    bad_id = twin_id_violation(point.twin_id, f"{path}.twin_id")
    if bad_id is not None:
        return [bad_id]
    violations = []
    if known_models.get(point.twin_id) is None:
        violations.append(FieldViolation(f"{path}.twin_id", f"unknown twin {point.twin_id!r}"))
    if not point.HasField("time"):
        violations.append(FieldViolation(f"{path}.time", "the source timestamp is required"))
    elif point.time.ToNanoseconds() > latest_allowed_ns:
        violations.append(FieldViolation(f"{path}.time", "timestamp is too far in the future"))
    if not point.fields:
        violations.append(FieldViolation(f"{path}.fields", "at least one field is required"))
    for name, value in point.fields.items():
        violations.extend(named_value_violations(name, value, f"{path}.fields[{name!r}]"))
    return violations


def group_by_twin(
    points: Sequence[types_pb2.TelemetryPoint], models: Mapping[str, str | None]
) -> list[events_pb2.TelemetryBatch]:
    """One batch per twin, samples in request order."""
    batches: dict[str, events_pb2.TelemetryBatch] = {}
    for point in points:
        batch = batches.get(point.twin_id)
        if batch is None:
            batch = events_pb2.TelemetryBatch(
                twin_id=point.twin_id, model_id=models.get(point.twin_id) or ""
            )
            batches[point.twin_id] = batch
        batch.samples.add(time=point.time, fields=point.fields)
    return list(batches.values())


def dedup_id(batch: events_pb2.TelemetryBatch) -> str:
    """A de-duplication id from the batch's content (before its ingest time is set).

    A client that retries an identical request after a lost answer produces the same ids, so
    JetStream drops the copies inside its duplicate window.
    """
    digest = hashlib.blake2b(batch.SerializeToString(deterministic=True), digest_size=16)
    return f"tel:{digest.hexdigest()}"
