"""Indexes of top-level property values, so that a selective property filter reads the twins
that match instead of every twin of the tenant.

An index of a property is made the first time a query filters on it (a property nobody filters
on costs nothing) and kept current by every write after that:

- numbers: the values in one sorted array, built from the registry's decoded properties, plus
  the twins written since (``changed``), which a lookup checks one by one. Once they are a
  sizeable share of the array, the next lookup sorts it again. A write costs a set insertion,
  not an insertion into a sorted array of a million entries;
- strings and booleans: twin ids by value, for equality and ``IN``.

A lookup returns a superset of the twins whose value satisfies the comparison (numbers are
compared as doubles, bounds included): the query's predicate still decides each candidate
exactly, so an index can only make a query cheaper, never change its answer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt

# Most properties indexed (numbers and exact values counted apart); queries on others scan.
MAX_INDEXED_PROPERTIES = 64
# The numeric array is sorted again once this many twins, or this share of it, changed.
_RESORT_MIN_CHANGED = 10_000
_RESORT_SHARE = 0.25


@dataclass(frozen=True)
class PropertyCondition:
    """A comparison of a top-level property with literals that every match satisfies."""

    path: str
    operator: str  # "=", "<", "<=", ">", ">=" or "IN"
    literals: tuple[Any, ...]


def indexable(condition: PropertyCondition) -> bool:
    """Whether an index answers the condition: a top-level property compared with numbers,
    or equal to (or IN) strings or booleans."""
    path, literals = condition.path, condition.literals
    if path.startswith("$") or "." in path or not literals or condition.operator == "!=":
        return False
    if all(_is_number(literal) for literal in literals):
        return True
    exact = all(_exact_key(literal) is not None for literal in literals)
    return exact and condition.operator in ("=", "IN")


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _exact_key(value: object) -> tuple[str, object] | None:
    """The key of a string or boolean value (a boolean never equals a number here)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str):
        return ("str", value)
    return None


class _NumericIndex:
    def __init__(self, path: str, properties: Mapping[str, Mapping[str, Any]]) -> None:
        self._path = path
        self._properties = properties
        self._values: npt.NDArray[np.float64] = np.empty(0)
        self._ids: list[str] = []
        self.changed: set[str] = set()
        self._sort()

    def _sort(self) -> None:
        # Runs on the event loop (about 0.5 s at a million twins): kept to one Python pass.
        path = self._path
        ids: list[str] = []
        numbers: list[float] = []
        for twin_id, props in self._properties.items():
            value = props.get(path)
            if type(value) is float or type(value) is int:  # not bool, a subclass of int
                ids.append(twin_id)
                numbers.append(value)
        values = np.array(numbers, dtype=np.float64)
        kept = ~np.isnan(values)
        order = np.flatnonzero(kept)[np.argsort(values[kept], kind="stable")]
        self._values = values[order]
        self._ids = np.array(ids, dtype=object)[order].tolist()
        self.changed = set()

    def _range(self, operator: str, bound: float) -> tuple[int, int]:
        """Positions of the sorted values that may satisfy ``value <operator> bound``."""
        values = self._values
        if operator in ("<", "<="):
            return 0, int(np.searchsorted(values, bound, side="right"))
        if operator in (">", ">="):
            return int(np.searchsorted(values, bound, side="left")), len(values)
        return (
            int(np.searchsorted(values, bound, side="left")),
            int(np.searchsorted(values, bound, side="right")),
        )

    def _bounds(self, condition: PropertyCondition) -> list[tuple[str, float]]:
        operator = "=" if condition.operator == "IN" else condition.operator
        return [
            (operator, float(literal))
            for literal in condition.literals
            if _is_number(literal) and not math.isnan(literal)
        ]

    def estimate(self, condition: PropertyCondition) -> int:
        if len(self.changed) > max(_RESORT_MIN_CHANGED, _RESORT_SHARE * len(self._ids)):
            self._sort()
        spans = (self._range(op, bound) for op, bound in self._bounds(condition))
        return sum(end - start for start, end in spans) + len(self.changed)

    def matching(self, condition: PropertyCondition) -> set[str]:
        found: set[str] = set()
        bounds = self._bounds(condition)
        for operator, bound in bounds:
            start, end = self._range(operator, bound)
            found.update(self._ids[start:end])
        found -= self.changed  # their array entries may be out of date: checked below
        path = self._path
        for twin_id in self.changed:
            value = self._properties.get(twin_id, {}).get(path)
            if not _is_number(value):
                continue
            number = float(value)
            if any(_may_satisfy(number, op, bound) for op, bound in bounds):
                found.add(twin_id)
        return found


def _may_satisfy(value: float, operator: str, bound: float) -> bool:
    # Bounds included: values are compared as doubles, which may round a large integer.
    if operator in ("<", "<="):
        return value <= bound
    if operator in (">", ">="):
        return value >= bound
    return value == bound


class _ExactIndex:
    def __init__(self, path: str, properties: Mapping[str, Mapping[str, Any]]) -> None:
        self.by_value: defaultdict[tuple[str, object], set[str]] = defaultdict(set)
        for twin_id, props in properties.items():
            key = _exact_key(props.get(path))
            if key is not None:
                self.by_value[key].add(twin_id)

    def _keys(self, condition: PropertyCondition) -> list[tuple[str, object]]:
        return [key for literal in condition.literals if (key := _exact_key(literal)) is not None]

    def estimate(self, condition: PropertyCondition) -> int:
        return sum(len(self.by_value.get(key, ())) for key in self._keys(condition))

    def matching(self, condition: PropertyCondition) -> set[str]:
        found: set[str] = set()
        for key in self._keys(condition):
            found |= self.by_value.get(key, set())
        return found

    def move(self, twin_id: str, before: object, after: object) -> None:
        old, new = _exact_key(before), _exact_key(after)
        if old == new:
            return
        if old is not None:
            holders = self.by_value.get(old)
            if holders is not None:
                holders.discard(twin_id)
                if not holders:
                    del self.by_value[old]
        if new is not None:
            self.by_value[new].add(twin_id)


class PropertyIndexes:
    """Indexes of the top-level properties queries filter on.

    Args:
        properties: Twin id to its decoded properties, as the registry index keeps them
            (read, never changed here).
    """

    def __init__(self, properties: Mapping[str, Mapping[str, Any]]) -> None:
        self._properties = properties
        self._numeric: dict[str, _NumericIndex] = {}
        self._exact: dict[str, _ExactIndex] = {}

    def clear(self) -> None:
        self._numeric.clear()
        self._exact.clear()

    def twin_changed(
        self, twin_id: str, before: Mapping[str, Any], after: Mapping[str, Any]
    ) -> None:
        """Follows a write (``before`` and ``after`` empty for a twin that is new or gone);
        called before the registry's decoded properties change."""
        for path, numeric in self._numeric.items():
            if path in before or path in after:
                numeric.changed.add(twin_id)
        for path, exact in self._exact.items():
            exact.move(twin_id, before.get(path), after.get(path))

    def candidates(
        self, conditions: Iterable[PropertyCondition], worth_it: Callable[[int], bool]
    ) -> set[str] | None:
        """The twins that may satisfy the most selective of ``conditions`` (each of which
        every match satisfies), if ``worth_it`` says that many are worth reading in id
        order; None to scan as if there were no index."""
        best: tuple[int, _NumericIndex | _ExactIndex, PropertyCondition] | None = None
        made = False
        for condition in conditions:
            numeric = all(_is_number(literal) for literal in condition.literals)
            indexes: dict[str, Any] = self._numeric if numeric else self._exact
            index: _NumericIndex | _ExactIndex | None = indexes.get(condition.path)
            if index is None:
                # Making an index reads every twin on the event loop: a query (up to 200
                # terms, naming any property) makes at most one, and there are at most
                # MAX_INDEXED_PROPERTIES, or one request could stall the registry for seconds.
                if made or len(self._numeric) + len(self._exact) >= MAX_INDEXED_PROPERTIES:
                    continue
                made = True
                kind = _NumericIndex if numeric else _ExactIndex
                index = indexes[condition.path] = kind(condition.path, self._properties)
            estimate = index.estimate(condition)
            if best is None or estimate < best[0]:
                best = (estimate, index, condition)
        if best is None or not worth_it(best[0]):
            return None
        return best[1].matching(best[2])
