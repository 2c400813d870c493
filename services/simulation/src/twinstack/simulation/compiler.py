"""The ``dynamics`` of a model compiled to numba kernels.

The equations arrive as the typed AST of :mod:`twinstack.modeling.expressions`; user
text never reaches ``eval`` or ``exec``. The code generator writes Python source from that AST in
which every user name is replaced by a generated identifier (``x0``, ``p3``, ``o1``) and every
number by ``repr`` of a float, so the only text that is compiled is text this module wrote.

One module per distinct dynamics holds two kernels, ``run_rk4`` and ``run_euler``. A module is
written once to the kernel cache directory under the hash of its source and imported from
there, so numba's own on-disk cache (``cache=True``) serves every later process on the machine:
the service, a restarted service, and each Ray worker compile a model version once per node.

Layout: every per-scenario quantity is an array ``(rows, scenarios)``, and the innermost loop of
every time step runs over a block of scenarios with no branches but selects, so LLVM vectorises
it across scenarios. Reductions to KPIs happen in the kernel, so only KPIs (and, when asked, a
downsampled trajectory) leave it.
"""

from __future__ import annotations

import enum
import hashlib
import importlib.util
import math
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from twinstack.common.errors import FieldViolation
from twinstack.modeling.document import TIME_NAME, Dynamics
from twinstack.modeling.expressions import (
    Binary,
    Call,
    Name,
    Node,
    Number,
    Unary,
    continues_chain,
    names_in,
    walk,
)
from twinstack.modeling.functions import FUNCTIONS, call_source
from twinstack.simulation.kernels import SCENARIO_BLOCK

FloatArray = npt.NDArray[np.float64]

# Part of every kernel's key: a change to the generated code must not reuse older kernels.
COMPILER_VERSION = "3"
# Bounds that keep the generated source, and numba's compile time, reasonable.
MAX_MODEL_NODES = 4000
MAX_STATES = 64
MAX_VARIABLES = 256
# fastmath without 'nnan'/'ninf': the kernels test for NaN (never-crossed KPIs, divergence),
# and those tests must survive optimisation.
FASTMATH_FLAGS = ("nsz", "arcp", "contract", "afn", "reassoc")
STATISTICS = ("final", "min", "max", "mean")


class CompileError(ValueError):
    """The dynamics cannot be compiled; every problem is named with its path."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))
        self.violations = violations


class Integrator(enum.Enum):
    RK4 = "rk4"
    EULER = "euler"


@dataclass(frozen=True)
class KernelSpec:
    """Everything needed to load a compiled model anywhere: names in kernel order, defaults,
    and the generated source. Small and picklable, so it travels to Ray workers."""

    key: str
    source: str
    states: tuple[str, ...]
    parameters: tuple[str, ...]
    parameter_defaults: tuple[float, ...]
    inputs: tuple[str, ...]
    input_defaults: tuple[float, ...]
    outputs: tuple[str, ...]
    conditions: tuple[str, ...]
    bounds: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)

    @property
    def observables(self) -> tuple[str, ...]:
        """What KPIs and trajectories are computed of: the states, then the outputs."""
        return self.states + self.outputs


@dataclass(frozen=True)
class RunPlan:
    """How to advance a batch: time, step, integrator, noise, scheduled inputs, KPI options.

    ``schedule_steps`` (ascending step indices) and ``schedule_values`` (one row per entry,
    one column per input, NaN = not scheduled) give piecewise constant inputs that replace
    the scenario's own input values from that step on.
    """

    steps: int
    dt_s: float
    integrator: Integrator = Integrator.RK4
    t0_s: float = 0.0
    input_noise: FloatArray | None = None  # (inputs,) standard deviation per step
    schedule_steps: npt.NDArray[np.int64] | None = None
    schedule_values: FloatArray | None = None
    thresholds: FloatArray | None = None  # (observables,), NaN where none
    record_every: int = 0  # 0: no trajectory


@dataclass(frozen=True)
class Outcome:
    """What a kernel computed for a batch of scenarios."""

    statistics: FloatArray  # (observables, 4, n): final, min, max, mean
    crossings: FloatArray  # (observables, 2, n): time above threshold, first crossing time
    first_true: FloatArray  # (conditions, n): first time each condition held, NaN if never
    trajectory: FloatArray  # (records, observables, n); records = 0 without recording

    @property
    def diverged(self) -> npt.NDArray[np.bool_]:
        """Scenarios whose final values are not finite (a division by zero, a blow-up)."""
        return np.asarray(~np.isfinite(self.statistics[:, 0, :]).all(axis=0))


# --- validation ---------------------------------------------------------------------------


def _constant(node: Node) -> float | None:
    """The value of a subtree without names, computed here (no eval); None if it has names.

    Raises ArithmeticError or ValueError for a constant that cannot be computed.
    """
    if isinstance(node, Number):
        return node.value
    if isinstance(node, Name):
        return None
    if isinstance(node, Unary):
        value = _constant(node.operand)
        if value is None:
            return None
        return -value if node.op == "-" else value if node.op == "+" else float(not value)
    if isinstance(node, Binary):
        left, right = _constant(node.left), _constant(node.right)
        if left is None or right is None:
            return None
        return _binary(node.op, left, right)
    args = [_constant(arg) for arg in node.args]
    if any(arg is None for arg in args):
        return None
    return _call(node.function, [a for a in args if a is not None])


def _binary(op: str, left: float, right: float) -> float:
    if op == "/":
        if right == 0.0:
            raise ZeroDivisionError("division by zero")
        return left / right
    if op == "^":
        return float(math.pow(left, right))
    operations: dict[str, Callable[[float, float], float]] = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        "<": lambda a, b: float(a < b),
        "<=": lambda a, b: float(a <= b),
        ">": lambda a, b: float(a > b),
        ">=": lambda a, b: float(a >= b),
        "==": lambda a, b: float(a == b),
        "!=": lambda a, b: float(a != b),
        "and": lambda a, b: float(bool(a) and bool(b)),
        "or": lambda a, b: float(bool(a) or bool(b)),
    }
    return operations[op](left, right)


def _call(function: str, args: list[float]) -> float:
    return float(FUNCTIONS[function].evaluate(*args))


def _constant_problems(node: Node) -> list[str]:
    """Constant parts that are certain to fail at run time: ``x / 0``, ``x / (2 - 2)``,
    ``10 ^ 400``, ``log(0)``, ``sqrt(-1)``."""
    problems = []
    for current in walk(node):
        if isinstance(current, Binary) and current.op == "/" and not names_in(current.right):
            try:
                divisor = _constant(current.right)
            except (ArithmeticError, ValueError) as error:
                problems.append(f"a constant divisor cannot be computed: {error}")
                continue
            if divisor == 0.0:
                problems.append("division by a constant zero")
        if isinstance(current, (Binary, Call)) and not names_in(current):
            try:
                value = _constant(current)
            except (ArithmeticError, ValueError) as error:
                problems.append(f"a constant part cannot be computed: {error}")
                continue
            if value is not None and not math.isfinite(value):
                problems.append("a constant part overflows to infinity")
    return sorted(set(problems))


def _violations(dynamics: Dynamics) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    path = "dynamics"
    if not dynamics.states:
        violations.append(FieldViolation(f"{path}.states", "the model has no dynamics to run"))
    if len(dynamics.states) > MAX_STATES:
        violations.append(FieldViolation(f"{path}.states", f"more than {MAX_STATES} states"))
    if len(dynamics.parameters) + len(dynamics.inputs) > MAX_VARIABLES:
        violations.append(
            FieldViolation(f"{path}.parameters", f"more than {MAX_VARIABLES} parameters and inputs")
        )
    states = {s.name for s in dynamics.states}
    known = (
        {TIME_NAME}
        | states
        | {p.name for p in dynamics.parameters}
        | {i.name for i in dynamics.inputs}
    )
    equations = {e.name for e in dynamics.equations}
    for missing in sorted(states - equations):
        violations.append(FieldViolation(f"{path}.equations", f"state {missing!r} has no equation"))
    total_nodes = 0
    sections: list[tuple[str, str, str, Node]] = [
        ("equations", f"{path}.equations.{e.name}", e.name, e.node) for e in dynamics.equations
    ]
    sections += [("outputs", f"{path}.outputs.{o.name}", o.name, o.node) for o in dynamics.outputs]
    sections += [
        ("conditions", f"{path}.conditions.{c.name}.when", c.name, c.node)
        for c in dynamics.conditions
    ]
    for section, where, name, node in sections:
        total_nodes += sum(1 for _ in walk(node))
        if section == "equations" and name not in states:
            violations.append(FieldViolation(where, f"{name!r} is not a state variable"))
        unknown = sorted(names_in(node) - known)
        if unknown:
            violations.append(
                FieldViolation(where, f"unknown names {unknown}; known: {sorted(known)}")
            )
        violations.extend(FieldViolation(where, problem) for problem in _constant_problems(node))
        if section == "outputs":
            known = known | {name}  # later outputs and conditions may read earlier outputs
    if total_nodes > MAX_MODEL_NODES:
        violations.append(
            FieldViolation(path, f"{total_nodes} terms in all; at most {MAX_MODEL_NODES}")
        )
    return violations


# --- code generation ----------------------------------------------------------------------


# Operations whose value is a number (not a truth value): only those can be computed ahead into
# an array of floats.
_NUMERIC_OPS = frozenset({"+", "-", "*", "/", "^"})


def _numeric(node: Node) -> bool:
    if isinstance(node, Binary):
        return node.op in _NUMERIC_OPS
    if isinstance(node, Unary):
        return node.op != "not"
    return isinstance(node, Call)


@dataclass
class _Ahead:
    """Subtrees computed once per scenario before the time loop, by the identity of their node:
    ``values`` maps a subtree to its identifier, ``reciprocals`` a divisor to the identifier of
    one over it."""

    values: dict[int, str] = field(default_factory=dict)
    reciprocals: dict[int, str] = field(default_factory=dict)


def _names_by_node(node: Node, into: dict[int, frozenset[str]]) -> frozenset[str]:
    known = into.get(id(node))
    if known is not None:
        return known
    if isinstance(node, Number):
        names: frozenset[str] = frozenset()
    elif isinstance(node, Name):
        names = frozenset((node.name,))
    elif isinstance(node, Unary):
        names = _names_by_node(node.operand, into)
    elif isinstance(node, Binary):
        names = _names_by_node(node.left, into) | _names_by_node(node.right, into)
    else:
        names = frozenset().union(*(_names_by_node(arg, into) for arg in node.args))
    into[id(node)] = names
    return names


class _Distributor:
    """Pushes factors that depend on parameters alone into the sums they scale:
    ``(a - b * (x - c)) / d`` becomes ``a / d - b / d * (x - c)``, whose ``a / d`` and ``b / d``
    are then computed once per scenario, leaving one fused multiply-add per term in the time
    loop. fastmath's 'reassoc' lets LLVM do the same, but not across the time loop.
    """

    # A rewrite that would more than double an expression (a long sum scaled by a long factor)
    # is not made: the source and numba's compile time would grow for little gain.
    MAX_GROWTH = 2

    def __init__(self, parameters: frozenset[str]) -> None:
        self._parameters = parameters
        self._names: dict[int, frozenset[str]] = {}
        # Nodes made here stay referenced, so that no id in _names is reused by another node.
        self._made: list[Node] = []

    def invariant(self, node: Node) -> bool:
        used = _names_by_node(node, self._names)
        return bool(used) and used <= self._parameters

    def _make(self, node: Node) -> Node:
        self._made.append(node)
        return node

    def rewrite(self, node: Node) -> Node:
        if isinstance(node, Number | Name):
            return node
        if isinstance(node, Unary):
            return self._make(Unary(node.op, self.rewrite(node.operand)))
        if isinstance(node, Call):
            return self._make(Call(node.function, tuple(self.rewrite(a) for a in node.args)))
        left, right = self.rewrite(node.left), self.rewrite(node.right)
        plain = self._make(Binary(node.op, left, right))
        if _is_sum(plain):
            return self._regrouped(plain)
        if node.op == "/" and _is_sum(left) and self.invariant(right):
            scaled = self._scaled(left, right, "/")
        elif node.op == "*" and _is_sum(left) and self.invariant(right):
            scaled = self._scaled(left, right, "*")
        elif node.op == "*" and _is_sum(right) and self.invariant(left):
            scaled = self._scaled(right, left, "*")
        else:
            return plain
        if sum(1 for _ in walk(scaled)) > self.MAX_GROWTH * sum(1 for _ in walk(plain)):
            return plain
        return self._regrouped(scaled)

    def _terms(self, node: Node, negative: bool, into: list[tuple[bool, Node]]) -> None:
        if isinstance(node, Binary) and node.op in {"+", "-"}:
            self._terms(node.left, negative, into)
            self._terms(node.right, negative != (node.op == "-"), into)
        elif isinstance(node, Unary) and node.op == "-":
            self._terms(node.operand, not negative, into)
        else:
            into.append((negative, node))

    def _regrouped(self, node: Node) -> Node:
        """A sum with its terms that depend on parameters alone added up as one subtree (then
        computed once per scenario), after the others: ``x * a - b + c`` as ``x * a + (c - b)``."""
        terms: list[tuple[bool, Node]] = []
        self._terms(node, False, terms)
        fixed = [term for term in terms if self.invariant(term[1])]
        if len(fixed) < 2:  # one alone: nothing to add up ahead
            return node
        varying = [term for term in terms if not self.invariant(term[1])]
        if varying and varying[0][0]:  # a - x reads better, and costs less, than -x + a
            return self._sum([(False, self._sum(fixed)), *varying])
        return self._sum([*varying, (False, self._sum(fixed))])

    def _sum(self, terms: list[tuple[bool, Node]]) -> Node:
        negative, total = terms[0]
        if negative:
            total = self._make(Unary("-", total))
        for negative, term in terms[1:]:
            total = self._make(Binary("-" if negative else "+", total, term))
        return total

    def _scaled(self, node: Node, factor: Node, op: str) -> Node:
        """``node op factor`` with the factor moved into the terms of sums."""
        if isinstance(node, Binary) and node.op in {"+", "-"}:
            return self._make(
                Binary(
                    node.op,
                    self._scaled(node.left, factor, op),
                    self._scaled(node.right, factor, op),
                )
            )
        if isinstance(node, Unary) and node.op == "-":
            return self._make(Unary("-", self._scaled(node.operand, factor, op)))
        if isinstance(node, Binary) and node.op == "*" and self.invariant(node.left):
            return self._make(Binary("*", self._make(Binary(op, node.left, factor)), node.right))
        if isinstance(node, Binary) and node.op == "*" and self.invariant(node.right):
            return self._make(Binary("*", node.left, self._make(Binary(op, node.right, factor))))
        return self._make(Binary(op, node, factor))


def _is_sum(node: Node) -> bool:
    return isinstance(node, Binary) and node.op in {"+", "-"}


def _invariants(roots: list[Node], parameters: frozenset[str]) -> tuple[list[Node], list[Node]]:
    """The largest subtrees of ``roots`` that depend on parameters alone, and the divisors that
    do, each in first-seen order.

    They are the same at every time step of a scenario, and LLVM cannot move them out of the
    time loop (the scenario loop inside it reads them from memory), so the generated kernel
    computes them once per scenario before the loop: a model's ``k / capacity`` costs a
    division per equation and RK4 stage otherwise, several times the rest of a step.
    """
    names: dict[int, frozenset[str]] = {}
    for root in roots:
        _names_by_node(root, names)
    values: list[Node] = []
    divisors: list[Node] = []

    def invariant(node: Node) -> bool:
        used = names[id(node)]
        return bool(used) and used <= parameters

    def visit(node: Node) -> None:
        if invariant(node) and _numeric(node):
            values.append(node)
            return
        if isinstance(node, Binary):
            visit(node.left)
            visit(node.right)
            # fastmath's 'arcp' already lets LLVM turn a / b into a * (1 / b).
            if node.op == "/" and invariant(node.right):
                divisors.append(node.right)
        elif isinstance(node, Unary):
            visit(node.operand)
        elif isinstance(node, Call):
            for arg in node.args:
                visit(arg)

    for root in roots:
        visit(root)
    return values, divisors


def _emit(
    node: Node,
    names: Mapping[str, str],
    *,
    wrap: bool = True,
    ahead: _Ahead | None = None,
) -> str:
    """Python source for ``node`` with user names replaced by generated identifiers.

    Every operation is written in parentheses but the left operand of a chain of one precedence
    (``a + b - c``), so that long sums nest no deeper than short ones; ``wrap`` False leaves off
    the parentheses of ``node`` itself. Subtrees in ``ahead`` were computed before; their
    identifier stands for them.
    """
    if ahead is not None and id(node) in ahead.values:
        return ahead.values[id(node)]
    if isinstance(node, Number):
        return repr(float(node.value))
    if isinstance(node, Name):
        return names[node.name]
    if isinstance(node, Unary):
        operand = _emit(node.operand, names, ahead=ahead)
        return f"(not {operand})" if node.op == "not" else f"({node.op}{operand})"
    if isinstance(node, Binary):
        left = _emit(node.left, names, wrap=not continues_chain(node), ahead=ahead)
        if node.op == "/" and ahead is not None and id(node.right) in ahead.reciprocals:
            product = f"{left} * {ahead.reciprocals[id(node.right)]}"
            return f"({product})" if wrap else product
        right = _emit(node.right, names, ahead=ahead)
        if node.op == "^":
            exponent = node.right.value if isinstance(node.right, Number) else None
            # Squares of names and numbers as products; a squared subexpression stays a power,
            # since writing it twice would double the source at every level of nesting.
            if exponent == 2.0 and isinstance(node.left, Name | Number):
                return f"({left} * {left})"
            return f"({left} ** {right})"
        op = {"and": "&", "or": "|"}.get(node.op, node.op)
        return f"({left} {op} {right})" if wrap else f"{left} {op} {right}"
    return call_source(node.function, [_emit(arg, names, ahead=ahead) for arg in node.args])


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)


def _generate(dynamics: Dynamics) -> str:
    states = [s.name for s in dynamics.states]
    params = [p.name for p in dynamics.parameters]
    inputs = [i.name for i in dynamics.inputs]
    outputs = [o.name for o in dynamics.outputs]
    equations = {e.name: e.node for e in dynamics.equations}
    observables = [f"X{j}" for j in range(len(states))] + [f"O{j}" for j in range(len(outputs))]
    base: dict[str, str] = {name: f"p{j}" for j, name in enumerate(params)}
    base |= {name: f"v{j}" for j, name in enumerate(inputs)}
    base |= {name: f"o{j}" for j, name in enumerate(outputs)}

    def at(state_prefix: str, time: str) -> dict[str, str]:
        return base | {n: f"{state_prefix}{j}" for j, n in enumerate(states)} | {TIME_NAME: time}

    distributor = _Distributor(frozenset(params))
    equations = {name: distributor.rewrite(node) for name, node in equations.items()}
    output_nodes = [distributor.rewrite(o.node) for o in dynamics.outputs]
    condition_nodes = [distributor.rewrite(c.node) for c in dynamics.conditions]
    values, divisors = _invariants(
        list(equations.values()) + output_nodes + condition_nodes, frozenset(params)
    )
    ahead = _Ahead()
    computed_ahead: dict[str, str] = {}  # source -> identifier: equal subtrees computed once
    for node in values:
        text = _emit(node, base)
        ahead.values[id(node)] = computed_ahead.setdefault(text, f"q{len(computed_ahead)}")
    for node in divisors:
        text = f"1.0 / {_emit(node, base, ahead=ahead)}"
        ahead.reciprocals[id(node)] = computed_ahead.setdefault(text, f"q{len(computed_ahead)}")

    source = [
        f"# Generated by twinstack.simulation.compiler {COMPILER_VERSION}; do not edit.",
        "import math",
        "",
        "import numba",
        "import numpy as np",
        "",
        "from twinstack.simulation.rng import normal",
        "",
        f"FASTMATH = {set(FASTMATH_FLAGS)!r}",
    ]
    w = _Writer()
    for integrator in Integrator:
        w(0, "")
        w(0, "")
        w(0, '@numba.njit(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)')
        w(
            0,
            f"def run_{integrator.value}(initial, params, inputs, noise, sched_steps, "
            "sched_values, seeds, t0, dt, steps, record_every, thresholds, stats, crossings, "
            "first_true, traj):",
        )
        w(1, "n = initial.shape[1]")
        w(1, "h2 = 0.5 * dt")
        w(1, "h6 = dt / 6.0")
        w(1, "rows = sched_steps.shape[0]")
        w(1, "record = traj.shape[0] > 0")
        for j in range(len(inputs)):
            w(1, f"sigma{j} = noise[{j}]")
        for o in range(len(observables)):
            w(1, f"TH{o} = thresholds[{o}]")
        w(1, f"for start in range(0, n, {SCENARIO_BLOCK}):")
        w(2, f"stop = min(start + {SCENARIO_BLOCK}, n)")
        w(2, "m = stop - start")
        w(2, "SEED = seeds[start:stop]")
        for j in range(len(states)):
            w(2, f"X{j} = initial[{j}, start:stop].copy()")
        for j in range(len(params)):
            w(2, f"P{j} = params[{j}, start:stop]")
        for j in range(len(inputs)):
            w(2, f"U{j} = inputs[{j}, start:stop]")
        for j in range(len(outputs)):
            w(2, f"O{j} = np.empty(m)")
        # The block's accumulators are arrays of its own rather than views of the outputs: LLVM
        # vectorises the scenario loop only where it can rule out that stores alias the loads.
        for o in range(len(observables)):
            for accumulator in ("MIN", "MAX", "MEAN", "TA", "FC"):
                w(2, f"{accumulator}{o} = np.empty(m)")
        for c in range(len(dynamics.conditions)):
            w(2, f"CF{c} = np.empty(m)")
        for q in range(len(computed_ahead)):
            w(2, f"Q{q} = np.empty(m)")
        if computed_ahead:
            w(2, "for i in range(m):")
            for j in range(len(params)):
                w(3, f"p{j} = P{j}[i]")
            for text, identifier in computed_ahead.items():
                w(3, f"{identifier} = {text}")
                w(3, f"Q{identifier[1:]}[i] = {identifier}")

        def scheduled(depth: int, step: str) -> None:
            w(depth, f"while ptr + 1 < rows and sched_steps[ptr + 1] <= {step}:")
            w(depth + 1, "ptr += 1")
            w(depth, f"on = rows > 0 and sched_steps[ptr] <= {step}")
            for j in range(len(inputs)):
                w(depth, f"s{j} = sched_values[ptr, {j}] if on else np.nan")
                w(depth, f"u{j} = s{j} == s{j}")

        def scenario_values(depth: int, with_noise: bool) -> None:
            for j in range(len(states)):
                w(depth, f"x{j} = X{j}[i]")
            for j in range(len(params)):
                w(depth, f"p{j} = P{j}[i]")
            for q in range(len(computed_ahead)):
                w(depth, f"q{q} = Q{q}[i]")
            for j in range(len(inputs)):
                w(depth, f"v{j} = s{j} if u{j} else U{j}[i]")
                if with_noise:
                    w(depth, f"if sigma{j} != 0.0:")
                    w(depth + 1, f"v{j} += sigma{j} * normal(SEED[i], k, {j})")

        def observe(depth: int, time: str, first: bool) -> None:
            names = at("x", time)
            for j, output in enumerate(output_nodes):
                w(depth, f"o{j} = {_emit(output, names, ahead=ahead)}")
                w(depth, f"O{j}[i] = o{j}")
            values = [f"x{j}" for j in range(len(states))] + [f"o{j}" for j in range(len(outputs))]
            elapsed = "0.0" if first else "tn - t0"
            for o, value in enumerate(values):
                w(depth, f"above = {value} > TH{o}")
                if first:
                    w(depth, f"MIN{o}[i] = {value}")
                    w(depth, f"MAX{o}[i] = {value}")
                    w(depth, f"MEAN{o}[i] = 0.0")
                    w(depth, f"TA{o}[i] = 0.0")
                    w(depth, f"FC{o}[i] = 0.0 if above else np.nan")
                else:
                    w(depth, f"MIN{o}[i] = min(MIN{o}[i], {value})")
                    w(depth, f"MAX{o}[i] = max(MAX{o}[i], {value})")
                    w(depth, f"MEAN{o}[i] += {value}")
                    w(depth, f"TA{o}[i] += dt if above else 0.0")
                    w(depth, f"fc = FC{o}[i]")
                    w(depth, f"FC{o}[i] = {elapsed} if (above and fc != fc) else fc")
            for c, condition in enumerate(condition_nodes):
                holds = _emit(condition, names, ahead=ahead)
                if first:
                    w(depth, f"CF{c}[i] = 0.0 if {holds} else np.nan")
                else:
                    w(depth, f"cf = CF{c}[i]")
                    w(depth, f"CF{c}[i] = {elapsed} if ({holds} and cf != cf) else cf")

        def store(depth: int, row: str) -> None:
            w(depth, "for i in range(m):")
            for o, array in enumerate(observables):
                w(depth + 1, f"traj[{row}, {o}, start + i] = {array}[i]")

        w(2, "ptr = 0")
        w(2, "k = 0")
        scheduled(2, "0")
        w(2, "for i in range(m):")
        scenario_values(3, with_noise=False)
        observe(3, "t0", first=True)
        w(2, "if record:")
        store(3, "0")
        w(2, "for k in range(steps):")
        w(3, "tt = t0 + k * dt")
        w(3, "th = tt + h2")
        w(3, "tn = tt + dt")
        scheduled(3, "k")
        w(3, "for i in range(m):")
        scenario_values(4, with_noise=True)
        if integrator is Integrator.RK4:
            stages = (
                ("x", "tt", "k1_"),
                ("y", "th", "k2_"),
                ("y", "th", "k3_"),
                ("y", "tn", "k4_"),
            )
            previous = {"k2_": ("k1_", "h2"), "k3_": ("k2_", "h2"), "k4_": ("k3_", "dt")}
            for prefix, time, slope in stages:
                if slope in previous:
                    before, step = previous[slope]
                    for j in range(len(states)):
                        w(4, f"y{j} = x{j} + {step} * {before}{j}")
                names = at(prefix, time)
                for j, state in enumerate(states):
                    w(4, f"{slope}{j} = {_emit(equations[state], names, ahead=ahead)}")
            for j in range(len(states)):
                w(4, f"x{j} = x{j} + h6 * (k1_{j} + 2.0 * k2_{j} + 2.0 * k3_{j} + k4_{j})")
        else:
            names = at("x", "tt")
            for j, state in enumerate(states):
                w(4, f"d{j} = {_emit(equations[state], names, ahead=ahead)}")
            for j in range(len(states)):
                w(4, f"x{j} = x{j} + dt * d{j}")
        for j in range(len(states)):
            w(4, f"X{j}[i] = x{j}")
        observe(4, "tn", first=False)
        w(3, "if record and (k + 1) % record_every == 0:")
        store(4, "(k + 1) // record_every")
        w(2, "for i in range(m):")
        for o, array in enumerate(observables):
            w(3, f"stats[{o}, 0, start + i] = {array}[i]")
            w(3, f"MEAN{o}[i] = MEAN{o}[i] / steps if steps > 0 else {array}[i]")
        for o in range(len(observables)):
            for row, accumulator in enumerate(("MIN", "MAX", "MEAN"), start=1):
                w(2, f"stats[{o}, {row}, start:stop] = {accumulator}{o}")
            w(2, f"crossings[{o}, 0, start:stop] = TA{o}")
            w(2, f"crossings[{o}, 1, start:stop] = FC{o}")
        for c in range(len(dynamics.conditions)):
            w(2, f"first_true[{c}, start:stop] = CF{c}")
    return "\n".join(source + w.lines) + "\n"


def kernel_spec(dynamics: Dynamics) -> KernelSpec:
    """Validates ``dynamics`` and generates its kernels' source; CompileError otherwise."""
    violations = _violations(dynamics)
    if violations:
        raise CompileError(violations)
    source = _generate(dynamics)
    key = hashlib.sha256(f"{COMPILER_VERSION}\n{source}".encode()).hexdigest()[:32]
    bounds: dict[str, tuple[float | None, float | None]] = {
        p.name: (p.minimum, p.maximum) for p in dynamics.parameters
    }
    return KernelSpec(
        key=key,
        source=source,
        states=tuple(s.name for s in dynamics.states),
        parameters=tuple(p.name for p in dynamics.parameters),
        parameter_defaults=tuple(p.default for p in dynamics.parameters),
        inputs=tuple(i.name for i in dynamics.inputs),
        input_defaults=tuple(i.default for i in dynamics.inputs),
        outputs=tuple(o.name for o in dynamics.outputs),
        conditions=tuple(c.name for c in dynamics.conditions),
        bounds=bounds,
    )


# --- loading and running ------------------------------------------------------------------

_loaded: dict[str, ModuleType] = {}
_loading = threading.Lock()
# How a Ray worker learns the service's kernel cache: the service puts it into the environment
# of the Ray job it starts (SimulationSettings.kernel_cache_dir).
KERNEL_CACHE_ENV = "TWINSTACK_KERNEL_CACHE_DIR"
_cache_dir: Path | None = None


def use_cache_dir(directory: Path) -> None:
    """Makes ``directory`` this process's kernel cache (the service calls it at start)."""
    global _cache_dir  # noqa: PLW0603 - one cache per process, as numba's own
    _cache_dir = directory


def default_cache_dir() -> Path:
    """The kernel cache: the one set with :func:`use_cache_dir`, else the one the Ray job's
    environment names, else a private directory of this user's in the temporary directory."""
    if _cache_dir is not None:
        return _cache_dir
    configured = os.environ.get(KERNEL_CACHE_ENV)
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"twinstack-kernels-{os.getuid()}"


def private_directory(directory: Path) -> Path:
    """``directory``, created 0700 if missing, after checking that nobody else can have put
    code in it: the kernels are imported from there and numba's cache beside them is pickled,
    so a directory another user owns or can write to (say a name taken in ``/tmp`` before us)
    would run their code.

    Raises:
        PermissionError: the directory is a symlink, owned by another user, or writable by
            group or others.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    status = directory.lstat()
    if stat.S_ISLNK(status.st_mode) or not stat.S_ISDIR(status.st_mode):
        raise PermissionError(f"kernel cache {directory} is not a plain directory")
    if status.st_uid != os.getuid():
        raise PermissionError(
            f"kernel cache {directory} belongs to uid {status.st_uid}, not to this process "
            f"({os.getuid()}); set TWINSTACK_KERNEL_CACHE_DIR to a directory of its own"
        )
    if status.st_mode & 0o022:
        raise PermissionError(
            f"kernel cache {directory} is writable by group or others "
            f"(mode {stat.S_IMODE(status.st_mode):o}); it must be 0700 or 0755"
        )
    return directory


def _module(spec: KernelSpec, cache_dir: Path | None) -> ModuleType:
    with _loading:
        module = _loaded.get(spec.key)
        if module is not None:
            return module
        directory = private_directory(cache_dir or default_cache_dir())
        path = directory / f"twinstack_kernel_{spec.key}.py"
        if not path.exists() or path.read_text() != spec.source:
            # Written once under a temporary name and renamed: a concurrent process sees the
            # whole file or none, and its unchanged mtime keeps numba's cache valid.
            fd, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
            with os.fdopen(fd, "w") as file:
                file.write(spec.source)
            os.replace(temporary, path)
        name = f"twinstack_kernel_{spec.key}"
        loader_spec = importlib.util.spec_from_file_location(name, path)
        assert loader_spec is not None
        assert loader_spec.loader is not None
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module  # numba's cache locates functions by module
        loader_spec.loader.exec_module(module)
        _loaded[spec.key] = module
        return module


class CompiledModel:
    """A loaded kernel module; :meth:`run` advances a batch of scenarios."""

    def __init__(self, spec: KernelSpec, cache_dir: Path | None = None) -> None:
        self.spec = spec
        module = _module(spec, cache_dir)
        self._kernels: dict[Integrator, Any] = {
            integrator: getattr(module, f"run_{integrator.value}") for integrator in Integrator
        }

    def run(
        self,
        initial: FloatArray,
        parameters: FloatArray,
        inputs: FloatArray,
        seeds: npt.NDArray[np.uint64],
        plan: RunPlan,
    ) -> Outcome:
        """Advances ``n`` scenarios: ``initial`` (states, n), ``parameters`` (parameters, n),
        ``inputs`` (inputs, n), ``seeds`` (n,)."""
        spec = self.spec
        n = initial.shape[1]
        observables = len(spec.observables)
        records = plan.steps // plan.record_every + 1 if plan.record_every > 0 else 0
        statistics = np.empty((observables, 4, n))
        crossings = np.empty((observables, 2, n))
        first_true = np.empty((len(spec.conditions), n))
        trajectory = np.zeros((records, observables, n))
        noise = plan.input_noise if plan.input_noise is not None else np.zeros(len(spec.inputs))
        thresholds = (
            plan.thresholds if plan.thresholds is not None else np.full(observables, np.nan)
        )
        schedule_steps = (
            plan.schedule_steps if plan.schedule_steps is not None else np.zeros(0, dtype=np.int64)
        )
        schedule_values = (
            plan.schedule_values
            if plan.schedule_values is not None
            else np.zeros((0, len(spec.inputs)))
        )
        self._kernels[plan.integrator](
            np.ascontiguousarray(initial, dtype=np.float64).reshape(len(spec.states), n),
            np.ascontiguousarray(parameters, dtype=np.float64).reshape(len(spec.parameters), n),
            np.ascontiguousarray(inputs, dtype=np.float64).reshape(len(spec.inputs), n),
            np.ascontiguousarray(noise, dtype=np.float64),
            np.ascontiguousarray(schedule_steps, dtype=np.int64),
            np.ascontiguousarray(schedule_values, dtype=np.float64).reshape(
                schedule_steps.shape[0], len(spec.inputs)
            ),
            np.ascontiguousarray(seeds, dtype=np.uint64),
            float(plan.t0_s),
            float(plan.dt_s),
            int(plan.steps),
            max(1, int(plan.record_every)),
            np.ascontiguousarray(thresholds, dtype=np.float64),
            statistics,
            crossings,
            first_true,
            trajectory,
        )
        return Outcome(statistics, crossings, first_true, trajectory)


def compile_dynamics(dynamics: Dynamics, cache_dir: Path | None = None) -> CompiledModel:
    """Validates, generates and loads the kernels of ``dynamics``."""
    return CompiledModel(kernel_spec(dynamics), cache_dir)
