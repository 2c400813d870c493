"""Bounds on what callers hold at once (docs/limits.md).

A long-lived call, such as a Watch that holds an ephemeral JetStream consumer, costs the
service for as long as the caller keeps it open. It is counted per caller (its principal; the
network peer's host when the call is anonymous, with authentication disabled), per tenant (a
quota) and on the replica: one client cannot take every slot, nor one team.
"""

from __future__ import annotations

from collections import Counter

from twinstack.common.access import Principal, PrincipalKind
from twinstack.common.errors import LimitExceededError
from twinstack.common.quotas import QuotaOverrides, no_overrides, quota_of, require_quota


def peer_host(peer: str) -> str:
    """``ipv4:10.0.0.5:53211`` -> ``ipv4:10.0.0.5``; ``ipv6:[::1]:53211`` -> ``ipv6:[::1]``."""
    host, _, port = peer.rpartition(":")
    return host if host and port.isdigit() else peer


def caller_of(principal: Principal, peer: str) -> str:
    """Who a call is counted against: its principal, or its peer's host when anonymous."""
    return peer_host(peer) if principal.kind is PrincipalKind.ANONYMOUS else principal.subject


class ConcurrencyLimit:
    """Counts calls in progress, in all, per tenant and per caller, and refuses one more than
    allowed.

    Args:
        what: What is counted, for the messages ("Watches").
        per_caller: Most at once per caller, and its setting's name.
        per_tenant: Most at once per tenant (a quota), and its setting's name.
        total: Most at once on this replica, and its setting's name.
        overrides: Tenants' own quotas, under ``name``.
        name: The quota's name among a tenant's quotas.
    """

    def __init__(
        self,
        what: str,
        *,
        per_caller: tuple[int, str],
        per_tenant: tuple[int, str],
        total: tuple[int, str],
        overrides: QuotaOverrides = no_overrides,
        name: str = "",
    ) -> None:
        self._what = what
        self._overrides = overrides
        self._name = name
        self._per_caller = per_caller
        self._per_tenant = per_tenant
        self._total = total
        self._by_caller: Counter[str] = Counter()
        self._by_tenant: Counter[str] = Counter()

    def acquire(self, caller: str, tenant: str) -> Slot:
        """Takes a slot for ``caller`` of ``tenant``; release it with :meth:`Slot.release`.

        Raises:
            LimitExceededError: RESOURCE_EXHAUSTED, the caller's or the replica's limit.
            QuotaExceededError: The tenant's quota.
        """
        for maximum, setting, held in (
            (*self._per_caller, self._by_caller[caller]),
            (*self._total, self._by_caller.total()),
        ):
            if held >= maximum:
                raise LimitExceededError(
                    f"{held} {self._what} open already; at most {maximum}",
                    limit=setting,
                    maximum=maximum,
                    requested=held + 1,
                    held_by_caller=True,
                )
        maximum, setting = self._per_tenant
        require_quota(
            tenant,
            held=self._by_tenant[tenant],
            adding=1,
            maximum=quota_of(self._overrides, tenant, self._name, maximum),
            quota=setting,
            what=f"open {self._what}",
        )
        self._by_caller[caller] += 1
        self._by_tenant[tenant] += 1
        return Slot(self, caller, tenant)

    def _release(self, caller: str, tenant: str) -> None:
        for counter, key in ((self._by_caller, caller), (self._by_tenant, tenant)):
            counter[key] -= 1
            if not counter[key]:
                del counter[key]


class Slot:
    """One call's share of a :class:`ConcurrencyLimit`."""

    def __init__(self, limit: ConcurrencyLimit, caller: str, tenant: str) -> None:
        self._limit = limit
        self._caller = caller
        self._tenant = tenant
        self._held = True

    def release(self) -> None:
        """Gives the slot back; later calls do nothing."""
        if self._held:
            self._held = False
            self._limit._release(self._caller, self._tenant)
