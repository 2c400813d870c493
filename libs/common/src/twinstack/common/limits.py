"""Bounds on what callers hold at once (docs/limits.md).

A long-lived call, such as a Watch that holds an ephemeral JetStream consumer, costs the
service for as long as the caller keeps it open. Until callers carry identities of their own,
"a caller" is the network peer (host, without the port): one client cannot take every slot.
"""

from __future__ import annotations

from collections import Counter

from twinstack.common.errors import LimitExceededError


def peer_host(peer: str) -> str:
    """``ipv4:10.0.0.5:53211`` -> ``ipv4:10.0.0.5``; ``ipv6:[::1]:53211`` -> ``ipv6:[::1]``."""
    host, _, port = peer.rpartition(":")
    return host if host and port.isdigit() else peer


class ConcurrencyLimit:
    """Counts calls in progress, in all and per caller, and refuses one more than allowed.

    Args:
        what: What is counted, for the messages ("Watches").
        per_caller: Most at once per caller, and its setting's name.
        total: Most at once on this replica, and its setting's name.
    """

    def __init__(self, what: str, per_caller: tuple[int, str], total: tuple[int, str]) -> None:
        self._what = what
        self._per_caller = per_caller
        self._total = total
        self._held: Counter[str] = Counter()

    def acquire(self, caller: str) -> Slot:
        """Takes a slot for ``caller``; release it with :meth:`Slot.release` (idempotent).

        Raises:
            LimitExceededError: RESOURCE_EXHAUSTED, naming the limit that was reached.
        """
        for maximum, setting, held in (
            (*self._per_caller, self._held[caller]),
            (*self._total, sum(self._held.values())),
        ):
            if held >= maximum:
                raise LimitExceededError(
                    f"{held} {self._what} open already; at most {maximum}",
                    limit=setting,
                    maximum=maximum,
                    requested=held + 1,
                    held_by_caller=True,
                )
        self._held[caller] += 1
        return Slot(self, caller)

    def _release(self, caller: str) -> None:
        self._held[caller] -= 1
        if not self._held[caller]:
            del self._held[caller]


class Slot:
    """One call's share of a :class:`ConcurrencyLimit`."""

    def __init__(self, limit: ConcurrencyLimit, caller: str) -> None:
        self._limit = limit
        self._caller = caller
        self._held = True

    def release(self) -> None:
        """Gives the slot back; later calls do nothing."""
        if self._held:
            self._held = False
            self._limit._release(self._caller)
