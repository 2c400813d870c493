"""The dynamics compiler: analytic solutions, convergence order, KPIs, noise, bad dynamics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twinstack.modeling.document import ModelError, parse_model
from twinstack.simulation.compiler import (
    MAX_MODEL_NODES,
    CompiledModel,
    CompileError,
    Integrator,
    RunPlan,
    kernel_spec,
)


def compiled(dynamics: dict[str, Any], tmp_path: Path | None = None) -> CompiledModel:
    model = parse_model({"id": "dtmi:test:Compiled;1", "dynamics": dynamics})
    return CompiledModel(kernel_spec(model.dynamics), tmp_path)


DECAY = {
    "states": {"x": {"initial": 1.0}},
    "parameters": {"k": {"default": 0.5}},
    "equations": {"x": "-k * x"},
    "outputs": {"twice": "2 * x"},
    "conditions": {"half": "x < 0.5"},
}
OSCILLATOR = {
    "states": {"x": {"initial": 1.0}, "v": {"initial": 0.0}},
    "parameters": {"omega": {"default": 2.0}, "zeta": {"default": 0.1}},
    "equations": {"x": "v", "v": "-2 * zeta * omega * v - omega^2 * x"},
}


def run(
    model: CompiledModel,
    params: list[list[float]],
    plan: RunPlan,
    initial: list[list[float]] | None = None,
) -> Any:
    n = len(params[0]) if params else len(initial[0])  # type: ignore[index]
    spec = model.spec
    start = np.array(initial) if initial else np.array([[1.0] * n] * len(spec.states))
    return model.run(
        start,
        np.array(params).reshape(len(spec.parameters), n),
        np.zeros((len(spec.inputs), n)),
        np.arange(n, dtype=np.uint64),
        plan,
    )


def oscillator_x(t: float, omega: float = 2.0, zeta: float = 0.1) -> float:
    damped = omega * math.sqrt(1 - zeta**2)
    return math.exp(-zeta * omega * t) * (
        math.cos(damped * t) + zeta * omega / damped * math.sin(damped * t)
    )


def test_exponential_decay_matches_the_closed_form() -> None:
    model = compiled(DECAY)
    ks = [0.1, 0.5, 1.0]
    outcome = run(model, [ks], RunPlan(steps=1000, dt_s=0.005, record_every=100))
    np.testing.assert_allclose(outcome.statistics[0, 0], np.exp(-np.array(ks) * 5.0), rtol=1e-9)
    times = np.arange(11) * 0.5
    np.testing.assert_allclose(outcome.trajectory[:, 0, 1], np.exp(-0.5 * times), rtol=1e-9)
    np.testing.assert_allclose(outcome.trajectory[:, 1, 1], 2 * outcome.trajectory[:, 0, 1])
    # Conditions are checked at step ends: the first end after ln(2) / k.
    assert outcome.first_true[0, 1] == pytest.approx(math.log(2) / 0.5, abs=0.005)


def test_damped_oscillator_matches_the_closed_form() -> None:
    model = compiled(OSCILLATOR)
    outcome = run(
        model,
        [[2.0], [0.1]],
        RunPlan(steps=2000, dt_s=0.005, record_every=50),
        initial=[[1.0], [0.0]],
    )
    times = np.arange(outcome.trajectory.shape[0]) * 0.25
    np.testing.assert_allclose(
        outcome.trajectory[:, 0, 0], [oscillator_x(t) for t in times], atol=1e-9
    )
    # Its minimum is the first trough, at half a damped period.
    damped = 2.0 * math.sqrt(1 - 0.01)
    assert outcome.statistics[0, 1, 0] == pytest.approx(oscillator_x(math.pi / damped), abs=1e-4)


RELAXATION = {
    "states": {"x": {"initial": 1.0}},
    "parameters": {
        name: {"default": value}
        for name, value in {"a": 2.0, "b": 3.0, "c": 0.5, "d": 4.0, "e": 2.0, "g": 2.0}.items()
    },
    "equations": {"x": "(a * b - c * (x - d)) / e"},
    "outputs": {"y": "where(g > 1, x / e, x) + a / e"},
    "conditions": {"high": "x > d / e and g > 0"},
}


def test_parts_that_depend_on_parameters_alone_leave_the_time_loop() -> None:
    """``(a * b - c * (x - d)) / e`` is run as ``q0 - x * q1`` with both computed once per
    scenario; truth values (``g > 1``) stay in the loop. The numbers are the closed form's."""
    model = compiled(RELAXATION)
    rk4 = model.spec.source.split("def run_rk4")[1].split("def run_euler")[0]
    time_loop = rk4.split("for k in range(steps):")[1]
    assert "/" not in time_loop.split("if record and")[0]
    plan = RunPlan(steps=800, dt_s=0.01, record_every=800)
    outcome = run(model, [[2.0], [3.0], [0.5], [4.0], [2.0], [2.0]], plan)
    settled, rate = (2.0 * 3.0 + 0.5 * 4.0) / 0.5, 0.5 / 2.0
    final = settled + (1.0 - settled) * math.exp(-rate * 8.0)
    assert outcome.statistics[0, 0, 0] == pytest.approx(final, rel=1e-9)
    assert outcome.statistics[1, 0, 0] == pytest.approx(final / 2.0 + 1.0, rel=1e-9)
    crossing_s = -math.log((settled - 2.0) / (settled - 1.0)) / rate
    assert outcome.first_true[0, 0] == pytest.approx(crossing_s, abs=0.01)


@pytest.mark.parametrize(("integrator", "order"), [(Integrator.RK4, 4), (Integrator.EULER, 1)])
def test_integrators_converge_at_their_order(integrator: Integrator, order: int) -> None:
    model = compiled(OSCILLATOR)
    horizon = 4.0
    errors = []
    for steps in (50, 100, 200) if order == 4 else (2000, 4000, 8000):
        plan = RunPlan(steps=steps, dt_s=horizon / steps, integrator=integrator)
        x = run(model, [[2.0], [0.1]], plan, initial=[[1.0], [0.0]]).statistics[0, 0, 0]
        errors.append(abs(x - oscillator_x(horizon)))
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(order - 0.2 < found < order + 0.2 for found in orders), orders


def test_kpis_of_a_rising_state() -> None:
    model = compiled(
        {
            "states": {"x": {"initial": 0.0}},
            "parameters": {"rate": {"default": 1.0}},
            "equations": {"x": "rate"},
            "conditions": {"over": "x >= 2 and t > 0"},
        }
    )
    plan = RunPlan(steps=400, dt_s=0.01, thresholds=np.array([1.505]))
    outcome = run(model, [[1.0, 0.1]], plan, initial=[[0.0, 0.0]])
    final, low, high, mean = outcome.statistics[0, :, 0]
    assert (final, low, high) == pytest.approx((4.0, 0.0, 4.0))
    assert mean == pytest.approx(2.005)  # the mean of the step-end values
    above_s, first_s = outcome.crossings[0, :, 0]
    assert first_s == pytest.approx(1.51, abs=1e-9)
    assert above_s == pytest.approx(2.5, abs=0.011)
    assert outcome.first_true[0, 0] == pytest.approx(2.0, abs=0.011)
    assert math.isnan(outcome.crossings[0, 1, 1]), "never crossed"
    assert math.isnan(outcome.first_true[0, 1])


def test_divergence_is_reported_not_hidden() -> None:
    model = compiled(
        {
            "states": {"x": {"initial": 1.0}},
            "parameters": {"c": {"default": 0.0}},
            "equations": {"x": "1 / c"},
        }
    )
    outcome = run(model, [[0.0, 1.0]], RunPlan(steps=10, dt_s=0.1), initial=[[1.0, 1.0]])
    assert outcome.diverged.tolist() == [True, False]


NOISY = {
    "states": {"x": {"initial": 0.0}},
    "inputs": {"u": {"default": 0.0}},
    "equations": {"x": "u"},
}


def test_seeded_noise_is_reproducible_and_independent_of_batching() -> None:
    model = compiled(NOISY)
    n, steps, dt = 4000, 100, 0.1
    plan = RunPlan(steps=steps, dt_s=dt, input_noise=np.array([2.0]))
    seeds = np.arange(n, dtype=np.uint64) * np.uint64(7919)

    def batch(lo: int, hi: int) -> Any:
        return model.run(
            np.zeros((1, hi - lo)),
            np.zeros((0, hi - lo)),
            np.zeros((1, hi - lo)),
            seeds[lo:hi],
            plan,
        ).statistics[0, 0]

    whole = batch(0, n)
    assert np.array_equal(whole, batch(0, n)), "bit for bit"
    assert np.array_equal(whole[:1000], batch(0, 1000))
    assert np.array_equal(whole[3000:], batch(3000, n))
    # x(T) = dt * sum of steps * N(0, 2^2): mean 0, variance 4 * dt^2 * steps = 4.
    assert abs(whole.mean()) < 0.1
    assert whole.var() == pytest.approx(4.0, rel=0.08)


def test_scheduled_inputs_replace_scenario_values_from_their_step() -> None:
    model = compiled(NOISY)
    plan = RunPlan(
        steps=10,
        dt_s=1.0,
        schedule_steps=np.array([0, 4], dtype=np.int64),
        schedule_values=np.array([[np.nan], [2.0]]),
    )
    outcome = model.run(
        np.zeros((1, 2)),
        np.zeros((0, 2)),
        np.array([[1.0, 3.0]]),
        np.zeros(2, dtype=np.uint64),
        plan,
    )
    # Four steps at the scenario's own input, then six at the scheduled 2.
    assert outcome.statistics[0, 0].tolist() == [4 * 1.0 + 6 * 2.0, 4 * 3.0 + 6 * 2.0]


def test_kernels_are_cached_on_disk_by_dynamics_hash(tmp_path: Path) -> None:
    # Dynamics no other test compiles: loaded kernels are also kept per process.
    cached = {**DECAY, "equations": {"x": "-k * x - 0.125 * x"}}
    model = compiled(cached, tmp_path)
    spec = model.spec
    run(model, [[0.5]], RunPlan(steps=1, dt_s=0.1))  # numba compiles on the first call
    again = kernel_spec(parse_model({"id": "dtmi:test:Other;7", "dynamics": cached}).dynamics)
    assert again.key == spec.key, "same dynamics, same kernel, whatever the model id"
    changed = kernel_spec(
        parse_model(
            {"id": "dtmi:test:Compiled;1", "dynamics": {**DECAY, "equations": {"x": "-k * x * x"}}}
        ).dynamics
    )
    assert changed.key != spec.key
    assert (tmp_path / f"twinstack_kernel_{spec.key}.py").read_text() == spec.source
    assert list((tmp_path / "__pycache__").glob(f"twinstack_kernel_{spec.key}*.nbi"))


def test_no_user_text_reaches_the_generated_source() -> None:
    spec = kernel_spec(
        parse_model(
            {
                "id": "dtmi:test:Names;1",
                "dynamics": {
                    "states": {"payload_state": {"initial": 1.0}},
                    "parameters": {"payload_param": {"default": 1.0}},
                    "inputs": {"payload_input": {"default": 0.0}},
                    "equations": {"payload_state": "payload_input - payload_param * payload_state"},
                    "outputs": {"payload_output": "payload_state * 2"},
                    "conditions": {"payload_condition": "payload_output > 1"},
                },
            }
        ).dynamics
    )
    assert "payload" not in spec.source
    assert spec.observables == ("payload_state", "payload_output")


@pytest.mark.parametrize(
    ("equation", "message"),
    [
        ("__import__(os)", "unknown function"),
        ("x.real", "unexpected character"),
        ("lambda: 1", "unexpected"),
        ("x[0]", "unexpected character"),
        ("open", "unknown names"),
        ("eval(x)", "unknown function"),
        ("'x'", "unexpected character"),
        ("x; import os", "unexpected character"),
    ],
)
def test_forbidden_constructs_are_refused_with_a_clear_error(equation: str, message: str) -> None:
    with pytest.raises((ModelError, CompileError)) as raised:
        kernel_spec(
            parse_model(
                {
                    "id": "dtmi:test:Bad;1",
                    "dynamics": {"states": {"x": {"initial": 1.0}}, "equations": {"x": equation}},
                }
            ).dynamics
        )
    assert message in str(raised.value)
    assert "dynamics.equations.x" in str(raised.value)


@pytest.mark.parametrize(
    ("equation", "message"),
    [
        ("x / 0", "division by a constant zero"),
        ("x / (2 - 2)", "division by a constant zero"),
        ("x * 10 ^ 400", "math range error"),
        ("x + log(0)", "cannot be computed"),
        ("sqrt(-1) * x", "cannot be computed"),
        ("x + y", "unknown names ['y']"),
    ],
)
def test_dynamics_certain_to_fail_are_refused_before_compiling(equation: str, message: str) -> None:
    model = parse_model(
        {
            "id": "dtmi:test:Bad;1",
            "dynamics": {"states": {"x": {"initial": 1.0}}, "equations": {"x": equation}},
        }
    )
    with pytest.raises(CompileError) as raised:
        kernel_spec(model.dynamics)
    assert raised.value.violations[0].field == "dynamics.equations.x"
    assert message in raised.value.violations[0].description


def test_huge_and_empty_dynamics_are_refused() -> None:
    term = " + ".join(["x"] * 150)
    states = {f"s{i}": {"initial": 0.0} for i in range(30)}
    model = parse_model(
        {
            "id": "dtmi:test:Huge;1",
            "dynamics": {
                "states": {"x": {"initial": 1.0}, **states},
                "equations": {"x": "-x", **{name: term.replace("x", name) for name in states}},
            },
        }
    )
    with pytest.raises(CompileError) as raised:
        kernel_spec(model.dynamics)
    assert f"at most {MAX_MODEL_NODES}" in str(raised.value)
    with pytest.raises(CompileError, match="no dynamics"):
        kernel_spec(parse_model({"id": "dtmi:test:Empty;1"}).dynamics)
