"""Per-tenant quotas: how much one tenant may hold or send (docs/limits.md#tenant-quotas).

Limits bound one request or one caller; quotas bound a tenant, so that one team's load
cannot take the platform from the others. A quota reached is RESOURCE_EXHAUSTED with a
``QuotaFailure`` for ``tenant:<name>`` (:class:`~twinstack.common.errors.QuotaExceededError`).

Counts (twins, open Watches, active sweeps) are checked against what the replica knows when the
request arrives; a rate (ingested points per second) is a token bucket per tenant and replica.

Every tenant has the quotas of the settings unless the platform's administrators gave it others
(``UpdateTenant``): :data:`QuotaOverrides` looks those up by tenant and the name of the quota's
field in ``TenantQuotas``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from twinstack.common.errors import QuotaExceededError

# A rate of 0 never lets anything through; its callers are told to come back after a day.
MAX_RETRY_AFTER_S = 86_400.0

# (tenant, quota name such as "max_twins") -> the tenant's own figure, or None for the setting.
QuotaOverrides = Callable[[str, str], "float | None"]


def no_overrides(tenant: str, name: str) -> float | None:
    """Every tenant has the settings' quotas."""
    return None


def quota_of(overrides: QuotaOverrides, tenant: str, name: str, setting: float) -> float:
    """A tenant's quota: its own figure if it has one, else the setting's."""
    found = overrides(tenant, name)
    return setting if found is None else found


def require_quota(
    tenant: str, *, held: float, adding: float, maximum: float, quota: str, what: str
) -> None:
    """Refuses ``adding`` more of ``what`` to a tenant that holds ``held`` of at most ``maximum``.

    Raises:
        QuotaExceededError: The tenant would go over ``maximum`` (``quota`` is its setting).
    """
    if held + adding > maximum:
        raise QuotaExceededError(
            f"tenant {tenant!r} holds {held:,g} {what}; its quota is {maximum:,g}"
            + (f" and this request adds {adding:,g}" if adding != 1 else ""),
            tenant=tenant,
            quota=quota,
            maximum=maximum,
            requested=held + adding,
        )


class TenantRate:
    """A token bucket per tenant: ``per_s`` on average, bursts of ``burst_s`` seconds' worth.

    A request is let through while the tenant's bucket is not in debt, and takes what it needs
    even past zero; the debt is paid off before the next one passes. So a request larger than a
    burst still passes (once), and the long-run rate holds.

    Args:
        per_s: The tenant's sustained rate.
        burst_s: How many seconds of the rate an idle tenant may send at once.
        quota: The rate's setting, for the callers.
        what: What is counted, for the messages ("points").
        clock: Monotonic seconds (tests step it).
        overrides: Tenants' own rates, under ``name``.
        name: The rate's name among a tenant's quotas.
    """

    def __init__(
        self,
        per_s: float,
        burst_s: float,
        *,
        quota: str,
        what: str,
        clock: Callable[[], float] = time.monotonic,
        overrides: QuotaOverrides = no_overrides,
        name: str = "",
    ) -> None:
        self._per_s = per_s
        self._burst_s = burst_s
        self._overrides = overrides
        self._name = name
        self._quota = quota
        self._what = what
        self._clock = clock
        # tenant -> (tokens, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    def per_s(self, tenant: str) -> float:
        """The tenant's rate."""
        return quota_of(self._overrides, tenant, self._name, self._per_s)

    def _tokens(self, tenant: str, now: float) -> float:
        per_s = self.per_s(tenant)
        capacity = per_s * self._burst_s
        tokens, then = self._buckets.get(tenant, (capacity, now))
        return min(capacity, tokens + (now - then) * per_s)

    def wait_s(self, tenant: str) -> float:
        """Seconds until the tenant's next request may pass (0: now; never, for a rate of 0)."""
        tokens = self._tokens(tenant, self._clock())
        if tokens > 0:
            return 0.0
        per_s = self.per_s(tenant)
        return (-tokens + 1) / per_s if per_s > 0 else float("inf")

    def take(self, tenant: str, amount: float) -> None:
        """Counts ``amount`` sent by the tenant (after :meth:`wait_turn`)."""
        now = self._clock()
        self._buckets[tenant] = (self._tokens(tenant, now) - amount, now)

    async def wait_turn(self, tenant: str, *, max_wait_s: float) -> None:
        """Returns once the tenant may send again, waiting at most ``max_wait_s``.

        Raises:
            QuotaExceededError: The tenant is over its rate for longer than ``max_wait_s``;
                ``RetryInfo`` says how long.
        """
        deadline = self._clock() + max_wait_s
        while (wait_s := self.wait_s(tenant)) > 0:
            if self._clock() + wait_s > deadline:
                per_s = self.per_s(tenant)
                raise QuotaExceededError(
                    f"tenant {tenant!r} sends more than its {per_s:,g} {self._what}/s",
                    tenant=tenant,
                    quota=self._quota,
                    maximum=per_s,
                    retry_after_s=min(wait_s, MAX_RETRY_AFTER_S),
                )
            # Holding the request is the back pressure: its caller sends nothing meanwhile.
            await asyncio.sleep(wait_s)
