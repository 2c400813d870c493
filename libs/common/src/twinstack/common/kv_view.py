"""An in-memory view of a KV bucket, kept current by a KV watch: the one piece every read-side
view of the registry builds on.

The view hands each entry (the stored ones, then each change) to the handlers that compose it,
and tracks the highest revision applied, so a caller can wait until its own write is reflected
(read-your-write). If the watch ends, the view says so (``following`` turns false) and its
handlers are told to drop what they hold, which would go stale.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from nats.js.kv import KeyValue

from twinstack.common.errors import UnavailableError
from twinstack.common.kv_watch import KvWatch
from twinstack.common.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

EntryHandler = Callable[[KeyValue.Entry], None]


class KvView:
    """Follows ``keys`` of a bucket and dispatches every entry to the subscribed handlers.

    Args:
        bucket: The bucket.
        keys: The keys to follow (a KV key filter; ``>``: all of them, which keeps one
            watermark for every kind of document the bucket holds).
    """

    def __init__(self, bucket: KeyValue, keys: str = ">") -> None:
        self.bucket = bucket
        self._keys = keys
        self._handlers: list[EntryHandler] = []
        self._lost_handlers: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        # True while the watch keeps the view current; readers may trust it only then.
        self.following = True
        # Highest KV revision applied; the initial values end at the bucket's last revision.
        self._revision = 0
        self._changed = asyncio.Condition()
        self._loaded = asyncio.Event()

    def subscribe(self, handler: EntryHandler, *, on_lost: Callable[[], None]) -> None:
        """Adds a handler of entries, and what it does when the watch is lost."""
        self._handlers.append(handler)
        self.when_lost(on_lost)

    def when_lost(self, on_lost: Callable[[], None]) -> None:
        """Adds what to do when the watch is lost (for state derived from other handlers)."""
        self._lost_handlers.append(on_lost)

    async def start(self) -> None:
        """Starts following; the initial values arrive in the background (see :meth:`loaded`)."""
        watch = await KvWatch.open(self.bucket, self._keys)
        self._task = asyncio.create_task(self._follow(watch), name="kv-view")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _follow(self, watch: KvWatch) -> None:
        try:
            async for entry in watch:
                if entry is None:  # end of the initial values
                    self._loaded.set()
                    continue
                for handler in self._handlers:
                    handler(entry)
                self._revision = max(self._revision, entry.revision or 0)
                async with self._changed:
                    self._changed.notify_all()
        except Exception:
            # Without the watch, the view could go stale: drop it, and let readers fall back to
            # the bucket itself or refuse.
            logger.exception("KV view watch ended; reading the bucket directly from now")
            self.following = False
            for lost in self._lost_handlers:
                lost()
            async with self._changed:
                self._changed.notify_all()

    @property
    def revision(self) -> int:
        """Highest KV revision applied from the watch."""
        return self._revision

    async def loaded(self) -> None:
        """Returns once the initial values are in.

        Raises:
            UnavailableError: The watch was lost.
        """
        await self._loaded.wait()
        self.require_following()

    async def wait_for_revision(self, revision: int) -> None:
        """Returns once every change up to ``revision`` is reflected (callers bound the wait).

        Raises:
            UnavailableError: The watch was lost.
        """
        await self._loaded.wait()
        async with self._changed:
            await self._changed.wait_for(lambda: self._revision >= revision or not self.following)
        self.require_following()

    async def catch_up(self) -> None:
        """Waits until every write the bucket held when called is applied here."""
        status = await self.bucket.status()
        await self.wait_for_revision(status.stream_info.state.last_seq)

    def require_following(self) -> None:
        if not self.following:
            raise UnavailableError("the registry's index lost its watch; retry later")
