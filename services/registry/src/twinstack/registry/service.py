"""The registry's gRPC surface: thin, delegating to :mod:`twinstack.registry.twins`."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.common.nats import REGISTRY_TWINS_BUCKET, Backbone, key_value
from twinstack.registry.settings import RegistrySettings
from twinstack.registry.twins import TwinStore

SERVICE_NAME = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self, twins: TwinStore) -> None:
        self._twins = twins

    async def CreateTwin(
        self,
        request: registry_pb2.CreateTwinRequest,
        context: grpc.aio.ServicerContext[
            registry_pb2.CreateTwinRequest, registry_pb2.CreateTwinResponse
        ],
    ) -> registry_pb2.CreateTwinResponse:
        return registry_pb2.CreateTwinResponse(twin=await self._twins.create(request.twin))

    async def GetTwin(
        self,
        request: registry_pb2.GetTwinRequest,
        context: grpc.aio.ServicerContext[
            registry_pb2.GetTwinRequest, registry_pb2.GetTwinResponse
        ],
    ) -> registry_pb2.GetTwinResponse:
        return registry_pb2.GetTwinResponse(twin=await self._twins.get(request.twin_id))


class RegistryApp:
    """The registry as the server bootstrap runs it."""

    service_names: Sequence[str] = (SERVICE_NAME,)

    def __init__(self, settings: RegistrySettings) -> None:
        self._settings = settings
        self._backbone: Backbone | None = None
        self._twins: TwinStore | None = None

    async def start(self) -> None:
        self._backbone = await Backbone.connect(self._settings, "twinstack-registry")
        bucket = await key_value(self._backbone.js, REGISTRY_TWINS_BUCKET)
        self._twins = TwinStore(bucket, self._backbone.js, self._settings.max_properties_per_twin)

    def register(self, server: grpc.aio.Server) -> None:
        assert self._twins is not None, "start() first"
        registry_pb2_grpc.add_RegistryServiceServicer_to_server(
            RegistryServicer(self._twins), server
        )

    async def stop(self) -> None:
        if self._backbone is not None:
            await self._backbone.close()
