"""Following a KV bucket: an in-memory view kept current by a KV watch."""

from __future__ import annotations

import asyncio
import contextlib

from nats.js.kv import KeyValue


class BucketFollower:
    """Hands every entry of a bucket (the current ones, then each change) to :meth:`apply`.

    Subclasses keep whatever view they need; :meth:`start` returns once the entries stored
    before it have been applied.
    """

    def __init__(self, bucket: KeyValue, keys: str = ">") -> None:
        self._bucket = bucket
        self._keys = keys
        self._task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()

    async def start(self) -> None:
        watcher = await self._bucket.watch(self._keys)
        self._task = asyncio.create_task(self._follow(watcher), name=type(self).__name__)
        await self._loaded.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is None:  # end of the entries stored before the watch
                self._loaded.set()
                continue
            deleted = entry.operation in ("DEL", "PURGE") or not entry.value
            self.apply(entry.key, None if deleted else entry.value, entry.revision or 0)

    def apply(self, key: str, value: bytes | None, revision: int) -> None:
        """Takes one entry; ``value`` is None when the key was deleted."""
        raise NotImplementedError
