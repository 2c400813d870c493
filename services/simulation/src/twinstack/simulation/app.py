"""The simulation service as the server bootstrap runs it: its dependencies acquired in order
and released in reverse, and its servicer registered."""

from __future__ import annotations

import contextlib
import logging

import ray

from twinstack import sdk
from twinstack.api.simulation.v1 import simulation_pb2_grpc
from twinstack.common.app import Registration, ServiceApp, started
from twinstack.common.catalog import ModelCatalog
from twinstack.common.events import EventPublisher
from twinstack.common.nats import REGISTRY_BUCKET, STATE_TWINS_BUCKET, key_value
from twinstack.simulation.compiler import KERNEL_CACHE_ENV, use_cache_dir
from twinstack.simulation.registry_client import RegistryQueries
from twinstack.simulation.service import SERVICE_NAME, SimulationServicer, sweep_limits
from twinstack.simulation.settings import SimulationSettings
from twinstack.simulation.snapshot import SnapshotTaker
from twinstack.simulation.sweep_runner import SweepRunner

logger = logging.getLogger(__name__)


class SimulationApp(ServiceApp[SimulationSettings]):
    """The simulation service as the server bootstrap runs it."""

    service_names = (SERVICE_NAME,)

    async def open(self, resources: contextlib.AsyncExitStack) -> Registration:
        settings = self.settings
        backbone = await self.backbone(resources, "twinstack-simulation")
        registry_bucket = await key_value(backbone.js, REGISTRY_BUCKET)
        catalog = await started(resources, ModelCatalog(registry_bucket))
        influx = await self.influx(resources)
        token = settings.auth_token.get_secret_value() if settings.auth_token else None
        registry = RegistryQueries(
            sdk.ConnectConfig(sdk.Endpoints(registry=settings.registry_target), token=token)
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
        if not ray.is_initialized():
            address = settings.ray_address
            ray.init(
                address=address,
                num_cpus=None if address else settings.ray_num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env={"env_vars": {KERNEL_CACHE_ENV: str(settings.kernel_cache_dir)}},
            )
            resources.callback(ray.shutdown)
            logger.info("ray connected", extra={"ray_address": address or "local"})
        sweeps = SweepRunner(
            snapshots, sweep_limits(settings), settings.results_dir, settings.sweep_tasks_in_flight
        )
        servicer = SimulationServicer(
            settings, snapshots, sweeps, influx, EventPublisher(backbone.js)
        )
        return lambda server: simulation_pb2_grpc.add_SimulationServiceServicer_to_server(
            servicer, server
        )
