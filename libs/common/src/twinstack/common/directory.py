"""A read-side view of the registry's twins: lookups for services that must know a twin's
model, and the registry's own index for listing.

The registry owns the ``registry`` KV bucket; other services only read its ``twins.*`` keys.
The view follows them with a KV watch, so lookups are in memory, and falls back to a direct read
for a twin it has not seen yet, so a twin created a moment ago is never reported unknown. It
tracks the highest KV revision it has applied, so a caller can wait until its own write is
reflected (read-your-write).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import Callable

from nats.js.kv import KeyValue

from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.errors import UnavailableError
from twinstack.common.nats import TWIN_KEY_PREFIX, read_document, twin_key

logger = logging.getLogger(__name__)


class TwinDirectory:
    """Twin id to twin document, kept current from the registry's KV bucket.

    Subclasses that follow more of the bucket widen :attr:`watched_keys` and extend
    :meth:`apply`; the revision watermark then covers every key they follow.
    """

    watched_keys = f"{TWIN_KEY_PREFIX}*"

    def __init__(self, bucket: KeyValue) -> None:
        self._bucket = bucket
        self._twins: dict[str, registry_pb2.Twin] = {}
        self._watch_task: asyncio.Task[None] | None = None
        # True while the watch keeps the view current; lookups are cached only then.
        self._following = True
        # Highest KV revision applied; the initial values end at the bucket's last revision.
        self._revision = 0
        self._changed = asyncio.Condition()
        self._loaded = asyncio.Event()
        self._sorted_ids: list[str] | None = None
        # Called with the id of every twin the watch reports deleted (from the initial values
        # on): services that keep data per twin let go of it.
        self.deletion_listeners: list[Callable[[str], None]] = []

    async def start(self) -> None:
        watcher = await self._bucket.watch(self.watched_keys)
        self._watch_task = asyncio.create_task(self._follow(watcher), name="twin-directory")

    async def stop(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        try:
            async for entry in watcher:
                if entry is None:  # end of the initial values
                    self._loaded.set()
                    continue
                self.apply(entry)
                self._revision = max(self._revision, entry.revision or 0)
                async with self._changed:
                    self._changed.notify_all()
        except Exception:
            # Without the watch, the view could go stale: drop it, serve lookups from the
            # bucket itself, and refuse listings.
            logger.exception("twin directory watch ended; reading the bucket directly from now")
            self._following = False
            self._twins.clear()
            self._sorted_ids = None
            async with self._changed:
                self._changed.notify_all()

    def apply(self, entry: KeyValue.Entry) -> None:
        """Takes one change of the bucket from the watch."""
        if not entry.key.startswith(TWIN_KEY_PREFIX):
            return
        twin_id = entry.key.removeprefix(TWIN_KEY_PREFIX)
        revision = entry.revision or 0
        known = self._twins.get(twin_id)
        # A write the registry already remembered may be newer than this entry.
        if known is not None and known.revision > revision:
            return
        if entry.operation in ("DEL", "PURGE") or not entry.value:
            self.forget(twin_id)
            for listener in self.deletion_listeners:
                listener(twin_id)
        else:
            twin = registry_pb2.Twin.FromString(entry.value)
            twin.revision = revision
            self.remember(twin)

    def forget(self, twin_id: str) -> None:
        """Drops a deleted twin."""
        if self._twins.pop(twin_id, None) is not None:
            self._sorted_ids = None

    async def get(self, twin_id: str) -> registry_pb2.Twin | None:
        """The twin, or None if the registry has no twin with that id."""
        twin = self._twins.get(twin_id)
        if twin is not None:
            return twin
        found = await read_document(self._bucket, twin_key(twin_id), registry_pb2.Twin)
        if found is None:
            return None
        twin, revision = found
        twin.revision = revision
        cached = self._twins.get(twin_id)
        # The watch may have delivered a newer revision while the read was in flight.
        if self._following and (cached is None or cached.revision < twin.revision):
            self.remember(twin)
        return twin

    def cached(self, twin_id: str) -> registry_pb2.Twin | None:
        """A copy of the twin as the view holds it (possibly behind the bucket), or None."""
        twin = self._twins.get(twin_id)
        if twin is None or not self._following:
            return None
        copy = registry_pb2.Twin()
        copy.CopyFrom(twin)
        return copy

    def remember(self, twin: registry_pb2.Twin) -> None:
        """Takes a twin the caller just wrote, unless the view already holds a newer revision."""
        known = self._twins.get(twin.id)
        if known is not None and known.revision >= twin.revision:
            return
        if known is None:
            self._sorted_ids = None
        self._twins[twin.id] = twin

    @property
    def revision(self) -> int:
        """Highest KV revision applied from the watch."""
        return self._revision

    async def wait_for_revision(self, revision: int) -> None:
        """Returns once every change up to ``revision`` is reflected (callers bound the wait)."""
        await self._loaded.wait()
        async with self._changed:
            await self._changed.wait_for(lambda: self._revision >= revision or not self._following)
        self._require_following()

    async def page(self, after_id: str, limit: int) -> tuple[list[registry_pb2.Twin], bool]:
        """Up to ``limit`` twins after ``after_id`` in id order, and whether more follow."""
        await self._loaded.wait()
        self._require_following()
        if self._sorted_ids is None:
            self._sorted_ids = sorted(self._twins)
        ids = self._sorted_ids
        start = bisect.bisect_right(ids, after_id)
        chunk = ids[start : start + limit]
        return [self._twins[twin_id] for twin_id in chunk], start + limit < len(ids)

    def _require_following(self) -> None:
        if not self._following:
            raise UnavailableError("the registry's twin index lost its watch; retry later")
