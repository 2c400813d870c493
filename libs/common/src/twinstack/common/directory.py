"""A read-side view of the registry's twins, for services that must know a twin's model.

The registry owns the ``registry_twins`` KV bucket; other services only read it. The view
follows the bucket with a KV watch, so lookups are in memory, and falls back to a direct read
for a twin it has not seen yet, so a twin created a moment ago is never reported unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js.kv import KeyValue

from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.nats import read_document

logger = logging.getLogger(__name__)


class TwinDirectory:
    """Twin id to twin document, kept current from the registry's KV bucket."""

    def __init__(self, bucket: KeyValue) -> None:
        self._bucket = bucket
        self._twins: dict[str, registry_pb2.Twin] = {}
        self._watch_task: asyncio.Task[None] | None = None
        # Lookups are cached only while the watch keeps the cache current.
        self._cache = True

    async def start(self) -> None:
        watcher = await self._bucket.watchall()
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
                    continue
                if entry.operation in ("DEL", "PURGE") or not entry.value:
                    self._twins.pop(entry.key, None)
                    continue
                twin = registry_pb2.Twin.FromString(entry.value)
                twin.revision = entry.revision or 0
                self._twins[entry.key] = twin
        except Exception:
            # Without the watch, cached twins could go stale: drop them all and serve every
            # lookup from the bucket itself.
            logger.exception("twin directory watch ended; reading the bucket directly from now")
            self._twins.clear()
            self._cache = False

    async def get(self, twin_id: str) -> registry_pb2.Twin | None:
        """The twin, or None if the registry has no twin with that id."""
        twin = self._twins.get(twin_id)
        if twin is not None:
            return twin
        found = await read_document(self._bucket, twin_id, registry_pb2.Twin)
        if found is None:
            return None
        twin, revision = found
        twin.revision = revision
        cached = self._twins.get(twin_id)
        # The watch may have delivered a newer revision while the read was in flight.
        if self._cache and (cached is None or cached.revision < twin.revision):
            self._twins[twin_id] = twin
        return twin
