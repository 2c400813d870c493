"""The registry's gRPC surface: thin, delegating to the model, twin and relationship stores,
the query module and the index."""

from __future__ import annotations

import asyncio
from typing import Any, TypeAlias

import grpc

from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.common.errors import NotFoundError, PermissionDeniedError, UnavailableError
from twinstack.common.gatekeeper import (
    current_ids,
    current_principal,
    current_scope,
    require_in_scope,
)
from twinstack.common.ids import twin_id_violation
from twinstack.common.pagination import next_page, requested_page
from twinstack.common.quotas import QuotaOverrides, no_overrides, quota_of, require_quota
from twinstack.registry.index import RegistryIndex
from twinstack.registry.models import ModelStore
from twinstack.registry.query import parse_query, run_query
from twinstack.registry.relationships import RELATIONSHIP_RESOURCE, RelationshipStore
from twinstack.registry.settings import RegistrySettings
from twinstack.registry.twins import TWIN_RESOURCE, TwinStore

SERVICE_NAME = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name

# Handlers use neither side of the context's types; one alias keeps their signatures short.
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(
        self,
        models: ModelStore,
        twins: TwinStore,
        relationships: RelationshipStore,
        index: RegistryIndex,
        settings: RegistrySettings,
        *,
        quotas: QuotaOverrides = no_overrides,
    ) -> None:
        self._models = models
        self._twins = twins
        self._relationships = relationships
        self._index = index
        self._settings = settings
        self._quotas = quotas

    async def _caught_up(self, min_revision: int) -> None:
        """Read-your-write: waits until the index reflects ``min_revision`` (0: no wait)."""
        if min_revision:
            wait_s = self._settings.read_your_write_wait_s
            try:
                async with asyncio.timeout(wait_s):
                    await self._index.wait_for_revision(min_revision)
            except TimeoutError as error:
                raise UnavailableError(
                    f"the registry index did not reach revision {min_revision} in {wait_s} s"
                ) from error
        await self._index.loaded()

    async def CreateModels(
        self, request: registry_pb2.CreateModelsRequest, context: Context
    ) -> registry_pb2.CreateModelsResponse:
        return await self._models.create(
            request.sources,
            current_ids(),
            allow_breaking_changes=request.allow_breaking_changes,
            validate_only=request.validate_only,
        )

    async def GetModel(
        self, request: registry_pb2.GetModelRequest, context: Context
    ) -> registry_pb2.GetModelResponse:
        return registry_pb2.GetModelResponse(model=await self._models.get(request.model_id))

    async def ListModels(
        self, request: registry_pb2.ListModelsRequest, context: Context
    ) -> registry_pb2.ListModelsResponse:
        page = requested_page(request.page)
        models, more = await self._models.page(
            page.after, page.size, request.id_prefix, request.latest_only, current_ids().tenant
        )
        return registry_pb2.ListModelsResponse(
            models=models, page=next_page(models[-1].id if more and models else None)
        )

    def _visible(self, twins: list[registry_pb2.Twin]) -> list[registry_pb2.Twin]:
        """The twins of a page the caller's scope admits."""
        scope = current_scope()
        if scope.every_twin:
            return twins
        return [t for t in twins if scope.admits_twin(self._index.catalog, t.id, t.model_id)]

    async def CreateTwin(
        self, request: registry_pb2.CreateTwinRequest, context: Context
    ) -> registry_pb2.CreateTwinResponse:
        if not current_scope().admits_model(self._index.catalog, request.twin.model_id):
            raise PermissionDeniedError(
                f"{current_principal().subject} may create twins of its scoped models only",
                metadata={"verb": "twins.write", "model_id": request.twin.model_id[:256]},
            )
        directory = self._index.catalog.twins
        if directory.twin(request.twin.id) is None:
            tenant = current_principal().tenant
            require_quota(
                tenant,
                held=directory.count(tenant),
                adding=1,
                maximum=quota_of(
                    self._quotas, tenant, "max_twins", self._settings.tenant_max_twins
                ),
                quota="TWINSTACK_TENANT_MAX_TWINS",
                what="twins",
            )
        return registry_pb2.CreateTwinResponse(twin=await self._twins.create(request.twin))

    async def GetTwin(
        self, request: registry_pb2.GetTwinRequest, context: Context
    ) -> registry_pb2.GetTwinResponse:
        await require_in_scope(self._index.catalog, request.twin_id)
        return registry_pb2.GetTwinResponse(twin=await self._twins.get(request.twin_id))

    async def UpdateTwin(
        self, request: registry_pb2.UpdateTwinRequest, context: Context
    ) -> registry_pb2.UpdateTwinResponse:
        await require_in_scope(self._index.catalog, request.twin_id)
        twin = await self._twins.update(
            request.twin_id,
            request.set_properties,
            request.remove_properties,
            request.expected_revision,
            request.json_merge_patch,
        )
        return registry_pb2.UpdateTwinResponse(twin=twin)

    async def MigrateTwin(
        self, request: registry_pb2.MigrateTwinRequest, context: Context
    ) -> registry_pb2.MigrateTwinResponse:
        twin = await self._twins.migrate(
            request.twin_id,
            request.model_id,
            request.set_properties,
            request.drop_undeclared,
            request.expected_revision,
        )
        return registry_pb2.MigrateTwinResponse(twin=twin)

    async def DeleteTwin(
        self, request: registry_pb2.DeleteTwinRequest, context: Context
    ) -> registry_pb2.DeleteTwinResponse:
        await require_in_scope(self._index.catalog, request.twin_id)
        revision = await self._twins.delete(request.twin_id, request.expected_revision)
        return registry_pb2.DeleteTwinResponse(revision=revision)

    async def ListTwins(
        self, request: registry_pb2.ListTwinsRequest, context: Context
    ) -> registry_pb2.ListTwinsResponse:
        page = requested_page(request.page)
        await self._caught_up(request.min_revision)
        twins, more = await self._index.page(page.after, page.size, current_ids().tenant)
        return registry_pb2.ListTwinsResponse(
            twins=self._visible(twins), page=next_page(twins[-1].id if more and twins else None)
        )

    async def QueryTwins(
        self, request: registry_pb2.QueryTwinsRequest, context: Context
    ) -> registry_pb2.QueryTwinsResponse:
        page = requested_page(request.page)
        ids = current_ids()
        query = parse_query(request.query, self._index, ids)
        await self._caught_up(request.min_revision)
        twins, resume_after = run_query(
            self._index,
            query,
            page.after,
            page.size,
            self._settings.query_max_traversal_twins,
            ids=ids,
            max_scanned=self._settings.query_max_scanned_twins,
        )
        # Filtered after the query, within its budgets: a page may hold fewer than asked.
        return registry_pb2.QueryTwinsResponse(
            twins=self._visible(twins), page=next_page(resume_after)
        )

    async def _hidden(self, twin_id: str) -> bool:
        """Whether a well-formed twin id is outside the caller's scope (ill-formed ones are left
        to the stores, which refuse them alike for every caller)."""
        if twin_id_violation(twin_id, "") is not None:
            return False
        return not await current_scope().admits(self._index.catalog, twin_id)

    async def CreateRelationship(
        self, request: registry_pb2.CreateRelationshipRequest, context: Context
    ) -> registry_pb2.CreateRelationshipResponse:
        # Both ends must be in scope; either outside answers as a twin that does not exist.
        for twin_id in (request.relationship.source_id, request.relationship.target_id):
            if await self._hidden(twin_id):
                raise NotFoundError(TWIN_RESOURCE, twin_id, f"no twin {twin_id!r}")
        relationship = await self._relationships.create(request.relationship)
        return registry_pb2.CreateRelationshipResponse(relationship=relationship)

    async def DeleteRelationship(
        self, request: registry_pb2.DeleteRelationshipRequest, context: Context
    ) -> registry_pb2.DeleteRelationshipResponse:
        source_id, relationship_id = request.source_id, request.relationship_id
        target_ids = [
            r.target_id
            for r in self._index.graph.relationships_of(source_id, incoming=False)
            if r.id == relationship_id
        ]
        if await self._hidden(source_id) or any([await self._hidden(t) for t in target_ids]):
            raise NotFoundError(
                RELATIONSHIP_RESOURCE,
                f"{source_id}/{relationship_id}",
                f"twin {source_id!r} has no relationship {relationship_id!r}",
            )
        revision = await self._relationships.delete(
            source_id, relationship_id, request.expected_revision
        )
        return registry_pb2.DeleteRelationshipResponse(revision=revision)

    async def ListRelationships(
        self, request: registry_pb2.ListRelationshipsRequest, context: Context
    ) -> registry_pb2.ListRelationshipsResponse:
        page = requested_page(request.page)
        await self._caught_up(request.min_revision)
        incoming = request.direction == registry_pb2.RELATIONSHIP_DIRECTION_INCOMING
        scope = current_scope()
        # Outside the scope a twin has no relationships, and an edge to such a twin is not seen.
        edges = [
            r
            for r in self._index.graph.relationships_of(request.twin_id, incoming=incoming)
            if (not request.name or r.name == request.name)
            and (
                scope.every_twin or not await self._hidden(r.source_id if incoming else r.target_id)
            )
        ]
        if edges and await self._hidden(request.twin_id):
            edges = []

        def key(edge: registry_pb2.Relationship) -> str:
            return f"{edge.source_id}/{edge.id}"

        after = [e for e in edges if key(e) > page.after]
        chunk = after[: page.size]
        return registry_pb2.ListRelationshipsResponse(
            relationships=chunk,
            page=next_page(key(chunk[-1]) if len(after) > page.size else None),
        )
