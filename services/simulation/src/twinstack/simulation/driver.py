"""The driver of one sweep: a Ray job on the cluster, never part of a gRPC call or a pod.

``python -m twinstack.simulation.driver <sweep id> <attempt>`` is what the simulation service
submits through Ray's Jobs API. The driver reads the sweep's job from the results store, skips
the chunks the ledger has, and keeps a window of Ray tasks running over the rest. Each task
computes one chunk, writes its rows as a Parquet part and records the chunk in the ledger with
its partial summary; the driver only counts. When every chunk is recorded it merges the
partials in chunk order into the summary and marks the sweep succeeded.

While it runs, the driver renews its lease and follows its record: if the sweep is cancelled,
or another driver took over (the record names a newer attempt), it cancels its tasks and
exits. A worker or node lost mid-task is retried by Ray, then by the driver; a task that raised
fails the sweep, since the same inputs would raise again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import ray
import ray.exceptions

from twinstack.common.access import DEFAULT_TENANT
from twinstack.common.events import SWEEP_CHANGED, EventPublisher
from twinstack.common.logs import configure_logging
from twinstack.common.nats import (
    SWEEP_CHUNKS_BUCKET,
    SWEEP_DRIVERS_BUCKET,
    SWEEPS_BUCKET,
    Backbone,
    NatsConnection,
    connect_nats,
    key_value,
)
from twinstack.common.tasks import cancel_and_wait
from twinstack.simulation.compiler import use_cache_dir
from twinstack.simulation.job import SweepJob
from twinstack.simulation.records import (
    ChunkLedger,
    DriverLeases,
    LedgerEntry,
    Stored,
    SweepRecord,
    SweepRecords,
    SweepState,
)
from twinstack.simulation.results_store import (
    job_name,
    open_results_store,
    parquet_bytes,
    part_name,
    sweep_prefix,
)
from twinstack.simulation.settings import SimulationSettings
from twinstack.simulation.summaries import Partial, chunk_partial, merge
from twinstack.simulation.sweep import SweepPlan, chunk_inputs, chunk_table, run_scenarios
from twinstack.simulation.sweep_messages import summary_document, sweep_message

logger = logging.getLogger(__name__)

# A lost worker is retried by Ray this often, then by the driver up to CHUNK_ATTEMPTS times.
TASK_RETRIES = 3
CHUNK_ATTEMPTS = 10


@dataclass(frozen=True)
class StoreConfig:
    """How a worker reaches NATS and the results store (picklable, travels with the task)."""

    # The simulation service's NATS connection: workers write the ledger and results as it does.
    nats: NatsConnection
    results_uri: str
    request_timeout_s: float
    # The sweep's tenant: its parts go under that tenant's results path.
    tenant: str = DEFAULT_TENANT


def _chunk_bounds(plan: SweepPlan, index: int) -> tuple[int, int]:
    start = index * plan.scenarios_per_task
    return start, min(start + plan.scenarios_per_task, plan.scenario_count)


def _final_rows(plan: SweepPlan) -> list[int]:
    return [row for row, name in enumerate(plan.kpi_names) if name.endswith(".final")]


# One plan per job in each worker process: rebuilding it per task would redo the same work.
_plans: dict[str, SweepPlan] = {}


def compute_chunk(job: SweepJob, index: int) -> tuple[Partial, bytes | None]:
    """One chunk's partial summary and (unless summaries only) its Parquet part."""
    plan = _plans.get(job.sweep_id)
    if plan is None:
        _plans.clear()
        plan = _plans[job.sweep_id] = job.plan()
    start, stop = _chunk_bounds(plan, index)
    inputs = chunk_inputs(plan, start, stop)
    kpis = run_scenarios(plan.target, plan.run, plan.spec.thresholds, inputs)
    partial = chunk_partial(
        kpis,
        inputs.values[list(plan.ranged)],
        start,
        job.objective(plan),
        _final_rows(plan),
    )
    part = None
    if plan.spec.keep_rows:
        part = parquet_bytes(chunk_table(plan, start, inputs, kpis), job.provenance_json)
    return partial, part


async def _store_chunk(
    config: StoreConfig, sweep_id: str, index: int, partial: Partial, part: bytes | None
) -> None:
    client = await connect_nats(config.nats, f"twinstack-sweep-{sweep_id}-chunk")
    try:
        js = client.jetstream(timeout=config.request_timeout_s)
        if part is not None:
            store = open_results_store(config.results_uri, js)
            await store.put(sweep_prefix(sweep_id, config.tenant) + part_name(index), part)
        ledger = ChunkLedger(await key_value(js, SWEEP_CHUNKS_BUCKET))
        await ledger.record(
            sweep_id, index, LedgerEntry(len(part) if part else 0, partial.to_bytes())
        )
    finally:
        await client.close()


@ray.remote(max_retries=TASK_RETRIES)  # type: ignore[untyped-decorator]
def run_chunk(job: SweepJob, index: int, config: StoreConfig) -> int:
    """One Ray task: computes a chunk, stores its part, then records it in the ledger.

    The part is written before the ledger entry, so a recorded chunk always has its rows; a
    task that dies in between is run again and writes the same bytes.
    """
    partial, part = compute_chunk(job, index)
    asyncio.run(_store_chunk(config, job.sweep_id, index, partial, part))
    return index


class SupersededError(Exception):
    """The sweep was cancelled, or another driver took it over."""


class Driver:
    """Runs one attempt of one sweep to its end."""

    def __init__(
        self, settings: SimulationSettings, backbone: Backbone, sweep_id: str, attempt: int
    ) -> None:
        self._settings = settings
        self._backbone = backbone
        self._sweep_id = sweep_id
        self._attempt = attempt
        self._events = EventPublisher(backbone.js)
        self._stop = asyncio.Event()
        self._dirty = asyncio.Event()
        self._config = StoreConfig(
            NatsConnection.from_settings(settings),
            settings.results_uri,
            settings.nats_request_timeout_s,
        )

    async def run(self) -> int:
        js = self._backbone.js
        self._records = SweepRecords(await key_value(js, SWEEPS_BUCKET))
        self._ledger = ChunkLedger(await key_value(js, SWEEP_CHUNKS_BUCKET))
        self._leases = DriverLeases(await key_value(js, SWEEP_DRIVERS_BUCKET))
        store = open_results_store(self._settings.results_uri, js)
        stored = await self._records.get(self._sweep_id)
        if stored is None or not self._mine(stored.record):
            logger.info("not this driver's sweep any more; exiting")
            return 0
        await self._leases.renew(self._sweep_id, self._attempt)
        tenant = stored.record.tenant
        self._config = replace(self._config, tenant=tenant)
        try:
            job = SweepJob.from_json(await store.get(job_name(self._sweep_id, tenant)))
        except FileNotFoundError:
            # Another driver could not find it either: fail now rather than once per attempt.
            with contextlib.suppress(SupersededError):
                await self._update(
                    lambda r: r.ended(SweepState.FAILED, "its job is gone from the results store")
                )
            return 1
        plan = job.plan()
        chunks = -(-plan.scenario_count // plan.scenarios_per_task)
        done = await self._ledger.done(self._sweep_id)
        self._done = done
        self._retried = 0
        heartbeat = asyncio.create_task(self._heartbeat(), name="sweep-heartbeat")
        progress = asyncio.create_task(self._report_progress(plan), name="sweep-progress")
        try:
            await self._update(
                lambda r: replace(
                    r,
                    started_at=r.started_at or time.time(),
                    chunks_done=len(done),
                    scenarios_done=self._scenarios_done(plan, done),
                )
            )
            await self._run_chunks(job, plan, chunks)
            await self._finish(job, plan, chunks)
        except SupersededError:
            logger.info("sweep cancelled or taken over; driver exits")
        except ray.exceptions.RayTaskError as error:
            reason = f"a chunk failed: {error.cause!r}"[:2000]
            logger.error("sweep failed", extra={"sweep_id": self._sweep_id, "reason": reason})
            with contextlib.suppress(SupersededError):
                await self._update(lambda r: r.ended(SweepState.FAILED, reason))
        finally:
            await cancel_and_wait(heartbeat)
            await cancel_and_wait(progress)
        return 0

    def _mine(self, record: SweepRecord) -> bool:
        return record.state is SweepState.RUNNING and record.attempt == self._attempt

    @staticmethod
    def _scenarios_done(plan: SweepPlan, done: set[int]) -> int:
        return sum(
            min(plan.scenarios_per_task, plan.scenario_count - i * plan.scenarios_per_task)
            for i in done
        )

    async def _update(self, change: Any) -> Stored | None:
        """Changes the record while it is this driver's; SupersededError once it is not."""

        def guarded(record: SweepRecord) -> SweepRecord | None:
            if not self._mine(record):
                return None
            updated: SweepRecord = change(record)
            return updated

        stored = await self._records.change(self._sweep_id, guarded)
        if stored is None:
            self._stop.set()
            raise SupersededError
        await self._events.publish(
            SWEEP_CHANGED,
            (self._sweep_id,),
            sweep_message(stored),
            msg_id=f"{self._sweep_id}.{stored.revision}",
        )
        return stored

    async def _heartbeat(self) -> None:
        interval = self._settings.sweep_lease_interval_s
        while True:
            try:
                await self._leases.renew(self._sweep_id, self._attempt)
                stored = await self._records.get(self._sweep_id)
                if stored is None or not self._mine(stored.record):
                    self._stop.set()
                    return
            except Exception:
                logger.warning("lease renewal failed; retrying", exc_info=True)
            await asyncio.sleep(interval)

    async def _report_progress(self, plan: SweepPlan) -> None:
        # Progress is written at most every interval: a record write per chunk would cost more
        # than the chunks of a fast sweep.
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            progress = self._progress(plan, set(self._done), self._retried)
            with contextlib.suppress(SupersededError):
                await self._update(progress)
            await asyncio.sleep(self._settings.sweep_progress_interval_s)

    def _progress(
        self, plan: SweepPlan, done: set[int], retried: int
    ) -> Callable[[SweepRecord], SweepRecord]:
        def change(record: SweepRecord) -> SweepRecord:
            return replace(
                record,
                chunks_done=len(done),
                scenarios_done=self._scenarios_done(plan, done),
                retried_chunks=retried,
            )

        return change

    async def _run_chunks(self, job: SweepJob, plan: SweepPlan, chunks: int) -> None:
        job_ref = ray.put(job)
        remaining = iter([i for i in range(chunks) if i not in self._done])
        attempts: dict[int, int] = {}
        pending: dict[asyncio.Future[Any], tuple[int, Any]] = {}
        window = self._settings.sweep_tasks_in_flight

        def submit(index: int) -> None:
            ref = run_chunk.remote(job_ref, index, self._config)
            pending[asyncio.wrap_future(ref.future())] = (index, ref)

        stop = asyncio.ensure_future(self._stop.wait())
        try:
            for index in remaining:
                submit(index)
                if len(pending) >= window:
                    break
            while pending:
                finished, _ = await asyncio.wait(
                    [*pending, stop], return_when=asyncio.FIRST_COMPLETED
                )
                if stop in finished:
                    raise SupersededError
                for future in finished:
                    index, _ = pending.pop(future)
                    try:
                        future.result()
                    except ray.exceptions.RayTaskError:
                        raise
                    except ray.exceptions.RayError as error:
                        # A worker, node or object lost beyond Ray's own retries: run it again.
                        attempts[index] = attempts.get(index, 0) + 1
                        if attempts[index] >= CHUNK_ATTEMPTS:
                            raise
                        logger.warning("chunk %d lost (%r); running it again", index, error)
                        self._retried += 1
                        submit(index)
                        continue
                    self._done.add(index)
                    self._dirty.set()
                    for following in remaining:
                        submit(following)
                        break
        except BaseException:
            # Cancelled, superseded or failed: free the cluster. force=True because a running
            # numba kernel can only be stopped with its worker.
            for future, (_, ref) in pending.items():
                ray.cancel(ref, force=True)
                future.cancel()
            raise
        finally:
            stop.cancel()

    async def _finish(self, job: SweepJob, plan: SweepPlan, chunks: int) -> None:
        objective = job.objective(plan)
        merged: Partial | None = None
        part_bytes = 0
        # In chunk order, one entry at a time: the summary does not depend on which chunk
        # finished first, and the driver never holds more than one partial besides the merge.
        for index in range(chunks):
            entry = await self._ledger.entry(self._sweep_id, index)
            part_bytes += entry.part_bytes
            partial = Partial.from_bytes(entry.partial)
            merged = partial if merged is None else merge(merged, partial, objective)
        assert merged is not None  # a sweep has at least one chunk
        summary = summary_document(plan, merged, objective)
        done = set(range(chunks))
        retried = self._retried
        await self._update(
            lambda r: replace(
                r,
                state=SweepState.SUCCEEDED,
                ended_at=time.time(),
                chunks_done=chunks,
                scenarios_done=self._scenarios_done(plan, done),
                retried_chunks=r.retried_chunks + retried,
                results_bytes=part_bytes,
                summary=summary,
            )
        )
        await self._leases.release(self._sweep_id)
        logger.info(
            "sweep succeeded",
            extra={"sweep_id": self._sweep_id, "scenarios": plan.scenario_count, "chunks": chunks},
        )


async def drive(settings: SimulationSettings, sweep_id: str, attempt: int) -> int:
    use_cache_dir(settings.kernel_cache_dir)
    backbone = await Backbone.connect(settings, f"twinstack-sweep-driver-{sweep_id}")
    try:
        # Inside a Ray job, RAY_ADDRESS names the job's cluster.
        ray.init(log_to_driver=False)
        return await Driver(settings, backbone, sweep_id, attempt).run()
    finally:
        await backbone.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m twinstack.simulation.driver <sweep id> <attempt>", file=sys.stderr)
        return 2
    # A driver serves no calls: nothing of the callers' authentication applies to it (its
    # sweep was authorized when it was submitted).
    settings = SimulationSettings(auth_mode="disabled")
    configure_logging(settings.log_level, settings.log_format, service="sweep-driver")
    return asyncio.run(drive(settings, args[0], int(args[1])))


if __name__ == "__main__":
    sys.exit(main())
