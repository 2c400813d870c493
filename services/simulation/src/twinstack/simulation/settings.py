"""Simulation settings (``TWINSTACK_*``, and ``RAY_ADDRESS`` as Ray itself names it)."""

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
    # Scenarios per Ray task: enough work per task that Ray's per-task cost stays small.
    scenarios_per_task: int = Field(default=65_536, gt=0)
    max_scenarios: int = Field(default=10_000_000, gt=0)
    max_steps: int = Field(default=1_000_000, gt=0)
