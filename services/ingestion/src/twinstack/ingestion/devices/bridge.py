"""From the DEVICES stream into the telemetry pipeline.

nats-server's MQTT listener puts every device reading on a subject the DEVICES stream captures
(a work queue). The bridge takes them in batches from one durable consumer, validates each
message exactly as gRPC ingest validates a request (the same validator, acting for the tenant
the topic names), publishes the accepted readings to TELEMETRY and waits for JetStream's
acknowledgement, and only then acknowledges the device message. A message whose readings are
rejected is answered on its twin's ``errors`` topic with the reasons and parked on the
dead-letter subject; nothing is dropped without a trace. A reading without its own time takes
the time the DEVICES stream stored it, so a message delivered again after a crash carries the
same points, which InfluxDB stores once (one point per series and time) and live state
ignores (not newer than what it holds).

The messages of one twin in a fetched batch are validated together and published as one
TELEMETRY message; only if that is refused are they taken one by one, so that exactly the bad
ones are refused.

Messages of one topic (one twin, or one Sparkplug edge node) are handled in order; different
ones concurrently.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from twinstack.api.common.v1 import events_pb2, types_pb2
from twinstack.api.devices.v1 import devices_pb2
from twinstack.common.access import DEFAULT_TENANT, Principal, PrincipalKind
from twinstack.common.catalog import ModelCatalog
from twinstack.common.consumer import TRANSIENT_ERRORS, DeadLetters
from twinstack.common.device_topics import (
    ERRORS,
    TwinTopic,
    is_sparkplug,
    mqtt_topic,
    parse_subject,
)
from twinstack.common.errors import (
    FieldViolation,
    InvalidArgumentError,
    LimitExceededError,
    ResourceExhaustedError,
    UnavailableError,
)
from twinstack.common.gatekeeper import acting_as
from twinstack.common.tenancy import ids_of
from twinstack.ingestion.batching import BatchValidator
from twinstack.ingestion.devices.directory import DeviceDirectory
from twinstack.ingestion.devices.mapping import SparkplugBinding
from twinstack.ingestion.devices.readings import (
    Reading,
    ReadingError,
    parse_readings,
    to_points,
)
from twinstack.ingestion.devices.sparkplug import (
    SparkplugSessions,
    SparkplugTopic,
    command_subject,
    rebirth_request,
)
from twinstack.ingestion.publisher import TelemetryPublisher
from twinstack.modeling.document import ModelError, Telemetry

logger = logging.getLogger(__name__)

# Failures of the pipeline, not of the message: it goes back to the stream and comes again.
_RETRYABLE: tuple[type[BaseException], ...] = (
    *TRANSIENT_ERRORS,
    UnavailableError,
    ResourceExhaustedError,
)
_REDELIVERY_DELAY_S = 1.0


class RejectedError(Exception):
    """A device message that cannot become telemetry, with the reasons."""

    def __init__(self, reason: str, violations: Sequence[FieldViolation] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.violations = list(violations)


@dataclass(frozen=True)
class BridgeLimits:
    """How much one device message may hold, and how far in the future its times may be."""

    max_readings: int
    max_future_skew_s: float


def gateway_principal(tenant: str) -> Principal:
    """Who the gateway acts as when it validates a tenant's device readings: the topic they
    came on proves the tenant (NATS lets a device publish only its twins' topics)."""
    return Principal("service:device-gateway", tenant, PrincipalKind.SERVICE)


def received_ns(message: Msg) -> int:
    """When the DEVICES stream stored the message: the same on every delivery."""
    stamp: datetime.datetime = message.metadata.timestamp
    return int(stamp.timestamp() * 1_000_000) * 1_000


class DeviceBridge:
    """Turns device messages into telemetry (the handler of the DEVICES consumer)."""

    def __init__(  # noqa: PLR0917 - the bridge's whole wiring
        self,
        nc: NatsClient,
        catalog: ModelCatalog,
        validator: BatchValidator,
        publisher: TelemetryPublisher,
        dead_letters: DeadLetters,
        directory: DeviceDirectory,
        sessions: SparkplugSessions,
        limits: BridgeLimits,
    ) -> None:
        self._nc = nc
        self._catalog = catalog
        self._validator = validator
        self._publisher = publisher
        self._dead_letters = dead_letters
        self._directory = directory
        self._sessions = sessions
        self._limits = limits

    async def handle(self, messages: list[Msg]) -> None:
        by_source: dict[str, list[Msg]] = defaultdict(list)
        for message in messages:
            by_source[_source(message.subject)].append(message)
        await asyncio.gather(*(self._handle_in_order(batch) for batch in by_source.values()))

    async def _handle_in_order(self, messages: list[Msg]) -> None:
        if not is_sparkplug(messages[0].subject) and len(messages) > 1:
            try:
                if await self._readings_together(messages):
                    return
            except _RETRYABLE as error:
                logger.warning("device messages not taken now (%r); they come again", error)
                for message in messages:
                    await message.nak(delay=_REDELIVERY_DELAY_S)
                return
            except Exception:
                logger.exception("device messages failed together; taking them one by one")
        for index, message in enumerate(messages):
            try:
                if is_sparkplug(message.subject):
                    await self._sparkplug(message)
                else:
                    await self._readings(message)
            except _RETRYABLE as error:
                logger.warning("device message not taken now (%r); it comes again", error)
                # The ones behind it would overtake it: they come again after it.
                for later in messages[index:]:
                    await later.nak(delay=_REDELIVERY_DELAY_S)
                return
            except Exception as error:
                # A message nothing above foresaw must not come back forever: after a few
                # deliveries it is parked with the reason.
                logger.exception("device message failed")
                await self._dead_letters.retry_or_park(message, error, f"failed: {error!r}")

    async def _readings_together(self, messages: list[Msg]) -> bool:
        """Takes messages of one twin topic with one validation and one publish (per-message
        costs dominate in Python); False, having taken none, if one of them is refused, so
        that they are taken one by one and only the bad ones are refused."""
        topic = parse_subject(messages[0].subject)
        if topic is None:
            return False
        points = []
        try:
            telemetry = await self._declared(ids_of(topic.tenant).inner(topic.twin_id))
            for message in messages:
                readings = parse_readings(message.data, max_readings=self._limits.max_readings)
                points += to_points(topic.twin_id, readings, telemetry, received_ns(message))
            batches = await self._validated(topic.tenant, points)
        except (ReadingError, InvalidArgumentError, LimitExceededError):
            return False
        await self._publisher.publish(batches)
        device_id = f"mqtt:{mqtt_topic(messages[0].subject).rsplit('/', 1)[0]}"
        internal_id = ids_of(topic.tenant).inner(topic.twin_id)
        for message in messages:
            self._directory.heard(topic.tenant, device_id, devices_pb2.PROTOCOL_MQTT, [internal_id])
            await message.ack()
        return True

    async def _readings(self, message: Msg) -> None:
        topic = parse_subject(message.subject)
        if topic is None:  # the stream captures twin topics only
            await self._dead_letters.park(message, "not a twin topic")
            return
        device_id = f"mqtt:{mqtt_topic(message.subject).rsplit('/', 1)[0]}"
        internal_id = ids_of(topic.tenant).inner(topic.twin_id)
        try:
            readings = parse_readings(message.data, max_readings=self._limits.max_readings)
            batches = await self.batches_of(
                topic.tenant, topic.twin_id, readings, received_ns(message)
            )
            await self._publisher.publish(batches)
        except ReadingError as error:
            await self._reject(message, topic, RejectedError(str(error)), device_id)
            return
        except (InvalidArgumentError, LimitExceededError) as error:
            await self._reject(message, topic, _rejected(error), device_id)
            return
        self._directory.heard(topic.tenant, device_id, devices_pb2.PROTOCOL_MQTT, [internal_id])
        await message.ack()

    async def _sparkplug(self, message: Msg) -> None:
        topic = SparkplugTopic.parse(message.subject)
        if topic is None:
            await self._dead_letters.park(message, "not a Sparkplug B topic")
            return
        outcome = self._sessions.handle(topic, message.data)
        if outcome.rebirth:
            node = SparkplugBinding(group=topic.group, edge_node=topic.edge_node, twin="-")
            await self._nc.publish(command_subject(node), rebirth_request())
        bindings = self._sessions.bindings_of(topic)
        status = self._sessions.status(topic)
        sender = f"spb:{topic.group}/{topic.edge_node}" + (
            f"/{topic.device}" if topic.device else ""
        )
        if all(binding.device_id != sender for binding in bindings):
            # A sender no binding names is listed too: the node of mapped devices as what it
            # is (its death, which also ends its devices' sessions below, lists it offline),
            # anything else as unmapped.
            unmapped = topic.device is not None or not self._sessions.has_devices(topic)
            self._directory.heard(
                DEFAULT_TENANT,
                sender,
                devices_pb2.PROTOCOL_SPARKPLUG_B,
                [],
                rejected=outcome.problem
                or ("no mapping names this node or device" if unmapped else None),
                online=status.online,
                details=status.details,
            )
        if not bindings:
            await message.ack()
            return
        stamp_ns = received_ns(message)
        batches = [
            await self._connection_batch(binding, change, stamp_ns)
            for binding, change in outcome.connections
        ]
        # Bindings hold a dict (their metric names), so they are no keys themselves.
        by_binding: dict[str, tuple[SparkplugBinding, list[Reading]]] = {}
        for binding, reading in outcome.readings:
            by_binding.setdefault(binding.device_id, (binding, []))[1].append(reading)
        rejections: list[tuple[SparkplugBinding, RejectedError]] = []
        for binding, readings in by_binding.values():
            try:
                batches += await self.batches_of(binding.tenant, binding.twin, readings, stamp_ns)
            except ReadingError as error:
                rejections.append((binding, RejectedError(str(error))))
            except (InvalidArgumentError, LimitExceededError) as error:
                rejections.append((binding, _rejected(error)))
        await self._publisher.publish([batch for batch in batches if batch is not None])
        for binding in bindings:
            refused = next((r for b, r in rejections if b == binding), None)
            self._directory.heard(
                binding.tenant,
                binding.device_id,
                devices_pb2.PROTOCOL_SPARKPLUG_B,
                [ids_of(binding.tenant).inner(binding.twin)],
                rejected=refused.reason if refused else outcome.problem,
                online=status.online,
                details=status.details,
            )
        if not rejections:
            await message.ack()
            return
        for binding, rejection in rejections:
            await self._tell_device(
                TwinTopic(binding.tenant, binding.twin, ERRORS), message, rejection
            )
        await self._dead_letters.park(
            message,
            "; ".join(f"{b.twin}: {_described(r)}" for b, r in rejections),
            key=rejections[0][0].twin,
        )

    async def _declared(self, internal_id: str) -> Mapping[str, Telemetry]:
        """The telemetry the twin's model declares (none for a twin that does not exist: the
        validator names it unknown)."""
        twin = await self._catalog.get(internal_id)
        if twin is None:
            return {}
        try:
            return (await self._catalog.resolve_current(twin.model_id)).telemetry
        except ModelError:
            return {}

    async def batches_of(
        self, tenant: str, twin_id: str, readings: list[Reading], received_ns: int
    ) -> list[events_pb2.TelemetryBatch]:
        """The TELEMETRY messages of a twin's readings, validated as gRPC ingest validates
        (a reading without its own time was observed at ``received_ns``).

        Raises:
            ReadingError: A value that is no value (null).
            InvalidArgumentError: Naming every problem, as for a gRPC request.
            LimitExceededError: Too many readings.
        """
        telemetry = await self._declared(ids_of(tenant).inner(twin_id))
        return await self._validated(tenant, to_points(twin_id, readings, telemetry, received_ns))

    async def _validated(
        self, tenant: str, points: list[types_pb2.TelemetryPoint]
    ) -> list[events_pb2.TelemetryBatch]:
        latest_allowed_ns = time.time_ns() + int(self._limits.max_future_skew_s * 1e9)
        with acting_as(gateway_principal(tenant)):
            return await self._validator.validate(points, [], latest_allowed_ns=latest_allowed_ns)

    async def ingest(self, tenant: str, twin_id: str, readings: list[Reading]) -> None:
        """Publishes readings that came other than on the DEVICES stream (OPC UA); a rejection
        is recorded and logged, as there is no message to answer or park."""
        try:
            await self._publisher.publish(
                await self.batches_of(tenant, twin_id, readings, time.time_ns())
            )
        except ReadingError as error:
            raise RejectedError(str(error)) from error
        except (InvalidArgumentError, LimitExceededError) as error:
            raise _rejected(error) from error

    async def _connection_batch(
        self, binding: SparkplugBinding, change: int, stamp_ns: int
    ) -> events_pb2.TelemetryBatch | None:
        internal_id = ids_of(binding.tenant).inner(binding.twin)
        twin = await self._catalog.get(internal_id)
        if twin is None:
            return None
        batch = events_pb2.TelemetryBatch(
            model_id=twin.model_id,
            frame=types_pb2.TelemetryFrame(twin_id=internal_id),
            connection=events_pb2.DeviceConnection(change=change),  # type: ignore[arg-type]
        )
        batch.connection.time.FromNanoseconds(stamp_ns)
        return batch

    async def _reject(
        self, message: Msg, topic: TwinTopic, rejection: RejectedError, device: str
    ) -> None:
        await self._tell_device(TwinTopic(topic.tenant, topic.twin_id, ERRORS), message, rejection)
        await self._dead_letters.park(message, _described(rejection), key=topic.twin_id)
        internal_id = ids_of(topic.tenant).inner(topic.twin_id)
        self._directory.heard(
            topic.tenant,
            device,
            devices_pb2.PROTOCOL_MQTT,
            [internal_id],
            rejected=_described(rejection),
        )

    async def _tell_device(self, errors: TwinTopic, message: Msg, rejection: RejectedError) -> None:
        body = {
            "topic": mqtt_topic(message.subject),
            "reason": rejection.reason,
            "violations": [
                {"field": v.field, "description": v.description} for v in rejection.violations
            ],
            "received_time": datetime.datetime.fromtimestamp(
                received_ns(message) / 1e9, datetime.UTC
            ).isoformat(),
            "stored": False,
        }
        await self._nc.publish(errors.subject(), json.dumps(body).encode())


def _rejected(error: InvalidArgumentError | LimitExceededError) -> RejectedError:
    return RejectedError(error.message, getattr(error, "violations", ()))


def _described(rejection: RejectedError) -> str:
    if not rejection.violations:
        return rejection.reason
    details = "; ".join(f"{v.field}: {v.description}" for v in rejection.violations[:10])
    return f"{rejection.reason} ({details})"


def _source(subject: str) -> str:
    """What must be handled in order: a twin's topic, or an edge node (its devices share the
    node's sequence numbers)."""
    if is_sparkplug(subject):
        tokens = subject.split(".")
        return ".".join((tokens[1], tokens[3]))
    return subject
