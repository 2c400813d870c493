"""Twin documents in the registry bucket (``twins.<twin id>``).

A twin's revision is the KV revision of its document: it increases with every write and lets
conditional updates be a single compare-and-set. Properties are validated against the twin's
model (resolved with inheritance) on every write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf import timestamp_pb2
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from twinstack.api.common.v1 import events_pb2, types_pb2
from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    RevisionMismatchError,
)
from twinstack.common.events import TWIN_CHANGED, EventPublisher
from twinstack.common.ids import (
    field_name_violation,
    model_id_violation,
    require_twin_id,
    twin_id_violation,
)
from twinstack.common.nats import (
    REGISTRY_BUCKET,
    RELATIONSHIPS_KEY_PREFIX,
    read_document,
    twin_key,
)
from twinstack.modeling.document import ModelError
from twinstack.modeling.resolve import ResolvedModel, normalized, property_violations
from twinstack.modeling.values import (
    MAX_VALUE_DEPTH,
    from_json,
    nests_deeper_than,
    to_json,
)
from twinstack.registry.index import RegistryIndex

TWIN_RESOURCE = "twinstack.io/Twin"
MAX_MERGE_PATCH_BYTES = 1024 * 1024


def resource_name(twin_id: str) -> str:
    return f"twins/{twin_id}"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def parse_merge_patch(text: str) -> dict[str, Any]:
    violation = None
    if len(text.encode()) > MAX_MERGE_PATCH_BYTES:
        violation = f"larger than {MAX_MERGE_PATCH_BYTES} bytes"
    else:
        try:
            patch = json.loads(text)
        except (ValueError, RecursionError) as error:
            violation = f"not valid JSON: {error}"
        else:
            if not isinstance(patch, dict):
                violation = "must be a JSON object of property names"
            elif nests_deeper_than(patch, MAX_VALUE_DEPTH + 1):  # +1: the patch's own object
                violation = f"nests deeper than {MAX_VALUE_DEPTH} levels, as no property can"
            else:
                return patch
    raise InvalidArgumentError(
        "invalid merge patch", [FieldViolation("json_merge_patch", violation)]
    )


def _model_violation(error: ModelError, field: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        "unknown or unusable model",
        [FieldViolation(field, v.description) for v in error.violations],
    )


class TwinStore:
    """Creates, reads, patches, migrates and deletes twins, and publishes an event for each.

    Every write is a compare-and-set on the document's KV revision: a conditional write fails
    if the twin moved on, and an unconditional one re-reads and re-applies its patch, so no
    concurrent write is ever lost.
    """

    def __init__(
        self, bucket: KeyValue, js: JetStreamContext, max_properties: int, index: RegistryIndex
    ) -> None:
        self._bucket = bucket
        self._js = js
        self._events = EventPublisher(js)
        self._max_properties = max_properties
        self._index = index

    async def create(self, twin: registry_pb2.Twin) -> registry_pb2.Twin:
        violations = [
            v
            for v in (
                twin_id_violation(twin.id, "twin.id"),
                model_id_violation(twin.model_id, "twin.model_id"),
            )
            if v is not None
        ]
        if violations:
            raise InvalidArgumentError("invalid twin", violations)
        model = await self._model(twin.model_id, "twin.model_id")
        properties = self._checked(model, twin.properties, "twin.properties", fill_defaults=True)
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        stored = registry_pb2.Twin(
            id=twin.id, model_id=twin.model_id, properties=properties,
            create_time=now, update_time=now,
        )  # fmt: skip
        try:
            # create() succeeds only if the key has never been written (or was deleted), so two
            # concurrent creates of one id cannot both win.
            revision = await self._bucket.create(twin_key(twin.id), stored.SerializeToString())
        except KeyWrongLastSequenceError as error:
            raise AlreadyExistsError(
                TWIN_RESOURCE, twin.id, f"twin {twin.id!r} already exists"
            ) from error
        stored.revision = revision
        self._index.remember(stored)
        await self._publish(stored, events_pb2.CHANGE_KIND_CREATED, stored.properties)
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
        json_merge_patch: str = "",
    ) -> registry_pb2.Twin:
        """Applies a property patch; see the class for the concurrency rules."""
        require_twin_id(twin_id)
        patch = parse_merge_patch(json_merge_patch) if json_merge_patch else {}
        _check_patch_shape(set_properties, remove_properties, bool(patch))
        changed = sorted({*set_properties, *remove_properties, *patch})
        first_attempt = True
        while True:
            twin, revision = await self._current(twin_id, expected_revision, first_attempt)
            first_attempt = False
            self._check_expected(twin_id, expected_revision, revision)
            model = await self._model(twin.model_id, "model_id")
            properties = dict(twin.properties)
            if patch:
                properties = _apply_merge_patch(model, properties, patch)
            properties.update(set_properties)
            for name in remove_properties:
                properties.pop(name, None)
            checked = self._checked(model, properties, "properties", changed=changed)
            written = await self._write(
                _replaced(twin, twin.model_id, checked), revision, expected_revision
            )
            if written is not None:
                await self._publish(written, events_pb2.CHANGE_KIND_UPDATED, changed)
                return written

    async def migrate(
        self,
        twin_id: str,
        model_id: str,
        set_properties: Mapping[str, types_pb2.Value],
        drop_undeclared: bool,
        expected_revision: int = 0,
    ) -> registry_pb2.Twin:
        """Moves a twin to another model, checking its properties against the target."""
        require_twin_id(twin_id)
        violation = model_id_violation(model_id, "model_id")
        if violation is not None:
            raise InvalidArgumentError("invalid model id", [violation])
        target = await self._model(model_id, "model_id")
        while True:
            twin, revision = await self._current(twin_id)
            self._check_expected(twin_id, expected_revision, revision)
            previous_model = twin.model_id
            properties = dict(twin.properties)
            if drop_undeclared:
                declared = {*target.properties, *target.components}
                properties = {k: v for k, v in properties.items() if k in declared}
            properties.update(set_properties)
            checked = self._checked(target, properties, "properties", fill_defaults=True)
            dropped_or_set = {*twin.properties} ^ {*checked} | {*set_properties}
            written = await self._write(
                _replaced(twin, model_id, checked), revision, expected_revision
            )
            if written is not None:
                await self._publish(
                    written, events_pb2.CHANGE_KIND_UPDATED, dropped_or_set, previous_model
                )
                return written

    async def delete(self, twin_id: str, expected_revision: int = 0) -> int:
        """Deletes a twin that no relationship starts or ends at; returns the revision of the
        deletion (or a later one)."""
        require_twin_id(twin_id)
        await self._require_unconnected(twin_id)
        while True:
            twin, revision = await self._current(twin_id)
            self._check_expected(twin_id, expected_revision, revision)
            try:
                await self._bucket.delete(twin_key(twin_id), last=revision)
            except KeyWrongLastSequenceError:
                await self._lost_race(twin_id, expected_revision)
                continue
            # The KV API does not return the delete marker's revision; the subject's last
            # message is that marker, or a later write, which serves read-your-write as well.
            marker = await self._js.get_last_msg(
                f"KV_{REGISTRY_BUCKET}", f"$KV.{REGISTRY_BUCKET}.{twin_key(twin_id)}"
            )
            twin.revision = marker.seq or revision
            self._index.forget(twin_id)
            await self._publish(twin, events_pb2.CHANGE_KIND_DELETED, twin.properties)
            return twin.revision

    async def _require_unconnected(self, twin_id: str) -> None:
        # Outgoing edges are read from the bucket itself; incoming ones only the index knows.
        outgoing = await read_document(
            self._bucket, f"{RELATIONSHIPS_KEY_PREFIX}{twin_id}", registry_pb2.RelationshipSet
        )
        incoming = self._index.graph.relationships_of(twin_id, incoming=True)
        connected = [
            FieldViolation(f"relationships/{twin_id}/{r.id}", f"{r.name} -> {r.target_id}")
            for r in (outgoing[0].relationships if outgoing else [])
        ] + [
            FieldViolation(f"relationships/{r.source_id}/{r.id}", f"{r.source_id} -> {r.name}")
            for r in incoming
        ]
        if connected:
            raise FailedPreconditionError(
                f"twin {twin_id!r} still has relationships; delete them first",
                connected[:100],
                violation_type="TWIN_HAS_RELATIONSHIPS",
            )

    async def _model(self, model_id: str, field: str) -> ResolvedModel:
        try:
            return await self._index.resolve_current(model_id)
        except ModelError as error:
            raise _model_violation(error, field) from None

    def _checked(
        self,
        model: ResolvedModel,
        properties: Mapping[str, types_pb2.Value],
        path: str,
        *,
        fill_defaults: bool = False,
        changed: Iterable[str] = (),
    ) -> dict[str, types_pb2.Value]:
        violations = [
            v for name in properties if (v := field_name_violation(name, f"{path}[{name!r}]"))
        ]
        if len(properties) > self._max_properties:
            violations.append(FieldViolation(path, f"at most {self._max_properties} properties"))
        if not violations:
            violations = property_violations(model, properties, path, changed=changed)
        if violations:
            raise InvalidArgumentError(f"properties do not match model {model.id}", violations)
        return normalized(model, properties, fill_defaults=fill_defaults)

    async def _write(
        self, twin: registry_pb2.Twin, revision: int, expected_revision: int
    ) -> registry_pb2.Twin | None:
        """Compare-and-set; None when another write got there first and the caller should
        start over (it raises instead when the caller expected a revision)."""
        twin.ClearField("revision")
        try:
            new_revision = await self._bucket.update(
                twin_key(twin.id), twin.SerializeToString(), last=revision
            )
        except KeyWrongLastSequenceError:
            await self._lost_race(twin.id, expected_revision)
            return None
        twin.revision = new_revision
        self._index.remember(twin)
        return twin

    async def _current(
        self, twin_id: str, expected_revision: int = 0, may_use_index: bool = False
    ) -> tuple[registry_pb2.Twin, int]:
        """The twin and its revision: from the index when allowed and it holds the revision the
        caller expects (or any, for an unconditional write), else from the bucket.

        The first attempt of a write may start from the index: the compare-and-set catches a
        stale copy, and the retry reads the bucket.
        """
        if may_use_index:
            cached = self._index.cached(twin_id)
            if cached is not None and expected_revision in (0, cached.revision):
                return cached, cached.revision
        found = await read_document(self._bucket, twin_key(twin_id), registry_pb2.Twin)
        if found is None:
            raise NotFoundError(TWIN_RESOURCE, twin_id, f"no twin {twin_id!r}")
        twin, revision = found
        twin.revision = revision
        return twin, revision

    @staticmethod
    def _check_expected(twin_id: str, expected_revision: int, revision: int) -> None:
        if expected_revision and expected_revision != revision:
            raise RevisionMismatchError(resource_name(twin_id), expected_revision, revision)

    async def _lost_race(self, twin_id: str, expected_revision: int) -> None:
        """Another write landed between our read and our compare-and-set."""
        if expected_revision:
            _, current = await self._current(twin_id)
            raise RevisionMismatchError(resource_name(twin_id), expected_revision, current)

    async def _publish(
        self,
        twin: registry_pb2.Twin,
        kind: events_pb2.ChangeKind,
        changed: Iterable[str],
        previous_model_id: str = "",
    ) -> None:
        event = events_pb2.TwinChangedEvent(
            twin_id=twin.id,
            model_id=twin.model_id,
            kind=kind,
            revision=twin.revision,
            time=twin.update_time,
            changed_properties=sorted(changed),
            previous_model_id=previous_model_id,
        )
        # The message id makes a retried publish of the same change harmless.
        await self._events.publish(
            TWIN_CHANGED, (twin.id,), event, msg_id=f"twin:{twin.id}:{twin.revision}"
        )


def _replaced(
    twin: registry_pb2.Twin, model_id: str, properties: Mapping[str, types_pb2.Value]
) -> registry_pb2.Twin:
    """A new document for ``twin`` with these model and properties, updated now.

    Built afresh because the property values may be submessages of ``twin`` itself, which
    clearing its map would invalidate.
    """
    replaced = registry_pb2.Twin(
        id=twin.id, model_id=model_id, properties=properties, create_time=twin.create_time
    )
    replaced.update_time.GetCurrentTime()
    return replaced


def _check_patch_shape(
    set_properties: Mapping[str, types_pb2.Value],
    remove_properties: Sequence[str],
    has_merge_patch: bool,
) -> None:
    violations: list[FieldViolation] = []
    if not set_properties and not remove_properties and not has_merge_patch:
        violations.append(FieldViolation("set_properties", "the patch changes nothing"))
    for index, name in enumerate(remove_properties):
        path = f"remove_properties[{index}]"
        bad_name = field_name_violation(name, path)
        if bad_name is not None:
            violations.append(bad_name)
        elif name in set_properties:
            violations.append(FieldViolation(path, f"{name!r} is both set and removed"))
    if violations:
        raise InvalidArgumentError("invalid patch", violations)


def _apply_merge_patch(
    model: ResolvedModel, properties: dict[str, types_pb2.Value], patch: dict[str, Any]
) -> dict[str, types_pb2.Value]:
    result = dict(properties)
    violations = []
    for name, change in patch.items():
        if change is None:
            result.pop(name, None)
            continue
        current = to_json(result[name]) if name in result else None
        prop = model.properties.get(name)
        try:
            result[name] = from_json(
                prop.schema if prop else None,
                merge_patch(current, change),
                f"json_merge_patch.{name}",
            )
        except ValueError as error:
            violations.append(FieldViolation(f"json_merge_patch.{name}", str(error)))
    if violations:
        raise InvalidArgumentError("invalid merge patch", violations)
    return result
