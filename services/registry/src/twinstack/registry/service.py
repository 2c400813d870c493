"""The registry's gRPC surface: thin, delegating to :mod:`twinstack.registry.twins` and the
twin index."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.common.directory import TwinDirectory
from twinstack.common.errors import UnavailableError
from twinstack.common.nats import REGISTRY_TWINS_BUCKET, Backbone, key_value
from twinstack.common.pagination import next_page, requested_page
from twinstack.registry.settings import RegistrySettings
from twinstack.registry.twins import TwinStore

SERVICE_NAME = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self, twins: TwinStore, index: TwinDirectory, settings: RegistrySettings) -> None:
        self._twins = twins
        self._index = index
        self._settings = settings

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

    async def UpdateTwin(
        self,
        request: registry_pb2.UpdateTwinRequest,
        context: grpc.aio.ServicerContext[
            registry_pb2.UpdateTwinRequest, registry_pb2.UpdateTwinResponse
        ],
    ) -> registry_pb2.UpdateTwinResponse:
        twin = await self._twins.update(
            request.twin_id,
            request.set_properties,
            request.remove_properties,
            request.expected_revision,
        )
        return registry_pb2.UpdateTwinResponse(twin=twin)

    async def DeleteTwin(
        self,
        request: registry_pb2.DeleteTwinRequest,
        context: grpc.aio.ServicerContext[
            registry_pb2.DeleteTwinRequest, registry_pb2.DeleteTwinResponse
        ],
    ) -> registry_pb2.DeleteTwinResponse:
        revision = await self._twins.delete(request.twin_id, request.expected_revision)
        return registry_pb2.DeleteTwinResponse(revision=revision)

    async def ListTwins(
        self,
        request: registry_pb2.ListTwinsRequest,
        context: grpc.aio.ServicerContext[
            registry_pb2.ListTwinsRequest, registry_pb2.ListTwinsResponse
        ],
    ) -> registry_pb2.ListTwinsResponse:
        page = requested_page(request.page)
        if request.min_revision:
            wait_s = self._settings.read_your_write_wait_s
            try:
                async with asyncio.timeout(wait_s):
                    await self._index.wait_for_revision(request.min_revision)
            except TimeoutError as error:
                raise UnavailableError(
                    f"the twin index did not reach revision {request.min_revision} in {wait_s} s"
                ) from error
        twins, more = await self._index.page(page.after, page.size)
        return registry_pb2.ListTwinsResponse(
            twins=twins, page=next_page(twins[-1].id if more and twins else None)
        )


class RegistryApp:
    """The registry as the server bootstrap runs it."""

    service_names: Sequence[str] = (SERVICE_NAME,)

    def __init__(self, settings: RegistrySettings) -> None:
        self._settings = settings
        self._backbone: Backbone | None = None
        self._twins: TwinStore | None = None
        self._index: TwinDirectory | None = None

    async def start(self) -> None:
        self._backbone = await Backbone.connect(self._settings, "twinstack-registry")
        bucket = await key_value(self._backbone.js, REGISTRY_TWINS_BUCKET)
        self._index = TwinDirectory(bucket)
        await self._index.start()
        self._twins = TwinStore(
            bucket, self._backbone.js, self._settings.max_properties_per_twin, self._index
        )

    def register(self, server: grpc.aio.Server) -> None:
        assert self._twins is not None, "start() first"
        assert self._index is not None, "start() first"
        registry_pb2_grpc.add_RegistryServiceServicer_to_server(
            RegistryServicer(self._twins, self._index, self._settings), server
        )

    async def stop(self) -> None:
        if self._index is not None:
            await self._index.stop()
        if self._backbone is not None:
            await self._backbone.close()
