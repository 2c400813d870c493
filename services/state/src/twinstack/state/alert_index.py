"""Alerts of every twin, followed from the state bucket, for listing without a scan."""

from __future__ import annotations

import bisect

from nats.js.kv import KeyValue

from twinstack.api.state.v1 import state_pb2
from twinstack.common.tenancy import tenant_of
from twinstack.state.follower import BucketFollower


def alert_key(alert: state_pb2.Alert) -> str:
    """Sort key of an alert in listings: active first, then by twin and rule."""
    return f"{0 if alert.active else 1}/{alert.twin_id}/{alert.rule_id}"


class AlertIndex(BucketFollower):
    """Twin id to its alerts, kept current by a KV watch of the state bucket."""

    def __init__(self, bucket: KeyValue) -> None:
        super().__init__(bucket)
        self._alerts: dict[str, list[state_pb2.Alert]] = {}

    def apply(self, key: str, value: bytes | None, revision: int) -> None:
        state = state_pb2.TwinState.FromString(value) if value is not None else None
        alerts = list(state.alerts.values()) if state is not None else []
        if alerts:
            self._alerts[key] = alerts
        else:
            self._alerts.pop(key, None)

    def page(
        self, twin_id: str, include_cleared: bool, after: str, size: int, tenant: str
    ) -> tuple[list[state_pb2.Alert], bool]:
        """Up to ``size`` alerts of ``tenant`` (of one twin of it, if ``twin_id``) after the key
        ``after``, and whether more follow."""
        sources = (
            [self._alerts.get(twin_id, [])]
            if twin_id
            else [group for key, group in self._alerts.items() if tenant_of(key) == tenant]
        )
        alerts = sorted(
            (a for group in sources for a in group if a.active or include_cleared), key=alert_key
        )
        keys = [alert_key(a) for a in alerts]
        start = bisect.bisect_right(keys, after) if after else 0
        return alerts[start : start + size], start + size < len(alerts)
