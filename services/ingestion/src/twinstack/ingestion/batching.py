"""Validation of ingest requests against the twins' models, and their cutting into stream
messages.

A request is accepted or rejected whole: every bad point is named in the rejection (up to a
limit), none is dropped silently. Points are grouped into frames first, so that points and
frames are checked by one column-wise validation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from twinstack.api.common.v1 import events_pb2, types_pb2
from twinstack.common.catalog import ModelCatalog
from twinstack.common.errors import FieldViolation, InvalidArgumentError, require_at_most
from twinstack.common.frames import (
    FrameIssue,
    frame_issues,
    frame_rows,
    frames_from_points,
    split_frame,
)
from twinstack.common.gatekeeper import current_ids, current_scope
from twinstack.common.ids import TWIN_ID_PATTERN
from twinstack.common.tenancy import SEPARATOR
from twinstack.modeling.document import ModelError, Telemetry

# A rejection names at most this many problems; more would only bloat the status.
MAX_REPORTED_VIOLATIONS = 100


@dataclass(frozen=True)
class _Located:
    """A frame of the request and how to name its parts in a violation."""

    frame: types_pb2.TelemetryFrame
    path: str  # "frames[2]", or "" for a frame built from points
    point_indexes: Sequence[int] = ()

    def where(self, issue: FrameIssue) -> list[str]:
        column = None if issue.column is None else self.frame.columns[issue.column]
        if not self.path:  # built from points: name the points
            rows = [issue.row] if issue.row is not None else range(len(self.point_indexes))
            tail = ".time" if column is None else f".fields[{column.field!r}]"
            if column is None and issue.row is None:
                tail = ""
            return [f"points[{self.point_indexes[row]}]{tail}" for row in list(rows)[:10]]
        if column is None:
            return [self.path if issue.row is None else f"{self.path}.time_unix_ns[{issue.row}]"]
        column_path = f"{self.path}.columns[{issue.column}]"
        return [column_path if issue.row is None else f"{column_path}.values[{issue.row}]"]

    def twin_id_path(self) -> str:
        if self.path:
            return f"{self.path}.twin_id"
        return f"points[{self.point_indexes[0]}].twin_id"


class BatchValidator:
    """Turns an ingest request into stream messages, or rejects it with every reason.

    Args:
        catalog: Twins and models of the registry.
        max_points: Most points (frame rows included) in one request.
        max_message_bytes: Frames bigger than this are cut into several messages.
        max_twins: Most distinct twins in one request.
        max_payload_bytes: NATS's max payload: a message larger than this cannot be published,
            so a frame with a row that alone is larger is refused before anything is published.
    """

    def __init__(
        self,
        catalog: ModelCatalog,
        *,
        max_points: int,
        max_message_bytes: int,
        max_twins: int = 10_000,
        max_payload_bytes: int = 1024 * 1024,
    ) -> None:
        self._catalog = catalog
        self._max_points = max_points
        self._max_message_bytes = max_message_bytes
        self._max_twins = max_twins
        self._max_payload_bytes = max_payload_bytes

    async def validate(
        self,
        points: Sequence[types_pb2.TelemetryPoint],
        frames: Sequence[types_pb2.TelemetryFrame],
        *,
        latest_allowed_ns: int,
    ) -> list[events_pb2.TelemetryBatch]:
        """The messages to publish, one per frame (or piece of one).

        Raises:
            InvalidArgumentError: naming every problem found, when there is any.
        """
        total = len(points) + sum(frame_rows(frame) for frame in frames)
        if total == 0:
            raise InvalidArgumentError(
                "no points", [FieldViolation("points", "a request needs points or frames")]
            )
        require_at_most(
            total,
            self._max_points,
            limit="TWINSTACK_MAX_POINTS_PER_REQUEST",
            what="points",
            field="points",
            hint="send fewer points per request",
        )
        grouped = frames_from_points(points)
        require_at_most(
            len(grouped.twin_ids | {f.twin_id for f in frames}),
            self._max_twins,
            limit="TWINSTACK_MAX_TWINS_PER_REQUEST",
            what="twins",
            field="points",
            hint="send fewer twins per request",
        )
        violations = [
            FieldViolation(
                f"points[{issue.point_index}]"
                + (f".fields[{issue.field!r}]" if issue.field else ".time"),
                issue.description,
            )
            for issue in grouped.issues
        ]
        located = [_Located(pf.frame, "", pf.point_indexes) for pf in grouped.frames]
        located += [_Located(frame, f"frames[{i}]") for i, frame in enumerate(frames)]
        # Telemetry ids are qualified with the caller's tenant here, once per twin, rather than
        # per point by the server bootstrap (twinstack.common.tenancy.SELF_QUALIFIED).
        ids = current_ids()
        for item in located:
            if SEPARATOR not in item.frame.twin_id:
                item.frame.twin_id = ids.inner(item.frame.twin_id)
        telemetry, models = await self._telemetry_of(
            {item.frame.twin_id for item in located if ids.owns(item.frame.twin_id)}
        )
        scope = current_scope()
        for item in located:
            twin_id = item.frame.twin_id
            if not ids.owns(twin_id):
                violations.append(FieldViolation(item.twin_id_path(), "ids cannot contain '/'"))
                continue
            if not TWIN_ID_PATTERN.fullmatch(twin_id):
                violations.append(
                    FieldViolation(
                        item.twin_id_path(),
                        "twin ids are 1-128 characters of [A-Za-z0-9_-] starting with a letter "
                        "or digit",
                    )
                )
                continue
            declared = telemetry.get(twin_id)
            # A twin outside the caller's scope is as unknown as one that does not exist.
            if declared is None or not scope.admits_twin(self._catalog, twin_id, models[twin_id]):
                violations.append(FieldViolation(item.twin_id_path(), f"unknown twin {twin_id!r}"))
                continue
            for issue in frame_issues(item.frame, declared, latest_allowed_ns=latest_allowed_ns):
                violations += [
                    FieldViolation(path, issue.description) for path in item.where(issue)
                ]
            if len(violations) >= MAX_REPORTED_VIOLATIONS:
                break
        if violations:
            raise InvalidArgumentError(
                f"{len(violations)} problem(s) in the request; nothing was ingested",
                violations[:MAX_REPORTED_VIOLATIONS],
            )
        batches = []
        for item in located:
            for piece in split_frame(item.frame, self._max_message_bytes):
                batch = events_pb2.TelemetryBatch(model_id=models[item.frame.twin_id], frame=piece)
                # Checked before anything is published: the request is accepted whole or not.
                if batch.ByteSize() > self._max_payload_bytes:
                    violations.append(
                        FieldViolation(
                            item.twin_id_path() if not item.path else item.path,
                            f"a row of {item.frame.twin_id} is larger than the largest message "
                            f"NATS takes ({self._max_payload_bytes} bytes)",
                        )
                    )
                    break
                batches.append(batch)
        if violations:
            raise InvalidArgumentError(
                "a row is too large to be stored; nothing was ingested",
                violations[:MAX_REPORTED_VIOLATIONS],
            )
        return batches

    async def _telemetry_of(
        self, twin_ids: set[str]
    ) -> tuple[dict[str, Mapping[str, Telemetry]], dict[str, str]]:
        """Declared telemetry and model of each known twin (unknown ones are left out)."""
        # Only well-formed ids are looked up: a malformed one never reaches a KV key.
        wanted = sorted(i for i in twin_ids if TWIN_ID_PATTERN.fullmatch(i))
        twins = await asyncio.gather(*(self._catalog.get(twin_id) for twin_id in wanted))
        telemetry: dict[str, Mapping[str, Telemetry]] = {}
        models: dict[str, str] = {}
        for twin_id, twin in zip(wanted, twins, strict=True):
            if twin is None:
                continue
            try:
                resolved = await self._catalog.resolve_current(twin.model_id)
            except ModelError:
                # The registry refuses twins of unknown models; this one's model is unreadable.
                continue
            telemetry[twin_id] = resolved.telemetry
            models[twin_id] = twin.model_id
        return telemetry, models
