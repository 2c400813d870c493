"""Twin documents in the ``registry_twins`` KV bucket.

A twin's revision is the KV revision of its document: it increases with every write and lets
conditional updates be a single compare-and-set on the bucket.
"""

from __future__ import annotations

import logging

from google.protobuf import timestamp_pb2
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from twinstack.api.common.v1 import events_pb2
from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.errors import (
    AlreadyExistsError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
)
from twinstack.common.ids import model_id_violation, require_twin_id, twin_id_violation
from twinstack.common.nats import event_subject, message_headers, read_document
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


class TwinStore:
    """Creates and reads twins, and publishes a change event for every write."""

    def __init__(self, bucket: KeyValue, js: JetStreamContext, max_properties: int) -> None:
        self._bucket = bucket
        self._js = js
        self._max_properties = max_properties

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
        await self._publish(stored, events_pb2.CHANGE_KIND_CREATED)
        return stored

    async def get(self, twin_id: str) -> registry_pb2.Twin:
        require_twin_id(twin_id)
        found = await read_document(self._bucket, twin_id, registry_pb2.Twin)
        if found is None:
            raise NotFoundError(TWIN_RESOURCE, twin_id, f"no twin {twin_id!r}")
        twin, revision = found
        twin.revision = revision
        return twin

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
