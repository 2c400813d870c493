import math

import numpy as np
import pytest

from twinstack.common.errors import InvalidArgumentError
from twinstack.simulation.kernels import PUMP_THERMAL
from twinstack.simulation.sweep import SweepSpec, sample_parameters, summarize, validate

DEFAULTS = PUMP_THERMAL.parameters


def analytic_temperature(t_s: float, **overrides: float) -> float:
    p = {**DEFAULTS, **overrides}
    equilibrium = p["ambient_c"] + p["heat_kw"] * p["load"] / p["cooling_kw_per_k"]
    rate = p["cooling_kw_per_k"] / p["heat_capacity_kj_per_k"]
    return equilibrium + (p["initial_c"] - equilibrium) * math.exp(-rate * t_s)


def run(horizon_s: float, dt_s: float, loads: list[float]) -> np.ndarray:
    params = np.array([[DEFAULTS[name]] * len(loads) for name in DEFAULTS])
    params[list(DEFAULTS).index("load")] = loads
    return PUMP_THERMAL.run(params, round(horizon_s / dt_s), dt_s)


def test_kernel_matches_the_analytic_solution() -> None:
    loads = [0.2, 0.5, 0.8, 1.0]
    kpis = run(3600.0, 1.0, loads)
    expected = [analytic_temperature(3600.0, load=load) for load in loads]
    np.testing.assert_allclose(kpis[0], expected, rtol=1e-9)
    # Heating from ambient is monotonic, so the peak is the final temperature.
    np.testing.assert_allclose(kpis[1], kpis[0])


def test_rk4_converges_at_fourth_order() -> None:
    exact = analytic_temperature(2000.0, load=1.0)
    errors = [abs(run(2000.0, dt, [1.0])[0, 0] - exact) for dt in (200.0, 100.0, 50.0)]
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(3.8 < order < 4.2 for order in orders), orders


def test_time_above_alarm_counts_steps_over_the_threshold() -> None:
    kpis = run(3600.0, 1.0, [0.0, 1.0])
    assert kpis[2, 0] == 0.0, "an idle pump never reaches the alarm"
    crossing_s = next(
        t for t in range(1, 3601) if analytic_temperature(t, load=1.0) > DEFAULTS["alarm_c"]
    )
    assert kpis[2, 1] == pytest.approx(3600 - crossing_s + 1, abs=1.0)


def test_seeded_sampling_is_reproducible_bit_for_bit() -> None:
    spec = SweepSpec("pump_thermal", 1000, 60.0, 1.0, seed=42, ranges={"load": (0.5, 1.0)})
    first, second = sample_parameters(PUMP_THERMAL, spec), sample_parameters(PUMP_THERMAL, spec)
    assert first.tobytes() == second.tobytes()
    load = first[list(DEFAULTS).index("load")]
    assert load.min() >= 0.5
    assert load.max() <= 1.0
    assert first[list(DEFAULTS).index("ambient_c")].tolist() == [25.0] * 1000
    other = sample_parameters(PUMP_THERMAL, SweepSpec(**{**spec.__dict__, "seed": 43}))
    assert other.tobytes() != first.tobytes()


def test_summary_statistics() -> None:
    kpis = np.array([np.arange(101.0), np.zeros(101), np.ones(101)])
    final = summarize(PUMP_THERMAL, kpis)[0]
    assert (final.mean, final.min, final.max) == (50.0, 0.0, 100.0)
    assert (final.p05, final.p50, final.p95) == (5.0, 50.0, 95.0)


def test_bad_sweeps_name_every_problem() -> None:
    spec = SweepSpec(
        "pump_thermal", 0, math.nan, 1.0, ranges={"load": (1.0, 0.5), "warp": (0.0, 1.0)}
    )
    with pytest.raises(InvalidArgumentError) as raised:
        validate(spec, max_scenarios=100, max_steps=1000)
    fields = [v.field for v in raised.value.violations]
    assert fields == ["scenario_count", "horizon_s", "parameters['load']", "parameters['warp']"]
    with pytest.raises(InvalidArgumentError, match="invalid sweep") as raised:
        validate(SweepSpec("nope", 1, 10.0, 1.0), max_scenarios=100, max_steps=1000)
    assert raised.value.violations[0].field == "model"
    with pytest.raises(InvalidArgumentError) as raised:
        validate(SweepSpec("pump_thermal", 1, 1e9, 1.0), max_scenarios=100, max_steps=1000)
    assert raised.value.violations[0].field == "step_s"
