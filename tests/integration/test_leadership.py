"""One leader among replicas by a KV lease, against a real nats-server."""

from __future__ import annotations

from typing import Any

from nats.js.api import KeyValueConfig

from twinstack.common.leadership import Leadership
from twinstack.common.nats import Backbone

TTL_S = 2.0


async def test_one_leader_at_a_time_and_a_standby_takes_over(
    backbone: Backbone, eventually: Any
) -> None:
    bucket = await backbone.js.create_key_value(KeyValueConfig(bucket="leases", ttl=TTL_S))
    leading: dict[str, bool] = {}
    started: list[str] = []

    def replica(name: str, *, fail_starts: int = 0) -> Leadership:
        failures = [fail_starts]

        async def gained() -> None:
            if failures[0] > 0:
                failures[0] -= 1
                raise RuntimeError("a consumer could not be bound")
            started.append(name)
            leading[name] = True

        async def lost() -> None:
            leading[name] = False

        return Leadership(
            bucket,
            "leader",
            name,
            ttl_s=TTL_S,
            renew_interval_s=0.2,
            on_gained=gained,
            on_lost=lost,
        )

    # a fails its first start: it lets go and takes the lease back on a later round.
    a, b = replica("a", fail_starts=1), replica("b")
    await a.start()
    await a.wait_until(leading=True, timeout_s=10)
    await b.start()
    assert started == ["a"]
    assert leading == {"a": True}
    # b stays a standby while a renews: five renewals (longer than the TTL) pass meanwhile.
    first = (await bucket.get("leader")).revision or 0

    async def renewals() -> int:
        return ((await bucket.get("leader")).revision or 0) - first

    await eventually(renewals, lambda count: count >= 5 or b.leading)
    assert not b.leading
    assert started == ["a"]

    await a.stop()  # a clean stop hands over at once, not after the TTL
    assert leading["a"] is False
    await b.wait_until(leading=True, timeout_s=5 * 0.2 + 2)
    assert started == ["a", "b"]

    # b dies without a word (its renewals stop): a new replica takes over after the TTL.
    assert b._task is not None
    b._task.cancel()
    c = replica("c")
    await c.start()
    await c.wait_until(leading=True, timeout_s=TTL_S * 3)
    assert started == ["a", "b", "c"]
    await c.stop()
