"""The state service's gRPC surface, and its start and stop."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from nats.js.kv import KeyValue

from twinstack.api.state.v1 import state_pb2, state_pb2_grpc
from twinstack.common.consumer import PullConsumerSettings
from twinstack.common.errors import NotFoundError
from twinstack.common.ids import require_twin_id
from twinstack.common.nats import STATE_TWINS_BUCKET, Backbone, key_value
from twinstack.state.settings import StateSettings
from twinstack.state.updater import StateUpdater, read_state

SERVICE_NAME = state_pb2.DESCRIPTOR.services_by_name["StateService"].full_name
STATE_RESOURCE = "twinstack.io/TwinState"


class StateServicer(state_pb2_grpc.StateServiceServicer):
    def __init__(self, bucket: KeyValue) -> None:
        self._bucket = bucket

    async def GetState(
        self,
        request: state_pb2.GetStateRequest,
        context: grpc.aio.ServicerContext[state_pb2.GetStateRequest, state_pb2.GetStateResponse],
    ) -> state_pb2.GetStateResponse:
        require_twin_id(request.twin_id)
        state = await read_state(self._bucket, request.twin_id)
        if state is None:
            raise NotFoundError(
                STATE_RESOURCE, request.twin_id, f"no telemetry seen for twin {request.twin_id!r}"
            )
        return state_pb2.GetStateResponse(state=state)


class StateApp:
    """The state service as the server bootstrap runs it."""

    service_names: Sequence[str] = (SERVICE_NAME,)

    def __init__(self, settings: StateSettings) -> None:
        self._settings = settings
        self._backbone: Backbone | None = None
        self._bucket: KeyValue | None = None
        self._updater: StateUpdater | None = None

    async def start(self) -> None:
        settings = self._settings
        self._backbone = await Backbone.connect(settings, "twinstack-state")
        self._bucket = await key_value(self._backbone.js, STATE_TWINS_BUCKET)
        self._updater = StateUpdater(
            self._backbone.js,
            self._bucket,
            PullConsumerSettings.for_telemetry(
                settings.state_durable,
                fetch_messages=settings.state_fetch_messages,
                fetch_timeout_s=settings.state_fetch_timeout_s,
                ack_wait_s=settings.state_ack_wait_s,
            ),
        )
        await self._updater.start()

    def register(self, server: grpc.aio.Server) -> None:
        assert self._bucket is not None, "start() first"
        state_pb2_grpc.add_StateServiceServicer_to_server(StateServicer(self._bucket), server)

    async def stop(self) -> None:
        if self._updater is not None:
            await self._updater.stop()
        if self._backbone is not None:
            await self._backbone.close()
