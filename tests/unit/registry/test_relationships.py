"""Relationship ids and properties, before anything is written."""

from __future__ import annotations

from twinstack.api.registry.v1 import registry_pb2
from twinstack.modeling.document import parse_model
from twinstack.registry.relationships import _property_violations, default_relationship_id
from twinstack.sdk.values import from_python

LINE = parse_model(
    {
        "id": "dtmi:test:Line;1",
        "relationships": {
            "contains": {"properties": {"position": {"schema": "integer", "min": 1}}}
        },
    }
)


def test_default_ids_are_stable_and_short_enough_for_a_key() -> None:
    assert default_relationship_id("contains", "pump-1") == "contains-pump-1"
    long = default_relationship_id("contains", "p" * 128)
    assert len(long) <= 128
    assert long == default_relationship_id("contains", "p" * 128), "the same edge, the same id"
    assert long != default_relationship_id("contains", "p" * 127 + "q")


def test_relationship_properties_are_checked_against_their_declaration() -> None:
    (contains,) = LINE.relationships
    declared = {prop.name: prop for prop in contains.properties}
    fine = registry_pb2.Relationship(properties={"position": from_python(2)})
    assert _property_violations(declared, fine) == []
    wrong = registry_pb2.Relationship(
        properties={"position": from_python(0), "colour": from_python("red")}
    )
    fields = sorted(v.field for v in _property_violations(declared, wrong))
    assert fields == ["relationship.properties['colour']", "relationship.properties['position']"]
