"""State settings (``TWINSTACK_*``)."""

from pydantic import Field

from twinstack.common.settings import ServiceSettings


class StateSettings(ServiceSettings):
    grpc_port: int = Field(default=50053, ge=0, le=65535)
    state_durable: str = "state"
    state_fetch_messages: int = Field(default=512, gt=0)
    state_fetch_timeout_s: float = Field(default=0.5, gt=0)
    state_ack_wait_s: float = Field(default=30.0, gt=0)
