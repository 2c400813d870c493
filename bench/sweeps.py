"""Sweeps as jobs, end to end: the simulation service (a process, as deployed) submits each
sweep's driver to a real local Ray cluster, and the sweep's chunks run as Ray tasks.

Run by ``bench.simulation`` (its results go to ``bench/results/simulation.json``). Measured in
one run: parallel efficiency of a submitted sweep (job start included) against one
process running the same numba kernel over the same chunks; peak RSS of the service and of the
driver at 1 M and at 10 M scenarios (the ratio must stay near 1: memory does not grow with
scenarios); a 100 M-scenario summaries-only sweep's throughput; and the time from submit to the
sweep running and to its first progress.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.report import console, curve, show
from twinstack.api.simulation.v1 import sweep_pb2
from twinstack.devstack import LocalPlatform
from twinstack.sdk import Client, ConnectConfig, Endpoints, UnavailableError, sweep_spec
from twinstack.simulation.kernels import PUMP_THERMAL
from twinstack.simulation.sampling import Sampler
from twinstack.simulation.sweep import (
    Limits,
    Start,
    SweepSpec,
    Target,
    chunk_inputs,
    plan_sweep,
    run_scenarios,
)

SCENARIOS_PER_TASK = 65_536
# The efficiency sweep: long enough (half a minute per CPU) that the job's start counts as it
# would for a real sweep, short enough for `make bench`.
EFFICIENCY_SCENARIOS = 24 * SCENARIOS_PER_TASK
EFFICIENCY_HORIZON_S = 14_400.0
# Memory and throughput sweeps: summaries only, short horizons (the point is their size).
MEMORY_HORIZON_S = 60.0
HUNDRED_MILLION = 100_000_000
HUNDRED_MILLION_HORIZON_S = 300.0
STEP_S = 1.0
# Cost curves: sweep time against scenarios (at the 100 M sweep's steps), and against steps.
CURVE_SCENARIOS = [1_000_000, 10_000_000, HUNDRED_MILLION]
# Ten million scenarios: with fewer, the job's start (about 20 s here) hides the steps' cost.
CURVE_STEPS_SCENARIOS = 10_000_000
CURVE_STEPS = [300, 1200, 2400]
RANGES = {"load": (0.5, 1.0), "ambient_c": (15.0, 35.0)}


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def driver_pids(sweep_id: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if f"twinstack.simulation.driver {sweep_id}" in command and "/bin/sh" not in command:
                found.append(int(entry.name))
    return found


class DriverPeak:
    """Samples the peak RSS of a sweep's driver until it exits."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._sweep_id = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def follow(self, sweep_id: str) -> None:
        self._sweep_id = sweep_id
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            for pid in driver_pids(self._sweep_id):
                with contextlib.suppress(OSError):
                    self.peak_mb = max(self.peak_mb, peak_rss_mb(pid))
            time.sleep(0.1)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def timed_sweep(client: Client, spec: sweep_pb2.SweepSpec) -> dict[str, float]:
    """Submits and follows a sweep; its timings and its driver's peak RSS."""
    deadline = time.monotonic() + 120
    while True:
        started = time.perf_counter()
        try:
            sweep = client.sweeps.submit(spec, submitter="bench")
            break
        except UnavailableError:  # the service has not seen Ray's Jobs API answer yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    driver = DriverPeak()
    driver.follow(sweep.sweep_id)
    running_s = first_progress_s = 0.0
    for update in client.sweeps.watch(sweep.sweep_id):
        now = time.perf_counter() - started
        if not running_s and update.state == sweep_pb2.SWEEP_STATE_RUNNING:
            running_s = now
        if not first_progress_s and update.chunks_done > 0:
            first_progress_s = now
        sweep = update
    elapsed_s = time.perf_counter() - started
    if sweep.state != sweep_pb2.SWEEP_STATE_SUCCEEDED:
        raise RuntimeError(
            f"bench sweep {sweep.sweep_id} ended {sweep.state}: {sweep.failure_reason}"
        )
    return {
        "elapsed_s": elapsed_s,
        "running_s": running_s,
        "first_progress_s": first_progress_s,
        "driver_rss_mb": driver.stop(),
        "scenarios": sweep.scenarios_total,
    }


def one_process_s(scenarios: int, horizon_s: float) -> float:
    """The same built-in kernel over the same chunks, one after another in this process."""
    target = Target.of_builtin(PUMP_THERMAL)
    start = Start("", (), tuple(v.default for v in target.variables))
    spec = SweepSpec(
        horizon_s=horizon_s,
        step_s=STEP_S,
        sampler=Sampler.LATIN_HYPERCUBE,
        ranges={name: (low, high, 0) for name, (low, high) in sorted(RANGES.items())},
        samples=scenarios,
        seed=1,
    )
    limits = Limits(max_scenarios=10**9, max_steps=10**7, scenarios_per_task=SCENARIOS_PER_TASK)
    plan = plan_sweep(spec, target, [start], limits)
    first = chunk_inputs(plan, 0, 64)
    run_scenarios(target, plan.run, {}, first)  # compile or load from cache
    started = time.perf_counter()
    for low in range(0, scenarios, SCENARIOS_PER_TASK):
        inputs = chunk_inputs(plan, low, min(low + SCENARIOS_PER_TASK, scenarios))
        run_scenarios(target, plan.run, {}, inputs)
    return time.perf_counter() - started


def spec(scenarios: int, horizon_s: float, *, summaries_only: bool) -> sweep_pb2.SweepSpec:
    return sweep_spec(
        "pump_thermal",
        horizon_s=horizon_s,
        step_s=STEP_S,
        sampler="lhs",
        ranges=RANGES,
        samples=scenarios,
        seed=1,
        summaries_only=summaries_only,
    )


def run() -> dict[str, Any]:
    cpus = os.cpu_count() or 1
    console.print("[bold]sweeps[/bold]: the same kernel in one process (baseline)")
    single_s = one_process_s(EFFICIENCY_SCENARIOS, EFFICIENCY_HORIZON_S)
    with tempfile.TemporaryDirectory(prefix="twinstack-bench-sweeps-") as directory:
        platform = LocalPlatform(
            Path(directory),
            nats_port=0,
            influx_port=0,
            service_ports={"simulation": 0},
            service_env={"TWINSTACK_SCENARIOS_PER_TASK": str(SCENARIOS_PER_TASK)},
            services=("simulation",),
        )
        console.print("sweeps: starting nats-server, influxd, a Ray cluster and the service")
        platform.start()
        service_pid = platform.services["simulation"].process.pid
        assert service_pid is not None
        target = platform.services["simulation"].target
        client = Client(
            ConnectConfig(Endpoints(simulation=target), token=platform.admin_token, timeout_s=60)
        )
        try:
            console.print("sweeps: warming the cluster's workers")
            timed_sweep(client, spec(2 * SCENARIOS_PER_TASK, 60.0, summaries_only=True))
            console.print(f"sweeps: {EFFICIENCY_SCENARIOS:,} scenarios as a job on {cpus} CPUs")
            efficiency_run = timed_sweep(
                client, spec(EFFICIENCY_SCENARIOS, EFFICIENCY_HORIZON_S, summaries_only=False)
            )
            console.print("sweeps: 1 M then 10 M scenarios (memory)")
            one_million = timed_sweep(client, spec(10**6, MEMORY_HORIZON_S, summaries_only=True))
            service_1m = peak_rss_mb(service_pid)
            ten_million = timed_sweep(client, spec(10**7, MEMORY_HORIZON_S, summaries_only=True))
            service_10m = peak_rss_mb(service_pid)
            console.print("sweeps: 100 M scenarios, summaries only")
            hundred = timed_sweep(
                client, spec(HUNDRED_MILLION, HUNDRED_MILLION_HORIZON_S, summaries_only=True)
            )
            console.print("sweeps: cost curves in scenarios and in steps")
            by_scenarios = {HUNDRED_MILLION: hundred["elapsed_s"]}
            for scenarios in CURVE_SCENARIOS[:-1]:
                by_scenarios[scenarios] = timed_sweep(
                    client, spec(scenarios, HUNDRED_MILLION_HORIZON_S, summaries_only=True)
                )["elapsed_s"]
            # The curve in scenarios ran this one already (same scenarios, same steps).
            by_steps = {
                int(HUNDRED_MILLION_HORIZON_S / STEP_S): by_scenarios[CURVE_STEPS_SCENARIOS]
            }
            for steps in CURVE_STEPS:
                if steps in by_steps:
                    continue
                by_steps[steps] = timed_sweep(
                    client, spec(CURVE_STEPS_SCENARIOS, steps * STEP_S, summaries_only=True)
                )["elapsed_s"]
        finally:
            client.close()
            platform.stop()
    efficiency = single_s / (cpus * efficiency_run["elapsed_s"])
    steps_100m = HUNDRED_MILLION * HUNDRED_MILLION_HORIZON_S / STEP_S
    per_core = steps_100m / hundred["elapsed_s"] / cpus
    results: dict[str, Any] = {
        "cpus": cpus,
        "efficiency_scenarios": EFFICIENCY_SCENARIOS,
        "sweep_single_process_s": single_s,
        "sweep_job_s": efficiency_run["elapsed_s"],
        "sweep_job_parallel_efficiency": efficiency,
        "submit_to_running_s": efficiency_run["running_s"],
        "submit_to_first_progress_s": efficiency_run["first_progress_s"],
        "sweep_rss_mb_1m": service_1m,
        "sweep_rss_mb_10m": service_10m,
        "service_rss_ratio_10m_1m": service_10m / service_1m,
        "driver_rss_mb_1m": one_million["driver_rss_mb"],
        "driver_rss_mb_10m": ten_million["driver_rss_mb"],
        "driver_rss_ratio_10m_1m": ten_million["driver_rss_mb"] / one_million["driver_rss_mb"],
        "sweep_100m_s": hundred["elapsed_s"],
        "sweep_100m_scenario_steps_per_s_per_core": per_core,
    }
    results["curve_sweep_vs_scenarios"] = curve(
        f"cost curve: a summaries-only sweep, {HUNDRED_MILLION_HORIZON_S / STEP_S:.0f} steps, "
        "job start included",
        "scenarios",
        CURVE_SCENARIOS,
        {"sweep time (s)": [by_scenarios[n] for n in CURVE_SCENARIOS]},
    )
    results["curve_sweep_vs_steps"] = curve(
        f"cost curve: a summaries-only sweep of {CURVE_STEPS_SCENARIOS:,} scenarios, "
        "job start included",
        "steps",
        CURVE_STEPS,
        {"sweep time (s)": [by_steps[n] for n in CURVE_STEPS]},
    )
    show(
        f"sweeps as Ray jobs: built-in pump_thermal, {cpus} CPUs, results in the NATS object store",
        [
            (f"one process, {EFFICIENCY_SCENARIOS:,} scenarios", f"{single_s:.1f} s", "baseline"),
            ("submitted sweep (job start included)", f"{efficiency_run['elapsed_s']:.1f} s",
             f"efficiency {efficiency:.0%} (target >= 85%)"),
            ("submit → running", f"{efficiency_run['running_s']:.2f} s", ""),
            ("submit → first progress", f"{efficiency_run['first_progress_s']:.2f} s", ""),
            ("service peak RSS 1 M / 10 M", f"{service_1m:.0f} / {service_10m:.0f} MB",
             f"ratio {service_10m / service_1m:.2f} (target <= 1.2)"),
            ("driver peak RSS 1 M / 10 M",
             f"{one_million['driver_rss_mb']:.0f} / {ten_million['driver_rss_mb']:.0f} MB",
             f"ratio {results['driver_rss_ratio_10m_1m']:.2f} (target <= 1.2)"),
            ("100 M scenarios, summaries only", f"{hundred['elapsed_s']:.1f} s",
             f"{per_core:,.0f} scenario-steps/s per core"),
        ],
    )  # fmt: skip
    return results
