"""Consumes the TELEMETRY stream into the twins' state documents, one durable consumer per
held partition, and watches the clock for twins that went silent.

Partitions come and go with their leases (:mod:`twinstack.state.ownership`): a partition taken
starts its consumer and learns its twins for the staleness check; a partition given stops its
consumer after the batch in hand. Every write carries the partition's fence, so a replica that
lost a partition cannot overwrite its new owner's documents.

A partition's messages are acknowledged only after the merged state is stored, so a crash
means redelivery, which :func:`merge` and the alert memory make harmless. Alert events are
published after the state write that holds the alert: a crash between the two loses the event,
never the alert, which stays in the state.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import metrics

from twinstack.api.common.v1 import events_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.common.consumer import DeadLetters, PullConsumer, PullConsumerSettings
from twinstack.common.events import ALERT_CLEARED, ALERT_RAISED, STATE_DEAD_LETTER, EventPublisher
from twinstack.common.ids import TWIN_ID_PATTERN, partition_of
from twinstack.common.tasks import cancel_and_wait
from twinstack.modeling.document import ModelError
from twinstack.modeling.resolve import ResolvedModel
from twinstack.state.alerts import AlertChange, AlertEvaluator, alert_event
from twinstack.state.live import is_stale, merge
from twinstack.state.ownership import FencedError
from twinstack.state.store import OwnerFence, StateStore

logger = logging.getLogger(__name__)
# Twins checked for staleness between two turns of the event loop.
_STALENESS_CHECKS_PER_YIELD = 100
_meter = metrics.get_meter("twinstack.state")
_LATENCY = _meter.create_histogram(
    "twinstack.state.ingest_to_state",
    unit="s",
    description="From ingestion accepting a batch to its state being stored",
)


class StalePeriods:
    """How long a twin may stay silent before it is stale, from its model's sample periods."""

    def __init__(
        self, resolve: Callable[[str], ResolvedModel], *, periods: float, default_s: float
    ) -> None:
        self._resolve = resolve
        self._periods = periods
        self._default_s = default_s
        self._cache: dict[str, float] = {}

    def of(self, model_id: str) -> float:
        cached = self._cache.get(model_id)
        if cached is None:
            try:
                declared = [
                    t.sample_period_s
                    for t in self._resolve(model_id).telemetry.values()
                    if t.sample_period_s
                ]
            except ModelError:
                declared = []
            cached = self._periods * max(declared) if declared else self._default_s
            self._cache[model_id] = cached
        return cached


class Fences(Protocol):
    """Which partitions this replica holds, and their fences."""

    def holds(self, partition: int) -> bool: ...

    def fence(self, partition: int) -> OwnerFence: ...


class StateUpdater:
    """Keeps the state of the twins of the held partitions current until stopped.

    Args:
        js: JetStream.
        store: The state documents.
        evaluator: Alert rules.
        stale_periods: When a twin is stale.
        consumer_settings: The durable consumer of a partition.
        partition_count: Telemetry partitions in all.
        staleness_check_interval_s: Time between staleness checks.
        fences: Held partitions (late-bound: ownership calls :meth:`take` and :meth:`give`).
        known_twins: Twin ids with a state document now, for the staleness check of a
            partition taken.
    """

    def __init__(  # noqa: PLR0917 - the updater's whole wiring
        self,
        js: JetStreamContext,
        store: StateStore,
        evaluator: AlertEvaluator,
        stale_periods: StalePeriods,
        consumer_settings: Callable[[int], PullConsumerSettings],
        partition_count: int,
        staleness_check_interval_s: float,
        fences: Callable[[], Fences],
        known_twins: Callable[[], Awaitable[list[str]]],
    ) -> None:
        self._js = js
        self._events = EventPublisher(js)
        self._store = store
        self._evaluator = evaluator
        self._stale_periods = stale_periods
        self._consumer_settings = consumer_settings
        self._consumers: dict[int, PullConsumer] = {}
        self._partition_count = partition_count
        self._check_interval_s = staleness_check_interval_s
        self._fences = fences
        self._known_twins = known_twins
        # Twins of each held partition, for the staleness check.
        self._known: dict[int, set[str]] = {}
        self._learning: set[asyncio.Task[None]] = set()
        self._clock_task: asyncio.Task[None] | None = None

    @property
    def partitions(self) -> list[int]:
        """The partitions consumed now."""
        return sorted(self._consumers)

    async def start(self) -> None:
        self._clock_task = asyncio.create_task(self._watch_clock(), name="staleness")

    async def stop(self) -> None:
        for task in [self._clock_task, *self._learning]:
            if task is not None:
                await cancel_and_wait(task)
        await self.give(list(self._consumers))

    async def take(self, epochs: Mapping[int, int]) -> None:
        """Starts consuming newly held partitions; their staleness state comes with their
        documents (the alert memory is in each twin's state). Their twins are listed for the
        staleness check in the background: a listing of every state document can take longer
        than an ownership round may."""
        for partition in epochs:
            self._known[partition] = set()
        learning = asyncio.create_task(self._learn_known(list(epochs)), name="known-twins")
        self._learning.add(learning)
        learning.add_done_callback(self._learning.discard)
        for partition in epochs:
            settings = self._consumer_settings(partition)
            consumer = PullConsumer(
                self._js,
                settings,
                functools.partial(
                    self._apply, partition, DeadLetters(self._js, STATE_DEAD_LETTER, settings)
                ),
            )
            await consumer.start()
            self._consumers[partition] = consumer

    async def _learn_known(self, partitions: list[int]) -> None:
        try:
            known = await self._known_twins()
        except Exception:
            # Twins of these partitions are still checked once telemetry names them.
            logger.warning("could not list the twins of partitions %s", partitions, exc_info=True)
            return
        for twin_id in known:
            held = self._known.get(partition_of(twin_id, self._partition_count))
            if held is not None and partition_of(twin_id, self._partition_count) in partitions:
                held.add(twin_id)

    async def give(self, partitions: Sequence[int]) -> None:
        """Stops consuming partitions, each after its batch in hand."""
        stopping = [self._consumers.pop(p) for p in partitions if p in self._consumers]
        await asyncio.gather(*(consumer.stop() for consumer in stopping))
        for partition in partitions:
            self._known.pop(partition, None)

    async def _apply(self, partition: int, dead_letters: DeadLetters, messages: list[Msg]) -> None:
        try:
            fence = self._fences().fence(partition)
        except FencedError:
            # Redelivered at once to the partition's next owner.
            await asyncio.gather(*(message.nak() for message in messages))
            return
        by_twin: dict[str, list[events_pb2.TelemetryBatch]] = defaultdict(list)
        twin_messages: dict[str, list[Msg]] = defaultdict(list)
        settled: list[Msg] = []
        for message in messages:
            try:
                batch = events_pb2.TelemetryBatch.FromString(message.data)
            except DecodeError:
                # The historian parks undecodable messages; here they carry no state.
                logger.error("undecodable telemetry message", extra={"subject": message.subject})
                settled.append(message)
                continue
            if not TWIN_ID_PATTERN.fullmatch(batch.frame.twin_id):
                # Only a publisher that bypassed ingestion can send this; it must not block
                # the batch it came with, and it is no valid KV key.
                logger.error("telemetry for an invalid twin id", extra={"subject": message.subject})
                settled.append(message)
                continue
            by_twin[batch.frame.twin_id].append(batch)
            twin_messages[batch.frame.twin_id].append(message)
        # Each twin on its own: one twin whose update fails must not hold back the others of
        # its partition, and after max_deliver attempts its messages become dead letters.
        outcomes = await asyncio.gather(
            *(self._merge(twin_id, batches, fence) for twin_id, batches in by_twin.items()),
            return_exceptions=True,
        )
        for twin_id, outcome in zip(by_twin, outcomes, strict=True):
            if isinstance(outcome, FencedError):
                for message in twin_messages[twin_id]:
                    await message.nak()
            elif isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome  # cancelled: everything unacknowledged is redelivered
                logger.warning(
                    "state update of %s failed: %r",
                    twin_id,
                    outcome,
                    extra={"twin_id": twin_id, "error": repr(outcome)},
                )
                for message in twin_messages[twin_id]:
                    await dead_letters.retry_or_park(
                        message, outcome, f"the state update of {twin_id} failed: {outcome!r}"
                    )
            else:
                settled += twin_messages[twin_id]
        for message in settled:
            await message.ack()

    async def _merge(
        self, twin_id: str, batches: list[events_pb2.TelemetryBatch], fence: OwnerFence
    ) -> None:
        known = self._known.get(partition_of(twin_id, self._partition_count))
        if known is not None:
            known.add(twin_id)

        def mutate(state: state_pb2.TwinState) -> list[AlertChange] | None:
            before = state.SerializeToString(deterministic=True)
            changes = []
            for batch in batches:
                merge(state, batch)
                changes += self._evaluator.on_telemetry(state, batch)
            # Rule memory moves even when no reported value does.
            return changes if state.SerializeToString(deterministic=True) != before else None

        written = await self._store.update(twin_id, mutate, fence)
        now_ns = time.time_ns()
        for batch in batches:
            _LATENCY.record((now_ns - batch.ingest_time.ToNanoseconds()) / 1e9)
        if written is not None:
            await self.publish_alerts(written[0], written[1])

    async def publish_alerts(
        self, state: state_pb2.TwinState, changes: Sequence[AlertChange]
    ) -> None:
        for change in changes:
            event = alert_event(change, state.revision)
            await self._events.publish(
                ALERT_RAISED if event.active else ALERT_CLEARED,
                (state.twin_id, change.alert.rule_id),
                event,
                msg_id=f"alert:{state.twin_id}:{change.alert.rule_id}:{state.revision}",
            )

    async def _watch_clock(self) -> None:
        while True:
            await asyncio.sleep(self._check_interval_s)
            try:
                await self.check_staleness(time.time_ns())
            except Exception:
                logger.exception("staleness check failed; trying again next interval")

    async def check_staleness(self, now_ns: int) -> None:
        """Marks silent twins of the held partitions stale and raises their staleness alerts."""
        for partition, known in list(self._known.items()):
            try:
                fence = self._fences().fence(partition)
                for checked, twin_id in enumerate(sorted(known), 1):
                    await self._check_twin(twin_id, now_ns, fence)
                    if checked % _STALENESS_CHECKS_PER_YIELD == 0:
                        # A twin whose cached state is current needs no I/O, so without this
                        # a partition of 10,000 twins would hold the event loop (and every
                        # telemetry update and Watch) for the whole sweep.
                        await asyncio.sleep(0)
            except FencedError:
                continue  # the partition moved: its new owner checks it

    async def _check_twin(self, twin_id: str, now_ns: int, fence: OwnerFence) -> None:
        def mutate(state: state_pb2.TwinState) -> list[AlertChange] | None:
            changed = False
            if state.connectivity != state_pb2.CONNECTIVITY_STALE and is_stale(
                state, now_ns, self._stale_periods.of(state.model_id)
            ):
                state.connectivity = state_pb2.CONNECTIVITY_STALE
                changed = True
            changes = self._evaluator.on_clock(state, now_ns)
            return changes if changed or changes else None

        written = await self._store.update(twin_id, mutate, fence)
        if written is not None:
            await self.publish_alerts(*written)
