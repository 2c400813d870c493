"""KV watches whose end-of-stored-values marker can be trusted.

nats.py marks the end of a watch's stored values with a ``None`` that can come too early: it
compares the server's pending count with the messages its callback has already handled, so
values still buffered in the subscription arrive after the marker (nats-io/nats.py#842). A scan
that stops at that marker sees a bucket with keys missing (a sweep list that is empty right
after a submit; on a busy loop, about one scan in ten).

:class:`KvWatch` takes the consumer's own figures instead: when the watch opens, the consumer
has sent ``delivered`` messages and has ``num_pending`` more to send, and the stored values end
when that many entries have been handed out. An entry that says nothing is pending after it
also ends them once the server confirms that every message it sent has been handed out (the
fixed count can fall short when a stored value expires before it is delivered).

A stopped watch also deletes its consumer (:func:`stop_watcher`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js.api import ConsumerInfo
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

logger = logging.getLogger(__name__)

# Deleting a stopped watch's consumer is tidying up: it may not hold up a caller for long.
_CONSUMER_DELETE_TIMEOUT_S = 2.0


def deleted(entry: KeyValue.Entry) -> bool:
    """Whether the entry records a deletion (or a purge) of its key."""
    return entry.operation in (KV_DEL, KV_PURGE)


class KvWatch:
    """The entries of some keys of a bucket: the stored ones, then ``None`` once, then changes.

    Open with :meth:`open`; deletions come through as entries (see :func:`deleted`).
    """

    def __init__(self, watcher: KeyValue.KeyWatcher, stored_count: int) -> None:
        self._watcher = watcher
        self._stored_count = stored_count

    @classmethod
    async def open(cls, bucket: KeyValue, keys: str = ">", *, meta_only: bool = False) -> KvWatch:
        """Starts watching ``keys`` (a KV key filter); ``meta_only`` leaves values out."""
        watcher = await bucket.watch(keys, meta_only=meta_only)
        try:
            progress = await _progress(watcher)
        except BaseException:
            await stop_watcher(watcher)
            raise
        return cls(watcher, progress.sent + progress.pending)

    async def stop(self) -> None:
        await stop_watcher(self._watcher)

    async def __aiter__(self) -> AsyncIterator[KeyValue.Entry | None]:
        handed_out = 0
        highest_revision = 0
        loaded = self._stored_count == 0
        if loaded:
            yield None
        async for entry in self._watcher:
            if entry is None:  # nats.py's marker: a hint to ask the server, no more
                if not loaded and await self._all_handed_out(highest_revision):
                    loaded = True
                    yield None
                continue
            handed_out += 1
            highest_revision = max(highest_revision, entry.revision or 0)
            yield entry
            if not loaded and (
                handed_out >= self._stored_count
                or (entry.delta == 0 and await self._all_handed_out(highest_revision))
            ):
                loaded = True
                yield None

    async def _all_handed_out(self, highest_revision: int) -> bool:
        """Whether the consumer has nothing left to send, and sent nothing past our last entry."""
        progress = await _progress(self._watcher)
        return progress.pending == 0 and progress.last_sent_revision <= highest_revision


async def stop_watcher(watcher: KeyValue.KeyWatcher) -> None:
    """Stops a nats.py KV watch and deletes its consumer.

    nats.py only unsubscribes: the server keeps the watch's ordered consumer for its inactive
    threshold (five minutes, nats.py's default), so a service that scans a bucket per request
    (ListDevices, ListSweeps) piled up a consumer per call until the server refused new ones
    ("maximum consumers limit reached", at 1,000 on a stock nats-server), and every KV read with
    them. The threshold stays as the backstop for a process that dies mid-watch.
    """
    subscription = watcher._sub
    await watcher.stop()  # type: ignore[no-untyped-call]
    if subscription is None:
        return
    try:
        async with asyncio.timeout(_CONSUMER_DELETE_TIMEOUT_S):
            await subscription._js.delete_consumer(subscription._stream, subscription._consumer)
    except nats.js.errors.NotFoundError:
        pass  # gone already (its server restarted, or an ordered-consumer reset replaced it)
    except (nats.errors.Error, TimeoutError):
        logger.debug("consumer of a stopped KV watch left to expire", exc_info=True)


@dataclass(frozen=True)
class _Progress:
    sent: int
    last_sent_revision: int
    pending: int


async def _progress(watcher: KeyValue.KeyWatcher) -> _Progress:
    # nats.py keeps the watch's subscription private; its consumer's figures are the only
    # reliable account of what the watch has still to deliver.
    subscription = watcher._sub
    assert subscription is not None, "a started watch has a subscription"
    info: ConsumerInfo = await subscription.consumer_info()
    delivered = info.delivered
    return _Progress(
        sent=(delivered.consumer_seq or 0) if delivered else 0,
        last_sent_revision=(delivered.stream_seq or 0) if delivered else 0,
        pending=info.num_pending or 0,
    )


async def scan(
    bucket: KeyValue, keys: str = ">", *, meta_only: bool = False
) -> list[KeyValue.Entry]:
    """The current entries of ``keys`` (a KV key filter), deleted keys left out.

    Raises:
        nats.errors.Error: The bucket cannot be read.
    """
    watch = await KvWatch.open(bucket, keys, meta_only=meta_only)
    current: dict[str, KeyValue.Entry] = {}
    try:
        async for entry in watch:
            if entry is None:
                break
            # A key written again while the scan runs comes twice: the later entry wins.
            if deleted(entry):
                current.pop(entry.key, None)
            else:
                current[entry.key] = entry
    finally:
        await watch.stop()
    return list(current.values())
