"""Built-in kernels, samplers and sweep planning (pure logic, no Ray)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twinstack.common.errors import InvalidArgumentError
from twinstack.simulation.kernels import (
    DISTRICT_ENERGY,
    EV_FLEET,
    PK_DOSING,
    PRODUCTION_LINE,
    PUMP_THERMAL,
    BuiltinModel,
)
from twinstack.simulation.rng import scenario_seeds
from twinstack.simulation.sampling import Sampler, permute, point_count, points_at
from twinstack.simulation.summaries import chunk_partial, kpi_stats
from twinstack.simulation.sweep import (
    Limits,
    Start,
    SweepSpec,
    Target,
    chunk_inputs,
    plan_sweep,
    run_scenarios,
)

LIMITS = Limits(max_scenarios=1_000_000, max_steps=1_000_000, scenarios_per_task=1000)


def run_builtin(
    model: BuiltinModel, horizon_s: float, dt_s: float, n: int = 1, **values: float
) -> dict[str, np.ndarray]:
    params = np.array([[values.get(name, default)] * n for name, default in model.defaults.items()])
    kpis = model.run(params, scenario_seeds(1, n), round(horizon_s / dt_s), dt_s)
    return dict(zip(model.kpis, kpis, strict=True))


def pump_temperature(t_s: float, load: float) -> float:
    equilibrium = 25.0 + 30.0 * load / 0.6
    return equilibrium + (25.0 - equilibrium) * math.exp(-0.6 / 400.0 * t_s)


def test_pump_thermal_matches_the_closed_form_and_converges_at_fourth_order() -> None:
    for load in (0.2, 1.0):
        kpis = run_builtin(PUMP_THERMAL, 3600.0, 1.0, load=load)
        assert kpis["final_temperature_c"][0] == pytest.approx(
            pump_temperature(3600, load), rel=1e-9
        )
    exact = pump_temperature(2000.0, 1.0)
    errors = [
        abs(run_builtin(PUMP_THERMAL, 2000.0, dt, load=1.0)["final_temperature_c"][0] - exact)
        for dt in (200.0, 100.0, 50.0)
    ]
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(3.8 < order < 4.2 for order in orders), orders


def test_a_line_that_never_fails_runs_at_its_bottleneck() -> None:
    kpis = run_builtin(PRODUCTION_LINE, 3600.0, 1.0, mtbf_s=1e6, mttr_s=1.0, n=4)
    # Near certain: no failure in an hour at a million seconds between failures.
    assert kpis["throughput_per_h"][0] == pytest.approx(0.45 * 3600, rel=0.01)
    assert kpis["last_starved"][0] == pytest.approx(0.1, abs=0.01)
    failing = run_builtin(PRODUCTION_LINE, 8 * 3600.0, 5.0, mtbf_s=600.0, mttr_s=300.0, n=200)
    # Each machine is up mtbf / (mtbf + mttr) = 2/3 of the time, in the long run.
    assert failing["availability"].mean() == pytest.approx(2 / 3, abs=0.02)
    assert failing["throughput_per_h"].max() < 0.45 * 3600


def test_pk_infusion_reaches_its_steady_state_concentration() -> None:
    kpis = run_builtin(
        PK_DOSING, 48 * 3600.0, 10.0, dose_mg=0.0, infusion_mg_s=0.003, interval_s=172800.0
    )
    steady = 0.003 / (1.5e-4 * 12.0)  # infusion / (k10 * volume), mg/L
    assert kpis["peak_mg_l"][0] == pytest.approx(steady, rel=0.02)
    variable = run_builtin(PK_DOSING, 24 * 3600.0, 30.0, n=200, k10_variability=0.5)
    assert variable["time_in_window"].std() > 0, "patients differ"
    assert np.all((variable["time_in_window"] >= 0) & (variable["time_in_window"] <= 1))


def test_fleet_waits_for_chargers_only_when_they_are_scarce() -> None:
    plenty = run_builtin(EV_FLEET, 12 * 3600.0, 30.0, n=20, chargers=20.0)
    scarce = run_builtin(EV_FLEET, 12 * 3600.0, 30.0, n=20, chargers=1.0)
    assert plenty["mean_wait_s"].max() == 0.0
    assert scarce["mean_wait_s"].mean() > 600.0
    assert scarce["km_driven"].mean() < plenty["km_driven"].mean()
    assert np.all(plenty["lowest_soc_pct"] >= 0)


def test_district_with_a_weak_feeder_sheds_and_gets_cold() -> None:
    strong = run_builtin(DISTRICT_ENERGY, 48 * 3600.0, 60.0, n=10, feeder_kw=1000.0)
    weak = run_builtin(DISTRICT_ENERGY, 48 * 3600.0, 60.0, n=10, feeder_kw=40.0)
    assert strong["shed_hours"].max() == 0.0
    assert weak["shed_hours"].mean() > 1.0
    assert weak["cold_hours_per_building"].mean() > strong["cold_hours_per_building"].mean()
    assert weak["peak_kw"].max() <= 40.0


def unit_points(sampler: Sampler, samples: int, levels: list[int], seed: int) -> np.ndarray:
    count = point_count(sampler, samples, levels)
    return points_at(sampler, np.arange(count), samples, levels, seed)


def test_samplers_are_seeded_and_fill_the_unit_cube() -> None:
    grid = unit_points(Sampler.GRID, 0, [3, 2], 0)
    assert grid.shape == (6, 2)
    assert point_count(Sampler.GRID, 0, [3, 2]) == 6
    assert sorted(set(grid[:, 0])) == [0.0, 0.5, 1.0]
    assert unit_points(Sampler.GRID, 0, [1], 0).tolist() == [[0.5]]
    for sampler in (Sampler.RANDOM, Sampler.LATIN_HYPERCUBE, Sampler.SOBOL):
        points = unit_points(sampler, 64, [0, 0, 0], 7)
        assert points.shape == (64, 3)
        assert np.array_equal(points, unit_points(sampler, 64, [0, 0, 0], 7))
        assert not np.array_equal(points, unit_points(sampler, 64, [0, 0, 0], 8))
        assert points.min() >= 0
        assert points.max() <= 1
    lhs = unit_points(Sampler.LATIN_HYPERCUBE, 50, [0, 0], 1)
    # Latin hypercube: exactly one point in each of the 50 strata of every dimension.
    for column in lhs.T:
        assert sorted(np.floor(column * 50).astype(int)) == list(range(50))


@pytest.mark.parametrize("sampler", list(Sampler))
def test_points_by_index_are_the_points_of_the_whole_space(sampler: Sampler) -> None:
    """A chunk computes only its own points: they must be the whole space's, in any order."""
    levels = [4, 3, 5]
    whole = unit_points(sampler, 60, levels, 13)
    picked = np.array([59, 0, 17, 18, 19, 42, 3])
    assert np.array_equal(points_at(sampler, picked, 60, levels, 13), whole[picked])


@pytest.mark.parametrize("size", [1, 2, 3, 255, 256, 257, 10_007])
def test_the_keyed_permutation_is_a_bijection(size: int) -> None:
    image = permute(np.arange(size), size, key=99)
    assert sorted(image.tolist()) == list(range(size))
    if size > 10:
        assert not np.array_equal(image, permute(np.arange(size), size, key=100))


def test_a_chunk_is_rebuilt_from_the_plan_alone() -> None:
    target = Target.of_builtin(PRODUCTION_LINE)
    spec = SweepSpec(
        horizon_s=600.0,
        step_s=10.0,
        sampler=Sampler.SOBOL,
        ranges={"mttr_s": (60.0, 600.0, 0)},
        samples=32,
        replicates=5,
        seed=4,
        overrides={"mtbf_s": 900.0},
    )
    start = Start("", (), tuple(v.default for v in target.variables))
    plan = plan_sweep(spec, target, [start], LIMITS)
    assert plan.scenario_count == 160
    everything = chunk_inputs(plan, 0, 160)
    part = chunk_inputs(plan, 37, 91)
    assert np.array_equal(part.values, everything.values[:, 37:91])
    assert np.array_equal(part.seeds, everything.seeds[37:91])
    names = target.names
    assert np.all(everything.values[names.index("mtbf_s")] == 900.0)
    assert everything.replicate[:6].tolist() == [0, 1, 2, 3, 4, 0]
    # Replicates of a point share its values and differ in their seeds.
    assert len(set(everything.values[names.index("mttr_s"), :5])) == 1
    assert len(set(everything.seeds[:5].tolist())) == 5
    whole = run_scenarios(target, plan.run, {}, everything)
    assert np.array_equal(whole[:, 37:91], run_scenarios(target, plan.run, {}, part))


def test_bad_sweep_specs_name_every_field() -> None:
    target = Target.of_builtin(PUMP_THERMAL)
    start = Start("", (), tuple(v.default for v in target.variables))
    spec = SweepSpec(
        horizon_s=-1.0,
        step_s=math.nan,
        sampler=Sampler.GRID,
        ranges={"load": (0.0, 9.0, 0), "nope": (0.0, 1.0, 2)},
        overrides={"ambient_c": math.inf},
        input_noise={"load": 1.0},
        replicates=0,
    )
    with pytest.raises(InvalidArgumentError) as raised:
        plan_sweep(spec, target, [start], LIMITS)
    fields = [v.field for v in raised.value.violations]
    assert fields == [
        "horizon_s",
        "step_s",
        "ranges['load']",
        "ranges['load'].levels",
        "ranges['nope']",
        "overrides['ambient_c']",
        "input_noise['load']",
        "input_noise",
        "replicates",
    ]


def test_summaries_leave_out_what_never_happened() -> None:
    kpis = np.array([[1.0, 2.0, 3.0, np.nan], [np.nan] * 4])
    partial = chunk_partial(kpis, np.empty((0, 4)), 0, None, [])
    first, never = kpi_stats(["a", "b"], partial)
    assert (first.mean, first.min, first.max, first.missing) == (2.0, 1.0, 3.0, 1)
    assert never.missing == 4
    assert math.isnan(never.p50)
