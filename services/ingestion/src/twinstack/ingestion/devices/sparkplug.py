"""Sparkplug B as a host application reads it: births, data, deaths and their sequence numbers,
turned into readings and connection changes of the twins the mapping names.

Per edge node the gateway keeps the last birth (the metric names behind aliases, and their
types), the birth/death sequence number (bdSeq) and the last message sequence number (seq,
0-255, shared by the node and its devices). Data that cannot be read in order — no birth yet, an
alias the birth did not declare, a seq that skips — asks the node for a rebirth
(``Node Control/Rebirth`` in an NCMD), as the specification has a host application do. A death
whose bdSeq is not the birth's is a late will message of an older session and changes nothing.
Payloads are decoded by pysparkplug (the Eclipse Tahu schema).
"""

from __future__ import annotations

import datetime
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pysparkplug as spb

from twinstack.api.common.v1 import events_pb2
from twinstack.common.device_topics import SPARKPLUG_SUBJECT_ROOT
from twinstack.ingestion.devices.mapping import SparkplugBinding
from twinstack.ingestion.devices.readings import Reading

logger = logging.getLogger(__name__)

BD_SEQ = "bdSeq"
REBIRTH_METRIC = "Node Control/Rebirth"
# A node is asked for a rebirth at most this often: the messages that arrive before its new
# birth would each ask again.
REBIRTH_INTERVAL_S = 5.0
_SEQ_MODULUS = 256
# Metrics of the protocol itself, never telemetry.
_CONTROL_METRICS = ("Node Control/", "Device Control/", "Properties/")

Change = events_pb2.DeviceConnection.Change


@dataclass(frozen=True)
class SparkplugTopic:
    group: str
    kind: str
    edge_node: str
    device: str | None

    @classmethod
    def parse(cls, subject: str) -> SparkplugTopic | None:
        """The topic of a ``spBv1//0.<group>.<type>.<node>[.<device>]`` subject."""
        tokens = [token.replace("//", ".") for token in subject.split(".")]
        if tokens[0] != SPARKPLUG_SUBJECT_ROOT.replace("//", ".") or len(tokens) not in (4, 5):
            return None
        return cls(tokens[1], tokens[2], tokens[3], tokens[4] if len(tokens) == 5 else None)

    @property
    def node(self) -> tuple[str, str]:
        return (self.group, self.edge_node)


@dataclass
class SparkplugOutcome:
    """What one Sparkplug message means for the twins."""

    readings: list[tuple[SparkplugBinding, Reading]] = field(default_factory=list)
    connections: list[tuple[SparkplugBinding, int]] = field(default_factory=list)
    # The node should be asked to publish its births again.
    rebirth: bool = False
    # Why it could not be read in full (recorded as the device's last error).
    problem: str | None = None


@dataclass
class _NodeSession:
    birth: spb.NBirth | None = None
    bd_seq: int | None = None
    seq: int | None = None
    online: bool = False
    devices: dict[str, spb.DBirth] = field(default_factory=dict)
    last_rebirth_request: float = float("-inf")


@dataclass(frozen=True)
class NodeStatus:
    """What the gateway knows of an edge node or device, for the device directory."""

    online: bool
    details: Mapping[str, str]


class SparkplugSessions:
    """The state of every edge node heard from, and the mapping of their metrics to twins.

    Args:
        bindings: The mapping's Sparkplug entries.
    """

    def __init__(self, bindings: Sequence[SparkplugBinding]) -> None:
        self._nodes: dict[tuple[str, str], _NodeSession] = defaultdict(_NodeSession)
        self._bindings: dict[tuple[str, str, str | None], SparkplugBinding] = {
            (b.group, b.edge_node, b.device): b for b in bindings
        }

    def reset(self) -> None:
        """Forgets every node's session (their next messages ask for a rebirth)."""
        self._nodes.clear()

    def binding_of_twin(self, tenant: str, twin_id: str) -> SparkplugBinding | None:
        return next(
            (b for b in self._bindings.values() if b.tenant == tenant and b.twin == twin_id),
            None,
        )

    def has_devices(self, topic: SparkplugTopic) -> bool:
        """Whether the mapping binds devices of the topic's node."""
        return any(key[:2] == topic.node and key[2] for key in self._bindings)

    def bindings_of(self, topic: SparkplugTopic) -> list[SparkplugBinding]:
        """The bindings a message feeds: its device's, or for a node's death every binding of
        the node and of its devices."""
        if topic.kind == "NDEATH":
            return [b for b in self._bindings.values() if (b.group, b.edge_node) == topic.node]
        found = self._bindings.get((topic.group, topic.edge_node, topic.device))
        return [] if found is None else [found]

    def status(self, topic: SparkplugTopic) -> NodeStatus:
        session = self._nodes[topic.node]
        online = session.online and (topic.device is None or topic.device in session.devices)
        details = {"bdSeq": str(session.bd_seq), "seq": str(session.seq)}
        return NodeStatus(online, details)

    def metric_type(self, binding: SparkplugBinding, metric: str) -> spb.DataType | None:
        """The type the node's last birth declared for a metric of ``binding``."""
        session = self._nodes.get((binding.group, binding.edge_node))
        if session is None:
            return None
        birth = session.devices.get(binding.device) if binding.device else session.birth
        if birth is None:
            return None
        try:
            return birth.get_dtype(metric)
        except KeyError:
            return None

    def handle(self, topic: SparkplugTopic, payload: bytes) -> SparkplugOutcome:
        """Reads one message of a node (messages of a node must come in order)."""
        session = self._nodes[topic.node]
        try:
            return self._handle(topic, session, payload)
        # Untrusted bytes: whatever the decoder raises on them is an unreadable message.
        except Exception as error:
            reason = f"unreadable {topic.kind}: {error!r}"
            return SparkplugOutcome(rebirth=self._rebirth_due(session), problem=reason)

    def _handle(
        self, topic: SparkplugTopic, session: _NodeSession, payload: bytes
    ) -> SparkplugOutcome:
        outcome = SparkplugOutcome()
        kind = topic.kind
        if kind == "NDEATH":
            death = spb.NDeath.decode(payload)
            bd_seq = _as_int(death.bd_seq_metric.value)
            if session.bd_seq is not None and bd_seq != session.bd_seq:
                outcome.problem = (
                    f"NDEATH of an older session (bdSeq {bd_seq}, not {session.bd_seq})"
                )
                return outcome
            session.online = False
            session.devices.clear()
            outcome.connections = [(b, Change.CHANGE_DIED) for b in self.bindings_of(topic)]
            return outcome
        if kind == "NBIRTH":
            birth = spb.NBirth.decode(payload)
            session.birth = birth
            session.devices.clear()
            session.online = True
            session.seq = birth.seq
            session.bd_seq = next(
                (_as_int(m.value) for m in birth.metrics if m.name == BD_SEQ),
                None,
            )
            return self._fed(topic, birth, outcome, born=True)
        if session.birth is None or not session.online:
            outcome.rebirth = self._rebirth_due(session)
            outcome.problem = f"{kind} before the node's birth"
            return outcome
        if kind == "NDATA":
            data: Any = spb.NData.decode(payload, birth=session.birth)
        elif kind == "DBIRTH":
            data = spb.DBirth.decode(payload)
            assert topic.device is not None  # a device message has a device level
            session.devices[topic.device] = data
        else:
            device_birth = session.devices.get(topic.device or "")
            if device_birth is None:
                outcome.rebirth = self._rebirth_due(session)
                outcome.problem = f"{kind} of device {topic.device!r} before its birth"
                return outcome
            data = (spb.DData if kind == "DDATA" else spb.DDeath).decode(
                payload, birth=device_birth
            )
        seq = data.seq
        if not self._in_sequence(session, seq):
            outcome.problem = f"seq {seq} after {session.seq}: messages were lost"
            outcome.rebirth = self._rebirth_due(session)
        session.seq = seq
        if kind == "DDEATH":
            session.devices.pop(topic.device or "", None)
            outcome.connections = [(b, Change.CHANGE_DIED) for b in self.bindings_of(topic)]
            return outcome
        return self._fed(topic, data, outcome, born=kind == "DBIRTH")

    def _fed(
        self, topic: SparkplugTopic, payload: Any, outcome: SparkplugOutcome, *, born: bool
    ) -> SparkplugOutcome:
        for binding in self.bindings_of(topic):
            if born:
                outcome.connections.append((binding, Change.CHANGE_BORN))
            by_time: dict[int, dict[str, Any]] = defaultdict(dict)
            for metric in payload.metrics:
                name = metric.name
                if not name or name == BD_SEQ or name.startswith(_CONTROL_METRICS):
                    continue
                target = binding.field_of(name)
                if target is None or metric.is_null or metric.value is None:
                    continue
                stamp_ms = metric.timestamp if metric.timestamp is not None else payload.timestamp
                by_time[int(stamp_ms) * 1_000_000][target] = _json_value(metric.value)
            outcome.readings += [
                (binding, Reading(time_ns, values)) for time_ns, values in sorted(by_time.items())
            ]
        return outcome

    @staticmethod
    def _in_sequence(session: _NodeSession, seq: int) -> bool:
        return session.seq is None or seq == (session.seq + 1) % _SEQ_MODULUS

    @staticmethod
    def _rebirth_due(session: _NodeSession) -> bool:
        now = time.monotonic()
        if now - session.last_rebirth_request < REBIRTH_INTERVAL_S:
            return False
        session.last_rebirth_request = now
        return True


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _json_value(value: Any) -> Any:
    """A metric's value as the JSON data readings carry."""
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, bytes):
        raise ValueError("byte and file metrics are not telemetry values")
    return value


def rebirth_request() -> bytes:
    """An NCMD payload asking a node to publish its births again."""
    now = spb.get_current_timestamp()
    metric = spb.Metric(
        timestamp=now, name=REBIRTH_METRIC, datatype=spb.DataType.BOOLEAN, value=True
    )
    return spb.NCmd(timestamp=now, metrics=(metric,)).encode(include_dtypes=True)


def command(values: Mapping[str, Any], types: Mapping[str, spb.DataType], *, device: bool) -> bytes:
    """An NCMD (or DCMD) payload setting metrics to values, typed as the birth declared them."""
    now = spb.get_current_timestamp()
    metrics = tuple(
        spb.Metric(timestamp=now, name=name, datatype=types[name], value=value)
        for name, value in values.items()
    )
    kind = spb.DCmd if device else spb.NCmd
    return kind(timestamp=now, metrics=metrics).encode(include_dtypes=True)


def command_subject(binding: SparkplugBinding) -> str:
    """Where commands to the binding's node or device go."""
    parts = [binding.group, "DCMD" if binding.device else "NCMD", binding.edge_node]
    if binding.device:
        parts.append(binding.device)
    return ".".join([SPARKPLUG_SUBJECT_ROOT, *(p.replace(".", "//") for p in parts)])
