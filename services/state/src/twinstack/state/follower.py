"""Following a KV bucket: an in-memory view kept current by a KV watch."""

from __future__ import annotations

import asyncio

from nats.js.kv import KeyValue

from twinstack.common.kv_watch import KvWatch, deleted
from twinstack.common.tasks import cancel_and_wait


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
        watch = await KvWatch.open(self._bucket, self._keys)
        self._task = asyncio.create_task(self._follow(watch), name=type(self).__name__)
        await self._loaded.wait()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _follow(self, watch: KvWatch) -> None:
        async for entry in watch:
            if entry is None:  # end of the entries stored before the watch
                self._loaded.set()
                continue
            gone = deleted(entry) or not entry.value
            self.apply(entry.key, None if gone else entry.value, entry.revision or 0)

    def apply(self, key: str, value: bytes | None, revision: int) -> None:
        """Takes one entry; ``value`` is None when the key was deleted."""
        raise NotImplementedError
