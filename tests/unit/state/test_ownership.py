"""How the telemetry partitions are shared among the live state replicas."""

from __future__ import annotations

from collections import Counter

from twinstack.state.ownership import assignment, member_name

PARTITIONS = 64


def test_every_partition_has_one_owner_and_the_share_is_even() -> None:
    owners = assignment(PARTITIONS, ["state-a", "state-b", "state-c"])
    assert sorted(owners) == list(range(PARTITIONS))
    shares = Counter(owners.values())
    assert set(shares) == {"state-a", "state-b", "state-c"}
    assert max(shares.values()) - min(shares.values()) <= PARTITIONS // 3, shares
    assert assignment(PARTITIONS, []) == {}


def test_every_replica_computes_the_same_assignment_whatever_order_it_lists_members() -> None:
    assert assignment(PARTITIONS, ["b", "a", "c"]) == assignment(PARTITIONS, ["c", "a", "b", "a"])


def test_a_joining_or_leaving_replica_moves_only_its_own_share() -> None:
    before = assignment(PARTITIONS, ["a", "b", "c"])
    joined = assignment(PARTITIONS, ["a", "b", "c", "d"])
    moved = {p for p in before if before[p] != joined[p]}
    assert moved
    assert all(joined[p] == "d" for p in moved), "only partitions taken by the newcomer move"
    left = assignment(PARTITIONS, ["a", "c"])
    assert all(left[p] == before[p] for p in before if before[p] != "b"), "b's only"


def test_member_names_are_kv_keys_and_unique_by_default() -> None:
    assert member_name("state-7d9f.pod/0") == "state-7d9f_pod_0"
    assert member_name() != member_name(), "two replicas in one process differ"
