"""The functions expressions may call: one table for the grammar (arity), unit checks
(dimensions), constant folding (a Python evaluator) and code generation (numba source).

Adding a function is adding a row here; nothing else names them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

# How a call's dimensions follow from its arguments':
#   dimensionless - the argument must be dimensionless, and so is the result (exp, sin, ...);
#   same - every argument has one dimension, the result too (abs, min, clip, ...);
#   root - half the argument's exponents (sqrt);
#   pure - the result is dimensionless whatever the argument (sign);
#   choice - the second and third arguments agree, the result has theirs (where).
Dimensions = Literal["dimensionless", "same", "root", "pure", "choice"]


@dataclass(frozen=True)
class Function:
    """One callable function of the expression language."""

    name: str
    min_args: int
    max_args: int
    dimensions: Dimensions
    evaluate: Callable[..., float]
    # A Python expression of the generated kernel, the arguments' source filling ``{0}``,
    # ``{1}``... (or ``{args}`` for all of them, comma separated); numba compiles it.
    template: str


def _sign(x: float) -> float:
    return float((x > 0) - (x < 0))


def _clip(x: float, low: float, high: float) -> float:
    return min(max(x, low), high)


def _where(condition: float, then: float, otherwise: float) -> float:
    return then if condition else otherwise


def _least(*values: float) -> float:
    return min(values)


def _most(*values: float) -> float:
    return max(values)


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function("abs", 1, 1, "same", abs, "abs({0})"),
        Function("sqrt", 1, 1, "root", math.sqrt, "math.sqrt({0})"),
        Function("exp", 1, 1, "dimensionless", math.exp, "math.exp({0})"),
        Function("log", 1, 1, "dimensionless", math.log, "math.log({0})"),
        Function("log10", 1, 1, "dimensionless", math.log10, "math.log10({0})"),
        Function("sin", 1, 1, "dimensionless", math.sin, "math.sin({0})"),
        Function("cos", 1, 1, "dimensionless", math.cos, "math.cos({0})"),
        Function("tan", 1, 1, "dimensionless", math.tan, "math.tan({0})"),
        Function("tanh", 1, 1, "dimensionless", math.tanh, "math.tanh({0})"),
        Function("floor", 1, 1, "same", math.floor, "np.floor({0})"),
        Function("ceil", 1, 1, "same", math.ceil, "np.ceil({0})"),
        Function("sign", 1, 1, "pure", _sign, "np.sign({0})"),
        Function("min", 2, 8, "same", _least, "min({args})"),
        Function("max", 2, 8, "same", _most, "max({args})"),
        Function("clip", 3, 3, "same", _clip, "min(max({0}, {1}), {2})"),
        Function("where", 3, 3, "choice", _where, "({1} if {0} else {2})"),
    )
}


def call_source(name: str, args: list[str]) -> str:
    """The generated source of a call whose arguments' source is ``args``."""
    return FUNCTIONS[name].template.format(*args, args=", ".join(args))
