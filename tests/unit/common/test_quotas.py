"""Per-tenant quotas: counts, rates and concurrent calls (pure logic)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2

from twinstack.common.access import ANONYMOUS, Principal, PrincipalKind
from twinstack.common.errors import LimitExceededError, QuotaExceededError
from twinstack.common.limits import ConcurrencyLimit, caller_of
from twinstack.common.quotas import TenantRate, require_quota


def test_a_count_quota_refuses_what_would_go_over_it_naming_tenant_and_setting() -> None:
    require_quota("plant-a", held=4, adding=1, maximum=5, quota="TWINSTACK_Q", what="twins")
    with pytest.raises(QuotaExceededError) as raised:
        require_quota("plant-a", held=5, adding=1, maximum=5, quota="TWINSTACK_Q", what="twins")
    error = raised.value
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.metadata == {
        "tenant": "plant-a", "quota": "TWINSTACK_Q", "maximum": "5", "requested": "6",
    }  # fmt: skip
    (failure,) = error.details()
    assert isinstance(failure, error_details_pb2.QuotaFailure)
    assert failure.violations[0].subject == "tenant:plant-a"
    with pytest.raises(QuotaExceededError, match="adds 30"):
        require_quota("plant-a", held=80, adding=30, maximum=100, quota="Q", what="steps")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_rate_lets_a_burst_through_then_pays_off_its_debt() -> None:
    clock = Clock()
    rate = TenantRate(100.0, 2.0, quota="TWINSTACK_R", what="points", clock=clock)
    assert rate.wait_s("a") == 0
    rate.take("a", 150)  # within the burst of 200
    assert rate.wait_s("a") == 0
    rate.take("a", 250)  # a request larger than what is left still passes, into debt
    assert rate.wait_s("a") == pytest.approx(2.01)
    assert rate.wait_s("b") == 0, "each tenant has its own bucket"
    clock.now += 2.5
    assert rate.wait_s("a") == 0
    clock.now += 3600
    rate.take("a", 200)
    assert rate.wait_s("a") > 0, "an idle hour saves up one burst, no more"


async def test_a_rate_holds_a_request_briefly_then_refuses_with_when_to_come_back() -> None:
    clock = Clock()
    rate = TenantRate(10.0, 1.0, quota="TWINSTACK_R", what="points", clock=clock)
    rate.take("a", 100)
    with pytest.raises(QuotaExceededError) as raised:
        await rate.wait_turn("a", max_wait_s=1.0)
    assert raised.value.retry_after_s == pytest.approx(9.1)
    assert isinstance(raised.value.details()[1], error_details_pb2.RetryInfo)
    held = TenantRate(1000.0, 1.0, quota="TWINSTACK_R", what="points")
    held.take("a", 1010)
    await asyncio.wait_for(held.wait_turn("a", max_wait_s=1.0), timeout=5)
    assert held.wait_s("a") == 0


def test_concurrent_calls_are_bounded_per_caller_per_tenant_and_in_all() -> None:
    limit = ConcurrencyLimit(
        "Watches", per_caller=(2, "PER_CALLER"), per_tenant=(3, "PER_TENANT"), total=(4, "TOTAL")
    )
    first = limit.acquire("user:a", "t1")
    limit.acquire("user:a", "t1")
    with pytest.raises(LimitExceededError, match="2 Watches"):
        limit.acquire("user:a", "t1")
    third = limit.acquire("user:b", "t1")
    with pytest.raises(QuotaExceededError) as raised:
        limit.acquire("user:c", "t1")
    assert raised.value.quota == "PER_TENANT"
    limit.acquire("user:d", "t2")
    with pytest.raises(LimitExceededError) as total:
        limit.acquire("user:e", "t2")
    assert total.value.limit == "TOTAL"
    first.release()
    first.release()  # idempotent
    third.release()
    limit.acquire("user:c", "t1")


def test_an_anonymous_caller_is_counted_by_its_host_and_others_by_principal() -> None:
    assert caller_of(ANONYMOUS, "ipv4:10.0.0.5:5311") == "ipv4:10.0.0.5"
    user = Principal("user:ann", "default", PrincipalKind.USER)
    assert caller_of(user, "ipv4:10.0.0.5:5311") == "user:ann"


def test_a_tenant_given_its_own_quotas_is_held_to_them_and_the_others_to_the_settings() -> None:
    own = {("big", "ingest_points_per_s"): 1000.0, ("shut", "ingest_points_per_s"): 0.0}
    own[("big", "max_watches")] = 5.0

    def overrides(tenant: str, name: str) -> float | None:
        return own.get((tenant, name))

    clock = Clock()
    rate = TenantRate(
        10.0,
        1.0,
        quota="TWINSTACK_R",
        what="points",
        clock=clock,
        overrides=overrides,
        name="ingest_points_per_s",
    )
    rate.take("big", 500)
    rate.take("small", 500)
    assert rate.wait_s("big") == 0, "a burst of 1000 points"
    assert rate.wait_s("small") == pytest.approx(49.1)
    assert rate.wait_s("shut") == float("inf"), "a rate of 0 lets nothing through"

    limit = ConcurrencyLimit(
        "Watches",
        per_caller=(100, "PER_CALLER"),
        per_tenant=(1, "PER_TENANT"),
        total=(100, "TOTAL"),
        overrides=overrides,
        name="max_watches",
    )
    for caller in "abcde":
        limit.acquire(caller, "big")
    limit.acquire("f", "small")
    for tenant in ("big", "small"):
        with pytest.raises(QuotaExceededError):
            limit.acquire("g", tenant)


async def test_a_tenant_with_a_rate_of_zero_is_told_to_come_back_later() -> None:
    rate = TenantRate(
        10.0,
        1.0,
        quota="TWINSTACK_R",
        what="points",
        overrides=lambda tenant, name: 0.0,
        name="ingest_points_per_s",
    )
    with pytest.raises(QuotaExceededError) as raised:
        await rate.wait_turn("shut", max_wait_s=1.0)
    assert raised.value.retry_after_s == 86_400.0
