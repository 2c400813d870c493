"""The registry's in-memory index of its whole KV bucket: twins, models and relationships.

It is rebuilt from a KV watch at start and kept current by it, so every replica can answer
lists, model lookups and graph queries from memory. One bucket means one revision sequence:
a caller that waits for the revision of its write (any kind) reads that write here.

It is the model catalog every service has (twins and models, on one view of the bucket), with
the registry's own indexes added to the same view: twins by model, decoded properties, ids in
order for paging, and relationships both ways.
"""

from __future__ import annotations

import bisect
import weakref
from collections import defaultdict
from typing import Any

from nats.js.kv import KeyValue

from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.catalog import ModelCatalog
from twinstack.common.metrics import gauge
from twinstack.common.tenancy import tenant_of
from twinstack.modeling.resolve import ResolvedModel
from twinstack.modeling.values import to_json
from twinstack.registry.property_index import PropertyIndexes

# Every index of this process (one outside tests), for the size gauges.
_INDEXES: weakref.WeakSet[RegistryIndex] = weakref.WeakSet()
gauge(
    "twinstack.registry",
    "twinstack.registry.index.twins",
    "Twins in this replica's in-memory index (every tenant)",
    lambda: [(float(len(index.plain_properties)), {}) for index in list(_INDEXES)],
)
gauge(
    "twinstack.registry",
    "twinstack.registry.index.models",
    "Models in this replica's in-memory index (every tenant)",
    lambda: [(float(len(index.models)), {}) for index in list(_INDEXES)],
)


class RegistryIndex:
    """Everything in the registry bucket, indexed for lookups, queries and traversal.

    Args:
        bucket: The ``registry`` bucket.
    """

    def __init__(self, bucket: KeyValue) -> None:
        self.catalog = ModelCatalog(bucket, follow_graph=True)
        self._view = self.catalog.view
        self._twins = self.catalog.twins
        assert self.catalog.graph is not None
        self.graph = self.catalog.graph
        self.twins_of_model: defaultdict[str, set[str]] = defaultdict(set)
        # Property values as JSON data, decoded once per write rather than once per query.
        self.plain_properties: dict[str, dict[str, Any]] = {}
        self.property_indexes = PropertyIndexes(self.plain_properties)
        self._sorted_of_model: dict[str, list[str]] = {}
        self._sorted_ids: dict[str, list[str]] = {}
        self._twins.change_listeners.append(self._twin_changed)
        self._view.when_lost(self._drop)
        _INDEXES.add(self)

    async def start(self) -> None:
        await self.catalog.start()

    async def stop(self) -> None:
        await self.catalog.stop()

    def _drop(self) -> None:
        self.twins_of_model.clear()
        self.plain_properties.clear()
        self.property_indexes.clear()
        self._sorted_of_model.clear()
        self._sorted_ids.clear()

    # What every catalog has ---------------------------------------------------------------

    @property
    def models(self) -> dict[str, registry_pb2.Model]:
        return self.catalog.models

    @property
    def parsed_models(self) -> dict[str, Any]:
        return self.catalog.parsed_models

    def remember_model(self, model: registry_pb2.Model) -> None:
        self.catalog.remember_model(model)

    def resolve(self, model_id: str) -> ResolvedModel:
        return self.catalog.resolve(model_id)

    async def resolve_current(self, model_id: str) -> ResolvedModel:
        return await self.catalog.resolve_current(model_id)

    def is_a(self, model_id: str, ancestor_id: str) -> bool:
        return self.catalog.is_a(model_id, ancestor_id)

    def latest_version(self, base_id: str) -> str | None:
        return self.catalog.latest_version(base_id)

    async def catch_up(self) -> None:
        await self.catalog.catch_up()

    async def loaded(self) -> None:
        """Returns once the initial values of the bucket are in."""
        await self._view.loaded()

    async def wait_for_revision(self, revision: int) -> None:
        """Returns once every change up to ``revision`` is reflected here."""
        await self._view.wait_for_revision(revision)

    # Twins ------------------------------------------------------------------------------

    async def get(self, twin_id: str) -> registry_pb2.Twin | None:
        return await self._twins.get(twin_id)

    def cached(self, twin_id: str) -> registry_pb2.Twin | None:
        return self._twins.cached(twin_id)

    def remember(self, twin: registry_pb2.Twin) -> None:
        """Takes a twin the registry just wrote, unless a newer revision is held."""
        self._twins.remember(twin)

    def forget(self, twin_id: str) -> None:
        self._twins.forget(twin_id)

    def twin(self, twin_id: str) -> registry_pb2.Twin | None:
        """The twin as indexed (not a copy: callers must not modify it)."""
        return self._twins.twin(twin_id)

    def _twin_changed(
        self, twin_id: str, before: registry_pb2.Twin | None, after: registry_pb2.Twin | None
    ) -> None:
        if before is None or after is None:
            self._sorted_ids.pop(tenant_of(twin_id), None)
        if before is not None and (after is None or before.model_id != after.model_id):
            self.twins_of_model[before.model_id].discard(twin_id)
            self._sorted_of_model.pop(before.model_id, None)
        if after is not None and (before is None or before.model_id != after.model_id):
            self.twins_of_model[after.model_id].add(twin_id)
            self._sorted_of_model.pop(after.model_id, None)
        plain = None if after is None else {k: to_json(v) for k, v in after.properties.items()}
        self.property_indexes.twin_changed(
            twin_id, self.plain_properties.get(twin_id, {}), plain or {}
        )
        if plain is None:
            self.plain_properties.pop(twin_id, None)
        else:
            self.plain_properties[twin_id] = plain

    def sorted_twins_of_model(self, model_id: str) -> list[str]:
        """Ids of the twins of exactly this model, sorted (cached until one comes or goes)."""
        cached = self._sorted_of_model.get(model_id)
        if cached is None:
            cached = sorted(self.twins_of_model.get(model_id, ()))
            self._sorted_of_model[model_id] = cached
        return cached

    def twin_ids(self, tenant: str) -> list[str]:
        """Every twin id of a tenant, sorted (cached until one of its twins comes or goes)."""
        cached = self._sorted_ids.get(tenant)
        if cached is None:
            cached = sorted(i for i in self._twins.ids() if tenant_of(i) == tenant)
            self._sorted_ids[tenant] = cached
        return cached

    async def page(
        self, after_id: str, limit: int, tenant: str
    ) -> tuple[list[registry_pb2.Twin], bool]:
        """Up to ``limit`` twins of ``tenant`` after ``after_id`` in id order, and whether
        more follow."""
        await self.loaded()
        ids = self.twin_ids(tenant)
        start = bisect.bisect_right(ids, after_id)
        chunk = ids[start : start + limit]
        twins = [self._twins.twin(twin_id) for twin_id in chunk]
        return [t for t in twins if t is not None], start + limit < len(ids)
