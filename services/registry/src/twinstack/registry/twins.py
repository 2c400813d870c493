"""Twin documents in the ``registry_twins`` KV bucket.

A twin's revision is the KV revision of its document: it increases with every write and lets
conditional updates be a single compare-and-set on the bucket.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from google.protobuf import timestamp_pb2
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from twinstack.api.common.v1 import events_pb2, types_pb2
from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.directory import TwinDirectory
from twinstack.common.errors import (
    AlreadyExistsError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    RevisionMismatchError,
)
from twinstack.common.ids import (
    field_name_violation,
    model_id_violation,
    require_twin_id,
    twin_id_violation,
)
from twinstack.common.nats import (
    REGISTRY_TWINS_BUCKET,
    event_subject,
    message_headers,
    read_document,
)
from twinstack.common.values import named_value_violations

logger = logging.getLogger(__name__)

TWIN_RESOURCE = "twinstack.io/Twin"


def validate_new_twin(twin: registry_pb2.Twin, max_properties: int) -> None:
    """Raises InvalidArgumentError naming every bad field of a twin to create."""
    violations = [
        v
        for v in (
            twin_id_violation(twin.id, "twin.id"),
            model_id_violation(twin.model_id, "twin.model_id"),
        )
        if v is not None
    ]
    if len(twin.properties) > max_properties:
        violations.append(FieldViolation("twin.properties", f"at most {max_properties} properties"))
    for name, value in twin.properties.items():
        violations.extend(named_value_violations(name, value, f"twin.properties[{name!r}]"))
    if violations:
        raise InvalidArgumentError("invalid twin", violations)


def validate_patch(
    set_properties: Mapping[str, types_pb2.Value], remove_properties: Sequence[str]
) -> None:
    """Raises InvalidArgumentError naming every bad part of a property patch."""
    violations: list[FieldViolation] = []
    if not set_properties and not remove_properties:
        violations.append(FieldViolation("set_properties", "the patch changes nothing"))
    for name, value in set_properties.items():
        violations.extend(named_value_violations(name, value, f"set_properties[{name!r}]"))
    for index, name in enumerate(remove_properties):
        path = f"remove_properties[{index}]"
        bad_name = field_name_violation(name, path)
        if bad_name is not None:
            violations.append(bad_name)
        elif name in set_properties:
            violations.append(FieldViolation(path, f"{name!r} is both set and removed"))
    if violations:
        raise InvalidArgumentError("invalid patch", violations)


def resource_name(twin_id: str) -> str:
    return f"twins/{twin_id}"


class TwinStore:
    """Creates, reads, patches and deletes twins, and publishes an event for every change.

    Every write is a compare-and-set on the document's KV revision: a conditional write fails
    if the twin moved on, and an unconditional one re-reads and re-applies its patch, so no
    concurrent write is ever lost.
    """

    def __init__(
        self,
        bucket: KeyValue,
        js: JetStreamContext,
        max_properties: int,
        index: TwinDirectory | None = None,
    ) -> None:
        self._bucket = bucket
        self._js = js
        self._max_properties = max_properties
        # The first attempt of a write may start from the index instead of reading the bucket:
        # the compare-and-set catches a stale copy, and the retry reads the bucket.
        self._index = index

    async def create(self, twin: registry_pb2.Twin) -> registry_pb2.Twin:
        validate_new_twin(twin, self._max_properties)
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        stored = registry_pb2.Twin(
            id=twin.id,
            model_id=twin.model_id,
            properties=twin.properties,
            create_time=now,
            update_time=now,
        )
        try:
            # create() succeeds only if the key has never been written (or was deleted), so two
            # concurrent creates of one id cannot both win.
            revision = await self._bucket.create(twin.id, stored.SerializeToString())
        except KeyWrongLastSequenceError as error:
            raise AlreadyExistsError(
                TWIN_RESOURCE, twin.id, f"twin {twin.id!r} already exists"
            ) from error
        stored.revision = revision
        self._remember(stored)
        await self._publish(stored, events_pb2.CHANGE_KIND_CREATED)
        return stored

    async def get(self, twin_id: str) -> registry_pb2.Twin:
        twin, _ = await self._current(require_twin_id(twin_id))
        return twin

    async def update(
        self,
        twin_id: str,
        set_properties: Mapping[str, types_pb2.Value],
        remove_properties: Sequence[str],
        expected_revision: int = 0,
    ) -> registry_pb2.Twin:
        """Applies a property patch; see the class for the concurrency rules."""
        require_twin_id(twin_id)
        validate_patch(set_properties, remove_properties)
        first_attempt = True
        while True:
            twin, revision = await self._current(twin_id, expected_revision, first_attempt)
            first_attempt = False
            self._check_expected(twin_id, expected_revision, revision)
            for name, value in set_properties.items():
                twin.properties[name].CopyFrom(value)
            for name in remove_properties:
                twin.properties.pop(name, None)
            if len(twin.properties) > self._max_properties:
                raise InvalidArgumentError(
                    "too many properties",
                    [FieldViolation("set_properties", f"at most {self._max_properties} in all")],
                )
            twin.update_time.GetCurrentTime()
            twin.ClearField("revision")
            try:
                new_revision = await self._bucket.update(
                    twin_id, twin.SerializeToString(), last=revision
                )
            except KeyWrongLastSequenceError:
                await self._lost_race(twin_id, expected_revision)
                continue
            twin.revision = new_revision
            self._remember(twin)
            await self._publish(twin, events_pb2.CHANGE_KIND_UPDATED)
            return twin

    async def delete(self, twin_id: str, expected_revision: int = 0) -> int:
        """Deletes a twin; returns a revision at or after the deletion."""
        require_twin_id(twin_id)
        while True:
            twin, revision = await self._current(twin_id)
            self._check_expected(twin_id, expected_revision, revision)
            try:
                await self._bucket.delete(twin_id, last=revision)
            except KeyWrongLastSequenceError:
                await self._lost_race(twin_id, expected_revision)
                continue
            # The KV API does not return the delete marker's revision; the subject's last
            # message is that marker, or a later write, which serves read-your-write as well.
            marker = await self._js.get_last_msg(
                f"KV_{REGISTRY_TWINS_BUCKET}", f"$KV.{REGISTRY_TWINS_BUCKET}.{twin_id}"
            )
            twin.revision = marker.seq or revision
            await self._publish(twin, events_pb2.CHANGE_KIND_DELETED)
            return twin.revision

    async def _current(
        self, twin_id: str, expected_revision: int = 0, may_use_index: bool = False
    ) -> tuple[registry_pb2.Twin, int]:
        """The twin and its revision: from the index when allowed and it holds the revision the
        caller expects (or any, for an unconditional write), else from the bucket."""
        if may_use_index and self._index is not None:
            cached = self._index.cached(twin_id)
            if cached is not None and expected_revision in (0, cached.revision):
                return cached, cached.revision
        found = await read_document(self._bucket, twin_id, registry_pb2.Twin)
        if found is None:
            raise NotFoundError(TWIN_RESOURCE, twin_id, f"no twin {twin_id!r}")
        twin, revision = found
        twin.revision = revision
        return twin, revision

    def _remember(self, twin: registry_pb2.Twin) -> None:
        if self._index is not None:
            self._index.remember(twin)

    @staticmethod
    def _check_expected(twin_id: str, expected_revision: int, revision: int) -> None:
        if expected_revision and expected_revision != revision:
            raise RevisionMismatchError(resource_name(twin_id), expected_revision, revision)

    async def _lost_race(self, twin_id: str, expected_revision: int) -> None:
        """Another write landed between our read and our compare-and-set."""
        if expected_revision:
            _, current = await self._current(twin_id)
            raise RevisionMismatchError(resource_name(twin_id), expected_revision, current)

    async def _publish(self, twin: registry_pb2.Twin, kind: events_pb2.ChangeKind) -> None:
        event = events_pb2.TwinChangedEvent(
            twin_id=twin.id,
            model_id=twin.model_id,
            kind=kind,
            revision=twin.revision,
            time=twin.update_time,
        )
        # The message id makes a retried publish of the same change harmless.
        await self._js.publish(
            event_subject("registry", "twin", twin.id),
            event.SerializeToString(),
            headers=message_headers(f"twin:{twin.id}:{twin.revision}"),
        )
