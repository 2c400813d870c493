"""One table of expression functions: the grammar, the unit rules, the evaluator and the
generated source all come from it, and the last two agree."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twinstack.modeling.expressions import ExpressionError, parse_expression
from twinstack.modeling.functions import FUNCTIONS, call_source
from twinstack.modeling.units import UnitError, infer

SAMPLES = [0.3, 1.7, 0.9, 2.5, 0.1, 1.2, 3.3, 0.6]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_generated_source_computes_what_the_evaluator_does(name: str) -> None:
    function = FUNCTIONS[name]
    for count in {function.min_args, function.max_args}:
        args = SAMPLES[:count]
        source = call_source(name, [repr(a) for a in args])
        generated = eval(source, {"math": math, "np": np, "min": min, "max": max, "abs": abs})
        assert float(generated) == pytest.approx(float(function.evaluate(*args)))


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_the_grammar_takes_the_table_arity(name: str) -> None:
    function = FUNCTIONS[name]
    arguments = ", ".join(["x"] * function.min_args)
    parse_expression(f"{name}({arguments})")
    with pytest.raises(ExpressionError, match="arguments"):
        parse_expression(f"{name}({', '.join(['x'] * (function.max_args + 1))})")


def test_unit_rules_follow_the_table() -> None:
    metres = {"length": 1.0}
    units = {"d": metres, "ratio": {}}
    assert infer(parse_expression("sqrt(d * d)"), units) == metres
    assert infer(parse_expression("exp(ratio)"), units) == {}
    assert infer(parse_expression("sign(d)"), units) == {}
    assert infer(parse_expression("where(ratio > 1, d, d)"), units) == metres
    with pytest.raises(UnitError, match="dimensionless"):
        infer(parse_expression("log(d)"), units)
    with pytest.raises(UnitError):
        infer(parse_expression("max(d, ratio + 1)"), units)
