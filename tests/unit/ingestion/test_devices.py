"""Device payloads, topics, Sparkplug B sessions and the device mapping: pure logic."""

from __future__ import annotations

from pathlib import Path

import pysparkplug as spb
import pytest

from twinstack.api.common.v1 import events_pb2
from twinstack.common.device_topics import (
    TwinTopic,
    device_permissions,
    mqtt_topic,
    parse_subject,
)
from twinstack.ingestion.devices.mapping import DeviceMapping, SparkplugBinding
from twinstack.ingestion.devices.readings import ReadingError, parse_readings
from twinstack.ingestion.devices.sparkplug import SparkplugSessions, SparkplugTopic

Change = events_pb2.DeviceConnection.Change


def test_readings_in_every_accepted_form() -> None:
    (plain,) = parse_readings(b'{"temperature_c": 61.5}', max_readings=10)
    assert plain.time_ns is None
    assert plain.values == {"temperature_c": 61.5}
    (timed,) = parse_readings(b'{"ts": 1764669600000, "values": {"a": 1}}', max_readings=10)
    assert timed.time_ns == 1764669600000 * 10**6
    (rfc,) = parse_readings(b'{"ts": "2025-12-02T10:00:00Z", "b": true}', max_readings=10)
    assert rfc.time_ns == 1764669600 * 10**9
    assert rfc.values == {"b": True}
    many = parse_readings(b'[{"a": 1}, {"ts": 5, "values": {"a": 2}}]', max_readings=10)
    assert [r.values["a"] for r in many] == [1, 2]


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"\xff\xfe", "malformed JSON"),
        (b"{", "malformed JSON"),
        (b"42", "not an object"),
        (b"[1]", r"reading\[0\] is int"),
        (b"[]", "no readings"),
        (b"{}", "no fields"),
        (b'{"ts": 5}', "no fields"),
        (b'{"values": [1]}', "not an object of fields"),
        (b'{"values": {"a": 1}, "extra": 2}', "only 'ts'"),
        (b'{"ts": true, "a": 1}', "neither milliseconds nor RFC 3339"),
        (b'{"ts": "yesterday", "a": 1}', "not RFC 3339"),
        (b'{"ts": -1, "a": 1}', "no time"),
        (b'{"ts": Infinity, "a": 1}', "no time"),
        (b"[" + b",".join([b'{"a": 1}'] * 11) + b"]", "at most 10"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "nested too deeply", id="deep"),
        (b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", "more than 32 levels"),
    ],
)
def test_what_is_not_a_reading_is_refused_saying_why(payload: bytes, says: str) -> None:
    with pytest.raises(ReadingError, match=says):
        parse_readings(payload, max_readings=10)


def test_topics_and_subjects_of_tenants() -> None:
    assert TwinTopic("default", "pump-1", "telemetry").subject() == "twins.pump-1.telemetry"
    acme = TwinTopic("acme", "pump-1", "commands", ("stop",))
    assert acme.subject() == "tenants.acme.twins.pump-1.commands.stop"
    assert acme.mqtt_topic() == "tenants/acme/twins/pump-1/commands/stop"
    assert parse_subject("tenants.acme.twins.pump-1.telemetry") == TwinTopic(
        "acme", "pump-1", "telemetry"
    )
    assert parse_subject("twins.pump-1.responses.abc") == TwinTopic(
        "default", "pump-1", "responses", ("abc",)
    )
    assert parse_subject("twins.pump-1") is None
    assert parse_subject("evt.state.desired.x") is None
    assert mqtt_topic("spBv1//0.plant//north.NDATA.gw") == "spBv1.0/plant.north/NDATA/gw"


def test_device_permissions_cover_only_the_devices_twins() -> None:
    permissions = device_permissions("acme", ["pump-1"])
    assert permissions["publish"]["allow"] == [
        "tenants.acme.twins.pump-1.telemetry",
        "tenants.acme.twins.pump-1.responses.*",
    ]
    assert sorted(permissions["subscribe"]["allow"]) == [
        "tenants.acme.twins.pump-1.commands.*",
        "tenants.acme.twins.pump-1.desired",
        "tenants.acme.twins.pump-1.errors",
    ]
    assert "spBv1//0.>" in device_permissions("default", None, sparkplug=True)["publish"]["allow"]


BINDING = SparkplugBinding(
    group="g", edge_node="n", device="d", twin="t", metrics={"Temp": "temperature_c"}
)


def _topic(kind: str, device: str | None = None) -> SparkplugTopic:
    return SparkplugTopic("g", kind, "n", device)


def _double(name: str | None, value: float, alias: int) -> spb.Metric:
    return spb.Metric(
        timestamp=1000, name=name, alias=alias, datatype=spb.DataType.DOUBLE, value=value
    )


def _born(sessions: SparkplugSessions) -> None:
    bd_seq = spb.Metric(timestamp=1, name="bdSeq", datatype=spb.DataType.INT64, value=7)
    sessions.handle(_topic("NBIRTH"), spb.NBirth(1, 0, (bd_seq,)).encode())
    birth = spb.DBirth(1, 1, (_double("Temp", 20.0, 1), _double("Other", 1.0, 2)))
    outcome = sessions.handle(_topic("DBIRTH", "d"), birth.encode(include_dtypes=True))
    assert outcome.connections == [(BINDING, Change.CHANGE_BORN)]
    assert [r.values for _, r in outcome.readings] == [{"temperature_c": 20.0}]
    assert not outcome.rebirth


def test_sparkplug_data_by_alias_in_sequence_and_gaps_that_ask_for_a_rebirth() -> None:
    sessions = SparkplugSessions([BINDING])
    _born(sessions)
    data = spb.DData(2, 2, (_double(None, 21.0, 1),)).encode()
    outcome = sessions.handle(_topic("DDATA", "d"), data)
    assert [r.values for _, r in outcome.readings] == [{"temperature_c": 21.0}]
    assert outcome.problem is None
    gap = spb.DData(3, 9, (_double(None, 22.0, 1),)).encode()
    outcome = sessions.handle(_topic("DDATA", "d"), gap)
    assert outcome.rebirth
    assert outcome.problem is not None
    assert "seq 9 after 2" in outcome.problem
    # The readings of the message after the gap are still taken; a second gap soon after does
    # not ask again (the node is rebirthing).
    assert [r.values for _, r in outcome.readings] == [{"temperature_c": 22.0}]
    again = sessions.handle(_topic("DDATA", "d"), spb.DData(4, 20, ()).encode())
    assert not again.rebirth


def test_sparkplug_data_before_a_birth_asks_for_one() -> None:
    sessions = SparkplugSessions([BINDING])
    outcome = sessions.handle(_topic("DDATA", "d"), spb.DData(2, 5, ()).encode())
    assert outcome.rebirth
    assert not outcome.readings
    garbage = SparkplugSessions([BINDING]).handle(_topic("NBIRTH"), b"\xff\x00junk")
    assert garbage.problem is not None
    assert "unreadable NBIRTH" in garbage.problem


def test_sparkplug_deaths_of_the_session_and_of_older_ones() -> None:
    sessions = SparkplugSessions([BINDING])
    _born(sessions)
    stale = spb.Metric(timestamp=1, name="bdSeq", datatype=spb.DataType.INT64, value=6)
    outcome = sessions.handle(_topic("NDEATH"), spb.NDeath(5, stale).encode())
    assert not outcome.connections
    assert outcome.problem is not None
    assert "older session" in outcome.problem
    assert sessions.status(_topic("DDATA", "d")).online
    current = spb.Metric(timestamp=1, name="bdSeq", datatype=spb.DataType.INT64, value=7)
    outcome = sessions.handle(_topic("NDEATH"), spb.NDeath(5, current).encode())
    assert outcome.connections == [(BINDING, Change.CHANGE_DIED)]
    assert not sessions.status(_topic("DDATA", "d")).online


def test_mapping_files_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "opcua:\n- endpoint: opc.tcp://plc:4840\n  items:\n"
        "  - {node_id: 'ns=2;i=5', twin: press-1, field: temperature_c}\n"
    )
    assert DeviceMapping.load(good).opcua[0].items[0].field == "temperature_c"
    assert DeviceMapping.load(None) == DeviceMapping()
    for text, says in (
        ("opcua:\n- endpoint: http://plc\n  items: []\n", "opc"),
        (
            "opcua:\n- endpoint: opc.tcp://plc:4840\n  security_policy: Basic256Sha256\n"
            "  items: [{node_id: x, twin: t, field: f}]\n",
            "certificate_file",
        ),
        ("sparkplug:\n- {group: g, edge_node: n}\n", "twin"),
        ("unknown: 1\n", "unknown"),
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=says):
            DeviceMapping.load(bad)
