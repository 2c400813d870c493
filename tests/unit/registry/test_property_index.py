"""Property indexes: a lookup never misses a twin whose value satisfies the comparison, through
writes, deletions and re-sorts, and queries answer exactly what a scan answers."""

from __future__ import annotations

import json
import math
import operator
import random
from typing import Any, cast

import pytest
from nats.js.kv import KeyValue

from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.tenancy import DEFAULT_IDS
from twinstack.registry import property_index
from twinstack.registry.index import RegistryIndex
from twinstack.registry.property_index import PropertyCondition, PropertyIndexes, indexable
from twinstack.registry.query import parse_query, run_query
from twinstack.sdk.values import from_python

MODEL = "dtmi:p:Machine;1"
_COMPARE = {
    "=": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
# Values that compare awkwardly: ints a double cannot hold, -0.0, booleans (never numbers).
VALUES: list[Any] = [
    0,
    -0.0,
    1,
    1.0,
    2.5,
    -7,
    2**53,
    2**53 + 1,
    2**63 - 1,
    -(2**63),
    1e300,
    True,
    False,
    "north",
    "south",
    "",
]


def satisfies(value: Any, condition: PropertyCondition) -> bool:
    """The query language's own meaning: same kinds only, booleans are not numbers."""
    for literal in condition.literals:
        numbers = (int, float)
        if isinstance(value, bool) or isinstance(literal, bool):
            comparable = isinstance(value, bool) and isinstance(literal, bool)
        else:
            comparable = (isinstance(value, numbers) and isinstance(literal, numbers)) or type(
                value
            ) is type(literal)
        operator_text = "=" if condition.operator == "IN" else condition.operator
        if comparable and _COMPARE[operator_text](value, literal):
            return True
    return False


def random_condition(rng: random.Random) -> PropertyCondition:
    while True:
        operator_text = rng.choice(["=", "<", "<=", ">", ">=", "IN"])
        count = rng.randint(1, 3) if operator_text == "IN" else 1
        literals = tuple(rng.choice(VALUES) for _ in range(count))
        condition = PropertyCondition("p", operator_text, literals)
        if indexable(condition):
            return condition


@pytest.mark.parametrize("seed", range(20))
def test_lookups_never_miss_a_match_through_writes(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small re-sort thresholds, so that the runs go through many re-sorts.
    monkeypatch.setattr(property_index, "_RESORT_MIN_CHANGED", 5)
    rng = random.Random(seed)
    properties: dict[str, dict[str, Any]] = {}
    indexes = PropertyIndexes(properties)
    for step in range(400):
        twin_id = f"t{rng.randrange(60)}"
        before = properties.get(twin_id, {})
        after: dict[str, Any] | None = (
            None if rng.random() < 0.1 else {"p": rng.choice(VALUES)} if rng.random() < 0.9 else {}
        )
        indexes.twin_changed(twin_id, before, after or {})
        if after is None:
            properties.pop(twin_id, None)
        else:
            properties[twin_id] = after
        if step % 5 == 0:
            condition = random_condition(rng)
            expected = {
                t
                for t, props in properties.items()
                if "p" in props and satisfies(props["p"], condition)
            }
            found = indexes.candidates([condition], lambda _: True)
            assert found is not None
            assert found >= expected, condition


def test_conditions_an_index_cannot_answer_are_left_to_the_scan() -> None:
    assert not indexable(PropertyCondition("p", "!=", (1,)))
    assert not indexable(PropertyCondition("p", ">", ("m",)))
    assert not indexable(PropertyCondition("p", "IN", (1, "one")))
    assert not indexable(PropertyCondition("spec.rpm", "=", (1,)))
    assert not indexable(PropertyCondition("$revision", ">", (1,)))
    assert indexable(PropertyCondition("site", "IN", ("north", True)))
    assert indexable(PropertyCondition("power", "IN", (1, 2.5)))


def registry(twins: int) -> RegistryIndex:
    built = RegistryIndex(cast(KeyValue, None))
    built.remember_model(registry_pb2.Model(id=MODEL, document=json.dumps({"id": MODEL})))
    for n in range(twins):
        power = 4999.9 if n % 500 == 7 else float(n % 4000)
        built.remember(
            registry_pb2.Twin(
                id=f"m-{n:05d}",
                model_id=MODEL,
                revision=n + 1,
                properties={
                    "power": from_python(power),
                    "site": from_python("rare" if n % 700 == 3 else f"site-{n % 5}"),
                },
            )
        )
    return built


def every_page(built: RegistryIndex, text: str, page: int = 7) -> list[str]:
    query = parse_query(text, built, DEFAULT_IDS)
    found: list[str] = []
    after = ""
    while True:
        twins, after_next = run_query(built, query, after, page, 1000, ids=DEFAULT_IDS)
        found += [t.id for t in twins]
        if after_next is None:
            return found
        after = after_next


@pytest.mark.parametrize(
    "text",
    [
        "WHERE power > 4999.5",
        "WHERE power >= 4999.9 AND site != 'x'",
        "WHERE IS_OF_MODEL('dtmi:p:Machine;1') AND power = 4999.9",
        "WHERE site = 'rare'",
        "WHERE site IN ('rare', 'none') AND power < 100",
        "WHERE power < 3",
        "WHERE power > 10",  # common: the scan is cheaper, and must be chosen
        "WHERE power > 4999.5 OR site = 'rare'",  # OR: no index applies
    ],
)
def test_queries_answer_what_a_scan_answers(text: str) -> None:
    built = registry(6000)
    predicate = parse_query(text, built, DEFAULT_IDS).predicate
    assert predicate is not None
    expected = sorted(
        twin_id
        for twin_id in built.twin_ids(DEFAULT_IDS.tenant)
        if predicate(cast(registry_pb2.Twin, built.twin(twin_id)), built.plain_properties[twin_id])
    )
    assert every_page(built, text) == expected
    # Writes after the index was made are seen: a new match, and a match that is gone.
    built.remember(
        registry_pb2.Twin(
            id="m-new",
            model_id=MODEL,
            revision=10_000,
            properties={"power": from_python(4999.9), "site": from_python("rare")},
        )
    )
    if expected:
        built.forget(expected[0])
    again = every_page(built, text)
    assert ("m-new" in again) == predicate(
        cast(registry_pb2.Twin, built.twin("m-new")), built.plain_properties["m-new"]
    )
    assert set(again) - {"m-new"} == set(expected[1:])


def test_a_rare_value_is_read_from_the_index_not_scanned() -> None:
    built = registry(20_000)
    query = parse_query("WHERE power > 4999.5", built, DEFAULT_IDS)
    # A scan budget smaller than the registry: only the index finds every match in one page.
    twins, after = run_query(built, query, "", 100, 1000, ids=DEFAULT_IDS, max_scanned=1000)
    assert [t.id for t in twins] == [f"m-{n:05d}" for n in range(20_000) if n % 500 == 7]
    assert after is None
    assert not math.isnan(twins[0].properties["power"].double_value)


def test_a_query_makes_at_most_one_index_and_their_number_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Making an index reads every twin: a query of many terms, or many queries naming new
    # properties, must not turn that into seconds of a blocked registry.
    monkeypatch.setattr(property_index, "MAX_INDEXED_PROPERTIES", 3)
    indexes = PropertyIndexes({"t1": {"a": 1, "b": 2}, "t2": {"a": 1, "b": 3}})
    both = [PropertyCondition("a", "=", (1,)), PropertyCondition("b", "=", (2,))]
    assert indexes.candidates(both, lambda _: True) == {"t1", "t2"}  # only a's index made
    assert indexes.candidates(both, lambda _: True) == {"t1"}  # then b's, the narrower
    assert indexes.candidates([PropertyCondition("c", "=", (1,))], lambda _: True) == set()
    assert indexes.candidates([PropertyCondition("d", "=", (1,))], lambda _: True) is None
