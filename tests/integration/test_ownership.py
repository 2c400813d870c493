"""State partition leases against a real nats-server: replicas share the partitions, a
replica that leaves hands its share over, and a replica that lost its lease cannot write."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from twinstack.api.state.v1 import state_pb2
from twinstack.common.nats import (
    STATE_LEASE_TTL_S,
    STATE_OWNERSHIP_BUCKET,
    STATE_TWINS_BUCKET,
    Backbone,
    key_value,
)
from twinstack.state.ownership import PARTITION_KEY_PREFIX, FencedError, PartitionOwnership
from twinstack.state.store import StateStore

PARTITIONS = 8


class Consumers:
    """What the updater would consume: the partitions given to it and not taken back.

    Args:
        failures: Starts that fail (NATS unavailable) before they succeed.
    """

    def __init__(self, failures: int = 0) -> None:
        self.partitions: set[int] = set()
        self.failures = failures

    async def take(self, epochs: Mapping[int, int]) -> None:
        assert not self.partitions & set(epochs), "a partition taken twice"
        self.partitions |= set(epochs)
        if self.failures:
            self.failures -= 1
            raise TimeoutError("the consumers could not be bound")

    async def give(self, partitions: list[int]) -> None:
        self.partitions -= set(partitions)


@contextlib.asynccontextmanager
async def replica(
    backbone: Backbone, member: str
) -> AsyncIterator[tuple[PartitionOwnership, Consumers]]:
    consumers = Consumers()
    ownership = PartitionOwnership(
        await key_value(backbone.js, STATE_OWNERSHIP_BUCKET),
        member,
        PARTITIONS,
        lease_ttl_s=STATE_LEASE_TTL_S,
        renew_interval_s=0.2,
        on_taken=consumers.take,
        on_given=consumers.give,
    )
    await ownership.start()
    try:
        yield ownership, consumers
    finally:
        await ownership.stop()


async def test_replicas_share_the_partitions_and_a_leaving_one_hands_its_share_over(
    backbone: Backbone, eventually: Any
) -> None:
    async with replica(backbone, "state-a") as (a, consumed_a):
        assert consumed_a.partitions == set(range(PARTITIONS)), "alone, it holds them all"
        async with replica(backbone, "state-b") as (b, consumed_b):
            await eventually(
                lambda: _held(a, b),
                lambda held: held[0] | held[1] == set(range(PARTITIONS)) and all(held),
                timeout_s=10,
            )
            assert not set(a.held) & set(b.held), "never two holders"
            assert consumed_a.partitions == set(a.held)
            assert consumed_b.partitions == set(b.held)
        # b stopped: it released its leases, so a takes them within a round or two.
        await eventually(lambda: _held(a), lambda held: held[0] == set(range(PARTITIONS)))
        assert consumed_b.partitions == set(), "b consumes nothing after it stopped"


async def test_partitions_whose_work_failed_to_start_are_let_go_and_claimed_again(
    backbone: Backbone, eventually: Any
) -> None:
    consumers = Consumers(failures=1)
    ownership = PartitionOwnership(
        await key_value(backbone.js, STATE_OWNERSHIP_BUCKET),
        "state-a",
        PARTITIONS,
        lease_ttl_s=STATE_LEASE_TTL_S,
        renew_interval_s=0.2,
        on_taken=consumers.take,
        on_given=consumers.give,
    )
    await ownership.start()
    try:
        assert ownership.held == {}, "nothing is held without its consumers"
        assert consumers.partitions == set()
        await eventually(lambda: _held(ownership), lambda held: held[0] == set(range(PARTITIONS)))
        assert consumers.partitions == set(range(PARTITIONS))
        assert consumers.failures == 0
    finally:
        await ownership.stop()


async def _held(*replicas: PartitionOwnership) -> list[set[int]]:
    return [set(r.held) for r in replicas]


async def take_over(leases: KeyValue, key: str, member: bytes) -> int:
    """Writes another member into a lease, as if it had expired and been claimed: one
    compare-and-set, tried again if the holder renewed in between."""
    for _ in range(20):
        entry = await leases.get(key)
        with contextlib.suppress(KeyWrongLastSequenceError):
            return await leases.update(key, member, last=entry.revision)
    raise AssertionError("the holder kept renewing in between")


@dataclass(frozen=True)
class NewOwner:
    epoch: int

    async def confirm(self) -> None:
        return None


async def test_a_replica_whose_lease_moved_cannot_overwrite_the_new_owners_state(
    backbone: Backbone,
) -> None:
    leases = await key_value(backbone.js, STATE_OWNERSHIP_BUCKET)
    states = await key_value(backbone.js, STATE_TWINS_BUCKET)
    async with replica(backbone, "state-a") as (a, _):
        old = a.fence(0)
        old_store = StateStore(states, cache_twins=100)

        def report(value: str) -> Any:
            def mutate(state: state_pb2.TwinState) -> bool:
                state.model_id = value
                return True

            return mutate

        await old_store.update("fenced-1", report("by a"), old)
        # a stalls; its lease expires and b claims the partition (a newer epoch) and writes.
        epoch_b = await take_over(leases, f"{PARTITION_KEY_PREFIX}0", b"state-b")
        assert epoch_b > old.epoch
        new_store = StateStore(states, cache_twins=100)
        await new_store.update("fenced-1", report("by b"), NewOwner(epoch_b))
        # a wakes with a batch in hand: its cached revision is stale, the stored document
        # carries b's epoch, and the lease confirms the partition is b's.
        with pytest.raises(FencedError):
            await old_store.update("fenced-1", report("by a, late"), old)
        stored = await new_store.read("fenced-1")
        assert stored is not None
        assert (stored.model_id, stored.owner_epoch) == ("by b", epoch_b)
        assert not a.holds(0), "a knows it lost the partition"
