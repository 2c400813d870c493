"""The simulation service as the server bootstrap runs it: its dependencies acquired in order
and released in reverse, and its servicers registered.

Two gRPC services: SimulationService (scenario runs, forecasts, calibration, computed in this
process) and SweepService (sweeps as Ray jobs). This process never joins the Ray cluster; it
submits sweep drivers through Ray's Jobs API, and while that API does not answer, only the
sweep service reports NOT_SERVING.
"""

from __future__ import annotations

import contextlib
import logging

import grpc
from pydantic import SecretStr

from twinstack import sdk
from twinstack.api.simulation.v1 import simulation_pb2_grpc, sweep_pb2_grpc
from twinstack.common.app import Registration, ServiceApp, started
from twinstack.common.catalog import ModelCatalog
from twinstack.common.events import EventPublisher
from twinstack.common.nats import (
    REGISTRY_BUCKET,
    STATE_TWINS_BUCKET,
    SWEEP_DRIVERS_BUCKET,
    SWEEPS_BUCKET,
    key_value,
)
from twinstack.simulation import service as simulation_service
from twinstack.simulation import sweep_service
from twinstack.simulation.compiler import KERNEL_CACHE_ENV, use_cache_dir
from twinstack.simulation.ray_jobs import RayJobs
from twinstack.simulation.records import DriverLeases, SweepRecords
from twinstack.simulation.registry_client import RegistryQueries
from twinstack.simulation.results_store import open_results_store
from twinstack.simulation.scheduler import QueuePolicy, SweepScheduler
from twinstack.simulation.service import SimulationServicer, sweep_limits
from twinstack.simulation.settings import SimulationSettings
from twinstack.simulation.snapshot import SnapshotTaker
from twinstack.simulation.sweep_planner import SweepPlanner
from twinstack.simulation.sweep_service import SweepQuotas, SweepServicer

logger = logging.getLogger(__name__)

# Settings a sweep driver needs, handed to it (and its workers) in the job's environment.
DRIVER_SETTINGS = (
    "nats_url",
    "nats_user",
    "nats_password",
    "nats_credentials_file",
    "nats_tls_ca_file",
    "nats_tls_cert_file",
    "nats_tls_key_file",
    "nats_request_timeout_s",
    "nats_connect_timeout_s",
    "results_uri",
    "kernel_cache_dir",
    "sweep_tasks_in_flight",
    "sweep_lease_interval_s",
    "sweep_progress_interval_s",
    "log_level",
    "log_format",
)


def driver_environment(settings: SimulationSettings) -> dict[str, str]:
    """The environment of sweep drivers and their Ray workers."""
    env = {}
    for name in DRIVER_SETTINGS:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is not None:
            env[f"TWINSTACK_{name.upper()}"] = str(value)
    env[KERNEL_CACHE_ENV] = str(settings.kernel_cache_dir)
    return env


class SimulationApp(ServiceApp[SimulationSettings]):
    """The simulation service as the server bootstrap runs it."""

    service_names = (simulation_service.SERVICE_NAME, sweep_service.SERVICE_NAME)

    async def open(self, resources: contextlib.AsyncExitStack) -> Registration:
        settings = self.settings
        backbone = await self.backbone(resources, "twinstack-simulation")
        registry_bucket = await key_value(backbone.js, REGISTRY_BUCKET)
        # The graph: for the twins subgraph scopes cover.
        catalog = await started(resources, ModelCatalog(registry_bucket, follow_graph=True))
        influx = await self.influx(resources)
        registry = RegistryQueries(
            sdk.ConnectConfig(
                sdk.Endpoints(registry=settings.registry_target),
                root_certificates_file=settings.registry_tls_roots_file,
                client_certificate_file=settings.tls_cert_file
                if settings.registry_tls_roots_file
                else None,
                client_key_file=settings.tls_key_file if settings.registry_tls_roots_file else None,
            )
        )
        resources.push_async_callback(registry.close)
        snapshots = SnapshotTaker(
            registry_bucket,
            await key_value(backbone.js, STATE_TWINS_BUCKET),
            catalog,
            registry.twin_ids,
            attempts=settings.snapshot_attempts,
            max_twins=settings.max_snapshot_twins,
        )
        use_cache_dir(settings.kernel_cache_dir)
        events = EventPublisher(backbone.js)
        records = SweepRecords(await key_value(backbone.js, SWEEPS_BUCKET))

        async def report_ray(available: bool) -> None:
            await self.report_health(sweep_service.SERVICE_NAME, available)

        scheduler = await started(
            resources,
            SweepScheduler(
                records,
                DriverLeases(await key_value(backbone.js, SWEEP_DRIVERS_BUCKET)),
                RayJobs(
                    settings.ray_jobs_address,
                    settings.sweep_driver_python,
                    driver_environment(settings),
                    settings.ray_auth_token_file,
                ),
                QueuePolicy(
                    max_running=settings.max_running_sweeps,
                    max_running_per_submitter=settings.max_running_sweeps_per_submitter,
                    tick_s=settings.sweep_schedule_interval_s,
                    lease_timeout_s=settings.sweep_lease_timeout_s,
                    driver_start_timeout_s=settings.sweep_driver_start_timeout_s,
                    max_driver_attempts=settings.max_sweep_driver_attempts,
                ),
                report_ray,
            ),
        )
        limits = sweep_limits(settings)
        simulation = SimulationServicer(settings, snapshots, influx, events)
        sweeps = SweepServicer(
            SweepPlanner(snapshots, limits),
            records,
            open_results_store(settings.results_uri, backbone.js),
            scheduler,
            events,
            catalog=catalog,
            quotas=SweepQuotas(
                max_active_sweeps=settings.tenant_max_active_sweeps,
                max_active_scenario_steps=settings.tenant_max_active_scenario_steps,
                overrides=self.quota_overrides,
            ),
        )

        def register(server: grpc.aio.Server) -> None:
            simulation_pb2_grpc.add_SimulationServiceServicer_to_server(simulation, server)
            sweep_pb2_grpc.add_SweepServiceServicer_to_server(sweeps, server)

        return register
