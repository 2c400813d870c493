"""The registry's in-memory index of its whole KV bucket: twins, models and relationships.

It is rebuilt from a KV watch at start and kept current by it, so every replica can answer
lists, model lookups and graph queries from memory. One bucket means one revision sequence:
a caller that waits for the revision of its write (any kind) reads that write here.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import Any

from nats.js.kv import KeyValue

from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.directory import TwinDirectory
from twinstack.common.modeling.document import Model, ModelError, parse_model, version_of
from twinstack.common.modeling.resolve import ResolvedModel, Resolver
from twinstack.common.modeling.values import to_json
from twinstack.common.nats import MODEL_KEY_PREFIX, RELATIONSHIPS_KEY_PREFIX

logger = logging.getLogger(__name__)


class RegistryIndex(TwinDirectory):
    """Everything in the registry bucket, indexed for lookups, queries and traversal."""

    watched_keys = ">"

    def __init__(self, bucket: KeyValue) -> None:
        super().__init__(bucket)
        self.models: dict[str, registry_pb2.Model] = {}
        self.parsed_models: dict[str, Model] = {}
        self._resolver = Resolver(self.parsed_models.get)
        self.twins_of_model: defaultdict[str, set[str]] = defaultdict(set)
        # Property values as JSON data, decoded once per write rather than once per query.
        self.plain_properties: dict[str, dict[str, Any]] = {}
        self.outgoing: dict[str, list[registry_pb2.Relationship]] = {}
        self.incoming: defaultdict[str, dict[tuple[str, str], registry_pb2.Relationship]] = (
            defaultdict(dict)
        )
        self._relationship_revisions: dict[str, int] = {}
        self._sorted_of_model: dict[str, list[str]] = {}

    def apply(self, entry: KeyValue.Entry) -> None:
        if entry.key.startswith(MODEL_KEY_PREFIX):
            if entry.value:
                model = registry_pb2.Model.FromString(entry.value)
                model.revision = entry.revision or 0
                self.remember_model(model)
        elif entry.key.startswith(RELATIONSHIPS_KEY_PREFIX):
            source = entry.key.removeprefix(RELATIONSHIPS_KEY_PREFIX)
            relationships = registry_pb2.RelationshipSet()
            if entry.value and entry.operation not in ("DEL", "PURGE"):
                relationships.ParseFromString(entry.value)
            self.remember_relationships(source, relationships, entry.revision or 0)
        else:
            super().apply(entry)

    # Models -----------------------------------------------------------------------------

    def remember_model(self, model: registry_pb2.Model) -> None:
        """Takes a stored model version (versions are immutable: the first copy stays)."""
        if model.id in self.models:
            return
        try:
            parsed = parse_model(json.loads(model.document))
        except (ModelError, ValueError):
            # Stored models were validated on the way in; this is a document from a future
            # release that this one cannot read. Skip it rather than stop following.
            logger.exception("stored model %s cannot be read; ignored", model.id)
            return
        self.models[model.id] = model
        self.parsed_models[model.id] = parsed

    def resolve(self, model_id: str) -> ResolvedModel:
        """The model with its inheritance resolved; ModelError if it or a reference is unknown."""
        return self._resolver.resolve(model_id)

    async def resolve_current(self, model_id: str) -> ResolvedModel:
        """Like :meth:`resolve`, but a model unknown here is looked for again once the index
        has caught up with the bucket (it may have been stored through another replica)."""
        try:
            return self.resolve(model_id)
        except ModelError:
            await self.catch_up()
            return self.resolve(model_id)

    async def catch_up(self) -> None:
        """Waits until every write the bucket held when called is applied here."""
        status = await self._bucket.status()
        await self.wait_for_revision(status.stream_info.state.last_seq)

    def is_a(self, model_id: str, ancestor_id: str) -> bool:
        try:
            return self.resolve(model_id).is_a(ancestor_id)
        except ModelError:
            return model_id == ancestor_id

    def latest_version(self, base_id: str) -> str | None:
        """Id of the highest stored version of ``base_id`` (the id before ';')."""
        versions = [mid for mid in self.models if version_of(mid)[0] == base_id]
        return max(versions, key=lambda mid: version_of(mid)[1], default=None)

    # Twins ------------------------------------------------------------------------------

    def remember(self, twin: registry_pb2.Twin) -> None:
        previous = self._twins.get(twin.id)
        super().remember(twin)
        if self._twins.get(twin.id) is not twin:
            return
        if previous is not None and previous.model_id != twin.model_id:
            self.twins_of_model[previous.model_id].discard(twin.id)
            self._sorted_of_model.pop(previous.model_id, None)
        if previous is None or previous.model_id != twin.model_id:
            self.twins_of_model[twin.model_id].add(twin.id)
            self._sorted_of_model.pop(twin.model_id, None)
        self.plain_properties[twin.id] = {k: to_json(v) for k, v in twin.properties.items()}

    def forget(self, twin_id: str) -> None:
        twin = self._twins.get(twin_id)
        if twin is not None:
            self.twins_of_model[twin.model_id].discard(twin_id)
            self._sorted_of_model.pop(twin.model_id, None)
            self.plain_properties.pop(twin_id, None)
        super().forget(twin_id)

    def twin(self, twin_id: str) -> registry_pb2.Twin | None:
        """The twin as indexed (not a copy: callers must not modify it)."""
        return self._twins.get(twin_id)

    def sorted_twins_of_model(self, model_id: str) -> list[str]:
        """Ids of the twins of exactly this model, sorted (cached until one comes or goes)."""
        cached = self._sorted_of_model.get(model_id)
        if cached is None:
            cached = sorted(self.twins_of_model.get(model_id, ()))
            self._sorted_of_model[model_id] = cached
        return cached

    def twin_ids(self) -> list[str]:
        """Every twin id, sorted."""
        if self._sorted_ids is None:
            self._sorted_ids = sorted(self._twins)
        return self._sorted_ids

    async def loaded(self) -> None:
        """Returns once the initial values of the bucket are in."""
        await self._loaded.wait()
        self._require_following()

    # Relationships ----------------------------------------------------------------------

    def remember_relationships(
        self, source: str, relationships: registry_pb2.RelationshipSet, revision: int
    ) -> None:
        """Takes the relationship set of ``source`` at ``revision`` unless a newer one is held."""
        if self._relationship_revisions.get(source, 0) >= revision:
            return
        self._relationship_revisions[source] = revision
        for old in self.outgoing.pop(source, []):
            self.incoming[old.target_id].pop((source, old.id), None)
        if relationships.relationships:
            kept = list(relationships.relationships)
            for relationship in kept:
                relationship.revision = revision
                self.incoming[relationship.target_id][(source, relationship.id)] = relationship
            self.outgoing[source] = kept

    def relationships_of(self, twin_id: str, incoming: bool) -> list[registry_pb2.Relationship]:
        if incoming:
            return sorted(
                self.incoming.get(twin_id, {}).values(), key=lambda r: (r.source_id, r.id)
            )
        return sorted(self.outgoing.get(twin_id, []), key=lambda r: r.id)
