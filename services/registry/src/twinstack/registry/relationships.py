"""Relationships: named, directed edges between twins, validated against the source twin's
model.

The relationships that start at one twin are one document (``relationships.<source id>``), so a
multiplicity limit is enforced by the same compare-and-set that writes the new edge: two
concurrent creates cannot both take the last free slot.
"""

from __future__ import annotations

import hashlib

from google.protobuf import timestamp_pb2
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from twinstack.api.common.v1 import events_pb2
from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    RevisionMismatchError,
)
from twinstack.common.events import RELATIONSHIP_CHANGED, EventPublisher
from twinstack.common.ids import LOCAL_ID_PATTERN, require_twin_id, twin_id_violation
from twinstack.common.nats import (
    RELATIONSHIPS_KEY_PREFIX,
)
from twinstack.common.tenancy import ids_of, tenant_of
from twinstack.modeling.document import ModelError, Property
from twinstack.modeling.values import coerce, value_violations
from twinstack.registry.index import RegistryIndex
from twinstack.registry.twins import TWIN_RESOURCE

RELATIONSHIP_RESOURCE = "twinstack.io/Relationship"


def relationships_key(source_id: str) -> str:
    return f"{RELATIONSHIPS_KEY_PREFIX}{source_id}"


def default_relationship_id(name: str, target_id: str) -> str:
    """A stable id for an edge created without one: name and target, shortened to fit."""
    candidate = f"{name}-{target_id}"
    if len(candidate) <= 128:
        return candidate
    digest = hashlib.blake2b(candidate.encode(), digest_size=8).hexdigest()
    return f"{candidate[:100]}-{digest}"


def _property_violations(
    declared: dict[str, Property], relationship: registry_pb2.Relationship
) -> list[FieldViolation]:
    violations = []
    for name, value in relationship.properties.items():
        path = f"relationship.properties[{name!r}]"
        prop = declared.get(name)
        if prop is None:
            violations.append(FieldViolation(path, f"not declared (known: {sorted(declared)})"))
        else:
            violations.extend(
                value_violations(prop.schema, value, path, prop.minimum, prop.maximum)
            )
    return violations


class RelationshipStore:
    def __init__(self, bucket: KeyValue, js: JetStreamContext, index: RegistryIndex) -> None:
        self._bucket = bucket
        self._js = js
        self._events = EventPublisher(js)
        self._index = index

    async def create(self, relationship: registry_pb2.Relationship) -> registry_pb2.Relationship:
        violations = [
            v
            for v in (
                twin_id_violation(relationship.source_id, "relationship.source_id"),
                twin_id_violation(relationship.target_id, "relationship.target_id"),
                (
                    twin_id_violation(relationship.id, "relationship.id", LOCAL_ID_PATTERN)
                    if relationship.id
                    else None
                ),
            )
            if v is not None
        ]
        if not relationship.name:
            violations.append(FieldViolation("relationship.name", "required"))
        if violations:
            raise InvalidArgumentError("invalid relationship", violations)
        source = await self._index.get(relationship.source_id)
        target = await self._index.get(relationship.target_id)
        if source is None:
            raise NotFoundError(
                TWIN_RESOURCE, relationship.source_id, f"no twin {relationship.source_id!r}"
            )
        if target is None:
            raise NotFoundError(
                TWIN_RESOURCE, relationship.target_id, f"no twin {relationship.target_id!r}"
            )
        try:
            model = await self._index.resolve_current(source.model_id)
        except ModelError as error:
            raise FailedPreconditionError(
                "the source twin's model cannot be resolved",
                error.violations,
                violation_type="MODEL",
            ) from None
        declared = model.relationships.get(relationship.name)
        if declared is None:
            raise InvalidArgumentError(
                "undeclared relationship",
                [FieldViolation(
                    "relationship.name",
                    f"{source.model_id} declares no relationship {relationship.name!r} "
                    f"(declared: {sorted(model.relationships)})",
                )],
            )  # fmt: skip
        # The model's document names the target by DTMI, among its own tenant's models.
        if declared.target and not self._index.is_a(
            target.model_id, ids_of(tenant_of(source.model_id)).inner(declared.target)
        ):
            raise InvalidArgumentError(
                "wrong target model",
                [FieldViolation(
                    "relationship.target_id",
                    f"{relationship.name} targets {declared.target}; "
                    f"{target.id} is a {target.model_id}",
                )],
            )  # fmt: skip
        props = {p.name: p for p in declared.properties}
        violations = _property_violations(props, relationship)
        if violations:
            raise InvalidArgumentError("invalid relationship properties", violations)

        stored = registry_pb2.Relationship()
        stored.CopyFrom(relationship)
        stored.id = relationship.id or default_relationship_id(
            relationship.name, relationship.target_id
        )
        for name, value in relationship.properties.items():
            stored.properties[name].CopyFrom(coerce(props[name].schema, value))
        stored.ClearField("revision")
        stored.create_time.GetCurrentTime()
        while True:
            current, revision = await self._read(relationship.source_id)
            if any(r.id == stored.id for r in current.relationships):
                raise AlreadyExistsError(
                    RELATIONSHIP_RESOURCE,
                    f"{stored.source_id}/{stored.id}",
                    f"twin {stored.source_id!r} already has a relationship {stored.id!r}",
                )
            same_name = sum(1 for r in current.relationships if r.name == stored.name)
            if declared.max_multiplicity is not None and same_name >= declared.max_multiplicity:
                raise FailedPreconditionError(
                    f"{stored.name} allows at most {declared.max_multiplicity} per twin",
                    [FieldViolation(
                        f"twins/{stored.source_id}",
                        f"already has {same_name} {stored.name!r} relationships",
                    )],
                    violation_type="MULTIPLICITY",
                )  # fmt: skip
            current.relationships.append(stored)
            new_revision = await self._write(relationship.source_id, current, revision)
            if new_revision is not None:
                stored.revision = new_revision
                await self._publish(stored, events_pb2.CHANGE_KIND_CREATED)
                return stored

    async def delete(self, source_id: str, relationship_id: str, expected_revision: int) -> int:
        require_twin_id(source_id, "source_id")
        require_twin_id(relationship_id, "relationship_id", LOCAL_ID_PATTERN)
        while True:
            current, revision = await self._read(source_id)
            if expected_revision and expected_revision != revision:
                raise RevisionMismatchError(
                    f"relationships/{source_id}", expected_revision, revision
                )
            kept = [r for r in current.relationships if r.id != relationship_id]
            if len(kept) == len(current.relationships):
                raise NotFoundError(
                    RELATIONSHIP_RESOURCE,
                    f"{source_id}/{relationship_id}",
                    f"twin {source_id!r} has no relationship {relationship_id!r}",
                )
            (removed,) = [r for r in current.relationships if r.id == relationship_id]
            new_revision = await self._write(
                source_id, registry_pb2.RelationshipSet(relationships=kept), revision
            )
            if new_revision is not None:
                removed.revision = new_revision
                await self._publish(removed, events_pb2.CHANGE_KIND_DELETED)
                return new_revision
            if expected_revision:
                _, now = await self._read(source_id)
                raise RevisionMismatchError(f"relationships/{source_id}", expected_revision, now)

    async def _read(self, source_id: str) -> tuple[registry_pb2.RelationshipSet, int]:
        """The source's relationship set and its revision (0: never written). An empty set is
        stored as an empty value, so this reads the entry itself rather than a document."""
        try:
            entry = await self._bucket.get(relationships_key(source_id))
        except KeyNotFoundError:
            return registry_pb2.RelationshipSet(), 0
        return registry_pb2.RelationshipSet.FromString(entry.value or b""), entry.revision or 0

    async def _write(
        self, source_id: str, relationships: registry_pb2.RelationshipSet, revision: int
    ) -> int | None:
        for relationship in relationships.relationships:
            relationship.ClearField("revision")
        try:
            if revision == 0:
                new_revision = await self._bucket.create(
                    relationships_key(source_id), relationships.SerializeToString()
                )
            else:
                new_revision = await self._bucket.update(
                    relationships_key(source_id), relationships.SerializeToString(), last=revision
                )
        except KeyWrongLastSequenceError:
            return None
        self._index.graph.remember(source_id, relationships, new_revision)
        return new_revision

    async def _publish(
        self, relationship: registry_pb2.Relationship, kind: events_pb2.ChangeKind
    ) -> None:
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        event = events_pb2.RelationshipChangedEvent(
            relationship_id=relationship.id,
            source_id=relationship.source_id,
            name=relationship.name,
            target_id=relationship.target_id,
            kind=kind,
            revision=relationship.revision,
            time=now,
        )
        await self._events.publish(
            RELATIONSHIP_CHANGED,
            (relationship.source_id, relationship.id),
            event,
            msg_id=f"relationship:{relationship.source_id}:{relationship.id}:{relationship.revision}",
        )
