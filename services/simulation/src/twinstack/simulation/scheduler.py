"""The sweep queue and the drivers' supervision, run by every simulation replica.

Each tick, a replica admits queued sweeps while there is room (at most ``max_running_sweeps``
on the cluster, and ``max_running_sweeps_per_submitter`` per submitter, oldest first) and checks
that every running sweep's driver is alive (its lease renewed, for the attempt the record
names). A sweep whose driver was lost (its process, its node or the Ray head died) gets a new
driver, which resumes from the ledger. Every admission and takeover is a compare-and-set on the
record, so however many replicas tick at once, each happens once.

While the Ray Jobs API does not answer, nothing is admitted or taken over, and the sweep service
reports NOT_SERVING; it recovers by itself when Ray is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from nats.js.kv import KeyValue
from opentelemetry import metrics

from twinstack.common.errors import UnavailableError
from twinstack.common.kv_view import KvView
from twinstack.common.metrics import Attributes, gauge
from twinstack.common.tasks import cancel_and_wait
from twinstack.simulation.ray_jobs import RayJobs
from twinstack.simulation.records import (
    SWEEP_KEY_PREFIX,
    DriverLeases,
    Stored,
    SweepRecord,
    SweepRecords,
    SweepState,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueuePolicy:
    max_running: int
    max_running_per_submitter: int
    tick_s: float
    lease_timeout_s: float
    driver_start_timeout_s: float
    max_driver_attempts: int


# Every replica follows every sweep, so each counts all progress: aggregate with max, not sum.
_meter = metrics.get_meter("twinstack.simulation")
_SCENARIOS = _meter.create_counter(
    "twinstack.simulation.scenarios",
    description="Scenarios computed by sweeps (as their progress is recorded)",
)
_SWEEPS_ENDED = _meter.create_counter(
    "twinstack.simulation.sweeps_ended", description="Sweeps that ended, by final state"
)
_SCHEDULERS: weakref.WeakSet[SweepScheduler] = weakref.WeakSet()
gauge(
    "twinstack.simulation",
    "twinstack.simulation.sweeps",
    "Sweeps queued and running on the cluster, by state",
    lambda: [reading for s in list(_SCHEDULERS)[:1] for reading in s.queue_readings()],
)
gauge(
    "twinstack.simulation",
    "twinstack.simulation.queue.oldest_age",
    "How long the oldest queued sweep has waited to start (0 with none queued)",
    lambda: [(s.oldest_queued_age_s(), {}) for s in list(_SCHEDULERS)[:1]],
    unit="s",
)


def _count_progress(before: Stored | None, after: SweepRecord) -> None:
    # A sweep first seen (at start, or from the bucket's history) is the baseline: its past
    # progress was counted by whoever followed it then.
    if before is None:
        return
    if after.scenarios_done > before.record.scenarios_done:
        _SCENARIOS.add(after.scenarios_done - before.record.scenarios_done)
    if after.state.terminal:
        _SWEEPS_ENDED.add(1, {"state": after.state.name.lower()})


class SweepScheduler:
    """Admits queued sweeps and keeps running ones driven.

    Args:
        records: Sweep records.
        leases: Drivers' leases.
        jobs: The Ray Jobs API.
        policy: Limits and timings.
        report_ray: Told whether Ray can take work, whenever that changes.
    """

    def __init__(
        self,
        records: SweepRecords,
        leases: DriverLeases,
        jobs: RayJobs,
        policy: QueuePolicy,
        report_ray: Callable[[bool], Awaitable[None]],
    ) -> None:
        self._records = records
        self._leases = leases
        self._jobs = jobs
        self._policy = policy
        self._report_ray = report_ray
        self.ray_available = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Queued and running sweeps, kept current by one watch of the bucket: a scan per tick
        # would open a JetStream consumer per tick on every replica.
        self._active: dict[str, Stored] = {}
        self._view = KvView(records.bucket, SWEEP_KEY_PREFIX + "*")
        self._view.subscribe(self._follow, on_lost=self._active.clear)

        _SCHEDULERS.add(self)

    def queue_readings(self) -> list[tuple[float, Attributes]]:
        """Sweeps queued and running (for the gauges)."""
        states = Counter(s.record.state for s in self._active.values())
        return [
            (float(states[state]), {"state": state.name.lower()})
            for state in (SweepState.QUEUED, SweepState.RUNNING)
        ]

    def oldest_queued_age_s(self) -> float:
        created = [
            s.record.created_at
            for s in self._active.values()
            if s.record.state is SweepState.QUEUED
        ]
        return max(0.0, time.time() - min(created)) if created else 0.0

    def _follow(self, entry: KeyValue.Entry) -> None:
        sweep_id = entry.key.removeprefix(SWEEP_KEY_PREFIX)
        if not entry.value:
            self._active.pop(sweep_id, None)
            return
        stored = Stored(SweepRecord.from_bytes(entry.value), entry.revision or 0)
        before = self._active.get(sweep_id)
        _count_progress(before, stored.record)
        if stored.record.state.terminal:
            self._active.pop(sweep_id, None)
        else:
            self._active[sweep_id] = stored
        # A new sweep, or one that left the running set, may let a queued one in; progress
        # updates change nothing the queue depends on.
        if before is None or before.record.state is not stored.record.state:
            self._wake.set()

    async def start(self) -> None:
        # Present from the start: dashboards see 0, not an absent series.
        _SCENARIOS.add(0)
        for state in SweepState:
            if state.terminal:
                _SWEEPS_ENDED.add(0, {"state": state.name.lower()})
        await self._report_ray(False)
        await self._view.start()
        self._task = asyncio.create_task(self._loop(), name="sweep-scheduler")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await self._view.stop()

    def wake(self) -> None:
        """Ticks now (a sweep was submitted or cancelled)."""
        self._wake.set()

    async def stop_driver(self, record: SweepRecord) -> None:
        """Stops the driver of the record's attempt (a cancelled sweep's)."""
        await self._jobs.stop(record.sweep_id, record.attempt)

    def require_ray(self) -> None:
        """UNAVAILABLE (with a retry delay) while Ray cannot take work."""
        if not self.ray_available:
            raise UnavailableError(
                "the Ray cluster that runs sweeps cannot be reached; retry later",
                retry_after_s=max(1.0, self._policy.tick_s * 5),
            )

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                logger.exception("sweep scheduling failed; trying again next tick")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._policy.tick_s)
            self._wake.clear()

    async def active(self) -> list[Stored]:
        """The queued and running sweeps."""
        if not self._view.following:
            # The watch ended; scan until the service is restarted (a rare, logged condition).
            return [s async for s in self._records.all() if not s.record.state.terminal]
        await self._view.loaded()
        return list(self._active.values())

    async def tick(self) -> None:
        available = await self._jobs.available()
        if available != self.ray_available:
            self.ray_available = available
            logger.info("ray jobs api %s", "available" if available else "unavailable")
            await self._report_ray(available)
        if not available:
            return
        now = time.time()
        active = await self.active()
        active.sort(key=lambda s: (s.record.created_at, s.record.sweep_id))
        running = [s for s in active if s.record.state is SweepState.RUNNING]
        for stored in running:
            await self._supervise(stored, now)
        per_submitter = Counter(s.record.submitter for s in running)
        admitted = len(running)
        for stored in active:
            if stored.record.state is not SweepState.QUEUED:
                continue
            if admitted >= self._policy.max_running:
                break
            submitter = stored.record.submitter
            if per_submitter[submitter] >= self._policy.max_running_per_submitter:
                continue
            if await self._launch(stored, now):
                admitted += 1
                per_submitter[submitter] += 1

    async def _launch(self, stored: Stored, now: float) -> bool:
        record = stored.record
        attempt = record.attempt + 1
        launched = await self._records.replace(
            stored, replace(record, state=SweepState.RUNNING, attempt=attempt, launched_at=now)
        )
        if launched is None:  # another replica got there first
            return False
        try:
            await self._jobs.submit(record.sweep_id, attempt)
        except Exception:
            # The record names the attempt; with no driver renewing its lease, supervision
            # launches another once the start timeout has passed.
            logger.exception("sweep driver not submitted", extra={"sweep_id": record.sweep_id})
        return True

    async def _supervise(self, stored: Stored, now: float) -> None:
        record = stored.record
        lease = await self._leases.get(record.sweep_id)
        if (
            lease is not None
            and lease.attempt == record.attempt
            and now - lease.renewed_at < self._policy.lease_timeout_s
        ):
            return
        # A driver that has not renewed yet may still be starting (a cold worker imports numba
        # and the kernels): it is lost only once its job ended or the start timeout passed.
        starting = now - record.launched_at < self._policy.driver_start_timeout_s
        if starting and not await self._jobs.finished(record.sweep_id, record.attempt):
            return
        logger.warning(
            "sweep driver lost; starting another",
            extra={"sweep_id": record.sweep_id, "attempt": record.attempt},
        )
        if record.attempt >= self._policy.max_driver_attempts:
            reason = f"its driver was lost {record.attempt} times"
            await self._records.replace(stored, record.ended(SweepState.FAILED, reason))
            return
        await self._jobs.stop(record.sweep_id, record.attempt)
        await self._launch(stored, now)
