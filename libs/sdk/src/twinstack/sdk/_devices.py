"""The device calls (served by the ingestion service's device gateway): the devices feeding
twins over MQTT, Sparkplug B and OPC UA, and commands to them."""

from __future__ import annotations

from typing import Any

from twinstack.api.devices.v1 import devices_pb2
from twinstack.sdk._transport import AsyncArea, SyncArea, Unary, async_call, sync_call
from twinstack.sdk.values import from_python, to_python

PROTOCOLS = {
    "mqtt": devices_pb2.PROTOCOL_MQTT,
    "sparkplug": devices_pb2.PROTOCOL_SPARKPLUG_B,
    "opcua": devices_pb2.PROTOCOL_OPC_UA,
}


def list_devices(protocol: str | None = None) -> Unary[list[devices_pb2.Device]]:
    """The devices the gateway has heard from, with their connection state.

    Args:
        protocol: ``mqtt``, ``sparkplug`` or ``opcua``; None: all.
    """
    request = devices_pb2.ListDevicesRequest(
        protocol=PROTOCOLS[protocol] if protocol else devices_pb2.PROTOCOL_UNSPECIFIED
    )
    return Unary("devices", "ListDevices", request, lambda r: list(r.devices))


def invoke_command(
    twin_id: str, command: str, request: Any = None, *, timeout_s: float | None = None
) -> Unary[Any]:
    """Sends a command the twin's model declares to its device and returns the device's
    response (as Python data).

    Args:
        twin_id: The twin.
        command: The command's name.
        request: Its request (Python data the request schema allows), if it takes one.
        timeout_s: How long to wait for the device (the service's default when None).

    Raises:
        InvalidArgumentError: The model declares no such command, or the request does not fit.
        DeadlineExceededError: The device did not answer in time (it may still have done it).
    """
    message = devices_pb2.InvokeCommandRequest(
        twin_id=twin_id,
        command=command,
        timeout_ms=int(timeout_s * 1000) if timeout_s else 0,
    )
    if request is not None:
        message.request.CopyFrom(from_python(request))
    # The call waits for the device: its deadline is the device's plus the way there and back.
    deadline_s = (timeout_s or 10.0) + 10.0
    return Unary(
        "devices",
        "InvokeCommand",
        message,
        lambda r: to_python(r.response) if r.HasField("response") else None,
        timeout_s=deadline_s,
    )


class Devices(SyncArea):
    """Devices and commands."""

    list = sync_call(list_devices)
    invoke = sync_call(invoke_command)


class AsyncDevices(AsyncArea):
    """Devices and commands, for asyncio."""

    list = async_call(list_devices)
    invoke = async_call(invoke_command)
