"""Simulation kernel and sweep fan-out, on the pump_thermal model and the same scenarios.

Baselines measured in this run: a NumPy vectorised RK4 of the same equations, scipy's
``solve_ivp`` looped per scenario, an estimate of one core's FP64 peak, and the same numba
kernel run chunk by chunk in one process (for Ray's parallel efficiency).
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
from scipy.integrate import solve_ivp

from bench.report import console, save, show
from twinstack.simulation.kernels import PUMP_THERMAL, PUMP_THERMAL_FLOPS_PER_STEP, FloatArray
from twinstack.simulation.sweep import SweepSpec, run_chunk, sample_parameters

HORIZON_S = 3600.0
STEP_S = 1.0
STEPS = int(HORIZON_S / STEP_S)
KERNEL_SCENARIOS = 20_000
SCIPY_SCENARIOS = 200
SWEEP_SCENARIOS = 32 * 65_536
SCENARIOS_PER_TASK = 65_536
PARAMETER_RANGES = {"load": (0.3, 1.0), "cooling_kw_per_k": (0.4, 0.8), "ambient_c": (15.0, 35.0)}
# Assumed: 2 FMA units per core, each 8 doubles wide with AVX-512 (4 with AVX2), 2 FLOPs per FMA.
FLOPS_PER_CYCLE = {"avx512f": 32, "avx2": 16}


def best_of(runs: int, work: Any) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def numpy_rk4(params: FloatArray, steps: int, dt_s: float) -> FloatArray:
    """The same model and integrator, vectorised across scenarios with NumPy."""
    load, ambient_c, heat_kw, cooling, capacity, initial_c, alarm_c = params
    heating = heat_kw * load / capacity
    rate = cooling / capacity
    temperature = initial_c.copy()
    peak = initial_c.copy()
    above_s = np.zeros_like(temperature)
    for _ in range(steps):
        k1 = heating - rate * (temperature - ambient_c)
        k2 = heating - rate * (temperature + 0.5 * dt_s * k1 - ambient_c)
        k3 = heating - rate * (temperature + 0.5 * dt_s * k2 - ambient_c)
        k4 = heating - rate * (temperature + dt_s * k3 - ambient_c)
        temperature = temperature + dt_s / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        np.maximum(peak, temperature, out=peak)
        above_s += np.where(temperature > alarm_c, dt_s, 0.0)
    return np.stack([temperature, peak, above_s])


def _pump_rhs(
    _t: float, y: FloatArray, heating_k_per_s: float, cooling_per_s: float, ambient_c: float
) -> FloatArray:
    return heating_k_per_s - cooling_per_s * (y - ambient_c)


def scipy_per_scenario(params: FloatArray) -> None:
    """``solve_ivp`` (RK45, tight tolerances) once per scenario, as a per-asset script would."""
    for i in range(params.shape[1]):
        load, ambient_c, heat_kw, cooling, capacity, initial_c, _ = params[:, i]
        solve_ivp(
            _pump_rhs,
            (0.0, HORIZON_S),
            [initial_c],
            method="RK45",
            rtol=1e-8,
            atol=1e-8,
            args=(heat_kw * load / capacity, cooling / capacity, ambient_c),
        )


def core_peak_gflops() -> tuple[float, float, str]:
    """(nominal clock GHz, FP64 peak GFLOP/s of one core, ISA) from /proc/cpuinfo.

    The nominal clock: turbo can run higher, so the true peak may be higher than this figure.
    """
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    mhz = re.search(r"cpu MHz\s*:\s*([0-9.]+)", cpuinfo)
    ghz = float(mhz.group(1)) / 1000 if mhz else 2.0
    isa = next((name for name in FLOPS_PER_CYCLE if f" {name} " in cpuinfo), "avx2")
    return ghz, ghz * FLOPS_PER_CYCLE[isa], isa


def run() -> dict[str, Any]:
    model = PUMP_THERMAL
    spec = SweepSpec("pump_thermal", KERNEL_SCENARIOS, HORIZON_S, STEP_S, 1, PARAMETER_RANGES)
    params = sample_parameters(model, spec)

    console.print("[bold]simulation[/bold]: compiling and timing the numba kernel")
    model.run(params[:, :64], 10, STEP_S)
    numba_s = best_of(3, lambda: model.run(params, STEPS, STEP_S))
    numba_kpis = model.run(params, STEPS, STEP_S)

    console.print("simulation: NumPy vectorised baseline")
    numpy_s = best_of(1, lambda: numpy_rk4(params, STEPS, STEP_S))
    np.testing.assert_allclose(
        numpy_rk4(params[:, :500], STEPS, STEP_S)[:2], numba_kpis[:2, :500], rtol=1e-9
    )

    console.print(f"simulation: scipy solve_ivp on {SCIPY_SCENARIOS} scenarios")
    scipy_s = best_of(1, lambda: scipy_per_scenario(params[:, :SCIPY_SCENARIOS]))
    scipy_per_scenario_s = scipy_s / SCIPY_SCENARIOS
    numba_per_scenario_s = numba_s / KERNEL_SCENARIOS

    ghz, peak_gflops, isa = core_peak_gflops()
    kernel_gflops = PUMP_THERMAL_FLOPS_PER_STEP * KERNEL_SCENARIOS * STEPS / numba_s / 1e9

    console.print(f"simulation: sweep of {SWEEP_SCENARIOS} scenarios, one process vs Ray")
    sweep = SweepSpec("pump_thermal", SWEEP_SCENARIOS, HORIZON_S, STEP_S, 2, PARAMETER_RANGES)
    sweep_params = sample_parameters(model, sweep)
    chunks = [
        sweep_params[:, start : start + SCENARIOS_PER_TASK]
        for start in range(0, SWEEP_SCENARIOS, SCENARIOS_PER_TASK)
    ]
    single_s = best_of(1, lambda: [model.run(chunk, STEPS, STEP_S) for chunk in chunks])
    cpus = os.cpu_count() or 1
    ray.init(
        num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
    )
    try:
        ray.get([run_chunk.remote("pump_thermal", chunk, 10, STEP_S) for chunk in chunks[:cpus]])
        # The same single-process run while Ray's own daemons share the machine.
        single_with_ray_s = best_of(
            1, lambda: [model.run(chunk, STEPS, STEP_S) for chunk in chunks]
        )
        chunk_refs = [ray.put(chunk) for chunk in chunks]
        ray_s = best_of(
            2,
            lambda: ray.get(
                [run_chunk.remote("pump_thermal", c, STEPS, STEP_S) for c in chunk_refs]
            ),
        )
    finally:
        ray.shutdown()
    efficiency = single_s / (cpus * ray_s)
    efficiency_ray_up = single_with_ray_s / (cpus * ray_s)

    results = {
        "model": "pump_thermal",
        "steps": STEPS,
        "kernel_scenarios": KERNEL_SCENARIOS,
        "numba_s": numba_s,
        "numpy_s": numpy_s,
        "numba_vs_numpy": numpy_s / numba_s,
        "scipy_scenarios": SCIPY_SCENARIOS,
        "scipy_per_scenario_s": scipy_per_scenario_s,
        "numba_per_scenario_s": numba_per_scenario_s,
        "numba_vs_scipy": scipy_per_scenario_s / numba_per_scenario_s,
        "kernel_gflops": kernel_gflops,
        "core_clock_ghz": ghz,
        "core_peak_gflops": peak_gflops,
        "peak_isa": isa,
        "fraction_of_peak": kernel_gflops / peak_gflops,
        "sweep_scenarios": SWEEP_SCENARIOS,
        "sweep_tasks": len(chunks),
        "sweep_single_process_s": single_s,
        "sweep_ray_s": ray_s,
        "ray_cpus": cpus,
        "ray_parallel_efficiency": efficiency,
        "sweep_single_process_ray_up_s": single_with_ray_s,
        "ray_parallel_efficiency_vs_ray_up": efficiency_ray_up,
    }
    show(
        f"simulation: pump_thermal, RK4, {STEPS} steps",
        [
            ("numba kernel", f"{KERNEL_SCENARIOS / numba_s:,.0f} scenarios/s", ""),
            ("NumPy vectorised", f"{KERNEL_SCENARIOS / numpy_s:,.0f} scenarios/s",
             f"numba {numpy_s / numba_s:.1f}x (target >= 2x)"),
            ("scipy solve_ivp per scenario", f"{1 / scipy_per_scenario_s:,.0f} scenarios/s",
             f"numba {scipy_per_scenario_s / numba_per_scenario_s:,.0f}x (target >= 100x)"),
            ("kernel FP64", f"{kernel_gflops:.2f} GFLOP/s",
             f"{kernel_gflops / peak_gflops:.0%} of {peak_gflops:.0f} "
             f"({isa}, {ghz:.2f} GHz nominal) (target >= 30%)"),
            (f"sweep, 1 process ({len(chunks)} chunks)", f"{single_s:.2f} s", "Ray not running"),
            ("sweep, 1 process, Ray up", f"{single_with_ray_s:.2f} s", "Ray's daemons idle"),
            (f"sweep, Ray ({cpus} CPUs)", f"{ray_s:.2f} s",
             f"efficiency {efficiency:.0%} (target >= 85%); "
             f"{efficiency_ray_up:.0%} against Ray up"),
        ],
    )  # fmt: skip
    save("simulation", results)
    return results


if __name__ == "__main__":
    run()
