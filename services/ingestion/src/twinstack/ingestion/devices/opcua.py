"""OPC UA connectors: the gateway as an OPC UA client of each server the mapping names.

A connector logs on (security policy, user name or certificate), subscribes to the mapped nodes
and hands their value changes, with the server's source timestamps, to the pipeline in small
batches. It probes the server every second; when the server is gone it reconnects with backoff
and subscribes again, so a restarted server feeds its twins again without anyone acting.
Desired values of a mapped writable field are written to its node. Notifications arrive only
while connected: what a server sampled while the connection was down is not recovered.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.crypto import security_policies
from asyncua.ua.uaerrors import UaError

from twinstack.api.common.v1 import types_pb2
from twinstack.api.devices.v1 import devices_pb2
from twinstack.common.errors import UnavailableError
from twinstack.common.tasks import cancel_and_wait
from twinstack.common.tenancy import ids_of
from twinstack.ingestion.devices.directory import DeviceDirectory
from twinstack.ingestion.devices.mapping import OpcUaEndpoint, OpcUaItem
from twinstack.ingestion.devices.readings import Reading
from twinstack.modeling.values import to_json

logger = logging.getLogger(__name__)

# Hands (tenant, twin as the tenant names it, readings) to the pipeline; returns why they were
# rejected, or None.
ReadingSink = Callable[[str, str, list[Reading]], Awaitable[str | None]]

_POLICIES: Mapping[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
_PROBE_INTERVAL_S = 1.0
_FLUSH_INTERVAL_S = 0.2
_MAX_BACKOFF_S = 10.0


class _Notifications:
    """asyncua's subscription handler: value changes queued as readings."""

    def __init__(self, items: Mapping[str, OpcUaItem]) -> None:
        self._items = items
        self.pending: list[tuple[OpcUaItem, Reading]] = []

    def datachange_notification(self, node: Node, value: Any, data: Any) -> None:
        item = self._items.get(node.nodeid.to_string())
        if item is None or value is None:
            return
        stamp: datetime.datetime | None = data.monitored_item.Value.SourceTimestamp
        time_ns = None
        if stamp is not None:
            if stamp.tzinfo is None:  # OPC UA times are UTC
                stamp = stamp.replace(tzinfo=datetime.UTC)
            time_ns = int(stamp.timestamp() * 1_000_000) * 1_000
        self.pending.append((item, Reading(time_ns, {item.field: _json_value(value)})))


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    return value


class OpcUaConnector:
    """Keeps one server's items flowing into their twins.

    Args:
        endpoint: The server and its items.
        sink: Where readings go (tenant, twin id as the tenant names it, readings).
        directory: Where the connection's state is recorded.
    """

    def __init__(
        self, endpoint: OpcUaEndpoint, sink: ReadingSink, directory: DeviceDirectory
    ) -> None:
        self.endpoint = endpoint
        self._sink = sink
        self._directory = directory
        self._items = {ua.NodeId.from_string(i.node_id).to_string(): i for i in endpoint.items}
        self._writable = {(i.twin, i.field): i for i in endpoint.items if i.writable}
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def twins(self) -> list[str]:
        ids = ids_of(self.endpoint.tenant)
        return sorted({ids.inner(item.twin) for item in self.endpoint.items})

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"opcua {self.endpoint.endpoint}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    def writes(self, twin_id: str, field: str) -> bool:
        return (twin_id, field) in self._writable

    async def write(self, twin_id: str, field: str, value: types_pb2.Value) -> None:
        """Writes a desired value to the field's node, typed as the node's value is.

        Raises:
            UnavailableError: Not connected, or the server refused the write.
        """
        client = self._client
        if client is None or not self.connected.is_set():
            raise UnavailableError(f"OPC UA server {self.endpoint.endpoint} is not connected")
        node = client.get_node(self._writable[(twin_id, field)].node_id)
        try:
            variant_type = await node.read_data_type_as_variant_type()
            await node.write_value(ua.DataValue(ua.Variant(to_json(value), variant_type)))
        except (UaError, OSError, TimeoutError) as error:
            raise UnavailableError(f"OPC UA write of {field} failed: {error!r}") from error

    async def _run(self) -> None:
        backoff_s = 1.0
        while True:
            try:
                await self._connected_session()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.connected.clear()
                logger.warning("OPC UA %s: %r; reconnecting", self.endpoint.endpoint, error)
                self._record(online=False, problem=f"{type(error).__name__}: {error}")
            await asyncio.sleep(backoff_s)
            backoff_s = min(_MAX_BACKOFF_S, backoff_s * 2)

    async def _connected_session(self) -> None:
        client = await self._client_for_endpoint()
        notifications = _Notifications(self._items)
        await client.connect()
        try:
            subscription = await client.create_subscription(
                self.endpoint.publishing_interval_ms, notifications
            )
            for item in self.endpoint.items:
                interval_ms = (
                    item.sampling_interval_ms
                    if item.sampling_interval_ms is not None
                    else self.endpoint.sampling_interval_ms
                )
                await subscription.subscribe_data_change(
                    client.get_node(item.node_id), sampling_interval=ua.Double(interval_ms)
                )
            self._client = client
            self.connected.set()
            self._record(online=True)
            logger.info("OPC UA %s: subscribed", self.endpoint.endpoint)
            await self._forward(client, notifications)
        finally:
            self.connected.clear()
            self._client = None
            with contextlib.suppress(Exception):
                await client.disconnect()

    async def _forward(self, client: Client, notifications: _Notifications) -> None:
        """Hands notifications on until the server stops answering the probe."""
        since_probe_s = 0.0
        while True:
            await asyncio.sleep(_FLUSH_INTERVAL_S)
            await self._flush(notifications)
            since_probe_s += _FLUSH_INTERVAL_S
            if since_probe_s >= _PROBE_INTERVAL_S:
                since_probe_s = 0.0
                async with asyncio.timeout(2 * _PROBE_INTERVAL_S):
                    await client.nodes.server_state.read_value()

    async def _flush(self, notifications: _Notifications) -> None:
        pending, notifications.pending = notifications.pending, []
        by_twin: dict[str, list[Reading]] = {}
        for item, reading in pending:
            by_twin.setdefault(item.twin, []).append(reading)
        for twin, readings in by_twin.items():
            rejected = await self._sink(self.endpoint.tenant, twin, readings)
            self._directory.heard(
                self.endpoint.tenant,
                self.endpoint.device_id,
                devices_pb2.PROTOCOL_OPC_UA,
                self.twins(),
                rejected=rejected,
                online=True,
            )

    async def _client_for_endpoint(self) -> Client:
        endpoint = self.endpoint
        client = Client(endpoint.endpoint, timeout=4)
        client.application_uri = "urn:twinstack:device-gateway"
        if endpoint.security_policy != "None":
            assert endpoint.certificate_file
            assert endpoint.private_key_file
            await client.set_security(
                _POLICIES[endpoint.security_policy],
                certificate=str(endpoint.certificate_file),
                private_key=str(endpoint.private_key_file),
                server_certificate=str(endpoint.server_certificate_file)
                if endpoint.server_certificate_file
                else None,
                mode=getattr(ua.MessageSecurityMode, endpoint.security_mode),
            )
        if endpoint.username is not None and endpoint.password_file is not None:
            client.set_user(endpoint.username)
            client.set_password(endpoint.password_file.read_text().strip())
        if endpoint.user_certificate_file and endpoint.user_private_key_file:
            await client.load_client_certificate(str(endpoint.user_certificate_file))
            await client.load_private_key(endpoint.user_private_key_file)
        return client

    def _record(self, *, online: bool, problem: str | None = None) -> None:
        self._directory.heard(
            self.endpoint.tenant,
            self.endpoint.device_id,
            devices_pb2.PROTOCOL_OPC_UA,
            self.twins(),
            error=problem,
            online=online,
            details={"items": str(len(self.endpoint.items))},
            message=False,
        )
