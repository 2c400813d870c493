"""A read-side view of the registry's twins and models, for services that check data against
a twin's model (ingestion validates telemetry, state validates desired values and judges
staleness, simulation compiles dynamics) and for the registry's own index.

Models are immutable once stored, so a resolved model is cached for good; a model this view
has not seen yet is looked for again after catching up with the bucket.

Models are kept by internal id (``acme/dtmi:com:acme:Pump;1`` for tenant ``acme``, see
:mod:`twinstack.common.tenancy`), while a stored DTDL document names the models it extends or
uses by their plain DTMIs: each tenant's references are resolved among that tenant's models
only, so two tenants may hold different models under one DTMI.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from nats.js.kv import KeyValue

from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.directory import TwinDirectory
from twinstack.common.graph import RelationshipGraph
from twinstack.common.kv_view import KvView
from twinstack.common.nats import MODEL_KEY_PREFIX
from twinstack.common.tenancy import external_id, ids_of, tenant_of
from twinstack.modeling.document import Model, ModelError, parse_model, version_of
from twinstack.modeling.resolve import ResolvedModel, Resolver

logger = logging.getLogger(__name__)


class ModelCatalog:
    """Twins and models of the registry bucket, with models resolved on demand.

    It follows the whole bucket, relationships included even where it does not keep them: the
    bucket has one revision sequence, and a caller that waits for the revision of a write
    (:meth:`catch_up`) can only be answered by a view that saw every revision.

    Args:
        bucket: The ``registry`` bucket.
        follow_graph: Keep the relationships too (:attr:`graph`): the registry traverses them,
            and services that enforce subgraph scopes need to know which twins they cover.
    """

    def __init__(self, bucket: KeyValue, *, follow_graph: bool = False) -> None:
        self.view = KvView(bucket)
        self.twins = TwinDirectory(self.view)
        self.graph = RelationshipGraph(self.view) if follow_graph else None
        self.models: dict[str, registry_pb2.Model] = {}
        self.parsed_models: dict[str, Model] = {}
        self._resolvers: dict[str, Resolver] = {}
        self.view.subscribe(self._apply, on_lost=lambda: None)

    async def start(self) -> None:
        await self.view.start()

    async def stop(self) -> None:
        await self.view.stop()

    def _apply(self, entry: KeyValue.Entry) -> None:
        if entry.key.startswith(MODEL_KEY_PREFIX) and entry.value:
            model = registry_pb2.Model.FromString(entry.value)
            model.revision = entry.revision or 0
            self.remember_model(model)

    def remember_model(self, model: registry_pb2.Model) -> None:
        """Takes a stored model version (versions are immutable: the first copy stays)."""
        if model.id in self.models:
            return
        try:
            parsed = parse_model(json.loads(model.document))
        except (ModelError, ValueError):
            # Stored models were validated on the way in; this is a document from a future
            # release that this one cannot read. Skip it rather than stop following.
            logger.exception("stored model %s cannot be read", model.id)
            return
        self.models[model.id] = model
        self.parsed_models[model.id] = parsed
        resolver = self._resolvers.get(tenant_of(model.id))
        if resolver is not None:
            resolver.forget_failures()

    def _resolver(self, tenant: str) -> Resolver:
        resolver = self._resolvers.get(tenant)
        if resolver is None:
            ids = ids_of(tenant)
            models = self.parsed_models
            resolver = Resolver(lambda model_id: models.get(ids.inner(model_id)))
            self._resolvers[tenant] = resolver
        return resolver

    def tenant_models(self, tenant: str) -> Callable[[str], Model | None]:
        """Looks up a tenant's stored models by their DTMIs, as its documents name them."""
        ids = ids_of(tenant)
        return lambda model_id: self.parsed_models.get(ids.inner(model_id))

    @property
    def deletion_listeners(self) -> list[Callable[[str], None]]:
        """Told of every twin the registry deletes (see :class:`TwinDirectory`)."""
        return self.twins.deletion_listeners

    async def get(self, twin_id: str) -> registry_pb2.Twin | None:
        """The twin, or None if the registry has no twin with that id."""
        return await self.twins.get(twin_id)

    def resolve(self, model_id: str) -> ResolvedModel:
        """The model (by internal id) with its inheritance resolved in its tenant; ModelError
        if it or a reference is unknown."""
        return self._resolver(tenant_of(model_id)).resolve(external_id(model_id))

    async def resolve_current(self, model_id: str) -> ResolvedModel:
        """Like :meth:`resolve`, but a model unknown here is looked for again once the view
        has caught up with the bucket (it may have been stored a moment ago)."""
        try:
            return self.resolve(model_id)
        except ModelError:
            await self.catch_up()
            return self.resolve(model_id)

    async def catch_up(self) -> None:
        """Waits until every write the bucket held when called is applied here."""
        await self.view.catch_up()

    def is_a(self, model_id: str, ancestor_id: str) -> bool:
        """Whether a model is or extends another, both by internal id (models of different
        tenants never are)."""
        if tenant_of(ancestor_id) != tenant_of(model_id):
            return False
        try:
            return self.resolve(model_id).is_a(external_id(ancestor_id))
        except ModelError:
            return model_id == ancestor_id

    def latest_version(self, base_id: str) -> str | None:
        """Id of the highest stored version of ``base_id`` (the id before ';')."""
        versions = [mid for mid in self.models if version_of(mid)[0] == base_id]
        return max(versions, key=lambda mid: version_of(mid)[1], default=None)
