"""Sweeps as jobs (``client.sweeps``): submit, follow, cancel, and read results.

A sweep runs on the cluster whatever happens to the caller: :meth:`Sweeps.watch` can be dropped
and resumed (it resumes by itself after a lost connection), and results are read in Parquet
parts into a local directory, never all into memory.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

from twinstack.api.simulation.v1 import simulation_pb2, sweep_pb2
from twinstack.sdk._simulation import INTEGRATORS, SAMPLERS, Range, choice, selection
from twinstack.sdk._transport import (
    AsyncArea,
    Paged,
    SyncArea,
    Unary,
    async_call,
    async_pages,
    sync_call,
    sync_pages,
)
from twinstack.sdk.errors import ApiError

TERMINAL_STATES = frozenset(
    {
        sweep_pb2.SWEEP_STATE_SUCCEEDED,
        sweep_pb2.SWEEP_STATE_FAILED,
        sweep_pb2.SWEEP_STATE_CANCELLED,
    }
)
"""States a sweep does not leave."""

STATES: dict[str, Any] = {
    "queued": sweep_pb2.SWEEP_STATE_QUEUED,
    "running": sweep_pb2.SWEEP_STATE_RUNNING,
    "succeeded": sweep_pb2.SWEEP_STATE_SUCCEEDED,
    "failed": sweep_pb2.SWEEP_STATE_FAILED,
    "cancelled": sweep_pb2.SWEEP_STATE_CANCELLED,
}
"""State names :meth:`Sweeps.list` filters by."""

# A watch that lost its connection waits this long before resuming (then doubles, up to 10 s).
_RESUME_DELAY_S = 0.5
_RESUMABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


def state_name(state: int) -> str:
    """``succeeded``, ``running``... of a SweepState value."""
    for name, value in STATES.items():
        if value == state:
            return name
    return "unspecified"


def sweep_spec(
    model: str = "",
    *,
    twin_ids: Sequence[str] = (),
    query: str = "",
    horizon_s: float,
    step_s: float,
    sampler: str = "random",
    ranges: Mapping[str, Range] | None = None,
    samples: int = 0,
    replicates: int = 1,
    overrides: Mapping[str, float] | None = None,
    input_noise: Mapping[str, float] | None = None,
    input_schedule: Sequence[tuple[float, Mapping[str, float]]] = (),
    thresholds: Mapping[str, float] | None = None,
    integrator: str = "rk4",
    seed: int = 0,
    summaries_only: bool = False,
    objective: str = "",
    maximize: bool = False,
    best_count: int = 0,
) -> sweep_pb2.SweepSpec:
    """A sweep's specification.

    Args:
        model: A built-in model (see ``client.simulation.list_builtin_models``); empty to
            sweep the twins' own models.
        twin_ids: The twins to fork (when ``model`` is empty); their snapshot is pinned at
            submission.
        query: And/or the twins a registry query selects.
        horizon_s: How far ahead each scenario runs.
        step_s: The integration step.
        sampler: ``random``, ``grid``, ``lhs`` or ``sobol``.
        ranges: Parameter or input name → ``(min, max)``, or ``(min, max, levels)`` for the
            grid sampler.
        samples: Points to draw (the grid's size follows from its levels).
        replicates: Monte Carlo replicates of each point (with ``input_noise``).
        overrides: Name → value fixed in every scenario.
        input_noise: Input name → standard deviation of noise added per step.
        input_schedule: ``(at_s, {input: value})`` changes during the run.
        thresholds: Observable → threshold (time above it, first crossing).
        integrator: ``rk4`` or ``euler``.
        seed: Seed of sampling and noise; the same spec gives the same results.
        summaries_only: Store no rows, only the summaries (for 10^8 scenarios and more).
        objective: A KPI to rank the best scenarios by.
        maximize: Rank largest first (default: smallest first).
        best_count: How many best scenarios to keep (default 10).
    """
    return sweep_pb2.SweepSpec(
        model=model,
        twins=selection(twin_ids, query),
        sampler=choice(SAMPLERS, sampler, "sampler"),
        ranges={
            name: simulation_pb2.ParameterRange(
                min=span[0], max=span[1], levels=int(span[2]) if len(span) > 2 else 0
            )
            for name, span in (ranges or {}).items()
        },
        samples=samples,
        replicates=replicates,
        overrides=overrides or {},
        input_noise=input_noise or {},
        input_schedule=[
            simulation_pb2.InputStep(at_s=at_s, values=values) for at_s, values in input_schedule
        ],
        horizon_s=horizon_s,
        step_s=step_s,
        integrator=choice(INTEGRATORS, integrator, "integrator"),
        seed=seed,
        thresholds=thresholds or {},
        rows=sweep_pb2.RESULT_ROWS_SUMMARIES_ONLY if summaries_only else sweep_pb2.RESULT_ROWS_ALL,
        objective=sweep_pb2.Objective(kpi=objective, maximize=maximize),
        best_count=best_count,
    )


def submit(
    spec: sweep_pb2.SweepSpec, *, request_id: str = "", submitter: str = ""
) -> Unary[sweep_pb2.Sweep]:
    """Records and queues a sweep; it runs on the cluster whatever happens to this client.

    Args:
        spec: What to sweep (see :func:`sweep_spec`).
        request_id: Makes a retried submit safe: the same id returns the sweep it created
            first. Default: a new random id.
        submitter: Leave empty: the service records the authenticated caller (a label only
            where authentication is off; default ``anonymous``).

    Returns:
        The sweep, queued (or as it is now, if ``request_id`` matched an earlier submit).
    """
    request = sweep_pb2.SubmitSweepRequest(
        spec=spec, request_id=request_id or uuid.uuid4().hex, submitter=submitter
    )
    return Unary("sweeps", "SubmitSweep", request, lambda r: r.sweep)


def get(sweep_id: str) -> Unary[sweep_pb2.Sweep]:
    """A sweep's state, progress and (once it succeeded) summary."""
    request = sweep_pb2.GetSweepRequest(sweep_id=sweep_id)
    return Unary("sweeps", "GetSweep", request, lambda r: r.sweep)


def list_sweeps(
    states: Sequence[str] = (), *, submitter: str = "", page_size: int = 100
) -> Paged[sweep_pb2.Sweep]:
    """Sweeps, newest first.

    Args:
        states: Only these (``queued``, ``running``, ``succeeded``, ``failed``, ``cancelled``).
        submitter: Only this submitter's.
        page_size: Sweeps fetched per call.
    """
    request = sweep_pb2.ListSweepsRequest(
        states=[choice(STATES, state, "state") for state in states], submitter=submitter
    )
    return Paged("sweeps", "ListSweeps", request, "sweeps", page_size)


def cancel(sweep_id: str) -> Unary[sweep_pb2.Sweep]:
    """Stops a queued or running sweep and frees its cluster resources.

    Raises:
        FailedPreconditionError: The sweep already ended.
    """
    request = sweep_pb2.CancelSweepRequest(sweep_id=sweep_id)
    return Unary("sweeps", "CancelSweep", request, lambda r: r.sweep)


def _part_path(directory: Path, part: str) -> Path:
    # The server names parts part-<index>.parquet; never let a name leave the directory.
    name = Path(part).name
    if not name.endswith(".parquet") or name != part:
        raise ApiError(grpc.StatusCode.INTERNAL, f"unexpected result part name {part!r}")
    return directory / name


class _PartWriter:
    """Writes streamed pieces into part files, each complete before it gets its name."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.parts = 0

    def feed(self, message: sweep_pb2.ReadSweepResultsResponse) -> None:
        path = _part_path(self.directory, message.part)
        partial = path.with_suffix(".parquet.partial")
        with partial.open("r+b" if message.offset else "wb") as file:
            file.seek(message.offset)
            file.write(message.data)
        if message.last_piece:
            partial.replace(path)
            self.parts += 1


def _first_missing_part(directory: Path) -> int:
    """Parts are streamed in order: resume after the last complete one."""
    done = sorted(directory.glob("part-*.parquet")) if directory.exists() else []
    return len(done)


class Sweeps(SyncArea):
    """Sweeps as jobs (``client.sweeps``)."""

    submit = sync_call(submit)
    get = sync_call(get)
    list = sync_pages(list_sweeps)
    cancel = sync_call(cancel)

    def watch(
        self, sweep_id: str, *, after_revision: int = 0, resume: bool = True
    ) -> Iterator[sweep_pb2.Sweep]:
        """The sweep now, then every change until it ends.

        Args:
            sweep_id: The sweep.
            after_revision: Only changes after this revision.
            resume: Resume by itself after a lost connection (from the last revision seen).
        """
        delay = _RESUME_DELAY_S
        while True:
            method = self._transport.method("sweeps", "WatchSweep")
            request = sweep_pb2.WatchSweepRequest(sweep_id=sweep_id, after_revision=after_revision)
            call = method(request, metadata=self._transport.config.metadata)
            try:
                for message in call:
                    after_revision = message.sweep.revision
                    delay = _RESUME_DELAY_S
                    yield message.sweep
                return
            except grpc.RpcError as error:
                if not resume or error.code() not in _RESUMABLE:
                    raise ApiError.from_rpc_error(error) from error
            finally:
                call.cancel()
            time.sleep(delay)
            delay = min(10.0, delay * 2)

    def run(
        self,
        spec: sweep_pb2.SweepSpec,
        *,
        request_id: str = "",
        submitter: str = "",
        on_progress: Callable[[sweep_pb2.Sweep], None] | None = None,
    ) -> sweep_pb2.Sweep:
        """Submits a sweep and waits for it to end (interrupting the wait leaves it running).

        Returns:
            The sweep as it ended: check ``state`` (succeeded, failed or cancelled).
        """
        sweep = self.submit(spec, request_id=request_id, submitter=submitter)
        for update in self.watch(sweep.sweep_id):
            sweep = update
            if on_progress is not None:
                on_progress(update)
        return sweep

    def download_results(self, sweep_id: str, directory: str | Path) -> Path:
        """Streams a succeeded sweep's Parquet parts into ``directory`` (resuming a partial
        download); returns the directory, which ``pyarrow.dataset.dataset`` reads."""
        target = Path(directory)
        writer = _PartWriter(target)
        request = sweep_pb2.ReadSweepResultsRequest(
            sweep_id=sweep_id, first_part=_first_missing_part(target)
        )
        call = self._transport.method("sweeps", "ReadSweepResults")(
            request, metadata=self._transport.config.metadata
        )
        try:
            for message in call:
                writer.feed(message)
        except grpc.RpcError as error:
            raise ApiError.from_rpc_error(error) from error
        return target


class AsyncSweeps(AsyncArea):
    """Sweeps as jobs (``client.sweeps`` of an :class:`AsyncClient`)."""

    submit = async_call(submit)
    get = async_call(get)
    list = async_pages(list_sweeps)
    cancel = async_call(cancel)

    async def watch(
        self, sweep_id: str, *, after_revision: int = 0, resume: bool = True
    ) -> AsyncIterator[sweep_pb2.Sweep]:
        """The sweep now, then every change until it ends (see :meth:`Sweeps.watch`).

        Args:
            sweep_id: The sweep.
            after_revision: Only changes after this revision.
            resume: Resume by itself after a lost connection (from the last revision seen).
        """
        import asyncio

        delay = _RESUME_DELAY_S
        while True:
            method = self._transport.method("sweeps", "WatchSweep")
            request = sweep_pb2.WatchSweepRequest(sweep_id=sweep_id, after_revision=after_revision)
            call = method(request, metadata=self._transport.config.metadata)
            try:
                async for message in call:
                    after_revision = message.sweep.revision
                    delay = _RESUME_DELAY_S
                    yield message.sweep
                return
            except grpc.RpcError as error:
                if not resume or error.code() not in _RESUMABLE:
                    raise ApiError.from_rpc_error(error) from error
            finally:
                call.cancel()
            await asyncio.sleep(delay)
            delay = min(10.0, delay * 2)

    async def run(
        self,
        spec: sweep_pb2.SweepSpec,
        *,
        request_id: str = "",
        submitter: str = "",
        on_progress: Callable[[sweep_pb2.Sweep], None] | None = None,
    ) -> sweep_pb2.Sweep:
        """Submits a sweep and waits for it to end (see :meth:`Sweeps.run`)."""
        sweep = await self.submit(spec, request_id=request_id, submitter=submitter)
        async for update in self.watch(sweep.sweep_id):
            sweep = update
            if on_progress is not None:
                on_progress(update)
        return sweep

    async def download_results(self, sweep_id: str, directory: str | Path) -> Path:
        """Streams a succeeded sweep's Parquet parts into ``directory`` (see
        :meth:`Sweeps.download_results`)."""
        target = Path(directory)
        writer = _PartWriter(target)
        request = sweep_pb2.ReadSweepResultsRequest(
            sweep_id=sweep_id, first_part=_first_missing_part(target)
        )
        call = self._transport.method("sweeps", "ReadSweepResults")(
            request, metadata=self._transport.config.metadata
        )
        try:
            async for message in call:
                writer.feed(message)
        except grpc.RpcError as error:
            raise ApiError.from_rpc_error(error) from error
        return target
