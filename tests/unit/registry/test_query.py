"""The registry query language over an in-memory index: filters, traversal, pagination, and
hostile input."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from nats.js.kv import KeyValue

from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.errors import InvalidArgumentError
from twinstack.common.tenancy import DEFAULT_IDS, ids_of
from twinstack.registry.index import RegistryIndex
from twinstack.registry.query import parse_query, run_query
from twinstack.sdk.values import from_python

MACHINE = "dtmi:q:Machine;1"
PUMP = "dtmi:q:Pump;1"
LINE = "dtmi:q:Line;1"


def model(model_id: str, extends: list[str] | None = None) -> registry_pb2.Model:
    document: dict[str, Any] = {"id": model_id}
    if extends:
        document["extends"] = extends
    return registry_pb2.Model(id=model_id, document=json.dumps(document))


@pytest.fixture
def index() -> RegistryIndex:
    """line-a contains m1..m3 (m2, m3 are pumps); m1 feeds m2 feeds m3 feeds m1 (a cycle);
    line-b contains m4."""
    built = RegistryIndex(cast(KeyValue, None))
    for entry in (model(MACHINE), model(PUMP, [MACHINE]), model(LINE)):
        built.remember_model(entry)
    twins: dict[str, tuple[str, dict[str, Any]]] = {
        "line-a": (LINE, {"name": "A"}),
        "line-b": (LINE, {"name": "B"}),
        "m1": (MACHINE, {"power": 10.0, "site": "north", "spec": {"rpm": 1500}}),
        "m2": (PUMP, {"power": 25.5, "site": "north", "vendor": "O'Hara"}),
        "m3": (PUMP, {"power": 40, "site": "south", "running": True}),
        "m4": (MACHINE, {"power": 5.0, "site": "south"}),
    }
    for revision, (twin_id, (model_id, properties)) in enumerate(twins.items(), start=1):
        built.remember(
            registry_pb2.Twin(
                id=twin_id,
                model_id=model_id,
                revision=revision,
                properties={k: from_python(v) for k, v in properties.items()},
            )
        )
    edges = {
        "line-a": [("contains", "m1"), ("contains", "m2"), ("contains", "m3")],
        "line-b": [("contains", "m4")],
        "m1": [("feeds", "m2")],
        "m2": [("feeds", "m3")],
        "m3": [("feeds", "m1")],
    }
    for revision, (source, targets) in enumerate(edges.items(), start=100):
        built.graph.remember(
            source,
            registry_pb2.RelationshipSet(
                relationships=[
                    registry_pb2.Relationship(
                        id=f"{name}-{target}", source_id=source, name=name, target_id=target
                    )
                    for name, target in targets
                ]
            ),
            revision,
        )
    return built


def ids(index: RegistryIndex, query: str, after: str = "", limit: int = 100) -> list[str]:
    twins, _ = run_query(
        index, parse_query(query, index, DEFAULT_IDS), after, limit, 1000, ids=DEFAULT_IDS
    )
    return [t.id for t in twins]


def test_each_tenant_queries_its_own_twins_under_the_same_ids(index: RegistryIndex) -> None:
    """Tenant acme holds twins and models with the default tenant's ids; no query of either
    reaches the other's, whatever it names."""
    acme = ids_of("acme")
    for entry in (model(MACHINE), model(PUMP, [MACHINE])):
        entry.id = acme.inner(entry.id)
        index.remember_model(entry)
    for revision, (twin_id, model_id, power) in enumerate(
        [("m1", MACHINE, 99.0), ("m2", PUMP, 98.0), ("line-a", MACHINE, 1.0)], start=500
    ):
        index.remember(
            registry_pb2.Twin(
                id=acme.inner(twin_id),
                model_id=acme.inner(model_id),
                revision=revision,
                properties={"power": from_python(power)},
            )
        )
    index.graph.remember(
        acme.inner("line-a"),
        registry_pb2.RelationshipSet(
            relationships=[
                registry_pb2.Relationship(
                    id="contains-m2",
                    source_id=acme.inner("line-a"),
                    name="contains",
                    target_id=acme.inner("m2"),
                )
            ]
        ),
        600,
    )

    def acme_ids(query: str) -> list[str]:
        twins, _ = run_query(index, parse_query(query, index, acme), "", 100, 1000, ids=acme)
        return [t.id for t in twins]

    assert acme_ids("WHERE power > 50") == ["acme/m1", "acme/m2"]
    assert ids(index, "WHERE power > 50") == []
    assert acme_ids(f"WHERE IS_OF_MODEL('{MACHINE}')") == ["acme/line-a", "acme/m1", "acme/m2"]
    assert ids(index, f"WHERE IS_OF_MODEL('{PUMP}')") == ["m2", "m3"]
    assert acme_ids("FROM 'line-a' FOLLOW contains") == ["acme/m2"]
    assert acme_ids("WHERE $id IN ('m1', 'm3')") == ["acme/m1"]
    assert acme_ids("WHERE $id = 'm1' AND $model = 'dtmi:q:Machine;1'") == ["acme/m1"]
    # The default tenant cannot spell an acme id: '/' is in no id it may name.
    assert ids(index, "WHERE $id = 'acme/m1'") == []
    with pytest.raises(InvalidArgumentError):
        parse_query("FROM 'acme/line-a' FOLLOW *", index, DEFAULT_IDS)
    with pytest.raises(InvalidArgumentError):
        parse_query("WHERE IS_OF_MODEL('acme/dtmi:q:Machine;1')", index, DEFAULT_IDS)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["line-a", "line-b", "m1", "m2", "m3", "m4"]),
        (f"WHERE IS_OF_MODEL('{MACHINE}')", ["m1", "m2", "m3", "m4"]),
        (f"WHERE IS_OF_MODEL('{MACHINE}', EXACT)", ["m1", "m4"]),
        (f"WHERE IS_OF_MODEL('{PUMP}') AND power > 30", ["m3"]),
        ("WHERE power >= 10 AND power < 40", ["m1", "m2"]),
        ("WHERE site = 'north' OR running = TRUE", ["m1", "m2", "m3"]),
        ("WHERE NOT (site = 'north') AND IS_DEFINED(power)", ["m3", "m4"]),
        ("where site in ('south', 'west') and power != 5", ["m3"]),
        ("WHERE spec.rpm > 1000", ["m1"]),
        ("WHERE STARTS_WITH($id, 'line-')", ["line-a", "line-b"]),
        (f"WHERE $model = '{LINE}' AND $revision > 1", ["line-b"]),
        ("WHERE power = '10'", []),  # a string never equals a number
        ("WHERE vendor = 'O\\'Hara'", ["m2"]),
        ("FROM 'm4'", ["m4"]),
        ("WHERE $id = 'm2'", ["m2"]),
        ("WHERE $id IN ('m3', 'm1', 'zz') AND power > 20", ["m3"]),
        ("WHERE $id = 'm2' OR $id = 'm4'", ["m2", "m4"]),
        (f"WHERE power > 20 AND IS_OF_MODEL('{MACHINE}')", ["m2", "m3"]),
        ("FROM 'line-a' FOLLOW contains", ["m1", "m2", "m3"]),
        ("FROM 'line-a' FOLLOW contains WHERE site = 'north'", ["m1", "m2"]),
        ("FROM 'm1' FOLLOW feeds", ["m2"]),
        ("FROM 'm1' FOLLOW feeds DEPTH 2", ["m2", "m3"]),
        ("FROM 'm1' FOLLOW feeds DEPTH 10", ["m2", "m3"]),  # the cycle ends at m1 itself
        ("FROM 'm3' FOLLOW * INCOMING", ["line-a", "m2"]),
        ("FROM 'm4' FOLLOW contains INCOMING DEPTH 3", ["line-b"]),
        ("FROM 'line-a' FOLLOW contains, feeds DEPTH 2", ["m1", "m2", "m3"]),
        ("FROM 'nowhere' FOLLOW *", []),
    ],
)
def test_queries(index: RegistryIndex, query: str, expected: list[str]) -> None:
    assert ids(index, query) == expected


def test_pages_continue_after_the_last_id(index: RegistryIndex) -> None:
    query = parse_query(f"WHERE IS_OF_MODEL('{MACHINE}')", index, DEFAULT_IDS)
    first, resume = run_query(index, query, "", 3, 1000, ids=DEFAULT_IDS)
    assert ([t.id for t in first], resume) == (["m1", "m2", "m3"], "m3")
    rest, resume = run_query(index, query, "m3", 3, 1000, ids=DEFAULT_IDS)
    assert ([t.id for t in rest], resume) == (["m4"], None)


def test_a_page_scans_a_bounded_number_of_twins_and_continues(index: RegistryIndex) -> None:
    """A filter few twins pass reads at most max_scanned twins per page, then hands back a
    continuation; following it finds exactly what one unbounded scan finds."""
    query = parse_query("WHERE STARTS_WITH($id, 'm') AND site = 'south'", index, DEFAULT_IDS)
    unbounded, _ = run_query(index, query, "", 100, 1000, ids=DEFAULT_IDS)
    found, after, pages = [], "", 0
    while True:
        page, resume = run_query(index, query, after, 100, 1000, ids=DEFAULT_IDS, max_scanned=1)
        found += [t.id for t in page]
        pages += 1
        if resume is None:
            break
        after = resume
    assert found == [t.id for t in unbounded] == ["m3", "m4"]
    assert pages > 1


def test_traversals_are_bounded(index: RegistryIndex) -> None:
    query = parse_query("FROM 'line-a' FOLLOW * DEPTH 5", index, DEFAULT_IDS)
    with pytest.raises(InvalidArgumentError, match="too broad"):
        run_query(index, query, "", 100, 2, ids=DEFAULT_IDS)


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("WHERE site = 'x' OR 1=1", "expected a condition"),
        ("WHERE site = 'x'; DROP TABLE twins", "unexpected character ';'"),
        ("WHERE site = 'unterminated", "unexpected character"),
        ("WHERE __import__('os')", "unknown function"),
        ("WHERE $secret = 1", "unknown metadata"),
        ("WHERE power >", "expected a string, a number"),
        ("WHERE power ~ 1", "unexpected character '~'"),
        ("FROM 'a.b' FOLLOW *", "not a twin id"),
        ("FROM 'tel.>' FOLLOW *", "not a twin id"),
        ("FROM 'a' FOLLOW contains DEPTH 11", "DEPTH is 1 to 10"),
        ("FROM 'a' FOLLOW DEPTH 2", "expected a relationship name"),
        ("WHERE " + " AND ".join(["power > 1"] * 201), "more than 200 terms"),
        ("WHERE " + "NOT " * 40 + "power > 1", "nested deeper"),
        ("WHERE " + "(" * 40 + "power > 1" + ")" * 40, "nested deeper"),
        ("WHERE site = '" + "x" * 5000 + "'", "longer than 4096"),
        ("SELECT * FROM twins", "unexpected 'SELECT'"),
    ],
)
def test_bad_and_hostile_queries_are_refused_with_where(
    index: RegistryIndex, query: str, problem: str
) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        parse_query(query, index, DEFAULT_IDS)
    (violation,) = raised.value.violations
    assert violation.field == "query"
    assert problem in violation.description
