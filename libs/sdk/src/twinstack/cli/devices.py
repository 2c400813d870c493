"""``twinstack devices``: the devices feeding twins, and commands to them."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from google.protobuf.json_format import MessageToDict
from rich.table import Table

from twinstack.api.devices.v1 import devices_pb2
from twinstack.cli.shared import UserError, console, emit, open_client, short

devices_app = typer.Typer(
    help="Devices feeding twins over MQTT, Sparkplug B and OPC UA; commands to them.",
    invoke_without_command=True,
)

_PROTOCOL_NAMES = {
    devices_pb2.PROTOCOL_MQTT: "mqtt",
    devices_pb2.PROTOCOL_SPARKPLUG_B: "sparkplug b",
    devices_pb2.PROTOCOL_OPC_UA: "opc ua",
}


def _status(device: devices_pb2.Device) -> str:
    if device.status == devices_pb2.DEVICE_STATUS_ONLINE:
        return "[green]online[/green]"
    return "[yellow]offline[/yellow]"


@devices_app.callback()
def devices(
    context: typer.Context,
    protocol: Annotated[
        str | None, typer.Option(help="Only these: mqtt, sparkplug or opcua.")
    ] = None,
) -> None:
    """The devices the gateway has heard from: protocol, twins, connection, traffic and the
    last error (a rejected reading, a failed connection)."""
    if context.invoked_subcommand is not None:
        return
    if protocol not in (None, "mqtt", "sparkplug", "opcua"):
        raise UserError(f"unknown protocol {protocol!r}: mqtt, sparkplug or opcua")
    with open_client() as client:
        found = client.devices.list(protocol)

    def human() -> None:
        table = Table(title=f"devices ({len(found)})", title_justify="left")
        for column in ("device", "protocol", "twins", "status", "last seen", "messages",
                       "rejected", "last error"):  # fmt: skip
            table.add_column(
                column, justify="right" if column in ("messages", "rejected") else "left"
            )
        for device in found:
            seen = (
                device.last_seen_time.ToJsonString() if device.HasField("last_seen_time") else "-"
            )
            table.add_row(
                device.device_id,
                _PROTOCOL_NAMES.get(device.protocol, "?"),
                ", ".join(device.twin_ids) or "-",
                _status(device),
                seen,
                f"{device.messages:,}",
                f"{device.rejected_messages:,}",
                short(device.last_error) if device.last_error else "",
            )
        console.print(table)

    emit([MessageToDict(d, preserving_proto_field_name=True) for d in found], human)


@devices_app.command()
def invoke(
    twin_id: Annotated[str, typer.Argument(help="The twin whose device runs the command.")],
    command: Annotated[str, typer.Argument(help="A command the twin's model declares.")],
    request: Annotated[
        str | None, typer.Option(help='The request as JSON, e.g. \'{"reason": "service"}\'.')
    ] = None,
    timeout_s: Annotated[
        float | None, typer.Option("--timeout", help="Seconds to wait for the device.")
    ] = None,
) -> None:
    """Sends a command to a twin's device over MQTT and prints the device's response."""
    payload: Any = None
    if request is not None:
        try:
            payload = json.loads(request)
        except json.JSONDecodeError as error:
            raise UserError(f"--request is not JSON: {error}") from None
    with open_client() as client:
        response = client.devices.invoke(twin_id, command, payload, timeout_s=timeout_s)
    emit(
        {"twin_id": twin_id, "command": command, "response": response},
        lambda: console.print(json.dumps(response, indent=2, default=str)),
    )
