"""DTDL v2/v3 import of a multi-file ontology written by hand from the DTDL spec."""

from __future__ import annotations

from pathlib import Path

from twinstack.api.registry.v1 import registry_pb2
from twinstack.modeling.resolve import Resolver
from twinstack.registry.models import parse_sources

ONTOLOGY = Path(__file__).parents[2] / "data" / "dtdl"


def sources(*names: str) -> list[registry_pb2.ModelSource]:
    return [
        registry_pb2.ModelSource(
            name=name, format=registry_pb2.MODEL_FORMAT_DTDL, content=(ONTOLOGY / name).read_text()
        )
        for name in names
    ]


def test_a_multi_file_ontology_imports_with_references_in_any_order() -> None:
    # The thermostat extends the device and uses its Mode enum, both defined in a later file.
    batch = parse_sources(sources("thermostat.json", "room.json", "device.json"))
    models = {m.id: m for m in batch.models}
    assert set(models) == {
        "dtmi:com:example:Thermostat;1",
        "dtmi:com:example:Room;1",
        "dtmi:com:example:Building;1",
        "dtmi:com:example:Named;1",
        "dtmi:com:example:Device;1",
    }
    resolver = Resolver(models.get)
    thermostat = resolver.resolve("dtmi:com:example:Thermostat;1")
    assert thermostat.model.display_name == "Thermostat"
    assert thermostat.is_a("dtmi:com:example:Device;1")
    assert thermostat.telemetry["temperature"].unit == "degC"
    target = thermostat.properties["targetTemperature"]
    assert (target.unit, target.writable, target.description) == ("degC", True, "Setpoint")
    assert thermostat.properties["serialNumber"].writable is False, "DTDL's default"
    assert thermostat.properties["mode"].schema.enum_values == ("heat", "cool", "off")
    assert thermostat.properties["tags"].schema.kind == "map"
    history = thermostat.properties["history"].schema
    assert history.kind == "array"
    assert history.items is not None
    assert dict(history.items.fields)["at"].kind == "timestamp"
    assert thermostat.properties["uptime"].schema.kind == "string"
    reboot = thermostat.commands["reboot"]
    assert reboot.request is not None
    assert reboot.request.kind == "integer"
    assert reboot.response is not None
    assert reboot.response.kind == "boolean"

    room = resolver.resolve("dtmi:com:example:Room;1")
    assert room.components["thermostat"].id == "dtmi:com:example:Thermostat;1"
    adjacent = room.relationships["adjacentTo"]
    assert (adjacent.target, adjacent.max_multiplicity) == ("dtmi:com:example:Room;1", 4)
    assert [(p.name, p.unit) for p in adjacent.properties] == [("distance", "m")]
    building = resolver.resolve("dtmi:com:example:Building;1")
    assert building.is_a("dtmi:com:example:Named;1"), "an inline parent interface"
    assert "name" in building.properties


def test_what_cannot_be_mapped_is_reported_not_dropped() -> None:
    batch = parse_sources(sources("thermostat.json", "room.json", "device.json"))
    notes = {note.path: note.message for note in batch.notes}
    assert "semantic type 'Temperature'" in notes["thermostat.json.contents[0].@type"]
    assert "ISO 8601" in notes["thermostat.json.contents[3].schema"]
    assert "GeoJSON" in notes["thermostat.json.contents[4].schema"]
    assert "complex schema" in notes["thermostat.json.contents[5].schema"]
    # Not in the table of common units, but pint knows it: mapped, not noted.
    assert "device.json.contents[3].unit" not in notes
    device = next(m for m in batch.models if m.id == "dtmi:com:example:Device;1")
    assert {t.name: t.unit for t in device.telemetry}["distanceWalked"] == "furlong"
    assert all('"vector"' not in m.document for m in batch.models), "skipped, and said so"
