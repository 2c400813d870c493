"""The twin graph as the registry bucket holds it: each twin's outgoing relationships, and the
incoming ones derived from them.

The registry's index traverses it for queries; the services that enforce access keep it too, to
know which twins a subgraph scope (``FROM 'site' FOLLOW contains DEPTH 2``) covers.
"""

from __future__ import annotations

from collections import defaultdict

from nats.js.kv import KeyValue

from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.access import Subgraph
from twinstack.common.kv_view import KvView
from twinstack.common.kv_watch import deleted
from twinstack.common.nats import RELATIONSHIPS_KEY_PREFIX


class RelationshipGraph:
    """Relationships of the registry bucket, kept current by the bucket's view.

    Args:
        view: The view of the ``registry`` bucket.
    """

    def __init__(self, view: KvView) -> None:
        self.outgoing: dict[str, list[registry_pb2.Relationship]] = {}
        self.incoming: defaultdict[str, dict[tuple[str, str], registry_pb2.Relationship]] = (
            defaultdict(dict)
        )
        self._revisions: dict[str, int] = {}
        # Bumped on every change: reachable sets computed at an older one are stale.
        self._generation = 0
        self._reachable: dict[Subgraph, frozenset[str]] = {}
        self._reachable_generation = 0
        view.subscribe(self._apply, on_lost=self._drop)

    def _apply(self, entry: KeyValue.Entry) -> None:
        if not entry.key.startswith(RELATIONSHIPS_KEY_PREFIX):
            return
        source = entry.key.removeprefix(RELATIONSHIPS_KEY_PREFIX)
        relationships = registry_pb2.RelationshipSet()
        if entry.value and not deleted(entry):
            relationships.ParseFromString(entry.value)
        self.remember(source, relationships, entry.revision or 0)

    def _drop(self) -> None:
        # Without the watch the graph would go stale, and a stale graph could widen a scope.
        self.outgoing.clear()
        self.incoming.clear()
        self._revisions.clear()
        self._generation += 1

    def remember(
        self, source: str, relationships: registry_pb2.RelationshipSet, revision: int
    ) -> None:
        """Takes the relationship set of ``source`` at ``revision`` unless a newer one is held."""
        if self._revisions.get(source, 0) >= revision:
            return
        self._revisions[source] = revision
        self._generation += 1
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

    def reachable(self, subgraph: Subgraph) -> frozenset[str]:
        """The subgraph's root and every twin its relationships reach within its depth."""
        if self._reachable_generation != self._generation:
            self._reachable.clear()
            self._reachable_generation = self._generation
        found = self._reachable.get(subgraph)
        if found is None:
            found = self._walk(subgraph)
            self._reachable[subgraph] = found
        return found

    def _walk(self, subgraph: Subgraph) -> frozenset[str]:
        seen = {subgraph.root}
        frontier = [subgraph.root]
        for _ in range(subgraph.depth):
            following = []
            for twin_id in frontier:
                for edge in self.outgoing.get(twin_id, ()):
                    if subgraph.follows(edge.name) and edge.target_id not in seen:
                        seen.add(edge.target_id)
                        following.append(edge.target_id)
            frontier = following
        return frozenset(seen)
