"""Every event the platform publishes, and the one way to publish them.

Subjects follow ``evt.<area>.<kind>.<resource>``: the area that owns the event, what happened,
and the resource it happened to, which is one token (a twin id) or, where an id is only unique
within its parent, the parent's id first (``<source>.<relationship id>``, ``<twin>.<rule>``).
Subscribers filter by prefix: ``evt.alert.>``, ``evt.registry.twin.>``, ``evt.*.*.pump-7``
misses the two-token ones, ``evt.>`` sees all. docs/architecture.md lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message
from nats.js import JetStreamContext
from nats.js.api import PubAck

from twinstack.common.nats import EVENTS_STREAM, message_headers


@dataclass(frozen=True)
class EventType:
    """One kind of event: ``evt.<area>.<kind>.<resource>``."""

    area: str
    kind: str

    def subject(self, *resource: str) -> str:
        """The subject of an event about ``resource`` (its tokens, parent first)."""
        if not resource or not all(resource):
            raise ValueError(f"an event of {self.area}.{self.kind} needs a resource id")
        return ".".join(("evt", self.area, self.kind, *resource))

    @property
    def wildcard(self) -> str:
        """The filter that matches every event of this type."""
        return f"evt.{self.area}.{self.kind}.>"


MODEL_CHANGED = EventType("registry", "model")
"""A model version was stored: ``evt.registry.model.<model key>``."""
TWIN_CHANGED = EventType("registry", "twin")
"""A twin was created, updated, migrated or deleted: ``evt.registry.twin.<twin>``."""
RELATIONSHIP_CHANGED = EventType("registry", "relationship")
"""A relationship was created or deleted: ``evt.registry.relationship.<source>.<id>``."""
DESIRED_CHANGED = EventType("state", "desired")
"""Desired values of a twin were set: ``evt.state.desired.<twin>``."""
ALERT_RAISED = EventType("alert", "raised")
"""An alert rule raised an alert: ``evt.alert.raised.<twin>.<rule>``."""
ALERT_CLEARED = EventType("alert", "cleared")
"""An alert's condition cleared: ``evt.alert.cleared.<twin>.<rule>``."""
ALERT_PREDICTED = EventType("forecast", "predicted")
"""A forecast found a condition likely within its horizon: ``evt.forecast.predicted.<twin>``."""
INGESTION_DEAD_LETTER = EventType("ingestion", "deadletter")
"""A telemetry message the historian could not store: ``evt.ingestion.deadletter.<twin>``."""
STATE_DEAD_LETTER = EventType("state", "deadletter")
"""A telemetry message the state service could not apply: ``evt.state.deadletter.<twin>``."""
SWEEP_CHANGED = EventType("simulation", "sweep")
"""A sweep was queued, progressed, succeeded, failed or was cancelled:
``evt.simulation.sweep.<sweep id>`` (the Sweep message)."""
API_KEY_CHANGED = EventType("access", "apikey")
"""An API key was created or revoked: ``evt.access.apikey.<tenant>.<key id>`` (the ApiKey)."""
ROLE_BINDING_CHANGED = EventType("access", "binding")
TENANT_CHANGED = EventType("access", "tenant")
"""A role binding was put or deleted: ``evt.access.binding.<tenant>.<binding id>``."""
AUDIT_ALLOWED = EventType("audit", "allowed")
"""A write was allowed (its status says how it ended): ``evt.audit.allowed.<tenant>``."""
AUDIT_DENIED = EventType("audit", "denied")
"""A call was refused, unauthenticated or not permitted: ``evt.audit.denied.<tenant>``."""

EVENT_TYPES = (
    MODEL_CHANGED,
    TWIN_CHANGED,
    RELATIONSHIP_CHANGED,
    DESIRED_CHANGED,
    ALERT_RAISED,
    ALERT_CLEARED,
    ALERT_PREDICTED,
    INGESTION_DEAD_LETTER,
    STATE_DEAD_LETTER,
    SWEEP_CHANGED,
    API_KEY_CHANGED,
    ROLE_BINDING_CHANGED,
    TENANT_CHANGED,
    AUDIT_ALLOWED,
    AUDIT_DENIED,
)


class EventPublisher:
    """Publishes events to the ``EVENTS`` stream, de-duplicated by a message id, with the
    current trace context.

    Args:
        js: JetStream.
    """

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def publish(
        self,
        event: EventType,
        resource: tuple[str, ...],
        payload: Message | bytes,
        *,
        msg_id: str,
        headers: dict[str, str] | None = None,
    ) -> PubAck:
        """Publishes one event; acknowledged once the stream stored it.

        Args:
            event: What happened.
            resource: The tokens of the resource it happened to, parent first.
            payload: The event message (or raw bytes, for a dead letter's original data).
            msg_id: Identifies the event: publishing the same id again within the stream's
                duplicate window stores nothing (a retried publish is harmless).
            headers: More headers (a dead letter's reason and original subject).
        """
        data = payload if isinstance(payload, bytes) else payload.SerializeToString()
        return await self._js.publish(
            event.subject(*resource),
            data,
            stream=EVENTS_STREAM,
            headers={**message_headers(msg_id), **(headers or {})},
        )
