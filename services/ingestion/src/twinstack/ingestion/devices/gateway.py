"""The device gateway as one ingestion replica runs it.

Every ingestion replica can answer ListDevices and send commands. The rest runs on one replica
at a time, the leader of a lease in the ``device_gateway`` bucket: Sparkplug B sequence numbers
must be read in order per edge node, and an OPC UA server must have one subscriber, not one per
replica. When the leader goes, another replica takes the lease within its TTL and carries on
from the durable consumers; Sparkplug nodes are asked to rebirth by the new leader, as the
specification has a host application do.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from twinstack.common.consumer import DeadLetters, PullConsumer, PullConsumerSettings
from twinstack.common.errors import UnavailableError
from twinstack.common.events import DESIRED_CHANGED, INGESTION_DEAD_LETTER
from twinstack.common.leadership import Leadership
from twinstack.common.nats import DEVICE_GATEWAY_LEASE_TTL_S, DEVICES_STREAM, EVENTS_STREAM
from twinstack.common.tasks import cancel_and_wait
from twinstack.ingestion.devices.bridge import DeviceBridge, RejectedError
from twinstack.ingestion.devices.directory import DeviceDirectory
from twinstack.ingestion.devices.downlink import DesiredDelivery
from twinstack.ingestion.devices.mapping import DeviceMapping
from twinstack.ingestion.devices.mqtt_client import MqttEndpoint, MqttPublisher
from twinstack.ingestion.devices.opcua import OpcUaConnector
from twinstack.ingestion.devices.readings import Reading
from twinstack.ingestion.devices.sparkplug import SparkplugSessions

logger = logging.getLogger(__name__)

LEASE_KEY = "leader"
BRIDGE_DURABLE = "device-gateway"
DESIRED_DURABLE = "device-desired"
_MQTT_RETRY_S = 2.0
# How long into a leadership term desired values wait for the gateway's MQTT logon instead of
# failing: the consumer starts faster than the logon, and failed deliveries back off (1, 2, 4...
# s) and are parked after a few. Later (the listener is down) they fail at once.
_MQTT_LOGON_WAIT_S = 10.0


@dataclass(frozen=True)
class GatewaySettings:
    """How the gateway runs (from the ingestion settings)."""

    member: str
    mqtt: MqttEndpoint | None
    mapping: DeviceMapping
    fetch_messages: int
    ack_wait_s: float
    renew_interval_s: float

    @property
    def bridge_consumer(self) -> PullConsumerSettings:
        """The consumer of the DEVICES stream."""
        return PullConsumerSettings(
            stream=DEVICES_STREAM,
            subject=">",
            durable=BRIDGE_DURABLE,
            fetch_messages=self.fetch_messages,
            ack_wait_s=self.ack_wait_s,
        )


class DeviceGateway:
    """Runs the bridge, the desired-values delivery and the OPC UA connectors while leading."""

    def __init__(  # noqa: PLR0917 - the gateway's whole wiring
        self,
        nc: NatsClient,
        js: JetStreamContext,
        lease_bucket: KeyValue,
        directory: DeviceDirectory,
        sessions: SparkplugSessions,
        bridge: DeviceBridge,
        settings: GatewaySettings,
    ) -> None:
        self._nc = nc
        self._js = js
        self._directory = directory
        self._bridge = bridge
        self._settings = settings
        self.sessions = sessions
        self._connectors = [
            OpcUaConnector(endpoint, self._from_opcua, directory)
            for endpoint in settings.mapping.opcua
        ]
        self._mqtt: MqttPublisher | None = None
        self._mqtt_logged_on = asyncio.Event()
        self._mqtt_logon_deadline = 0.0  # event loop time
        self._mqtt_task: asyncio.Task[None] | None = None
        self._running: list[PullConsumer | OpcUaConnector] = []
        self.leadership = Leadership(
            lease_bucket,
            LEASE_KEY,
            settings.member,
            ttl_s=DEVICE_GATEWAY_LEASE_TTL_S,
            renew_interval_s=settings.renew_interval_s,
            on_gained=self._lead,
            on_lost=self._follow,
        )

    async def start(self) -> None:
        await self.leadership.start()

    async def stop(self) -> None:
        await self.leadership.stop()

    async def _lead(self) -> None:
        # What an earlier term knew of the edge nodes may be stale: they are asked to rebirth.
        self.sessions.reset()
        await self._directory.start()
        if self._settings.mqtt is not None:
            self._mqtt_logon_deadline = asyncio.get_running_loop().time() + _MQTT_LOGON_WAIT_S
            self._mqtt_task = asyncio.create_task(self._connect_mqtt(self._settings.mqtt))
        bridge = PullConsumer(self._js, self._settings.bridge_consumer, self._bridge.handle)
        desired_settings = PullConsumerSettings(
            stream=EVENTS_STREAM,
            subject=DESIRED_CHANGED.wildcard,
            durable=DESIRED_DURABLE,
            fetch_messages=64,
            ack_wait_s=self._settings.ack_wait_s,
        )
        delivery = DesiredDelivery(
            self._nc,
            None if self._settings.mqtt is None else self._logged_on_mqtt,
            self.sessions,
            self._connectors,
            DeadLetters(self._js, INGESTION_DEAD_LETTER, desired_settings),
        )
        desired = PullConsumer(self._js, desired_settings, delivery.handle)
        parts: list[PullConsumer | OpcUaConnector] = [bridge, desired, *self._connectors]
        for part in parts:
            await part.start()
            self._running.append(part)

    async def _follow(self) -> None:
        running, self._running = self._running, []
        for part in reversed(running):
            await part.stop()
        if self._mqtt_task is not None:
            await cancel_and_wait(self._mqtt_task)
            self._mqtt_task = None
        self._mqtt_logged_on.clear()
        if self._mqtt is not None:
            await self._mqtt.stop()
            self._mqtt = None
        await self._directory.stop()

    async def _logged_on_mqtt(self) -> MqttPublisher:
        try:
            async with asyncio.timeout_at(self._mqtt_logon_deadline):
                await self._mqtt_logged_on.wait()
        except TimeoutError:
            pass
        if self._mqtt is None:
            raise UnavailableError("the gateway is not logged on to the MQTT listener yet")
        return self._mqtt

    async def _connect_mqtt(self, endpoint: MqttEndpoint) -> None:
        """Logs on to the MQTT listener, trying again until it answers (it starts with
        nats-server, which may still be starting)."""
        while True:
            publisher = MqttPublisher(endpoint)
            try:
                await publisher.start(timeout_s=10.0)
            except asyncio.CancelledError:
                await publisher.stop()  # its network thread would outlive the leadership
                raise
            except (UnavailableError, OSError) as error:
                logger.warning("MQTT listener %s: %s; trying again", endpoint.url, error)
                await asyncio.sleep(_MQTT_RETRY_S)
                continue
            self._mqtt = publisher
            self._mqtt_logged_on.set()
            return

    async def _from_opcua(self, tenant: str, twin_id: str, readings: list[Reading]) -> str | None:
        try:
            await self._bridge.ingest(tenant, twin_id, readings)
        except RejectedError as rejection:
            logger.warning("OPC UA readings of %s rejected: %s", twin_id, rejection.reason)
            return rejection.reason
        return None
