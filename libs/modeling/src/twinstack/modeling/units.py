"""Units of measure: parsing unit strings and checking that dynamics are dimensionally sound.

Unit strings are parsed by pint (``degC``, ``kPa``, ``m^3/h``, ``W/(m^2*K)``...). Only the
dimensions matter here: an equation for a state in ``degC`` must yield ``[temperature]/[time]``
whatever the scale. A name without a declared unit, and every literal number, is of unknown
dimension and is compatible with anything in sums and comparisons (a literal factor or divisor
keeps the other side's dimensions): checks apply only where units are declared.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping
from typing import Any

from twinstack.modeling.expressions import (
    COMPARISONS,
    Binary,
    Call,
    Name,
    Node,
    Number,
    Unary,
)
from twinstack.modeling.functions import FUNCTIONS

# Dimension name -> exponent, e.g. {"[length]": 1, "[time]": -1}; {} is dimensionless.
Dimensions = dict[str, float]

MAX_UNIT_CHARS = 64
_UNIT_TEXT = re.compile(r"[A-Za-z0-9_ */^().%-]+")
TIME = {"[time]": 1.0}


class UnitError(ValueError):
    """A unit string pint cannot read, or expressions whose dimensions do not agree."""


_built: Any = None
# A service builds the registry in a thread at start; a model arriving meanwhile waits for that
# build instead of making a second one (functools.cache would let both run).
_building = threading.Lock()


def _registry() -> Any:
    global _built  # noqa: PLW0603 - built once per process, on first use
    if _built is None:
        with _building:
            if _built is None:
                # pint is imported on first use: building its registry takes about half a second.
                import pint

                registry: Any = pint.UnitRegistry(autoconvert_offset_to_baseunit=True)
                registry.define("percent_ = 0.01 = pct")
                _built = registry
    return _built


def prepare() -> None:
    """Builds pint's unit registry now, so that the first model with units is not the one to
    wait for it (a service calls this in a thread while it starts)."""
    _registry()


# Bounded: unit strings come from callers.
@functools.lru_cache(maxsize=4096)
def dimensions_of(unit: str) -> tuple[tuple[str, float], ...]:
    """The dimensions of a unit string, as sorted (dimension, exponent) pairs."""
    if len(unit) > MAX_UNIT_CHARS or not _UNIT_TEXT.fullmatch(unit):
        raise UnitError(f"{unit!r} is not a unit (at most {MAX_UNIT_CHARS} characters)")
    try:
        parsed = _registry().parse_units(unit.replace("%", "percent"))
    except Exception as error:  # pint raises several unrelated types for bad input
        raise UnitError(f"unknown unit {unit!r}: {error}") from None
    return tuple(sorted((str(k), float(v)) for k, v in parsed.dimensionality.items()))


def unit_dimensions(unit: str) -> Dimensions:
    return dict(dimensions_of(unit))


def describe(dimensions: Mapping[str, float]) -> str:
    if not dimensions:
        return "dimensionless"
    return " * ".join(
        name if exponent == 1 else f"{name}^{exponent:g}"
        for name, exponent in sorted(dimensions.items())
    )


def combine(left: Mapping[str, float], right: Mapping[str, float], sign: float) -> Dimensions:
    """Dimensions of a product (sign 1) or a quotient (sign -1)."""
    result = dict(left)
    for name, exponent in right.items():
        result[name] = result.get(name, 0.0) + sign * exponent
    return {name: exponent for name, exponent in result.items() if exponent != 0}


def infer(node: Node, units: Mapping[str, Dimensions | None]) -> Dimensions | None:
    """The dimensions of an expression, or None where unknown; UnitError where they clash.

    ``units`` maps each name to its declared dimensions (None: declared without a unit).
    """
    if isinstance(node, Number):
        return None
    if isinstance(node, Name):
        return units.get(node.name)
    if isinstance(node, Unary):
        inner = infer(node.operand, units)
        return None if node.op == "not" else inner
    if isinstance(node, Binary):
        return _binary(node, units)
    return _call(node, units)


def _same(a: Dimensions | None, b: Dimensions | None, what: str) -> Dimensions | None:
    if a is not None and b is not None and a != b:
        raise UnitError(f"{what} mixes {describe(a)} with {describe(b)}")
    return a if a is not None else b


def _binary(node: Binary, units: Mapping[str, Dimensions | None]) -> Dimensions | None:
    left = infer(node.left, units)
    right = infer(node.right, units)
    if node.op in ("+", "-"):
        return _same(left, right, f"'{node.op}'")
    if node.op in COMPARISONS:
        _same(left, right, f"comparison '{node.op}'")
        return {}
    if node.op in ("and", "or"):
        return {}
    if node.op == "^":
        if right:
            raise UnitError(f"an exponent must be dimensionless, not {describe(right)}")
        if left is None or not left:
            return left
        if not isinstance(node.right, Number):
            raise UnitError(f"a quantity in {describe(left)} can only be raised to a number")
        return {name: exponent * node.right.value for name, exponent in left.items()}
    # A literal scales a product or quotient without changing its dimensions.
    if isinstance(node.left, Number):
        left = {}
    if isinstance(node.right, Number):
        right = {}
    if left is None or right is None:
        return None
    return combine(left, right, 1.0 if node.op == "*" else -1.0)


def _call(node: Call, units: Mapping[str, Dimensions | None]) -> Dimensions | None:
    args = [infer(arg, units) for arg in node.args]
    rule = FUNCTIONS[node.function].dimensions
    if rule == "dimensionless":
        if args[0]:
            raise UnitError(
                f"{node.function}() needs a dimensionless argument, not {describe(args[0])}"
            )
        return {}
    if rule == "root":
        return None if args[0] is None else {k: v / 2 for k, v in args[0].items()}
    if rule == "pure":
        return {}
    if rule == "choice":
        return _same(args[1], args[2], f"{node.function}()")
    result: Dimensions | None = None
    for arg in args:  # "same": arguments of one dimension, and the result too
        result = _same(result, arg, f"{node.function}()")
    return result
