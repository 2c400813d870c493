"""The registry's in-memory index of its whole KV bucket: twins, models and relationships.

It is rebuilt from a KV watch at start and kept current by it, so every replica can answer
lists, model lookups and graph queries from memory. One bucket means one revision sequence:
a caller that waits for the revision of its write (any kind) reads that write here.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from nats.js.kv import KeyValue

from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.catalog import ModelCatalog
from twinstack.common.nats import RELATIONSHIPS_KEY_PREFIX
from twinstack.modeling.values import to_json


class RegistryIndex(ModelCatalog):
    """Everything in the registry bucket, indexed for lookups, queries and traversal."""

    def __init__(self, bucket: KeyValue) -> None:
        super().__init__(bucket)
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
        if entry.key.startswith(RELATIONSHIPS_KEY_PREFIX):
            source = entry.key.removeprefix(RELATIONSHIPS_KEY_PREFIX)
            relationships = registry_pb2.RelationshipSet()
            if entry.value and entry.operation not in ("DEL", "PURGE"):
                relationships.ParseFromString(entry.value)
            self.remember_relationships(source, relationships, entry.revision or 0)
        else:
            super().apply(entry)

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
