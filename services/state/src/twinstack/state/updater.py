"""Consumes the TELEMETRY stream and keeps each twin's state document in the KV bucket.

Messages are acknowledged only after the merged state is stored. Replicas of the service share
one durable consumer; a compare-and-set on the document's KV revision keeps two replicas that
touch the same twin at once from losing each other's update.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from twinstack.api.common.v1 import events_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.common.nats import TELEMETRY_STREAM, telemetry_partition_filter
from twinstack.state.live import merge

logger = logging.getLogger(__name__)

_MAX_CAS_ATTEMPTS = 20


@dataclass(frozen=True)
class UpdaterConfig:
    durable: str = "state"
    fetch_messages: int = 512
    fetch_timeout_s: float = 0.5
    ack_wait_s: float = 30.0


class StateUpdater:
    """The consume, merge, store, acknowledge loop."""

    def __init__(self, js: JetStreamContext, bucket: KeyValue, config: UpdaterConfig) -> None:
        self._js = js
        self._bucket = bucket
        self._config = config
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        subscription = await self._js.pull_subscribe(
            telemetry_partition_filter(),
            durable=self._config.durable,
            stream=TELEMETRY_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._config.ack_wait_s,
            ),
        )
        self._task = asyncio.create_task(self._run(subscription), name="state-updater")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, self._config.ack_wait_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    async def _run(self, subscription: JetStreamContext.PullSubscription) -> None:
        while not self._stopping.is_set():
            try:
                messages = await subscription.fetch(
                    self._config.fetch_messages, timeout=self._config.fetch_timeout_s
                )
            except (NatsTimeoutError, TimeoutError):
                continue
            except Exception:
                logger.warning("state fetch failed", exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)
                continue
            try:
                await self._apply(messages)
            except Exception:
                # Unacknowledged messages come back after ack_wait; nothing is lost.
                logger.exception("state update failed; messages will be redelivered")

    async def _apply(self, messages: list[Msg]) -> None:
        by_twin: dict[str, list[events_pb2.TelemetryBatch]] = defaultdict(list)
        for message in messages:
            try:
                batch = events_pb2.TelemetryBatch.FromString(message.data)
            except DecodeError:
                # The historian parks undecodable messages; here they carry no state.
                logger.error("undecodable telemetry message", extra={"subject": message.subject})
                continue
            by_twin[batch.twin_id].append(batch)
        await asyncio.gather(
            *(self._store(twin_id, batches) for twin_id, batches in by_twin.items())
        )
        for message in messages:
            await message.ack()

    async def _store(self, twin_id: str, batches: list[events_pb2.TelemetryBatch]) -> None:
        for _ in range(_MAX_CAS_ATTEMPTS):
            try:
                entry = await self._bucket.get(twin_id)
                state = state_pb2.TwinState.FromString(entry.value or b"")
                revision = entry.revision
            except KeyNotFoundError:
                state, revision = state_pb2.TwinState(twin_id=twin_id), None
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
    try:
        entry = await bucket.get(twin_id)
    except KeyNotFoundError:
        return None
    if not entry.value:
        return None
    state = state_pb2.TwinState.FromString(entry.value)
    state.revision = entry.revision or 0
    return state
