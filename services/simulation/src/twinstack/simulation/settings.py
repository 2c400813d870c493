"""Simulation settings (``TWINSTACK_*``)."""

import os
import sys
import tempfile
from pathlib import Path

from pydantic import Field

from twinstack.common.settings import ServiceSettings


class SimulationSettings(ServiceSettings):
    grpc_port: int = Field(default=50054, ge=0, le=65535)
    # The Jobs API of the Ray cluster that runs sweeps (its head's dashboard port; KubeRay:
    # http://<cluster>-head-svc:8265). Sweep drivers are submitted there as Ray jobs.
    ray_jobs_address: str = "http://127.0.0.1:8265"
    # The Ray cluster's authentication token, in a file (Ray's token authentication).
    ray_auth_token_file: Path | None = None
    # The Python that runs a driver on the Ray head (the head runs the simulation image).
    sweep_driver_python: str = sys.executable
    # Where sweep jobs and result parts go: empty for the NATS object store, or a URI pyarrow
    # opens (file:///data/sweeps, s3://bucket/sweeps, gs://bucket/sweeps).
    results_uri: str = ""
    # Queueing: sweeps running at once on the cluster, and per submitter (docs/simulation.md).
    max_running_sweeps: int = Field(default=4, gt=0)
    max_running_sweeps_per_submitter: int = Field(default=2, gt=0)
    # Sweeps one tenant may have queued and running, and their scenario-steps (scenarios x
    # steps) in all (docs/limits.md#tenant-quotas).
    tenant_max_active_sweeps: int = Field(default=64, gt=0)
    tenant_max_active_scenario_steps: int = Field(default=10**12, gt=0)
    # How often the queue is looked at and drivers' leases checked.
    sweep_schedule_interval_s: float = Field(default=1.0, gt=0)
    # A driver renews its lease this often; one not renewed for the timeout is lost.
    sweep_lease_interval_s: float = Field(default=2.0, gt=0)
    sweep_lease_timeout_s: float = Field(default=15.0, gt=0)
    # How long a new driver may take to start (Ray starting a worker, imports) before a lost
    # start is assumed.
    sweep_driver_start_timeout_s: float = Field(default=120.0, gt=0)
    # Drivers started for one sweep before it fails.
    max_sweep_driver_attempts: int = Field(default=10, gt=0)
    # A driver writes progress to the record at most this often.
    sweep_progress_interval_s: float = Field(default=0.5, gt=0)
    # The registry, for twin selections given as a graph query.
    registry_target: str = "127.0.0.1:50051"
    # TLS to the registry: the roots that verify it. The service's own certificate and key
    # (TWINSTACK_TLS_CERT_FILE/KEY_FILE) are the client certificate for mutual TLS.
    registry_tls_roots_file: Path | None = None
    # Scenarios per Ray task: enough work per task that Ray's per-task cost stays small.
    scenarios_per_task: int = Field(default=65_536, gt=0)
    # Ray tasks of one sweep's driver in flight at a time (each builds its own inputs).
    sweep_tasks_in_flight: int = Field(default=64, gt=0)
    # Scenarios of one sweep; those that keep every row are also bounded by
    # max_sweep_result_bytes.
    max_scenarios: int = Field(default=1_000_000_000, gt=0)
    max_steps: int = Field(default=1_000_000, gt=0)
    # Scenarios x steps of one sweep, and the bytes of its KPI results (docs/limits.md).
    max_scenario_steps: int = Field(default=10**11, gt=0)
    max_sweep_result_bytes: int = Field(default=4 * 2**30, gt=0)
    max_forecast_samples: int = Field(default=100_000, gt=0)
    # Values of recorded trajectories one RunScenario (all twins) or Forecast (per twin) holds.
    max_trajectory_values: int = Field(default=20_000_000, gt=0)
    # Generated kernel modules and numba's cache of them; sweep drivers and their Ray workers
    # get it too (through the job's runtime environment).
    kernel_cache_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / f"twinstack-kernels-{os.getuid()}"
    )
    # Tries at a snapshot in which no selected twin changed between two reads.
    snapshot_attempts: int = Field(default=8, gt=0)
    max_snapshot_twins: int = Field(default=10_000, gt=0)
