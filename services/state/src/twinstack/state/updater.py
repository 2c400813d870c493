"""Consumes the TELEMETRY stream and keeps each twin's state document in the KV bucket.

Messages are acknowledged only after the merged state is stored. Replicas of the service share
one durable consumer; a compare-and-set on the document's KV revision keeps two replicas that
touch the same twin at once from losing each other's update.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from twinstack.api.common.v1 import events_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.common.consumer import PullConsumer, PullConsumerSettings
from twinstack.common.ids import TWIN_ID_PATTERN
from twinstack.common.nats import read_document
from twinstack.state.live import merge

logger = logging.getLogger(__name__)

_MAX_CAS_ATTEMPTS = 20


class StateUpdater:
    """Consumes the TELEMETRY stream into the twins' state documents until stopped."""

    def __init__(
        self, js: JetStreamContext, bucket: KeyValue, consumer: PullConsumerSettings
    ) -> None:
        self._bucket = bucket
        self._consumer = PullConsumer(js, consumer, self._apply)

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def _apply(self, messages: list[Msg]) -> None:
        by_twin: dict[str, list[events_pb2.TelemetryBatch]] = defaultdict(list)
        for message in messages:
            try:
                batch = events_pb2.TelemetryBatch.FromString(message.data)
            except DecodeError:
                # The historian parks undecodable messages; here they carry no state.
                logger.error("undecodable telemetry message", extra={"subject": message.subject})
                continue
            if not TWIN_ID_PATTERN.fullmatch(batch.twin_id):
                # Only a publisher that bypassed ingestion can send this; it must not block
                # the batch it came with, and it is no valid KV key.
                logger.error("telemetry for an invalid twin id", extra={"subject": message.subject})
                continue
            by_twin[batch.twin_id].append(batch)
        await asyncio.gather(
            *(self._store(twin_id, batches) for twin_id, batches in by_twin.items())
        )
        for message in messages:
            await message.ack()

    async def _store(self, twin_id: str, batches: list[events_pb2.TelemetryBatch]) -> None:
        for _ in range(_MAX_CAS_ATTEMPTS):
            found = await read_document(self._bucket, twin_id, state_pb2.TwinState)
            state, revision = found or (state_pb2.TwinState(twin_id=twin_id), None)
            if not merge(state, batches):
                return
            state.ClearField("revision")
            try:
                if revision is None:
                    await self._bucket.create(twin_id, state.SerializeToString())
                else:
                    await self._bucket.update(twin_id, state.SerializeToString(), last=revision)
                return
            except KeyWrongLastSequenceError:
                continue
        raise RuntimeError(f"state of {twin_id} kept changing under {_MAX_CAS_ATTEMPTS} attempts")


async def read_state(bucket: KeyValue, twin_id: str) -> state_pb2.TwinState | None:
    """The stored state of a twin, with its revision, or None if none is stored."""
    found = await read_document(bucket, twin_id, state_pb2.TwinState)
    if found is None:
        return None
    state, revision = found
    state.revision = revision
    return state
