"""Which state replica keeps which telemetry partitions: leases in a KV bucket, fenced by their
revision.

Every replica announces itself under ``members.<member>`` and renews that entry; entries of the
``state_ownership`` bucket expire after the lease TTL, so a replica that dies drops out on its
own. From the live members, each replica computes the same assignment (rendezvous hashing:
a partition goes to the member with the highest hash of partition and member, so a member that
joins or leaves moves only its own share) and claims what is its: ``partitions.<n>`` is
created (only if absent) with its member id, then renewed by compare-and-set on the entry's
revision. A partition it no longer should own is released only after its consumer has stopped
and its batch in hand is acknowledged; a lease it cannot renew is given up.

Fencing, so that a replica that lost ownership cannot write:

* A lease is trusted only until its renewal's send time plus the TTL, less a margin, on this
  replica's monotonic clock. The server expires the entry no earlier than that, so no other
  replica can hold it before; a replica cut off from NATS stops writing when its lease lapses.
* Each state document records the epoch (the lease's creation revision, which only grows) of
  the owner that merged telemetry into it. A write under an older epoch than the document's
  is refused unless the lease itself confirms that this replica still holds it; a paused
  replica that wakes after its partition moved finds the new owner's epoch and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import socket
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from twinstack.common.consumer import TRANSIENT_ERRORS
from twinstack.common.kv_watch import scan
from twinstack.common.metrics import gauge
from twinstack.common.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

MEMBER_KEY_PREFIX = "members."
PARTITION_KEY_PREFIX = "partitions."
# How much earlier than the server this replica considers its lease gone: covers the time a
# renewal spends in flight and clock-rate differences between the machines.
_LEASE_SAFETY_MARGIN = 0.25


class FencedError(Exception):
    """This replica no longer owns the partition it tried to write."""


def member_name(configured: str = "") -> str:
    """This replica's member id: ``configured``, else host name (a pod's name in Kubernetes),
    process id and a random suffix, reduced to the characters a KV key allows."""
    name = configured or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:128]


def _score(partition: int, member: str) -> bytes:
    return hashlib.blake2b(f"{partition}/{member}".encode(), digest_size=8).digest()


def assignment(partitions: int, members: Iterable[str]) -> dict[int, str]:
    """Partition to owning member: each partition to the member with its highest score."""
    live = sorted(set(members))
    if not live:
        return {}
    return {p: max(live, key=lambda member: _score(p, member)) for p in range(partitions)}


@dataclass
class Lease:
    """A partition this replica holds."""

    epoch: int
    revision: int
    valid_until: float  # monotonic


@dataclass(frozen=True)
class PartitionFence:
    """A held partition's epoch, written into its documents, and the check behind it."""

    ownership: PartitionOwnership
    partition: int
    epoch: int

    async def confirm(self) -> None:
        await self.ownership.confirm(self.partition)


PartitionsTaken = Callable[[Mapping[int, int]], Awaitable[None]]
PartitionsGiven = Callable[[list[int]], Awaitable[None]]


# Every ownership of this process (one outside tests), for the partition gauges.
_OWNERSHIPS: weakref.WeakSet[PartitionOwnership] = weakref.WeakSet()


class PartitionOwnership:
    """Claims, renews and releases this replica's share of the telemetry partitions.

    Args:
        bucket: The ``state_ownership`` bucket (entries expire after ``lease_ttl_s``).
        member: This replica's member id.
        partitions: Telemetry partitions in all.
        lease_ttl_s: The bucket's entry lifetime.
        renew_interval_s: Time between rounds (renewals, claims and releases).
        on_taken: Called with partition to epoch of the partitions just claimed (they count
            as held already): starts their work.
        on_given: Called with partitions about to be released or already lost; returns once
            nothing of theirs is in flight.
    """

    def __init__(
        self,
        bucket: KeyValue,
        member: str,
        partitions: int,
        *,
        lease_ttl_s: float,
        renew_interval_s: float,
        on_taken: PartitionsTaken,
        on_given: PartitionsGiven,
    ) -> None:
        if renew_interval_s * 3 > lease_ttl_s:
            raise ValueError("a lease must outlive three renewal rounds")
        self._bucket = bucket
        self.member = member
        self._partitions = partitions
        self._trusted_s = lease_ttl_s * (1 - _LEASE_SAFETY_MARGIN)
        self._interval_s = renew_interval_s
        self._on_taken = on_taken
        self._on_given = on_given
        self._leases: dict[int, Lease] = {}
        # Partitions lost whose work has yet to be stopped.
        self._revoked: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        _OWNERSHIPS.add(self)

    @property
    def partition_count(self) -> int:
        return self._partitions

    @property
    def held(self) -> dict[int, int]:
        """Partition to epoch of every partition this replica holds now."""
        now = time.monotonic()
        return {p: lease.epoch for p, lease in self._leases.items() if lease.valid_until > now}

    def holds(self, partition: int) -> bool:
        """Whether this replica holds ``partition`` and may write its twins."""
        lease = self._leases.get(partition)
        return lease is not None and lease.valid_until > time.monotonic()

    def fence(self, partition: int) -> PartitionFence:
        """The fence of a held partition, for its writes.

        Raises:
            FencedError: It is not held (any more).
        """
        if not self.holds(partition):
            raise FencedError(f"partition {partition} is not held by {self.member}")
        return PartitionFence(self, partition, self._leases[partition].epoch)

    async def confirm(self, partition: int) -> None:
        """Asks the bucket whether the lease of ``partition`` is still this replica's.

        Raises:
            FencedError: It is another's, or gone.
        """
        lease = self._leases.get(partition)
        try:
            entry = await self._bucket.get(f"{PARTITION_KEY_PREFIX}{partition}")
        except KeyNotFoundError:
            entry = None
        if lease is None or entry is None or entry.value != self.member.encode():
            # Called from within the partition's own work: the next round stops it.
            self._revoke(partition, "another replica holds it")
            raise FencedError(f"partition {partition} moved away from {self.member}")

    async def start(self) -> None:
        """Joins, claims this replica's share once, and keeps going in the background (a
        first round that fails, NATS being away, is tried again there)."""
        try:
            async with asyncio.timeout(self._trusted_s):
                await self._round()
        except Exception:
            logger.exception("first partition ownership round failed; trying again")
        self._task = asyncio.create_task(self._run(), name="partition-ownership")

    async def stop(self) -> None:
        """Releases every partition (after its work in flight) and leaves, so that the other
        replicas take over at once instead of after the lease TTL."""
        await cancel_and_wait(self._task)
        await self._release(list(self._leases))
        with contextlib.suppress(Exception):
            await self._bucket.delete(f"{MEMBER_KEY_PREFIX}{self.member}")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                # Bounded: a call that hangs (a stalled member) must not hold back renewals
                # and the dropping of lapsed leases; the next round tries again.
                async with asyncio.timeout(self._trusted_s):
                    await self._round()
            except TRANSIENT_ERRORS as error:
                logger.warning("partition ownership round failed: %r", error)
            except Exception:
                logger.exception("partition ownership round failed")
            await self._drop_lapsed()
            await self._give_revoked()

    async def _round(self) -> None:
        await self._give_revoked()
        await self._announce()
        members = [
            entry.key.removeprefix(MEMBER_KEY_PREFIX)
            for entry in await scan(self._bucket, f"{MEMBER_KEY_PREFIX}>", meta_only=True)
        ]
        wanted = {
            p for p, owner in assignment(self._partitions, members).items() if owner == self.member
        }
        for partition in list(self._leases):
            await self._renew(partition)
        await self._release([p for p in self._leases if p not in wanted])
        taken: dict[int, int] = {}
        for partition in sorted(wanted - self._leases.keys()):
            lease = await self._claim(partition)
            if lease is not None:
                taken[partition] = lease.epoch
                self._leases[partition] = lease
        if taken:
            logger.info("partitions taken", extra={"partitions": sorted(taken)})
            try:
                await self._on_taken(taken)
            except BaseException:
                # Held without their work started they would never be served: let them go,
                # so that a later round claims them again and starts over.
                await self._release(sorted(taken))
                raise

    async def _announce(self) -> None:
        key = f"{MEMBER_KEY_PREFIX}{self.member}"
        value = json.dumps({"member": self.member, "pid": os.getpid()}).encode()
        await self._bucket.put(key, value)

    async def _claim(self, partition: int) -> Lease | None:
        key = f"{PARTITION_KEY_PREFIX}{partition}"
        sent = time.monotonic()
        revision: int | None
        try:
            revision = await self._bucket.create(key, self.member.encode())
        except KeyWrongLastSequenceError:
            revision = await self._readopt(key)
        if revision is None:
            return None  # held by another, until it releases it or its lease expires
        return Lease(epoch=revision, revision=revision, valid_until=sent + self._trusted_s)

    async def _readopt(self, key: str) -> int | None:
        """Takes back a lease still stored as this member's (given up when renewals failed
        for a while, as NATS elected a leader): waiting for it to expire would leave the
        partition unserved. The new revision is a fresh epoch, above every other."""
        try:
            entry = await self._bucket.get(key)
        except KeyNotFoundError:
            return None
        if entry.value != self.member.encode() or entry.revision is None:
            return None
        try:
            return await self._bucket.update(key, self.member.encode(), last=entry.revision)
        except KeyWrongLastSequenceError:
            return None

    async def _renew(self, partition: int) -> None:
        lease = self._leases.get(partition)
        if lease is None:
            return  # lost meanwhile (a write found a newer owner)
        key = f"{PARTITION_KEY_PREFIX}{partition}"
        sent = time.monotonic()
        try:
            lease.revision = await self._bucket.update(
                key, self.member.encode(), last=lease.revision
            )
        except KeyWrongLastSequenceError:
            # A renewal whose answer was lost may have been applied: the entry is then still
            # this member's, at a later revision.
            try:
                entry = await self._bucket.get(key)
            except KeyNotFoundError:
                entry = None
            if entry is None or entry.value != self.member.encode() or entry.revision is None:
                await self._lose([partition], "its lease was taken or expired")
                return
            lease.revision = entry.revision
        lease.valid_until = sent + self._trusted_s

    async def _drop_lapsed(self) -> None:
        now = time.monotonic()
        for partition in [p for p, lease in self._leases.items() if lease.valid_until <= now]:
            self._revoke(partition, "its lease lapsed without renewal")

    async def _lose(self, partitions: list[int], reason: str) -> None:
        for partition in partitions:
            self._revoke(partition, reason)
        await self._give_revoked()

    def _revoke(self, partition: int, reason: str) -> None:
        if self._leases.pop(partition, None) is not None:
            logger.warning("partition %s lost: %s", partition, reason)
            self._revoked.add(partition)

    async def _give_revoked(self) -> None:
        if self._revoked:
            revoked = sorted(self._revoked)
            self._revoked.clear()
            await self._on_given(revoked)

    async def _release(self, partitions: list[int]) -> None:
        if not partitions:
            return
        # Stop first: the next owner starts where this one's acknowledgements ended.
        await self._on_given(partitions)
        for partition in partitions:
            lease = self._leases.pop(partition, None)
            if lease is None:
                continue  # lost meanwhile: not this replica's to delete
            with contextlib.suppress(Exception):
                await self._bucket.delete(f"{PARTITION_KEY_PREFIX}{partition}", last=lease.revision)
        logger.info("partitions released", extra={"partitions": partitions})


gauge(
    "twinstack.state",
    "twinstack.state.partitions_held",
    "Telemetry partitions this replica holds a valid lease on",
    lambda: [(float(len(o.held)), {"member": o.member}) for o in list(_OWNERSHIPS)],
)
gauge(
    "twinstack.state",
    "twinstack.state.partitions",
    "Telemetry partitions in all; summed over replicas, the held ones should equal it",
    lambda: [(float(o.partition_count), {}) for o in list(_OWNERSHIPS)][:1],
)
