"""The device API of the ingestion service: the devices the gateway has heard from, and
commands to them."""

from __future__ import annotations

import grpc

from twinstack.api.devices.v1 import devices_pb2, devices_pb2_grpc
from twinstack.common.catalog import ModelCatalog
from twinstack.common.gatekeeper import current_principal, current_scope, require_in_scope
from twinstack.ingestion.devices.commands import CommandInvoker
from twinstack.ingestion.devices.directory import DeviceDirectory

DEVICE_SERVICE_NAME = devices_pb2.DESCRIPTOR.services_by_name["DeviceService"].full_name


class DeviceServicer(devices_pb2_grpc.DeviceServiceServicer):
    def __init__(
        self, catalog: ModelCatalog, directory: DeviceDirectory, commands: CommandInvoker
    ) -> None:
        self._catalog = catalog
        self._directory = directory
        self._commands = commands

    async def ListDevices(
        self,
        request: devices_pb2.ListDevicesRequest,
        context: grpc.aio.ServicerContext[
            devices_pb2.ListDevicesRequest, devices_pb2.ListDevicesResponse
        ],
    ) -> devices_pb2.ListDevicesResponse:
        devices = await self._directory.list(current_principal().tenant, request.protocol)
        scope = current_scope()
        visible = []
        for device in devices:
            # A device is shown to whoever may see one of its twins (an unmapped Sparkplug
            # node, which feeds none, to those who see every twin).
            admitted = [
                twin_id for twin_id in device.twin_ids if await scope.admits(self._catalog, twin_id)
            ]
            if admitted or (not device.twin_ids and scope.models is None):
                del device.twin_ids[:]
                device.twin_ids.extend(admitted)
                visible.append(device)
        return devices_pb2.ListDevicesResponse(devices=visible)

    async def InvokeCommand(
        self,
        request: devices_pb2.InvokeCommandRequest,
        context: grpc.aio.ServicerContext[
            devices_pb2.InvokeCommandRequest, devices_pb2.InvokeCommandResponse
        ],
    ) -> devices_pb2.InvokeCommandResponse:
        await require_in_scope(self._catalog, request.twin_id)
        response, request_id = await self._commands.invoke(
            request.twin_id,
            request.command,
            request.request if request.HasField("request") else None,
            request.timeout_ms / 1000 if request.timeout_ms else None,
        )
        return devices_pb2.InvokeCommandResponse(response=response, request_id=request_id)
