"""One leader among a service's replicas, by a lease in a KV bucket whose entries expire.

The lease is created only if absent and renewed by compare-and-set on its revision, so two
replicas can never both renew it. A leader that cannot renew keeps leading only until the lease
may have expired (TTL less a margin, from the renewal's send time on its own monotonic clock),
then stops. On a clean stop the lease is deleted, so a standby takes over within one renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from twinstack.common.nats import NATS_UNAVAILABLE_ERRORS
from twinstack.common.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

# A lease is trusted for this share of its TTL after a renewal was sent: the rest covers the
# server's expiry running on another clock, and the time the renewal took.
_TRUSTED_SHARE = 0.75


class Leadership:
    """Holds ``key`` in ``bucket`` for ``member`` when it can, and says when it gains or loses it.

    Args:
        bucket: A KV bucket whose entries expire after ``ttl_s``.
        key: The lease's key.
        member: This replica's name (stored as the lease's value).
        ttl_s: The bucket's TTL.
        renew_interval_s: How often the lease is renewed or, by a standby, tried.
        on_gained: Called when this replica became the leader.
        on_lost: Called when it stopped being the leader (or is stopping while it is).
    """

    def __init__(
        self,
        bucket: KeyValue,
        key: str,
        member: str,
        *,
        ttl_s: float,
        renew_interval_s: float,
        on_gained: Callable[[], Awaitable[None]],
        on_lost: Callable[[], Awaitable[None]],
    ) -> None:
        self._bucket = bucket
        self._key = key
        self._member = member
        self._trusted_s = ttl_s * _TRUSTED_SHARE
        self._renew_interval_s = renew_interval_s
        self._on_gained = on_gained
        self._on_lost = on_lost
        self._revision: int | None = None
        # Leading: the lease is held and on_gained finished.
        self._leading = False
        self._trusted_until = 0.0
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    @property
    def leading(self) -> bool:
        return self._leading and time.monotonic() < self._trusted_until

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"leadership {self._key}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self._revision is None:
            return
        await self._lose()
        with contextlib.suppress(*NATS_UNAVAILABLE_ERRORS, KeyWrongLastSequenceError):
            # Only our own revision is deleted: a lease someone else took stays theirs.
            await self._bucket.delete(self._key, last=self._revision)

    async def wait_until(self, leading: bool, timeout_s: float) -> None:
        """Waits until this replica leads (or does not); TimeoutError after ``timeout_s``."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: self._leading == leading)

    async def _run(self) -> None:
        while True:
            gained = False
            try:
                # Bounded: a renewal stuck longer than the lease is trusted is a lost lease.
                async with asyncio.timeout(self._trusted_s):
                    gained = await self._round()
            except TimeoutError:
                if self._revision is not None and time.monotonic() >= self._trusted_until:
                    await self._lose()
            except Exception:
                logger.warning("leadership of %s: round failed", self._key, exc_info=True)
            if gained:
                logger.info("leading %s", self._key, extra={"member": self._member})
                try:
                    await self._on_gained()
                except Exception:
                    # Stop what did start; the lease is still stored as ours, so the next
                    # round takes it back and tries again.
                    logger.exception("leading %s failed to start", self._key)
                    await self._lose()
                else:
                    self._leading = True
                    await self._notify()
            await asyncio.sleep(self._renew_interval_s)

    async def _round(self) -> bool:
        """Renews the lease, or tries to take it; whether it was just taken."""
        sent = time.monotonic()
        if self._revision is not None:
            try:
                self._revision = await self._bucket.update(
                    self._key, self._member.encode(), last=self._revision
                )
                self._trusted_until = sent + self._trusted_s
            except KeyWrongLastSequenceError:
                await self._lose()  # someone else holds it: ours expired
            except NATS_UNAVAILABLE_ERRORS:
                if time.monotonic() >= self._trusted_until:
                    await self._lose()
            return False
        revision: int | None
        try:
            revision = await self._bucket.create(self._key, self._member.encode())
        except KeyWrongLastSequenceError:
            revision = await self._reclaim()
        if revision is None:
            return False
        self._revision = revision
        self._trusted_until = sent + self._trusted_s
        return True

    async def _reclaim(self) -> int | None:
        """The lease's revision if it is still stored as ours (this replica restarted, or lost
        it to failed renewals it did not know had succeeded): taken back at once, not after
        it expires."""
        try:
            entry = await self._bucket.get(self._key)
        except KeyNotFoundError:
            return None
        if entry.value != self._member.encode() or entry.revision is None:
            return None
        try:
            return await self._bucket.update(self._key, self._member.encode(), last=entry.revision)
        except KeyWrongLastSequenceError:
            return None

    async def _lose(self) -> None:
        self._revision = None
        self._leading = False
        logger.warning("no longer leading %s", self._key, extra={"member": self._member})
        try:
            await self._on_lost()
        finally:
            await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
