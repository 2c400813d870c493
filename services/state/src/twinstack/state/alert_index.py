"""Alerts of every twin, followed from the state bucket, for listing without a scan."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging

from nats.js.kv import KeyValue

from twinstack.api.state.v1 import state_pb2

logger = logging.getLogger(__name__)


def alert_key(alert: state_pb2.Alert) -> str:
    """Sort key of an alert in listings: active first, then by twin and rule."""
    return f"{0 if alert.active else 1}/{alert.twin_id}/{alert.rule_id}"


class AlertIndex:
    """Twin id to its alerts, kept current by a KV watch of the state bucket."""

    def __init__(self, bucket: KeyValue) -> None:
        self._bucket = bucket
        self._alerts: dict[str, list[state_pb2.Alert]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        watcher = await self._bucket.watch(">")
        self._task = asyncio.create_task(self._follow(watcher), name="alert-index")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is None:
                continue
            if entry.operation in ("DEL", "PURGE") or not entry.value:
                self._alerts.pop(entry.key, None)
                continue
            alerts = list(state_pb2.TwinState.FromString(entry.value).alerts.values())
            if alerts:
                self._alerts[entry.key] = alerts
            else:
                self._alerts.pop(entry.key, None)

    def page(
        self, twin_id: str, include_cleared: bool, after: str, size: int
    ) -> tuple[list[state_pb2.Alert], bool]:
        """Up to ``size`` alerts after the key ``after``, and whether more follow."""
        sources = [self._alerts.get(twin_id, [])] if twin_id else list(self._alerts.values())
        alerts = sorted(
            (a for group in sources for a in group if a.active or include_cleared), key=alert_key
        )
        keys = [alert_key(a) for a in alerts]
        start = bisect.bisect_right(keys, after) if after else 0
        return alerts[start : start + size], start + size < len(alerts)
