"""Reads and compare-and-set writes of twin state documents, with a cache of the documents
this replica wrote last.

Each replica owns some telemetry partitions, so it is nearly always the only writer of its
twins: the cached document and its KV revision are current, and an update costs one write
instead of a read and a write. When another writer got in between (SetDesired through another
replica, a partition moving), the write fails on the revision and the document is read again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol, TypeVar

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from twinstack.api.state.v1 import state_pb2
from twinstack.common.nats import read_document

logger = logging.getLogger(__name__)

_MAX_CAS_ATTEMPTS = 20
ResultT = TypeVar("ResultT")
# Changes the state in place and returns what the caller wants to know about it; returning
# None means nothing changed and nothing is written.
Mutation = Callable[[state_pb2.TwinState], ResultT | None]


class OwnerFence(Protocol):
    """The writer's hold on a twin's partition."""

    @property
    def epoch(self) -> int:
        """The writer's fencing epoch."""

    async def confirm(self) -> None:
        """Raises :class:`~twinstack.state.ownership.FencedError` unless the writer still
        holds the partition (asked of the lease itself)."""


class StateStore:
    """Twin state documents in the KV bucket.

    Args:
        bucket: The ``state_twins`` bucket.
        cache_twins: Most documents kept in memory.
    """

    def __init__(self, bucket: KeyValue, *, cache_twins: int) -> None:
        self._bucket = bucket
        self._cache: OrderedDict[str, state_pb2.TwinState] = OrderedDict()
        self._cache_twins = cache_twins

    async def read(self, twin_id: str) -> state_pb2.TwinState | None:
        """The stored state of a twin, with its revision, or None if none is stored."""
        found = await read_document(self._bucket, twin_id, state_pb2.TwinState)
        if found is None:
            return None
        state, revision = found
        state.revision = revision
        return state

    async def update(
        self, twin_id: str, mutate: Mutation[ResultT], owner: OwnerFence | None = None
    ) -> tuple[state_pb2.TwinState, ResultT] | None:
        """Applies ``mutate`` to the twin's state (a new one if none is stored) and writes it
        if it changed; retried on a concurrent write. Returns the written state (with its
        revision) and what ``mutate`` returned, or None if nothing changed.

        Args:
            twin_id: The twin.
            mutate: The change.
            owner: The partition owner's fence, for writes that only the owner may make
                (telemetry, staleness); None for writes any replica may make (desired values).

        Raises:
            FencedError: The document was written by a newer owner of the twin's partition.
        """
        for attempt in range(_MAX_CAS_ATTEMPTS):
            cached = self._cache.get(twin_id) if attempt == 0 else None
            current = cached if cached is not None else await self.read(twin_id)
            state = state_pb2.TwinState(twin_id=twin_id)
            if current is not None:
                state.CopyFrom(current)
            revision = state.revision
            if owner is not None and state.owner_epoch > owner.epoch:
                await owner.confirm()
            result = mutate(state)
            if result is None:
                if cached is None and current is not None:
                    # Keep what was read: the staleness check asks about every twin often.
                    self._remember(current)
                return None
            state.ClearField("revision")
            if owner is not None:
                state.owner_epoch = owner.epoch
            try:
                if current is None:
                    state.revision = await self._bucket.create(twin_id, state.SerializeToString())
                else:
                    state.revision = await self._bucket.update(
                        twin_id, state.SerializeToString(), last=revision
                    )
            except KeyWrongLastSequenceError:
                self._cache.pop(twin_id, None)
                continue
            except Exception:
                # The write may or may not have happened; the next update reads the truth.
                self._cache.pop(twin_id, None)
                raise
            self._remember(state)
            return state, result
        raise RuntimeError(f"state of {twin_id} kept changing under {_MAX_CAS_ATTEMPTS} attempts")

    async def delete(self, twin_id: str) -> None:
        """Removes a twin's state document, if there is one."""
        self._cache.pop(twin_id, None)
        if await self.read(twin_id) is not None:
            await self._bucket.delete(twin_id)

    def _remember(self, state: state_pb2.TwinState) -> None:
        self._cache[state.twin_id] = state
        self._cache.move_to_end(state.twin_id)
        while len(self._cache) > self._cache_twins:
            self._cache.popitem(last=False)


class Retirement:
    """Removes the live state of twins the registry deleted, so that a deleted twin neither
    lingers as stale nor shows in listings and watches.

    Each replica removes the states of the partitions it holds; the removals run in the
    background, since the registry's watch reports deletions synchronously. Deletions reported
    before this replica has taken its partitions (the registry's history read at start) wait
    for :meth:`decide`.

    Args:
        store: The live states.
        owns: Whether this replica holds a twin's partition; None while that is not known yet.
    """

    def __init__(self, store: StateStore, owns: Callable[[str], bool | None]) -> None:
        self._store = store
        self._owns = owns
        self._undecided: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def decide(self) -> None:
        """Retires what was deleted before this replica's partitions were known."""
        undecided, self._undecided = self._undecided, set()
        for twin_id in sorted(undecided):
            self.retire(twin_id)

    def retire(self, twin_id: str) -> None:
        """Schedules the removal of a deleted twin's state."""
        owns = self._owns(twin_id)
        if owns is None:
            self._undecided.add(twin_id)
            return
        if not owns:
            return
        task = asyncio.get_running_loop().create_task(self._remove(twin_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _remove(self, twin_id: str) -> None:
        try:
            await self._store.delete(twin_id)
        except Exception:
            logger.exception("could not remove the state of deleted twin %s", twin_id)

    async def stop(self) -> None:
        """Waits for removals in progress."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
