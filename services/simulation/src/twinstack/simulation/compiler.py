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
COMPILER_VERSION = "2"
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


def _emit(node: Node, names: Mapping[str, str], *, wrap: bool = True) -> str:
    """Python source for ``node`` with user names replaced by generated identifiers.

    Every operation is written in parentheses but the left operand of a chain of one precedence
    (``a + b - c``), so that long sums nest no deeper than short ones; ``wrap`` False leaves off
    the parentheses of ``node`` itself.
    """
    if isinstance(node, Number):
        return repr(float(node.value))
    if isinstance(node, Name):
        return names[node.name]
    if isinstance(node, Unary):
        operand = _emit(node.operand, names)
        return f"(not {operand})" if node.op == "not" else f"({node.op}{operand})"
    if isinstance(node, Binary):
        left = _emit(node.left, names, wrap=not continues_chain(node))
        right = _emit(node.right, names)
        if node.op == "^":
            exponent = node.right.value if isinstance(node.right, Number) else None
            # Squares of names and numbers as products; a squared subexpression stays a power,
            # since writing it twice would double the source at every level of nesting.
            if exponent == 2.0 and isinstance(node.left, Name | Number):
                return f"({left} * {left})"
            return f"({left} ** {right})"
        op = {"and": "&", "or": "|"}.get(node.op, node.op)
        return f"({left} {op} {right})" if wrap else f"{left} {op} {right}"
    return call_source(node.function, [_emit(arg, names) for arg in node.args])


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
        for o in range(len(observables)):
            w(2, f"MIN{o} = stats[{o}, 1, start:stop]")
            w(2, f"MAX{o} = stats[{o}, 2, start:stop]")
            w(2, f"MEAN{o} = stats[{o}, 3, start:stop]")
            w(2, f"TA{o} = crossings[{o}, 0, start:stop]")
            w(2, f"FC{o} = crossings[{o}, 1, start:stop]")
        for c in range(len(dynamics.conditions)):
            w(2, f"CF{c} = first_true[{c}, start:stop]")

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
            for j in range(len(inputs)):
                w(depth, f"v{j} = s{j} if u{j} else U{j}[i]")
                if with_noise:
                    w(depth, f"if sigma{j} != 0.0:")
                    w(depth + 1, f"v{j} += sigma{j} * normal(SEED[i], k, {j})")

        def observe(depth: int, time: str, first: bool) -> None:
            names = at("x", time)
            for j, output in enumerate(dynamics.outputs):
                w(depth, f"o{j} = {_emit(output.node, names)}")
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
            for c, condition in enumerate(dynamics.conditions):
                holds = _emit(condition.node, names)
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
                    w(4, f"{slope}{j} = {_emit(equations[state], names)}")
            for j in range(len(states)):
                w(4, f"x{j} = x{j} + h6 * (k1_{j} + 2.0 * k2_{j} + 2.0 * k3_{j} + k4_{j})")
        else:
            names = at("x", "tt")
            for j, state in enumerate(states):
                w(4, f"d{j} = {_emit(equations[state], names)}")
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
