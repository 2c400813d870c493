"""The devices the gateway has heard from: counted in memory as messages pass, written to the
``devices`` KV bucket every few seconds (not per message), and read back by any replica."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Iterable, Mapping

from nats.js.kv import KeyValue

from twinstack.api.devices.v1 import devices_pb2
from twinstack.common.kv_watch import scan
from twinstack.common.nats import NATS_UNAVAILABLE_ERRORS
from twinstack.common.tasks import cancel_and_wait

logger = logging.getLogger(__name__)


def _key(tenant: str, device_id: str) -> str:
    # Device ids hold characters KV keys may not (Sparkplug ids, endpoint URLs).
    return f"{tenant}.{hashlib.blake2b(device_id.encode(), digest_size=12).hexdigest()}"


class DeviceDirectory:
    """Device records of every tenant.

    Args:
        bucket: The ``devices`` bucket.
        flush_interval_s: How often changed records are written.
        silent_after_s: An MQTT device not heard from for this long is listed offline.
    """

    def __init__(self, bucket: KeyValue, *, flush_interval_s: float, silent_after_s: float) -> None:
        self._bucket = bucket
        self._flush_interval_s = flush_interval_s
        self._silent_after_s = silent_after_s
        self._records: dict[str, devices_pb2.Device] = {}
        self._dirty: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Counting goes on from what an earlier leader recorded.
        for entry in await scan(self._bucket):
            if entry.value:
                self._records[entry.key] = devices_pb2.Device.FromString(entry.value)
        self._task = asyncio.create_task(self._flush_periodically(), name="device directory")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        with contextlib.suppress(*NATS_UNAVAILABLE_ERRORS):
            await self.flush()

    def heard(
        self,
        tenant: str,
        device_id: str,
        protocol: devices_pb2.Protocol,
        twin_ids: Iterable[str],
        *,
        rejected: str | None = None,
        error: str | None = None,
        online: bool | None = None,
        details: Mapping[str, str] | None = None,
        message: bool = True,
    ) -> None:
        """Records a message from a device (or, with ``message`` false, only a change of its
        connection): ``rejected`` says why the message was refused, ``error`` what went wrong
        with the connection."""
        key = _key(tenant, device_id)
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = devices_pb2.Device(device_id=device_id, protocol=protocol)
        for twin_id in twin_ids:
            if twin_id not in record.twin_ids:
                record.twin_ids.append(twin_id)
        if message:
            record.messages += 1
            record.last_seen_time.GetCurrentTime()
        if rejected is not None:
            record.rejected_messages += 1
        if rejected is not None or error is not None:
            record.last_error = (rejected or error or "")[:1024]
        if online is not None:
            record.status = (
                devices_pb2.DEVICE_STATUS_ONLINE if online else devices_pb2.DEVICE_STATUS_OFFLINE
            )
        if details is not None:
            record.details.clear()
            record.details.update(details)
        self._dirty.add(key)

    async def flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        try:
            for key in sorted(dirty):
                await self._bucket.put(key, self._records[key].SerializeToString())
        except BaseException:
            self._dirty |= dirty  # written next time
            raise

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval_s)
            try:
                await self.flush()
            except NATS_UNAVAILABLE_ERRORS:
                logger.warning("device directory not written; trying again", exc_info=True)

    async def list(self, tenant: str, protocol: devices_pb2.Protocol) -> list[devices_pb2.Device]:
        """The devices of ``tenant`` as stored (any replica answers from the bucket)."""
        found = []
        now_s = time.time()
        for entry in await scan(self._bucket, f"{tenant}.*"):
            device = devices_pb2.Device.FromString(entry.value or b"")
            if protocol and device.protocol != protocol:
                continue
            if device.protocol == devices_pb2.PROTOCOL_MQTT:
                silent_s = now_s - device.last_seen_time.ToNanoseconds() / 1e9
                device.status = (
                    devices_pb2.DEVICE_STATUS_OFFLINE
                    if silent_s > self._silent_after_s
                    else devices_pb2.DEVICE_STATUS_ONLINE
                )
            found.append(device)
        return sorted(found, key=lambda d: d.device_id)
