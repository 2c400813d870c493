"""The registry service as the server bootstrap runs it: its dependencies acquired in order
and released in reverse, and its servicer registered."""

from __future__ import annotations

import contextlib

import grpc

from twinstack.api.access.v1 import access_pb2_grpc
from twinstack.api.registry.v1 import registry_pb2_grpc
from twinstack.common.app import Registration, ServiceApp, started
from twinstack.common.events import EventPublisher
from twinstack.common.nats import ACCESS_BUCKET, REGISTRY_BUCKET, key_value
from twinstack.registry.access import AccessAdmin
from twinstack.registry.access_service import SERVICE_NAME as ACCESS_SERVICE_NAME
from twinstack.registry.access_service import AccessServicer
from twinstack.registry.index import RegistryIndex
from twinstack.registry.models import ModelLimits, ModelStore
from twinstack.registry.relationships import RelationshipStore
from twinstack.registry.service import SERVICE_NAME, RegistryServicer
from twinstack.registry.settings import RegistrySettings
from twinstack.registry.twins import TwinStore


class RegistryApp(ServiceApp[RegistrySettings]):
    """The registry as the server bootstrap runs it."""

    service_names = (SERVICE_NAME, ACCESS_SERVICE_NAME)

    async def open(self, resources: contextlib.AsyncExitStack) -> Registration:
        settings = self.settings
        backbone = await self.backbone(resources, "twinstack-registry")
        bucket = await key_value(backbone.js, REGISTRY_BUCKET)
        js = backbone.js
        index = await started(resources, RegistryIndex(bucket))
        servicer = RegistryServicer(
            ModelStore(
                bucket,
                js,
                index,
                ModelLimits(
                    max_source_bytes=settings.max_model_source_bytes,
                    max_models=settings.max_models_per_request,
                    max_dtdl_schema_nodes=settings.max_dtdl_schema_nodes,
                    max_import_notes=settings.max_import_notes,
                ),
            ),
            TwinStore(bucket, js, settings.max_properties_per_twin, index),
            RelationshipStore(bucket, js, index),
            index,
            settings,
            quotas=self.quota_overrides,
        )
        assert self.access is not None
        directory, _ = self.access
        access = AccessServicer(
            AccessAdmin(await key_value(js, ACCESS_BUCKET), directory, EventPublisher(js))
        )

        def register(server: grpc.aio.Server) -> None:
            registry_pb2_grpc.add_RegistryServiceServicer_to_server(servicer, server)
            access_pb2_grpc.add_AccessServiceServicer_to_server(access, server)

        return register
