"""Registry settings (``TWINSTACK_*``)."""

from pydantic import Field

from twinstack.common.settings import ServiceSettings


class RegistrySettings(ServiceSettings):
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    max_properties_per_twin: int = Field(default=1024, gt=0)
