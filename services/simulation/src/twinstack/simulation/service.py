"""The simulation service's gRPC surface, and its start and stop (Ray)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc
import ray

from twinstack.api.simulation.v1 import simulation_pb2, simulation_pb2_grpc
from twinstack.simulation.settings import SimulationSettings
from twinstack.simulation.sweep import SweepSpec, run_sweep, validate

logger = logging.getLogger(__name__)

SERVICE_NAME = simulation_pb2.DESCRIPTOR.services_by_name["SimulationService"].full_name


class SimulationServicer(simulation_pb2_grpc.SimulationServiceServicer):
    def __init__(self, settings: SimulationSettings) -> None:
        self._settings = settings

    async def RunSweep(
        self,
        request: simulation_pb2.RunSweepRequest,
        context: grpc.aio.ServicerContext[
            simulation_pb2.RunSweepRequest, simulation_pb2.RunSweepResponse
        ],
    ) -> simulation_pb2.RunSweepResponse:
        spec = SweepSpec(
            model=request.model,
            scenario_count=request.scenario_count,
            horizon_s=request.horizon_s,
            step_s=request.step_s,
            seed=request.seed,
            ranges={name: (r.min, r.max) for name, r in request.parameters.items()},
        )
        model = validate(
            spec, max_scenarios=self._settings.max_scenarios, max_steps=self._settings.max_steps
        )
        result = await run_sweep(spec, model, self._settings.scenarios_per_task)
        return simulation_pb2.RunSweepResponse(
            scenario_count=result.scenario_count,
            task_count=result.task_count,
            kpis=[
                simulation_pb2.KpiSummary(
                    name=k.name, mean=k.mean, min=k.min, max=k.max, p05=k.p05, p50=k.p50, p95=k.p95
                )
                for k in result.kpis
            ],
        )


class SimulationApp:
    """The simulation service as the server bootstrap runs it."""

    service_names: Sequence[str] = (SERVICE_NAME,)

    def __init__(self, settings: SimulationSettings) -> None:
        self._settings = settings
        self._owns_ray = False

    async def start(self) -> None:
        if ray.is_initialized():
            return  # embedded in a process that already runs Ray (tests, notebooks)
        address = self._settings.ray_address
        ray.init(
            address=address,
            num_cpus=None if address else self._settings.ray_num_cpus,
            include_dashboard=False,
            log_to_driver=False,
        )
        self._owns_ray = True
        logger.info("ray connected", extra={"ray_address": address or "local"})

    def register(self, server: grpc.aio.Server) -> None:
        simulation_pb2_grpc.add_SimulationServiceServicer_to_server(
            SimulationServicer(self._settings), server
        )

    async def stop(self) -> None:
        if self._owns_ray:
            ray.shutdown()
