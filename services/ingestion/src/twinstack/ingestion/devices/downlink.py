"""Desired values on their way to the devices.

The state service announces every change of a twin's desired values on
``evt.state.desired.<twin>``. The gateway's leader consumes them (a durable consumer, so none is
missed while no leader runs) and delivers each:

- as a retained MQTT message on ``twins/<twin id>/desired``, holding every desired value, so a
  device that connects later gets them at once;
- to a Sparkplug B edge node or device the mapping binds to the twin, as an NCMD or DCMD of the
  fields still to reach, typed as its birth declared the metrics;
- to the OPC UA nodes mapped as writable fields of the twin.

A delivery that fails (MQTT listener or OPC UA server unreachable) is retried with backoff; an
older change delivered after a newer one is skipped, so a device never goes back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from twinstack.api.common.v1 import events_pb2
from twinstack.common.consumer import TRANSIENT_ERRORS, DeadLetters
from twinstack.common.device_topics import DESIRED, TwinTopic
from twinstack.common.errors import UnavailableError
from twinstack.common.tenancy import external_id, tenant_of
from twinstack.ingestion.devices.mqtt_client import MqttPublisher
from twinstack.ingestion.devices.opcua import OpcUaConnector
from twinstack.ingestion.devices.sparkplug import SparkplugSessions, command, command_subject
from twinstack.modeling.values import to_json

logger = logging.getLogger(__name__)

_RETRYABLE: tuple[type[BaseException], ...] = (UnavailableError, *TRANSIENT_ERRORS)


def desired_document(event: events_pb2.DesiredChangedEvent) -> bytes:
    """What a device reads on its desired topic."""
    return json.dumps(
        {
            "desired": {name: to_json(value) for name, value in sorted(event.desired.items())},
            "pending": list(event.delta_fields),
            "revision": event.state_revision,
            "time": event.time.ToJsonString(),
        }
    ).encode()


class DesiredDelivery:
    """The handler of the desired-values consumer."""

    def __init__(
        self,
        nc: NatsClient,
        mqtt: Callable[[], Awaitable[MqttPublisher]] | None,
        sessions: SparkplugSessions,
        connectors: Sequence[OpcUaConnector],
        dead_letters: DeadLetters,
    ) -> None:
        self._nc = nc
        self._mqtt = mqtt
        self._sessions = sessions
        self._connectors = connectors
        self._dead_letters = dead_letters
        # The newest state revision delivered per twin.
        self._delivered: dict[str, int] = {}

    async def handle(self, messages: list[Msg]) -> None:
        for message in messages:
            try:
                event = events_pb2.DesiredChangedEvent.FromString(message.data)
            except ValueError as error:
                await self._dead_letters.park(message, f"undecodable desired event: {error}")
                continue
            if event.state_revision < self._delivered.get(event.twin_id, 0):
                await message.ack()  # a newer change was delivered already
                continue
            try:
                await self.deliver(event)
            except _RETRYABLE as error:
                await self._dead_letters.retry_or_park(message, error, "desired not delivered")
                continue
            self._delivered[event.twin_id] = event.state_revision
            await message.ack()

    async def deliver(self, event: events_pb2.DesiredChangedEvent) -> None:
        tenant, twin = tenant_of(event.twin_id), external_id(event.twin_id)
        if self._mqtt is not None:  # without TWINSTACK_MQTT_URL: Sparkplug and OPC UA only
            mqtt = await self._mqtt()  # UnavailableError: not logged on (yet)
            await mqtt.publish(
                TwinTopic(tenant, twin, DESIRED).mqtt_topic(), desired_document(event), retain=True
            )
        pending = {
            name: event.desired[name] for name in event.delta_fields if name in event.desired
        }
        binding = self._sessions.binding_of_twin(tenant, twin)
        if binding is not None and pending:
            values = {}
            types = {}
            for name, value in pending.items():
                metric = binding.metric_of(name)
                dtype = None if metric is None else self._sessions.metric_type(binding, metric)
                if metric is not None and dtype is not None:
                    values[metric], types[metric] = to_json(value), dtype
            if values:
                payload = command(values, types, device=binding.device is not None)
                await self._nc.publish(command_subject(binding), payload)
        for connector in self._connectors:
            if connector.endpoint.tenant != tenant:
                continue
            for name, value in pending.items():
                if connector.writes(twin, name):
                    await connector.write(twin, name, value)
