"""Simulation settings (``TWINSTACK_*``, and ``RAY_ADDRESS`` as Ray itself names it)."""

import os
import tempfile
from pathlib import Path

from pydantic import AliasChoices, Field

from twinstack.common.settings import ServiceSettings


class SimulationSettings(ServiceSettings):
    grpc_port: int = Field(default=50054, ge=0, le=65535)
    # An existing Ray cluster (KubeRay: ray://<head>:10001 or <head>:6379). Unset: a local Ray
    # is started in-process.
    ray_address: str | None = Field(
        default=None, validation_alias=AliasChoices("TWINSTACK_RAY_ADDRESS", "RAY_ADDRESS")
    )
    # CPUs of the local Ray; ignored with ray_address.
    ray_num_cpus: int | None = Field(default=None, gt=0)
    # The registry, for twin selections given as a graph query.
    registry_target: str = "127.0.0.1:50051"
    # Scenarios per Ray task: enough work per task that Ray's per-task cost stays small.
    scenarios_per_task: int = Field(default=65_536, gt=0)
    # Ray tasks of one sweep submitted at a time (inputs are built as tasks start).
    sweep_tasks_in_flight: int = Field(default=64, gt=0)
    max_scenarios: int = Field(default=10_000_000, gt=0)
    max_steps: int = Field(default=1_000_000, gt=0)
    # Scenarios x steps of one sweep, and the bytes of its KPI results (docs/limits.md).
    max_scenario_steps: int = Field(default=10**11, gt=0)
    max_sweep_result_bytes: int = Field(default=4 * 2**30, gt=0)
    max_forecast_samples: int = Field(default=100_000, gt=0)
    # Values of recorded trajectories one RunScenario (all twins) or Forecast (per twin) holds.
    max_trajectory_values: int = Field(default=20_000_000, gt=0)
    # Sweep results (Parquet); a shared volume when several replicas serve FetchSweepResults.
    results_dir: Path = Path(tempfile.gettempdir()) / "twinstack-results"
    # Generated kernel modules and numba's cache of them; Ray workers of a cluster this service
    # starts get it too (through the job's runtime environment).
    kernel_cache_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / f"twinstack-kernels-{os.getuid()}"
    )
    # Tries at a snapshot in which no selected twin changed between two reads.
    snapshot_attempts: int = Field(default=8, gt=0)
    max_snapshot_twins: int = Field(default=10_000, gt=0)
