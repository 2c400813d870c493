"""The sweep service's gRPC surface: submit, follow, cancel and read sweeps that run as jobs."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from twinstack.api.simulation.v1 import sweep_pb2, sweep_pb2_grpc
from twinstack.common.access import PrincipalKind
from twinstack.common.catalog import ModelCatalog
from twinstack.common.errors import (
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from twinstack.common.events import SWEEP_CHANGED, EventPublisher
from twinstack.common.gatekeeper import TwinScope, current_ids, current_principal, current_scope
from twinstack.common.kv_watch import stop_watcher
from twinstack.common.quotas import QuotaOverrides, no_overrides, quota_of, require_quota
from twinstack.simulation.records import Stored, SweepRecord, SweepRecords, SweepState, sweep_key
from twinstack.simulation.results_store import (
    ResultsStore,
    job_name,
    part_name,
    sweep_prefix,
)
from twinstack.simulation.scheduler import SweepScheduler
from twinstack.simulation.sweep_messages import STATE_OF_MESSAGE, spec_of, sweep_message
from twinstack.simulation.sweep_planner import SweepPlanner, SweepRequest, is_sweep_id

SERVICE_NAME = sweep_pb2.DESCRIPTOR.services_by_name["SweepService"].full_name
DEFAULT_SUBMITTER = "anonymous"
SUBMITTER = re.compile(r"^[A-Za-z0-9._@:-]{1,300}$")
MAX_REQUEST_ID_CHARS = 128
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# How long a submit waits for a concurrent submit of the same request id to record its sweep.
CLAIM_WAIT_S = 5.0


def _sweep_id(value: str) -> str:
    if not is_sweep_id(value):
        raise InvalidArgumentError(
            "invalid sweep id", [FieldViolation("sweep_id", "32 lowercase hex digits")]
        )
    return value


def _submitter(value: str) -> str:
    """Who submits: the authenticated caller (whatever label the request gives), or the label
    given where authentication is off."""
    principal = current_principal()
    if principal.kind is not PrincipalKind.ANONYMOUS:
        return principal.subject
    return _submitter_filter(value or DEFAULT_SUBMITTER)


def _submitter_filter(value: str) -> str:
    if not SUBMITTER.match(value):
        raise InvalidArgumentError(
            "invalid submitter",
            [FieldViolation("submitter", "1 to 300 of letters, digits and ._@:-")],
        )
    return value


def _page_token(stored: Stored) -> str:
    key = f"{stored.record.created_at!r}|{stored.record.sweep_id}"
    return base64.urlsafe_b64encode(key.encode()).decode()


def _after_token(token: str) -> tuple[float, str] | None:
    if not token:
        return None
    try:
        created, sweep_id = base64.urlsafe_b64decode(token.encode()).decode().split("|")
        return float(created), _sweep_id(sweep_id)
    except (ValueError, InvalidArgumentError) as error:
        raise InvalidArgumentError(
            "invalid page token", [FieldViolation("page.page_token", "not a token of ListSweeps")]
        ) from error


def _wrong_state(record: SweepRecord, message: str) -> FailedPreconditionError:
    return FailedPreconditionError(
        message,
        [FieldViolation("sweep_id", f"sweep {record.sweep_id} is {record.state.value}")],
        violation_type="SWEEP_STATE",
    )


def sweep_in_scope(record: SweepRecord, scope: TwinScope, catalog: ModelCatalog) -> bool:
    """Whether ``scope`` covers every twin the sweep forked (a sweep of a built-in model forks
    none), each of the model it had when forked."""
    if scope.every_twin:
        return True
    twins = json.loads(record.provenance_json or "{}").get("snapshot", {}).get("twins", [])
    return all(scope.admits_twin(catalog, twin["twin_id"], twin["model_id"]) for twin in twins)


@dataclass(frozen=True)
class SweepQuotas:
    """What one tenant may have queued and running at once (docs/limits.md#tenant-quotas)."""

    max_active_sweeps: int
    max_active_scenario_steps: int
    # Tenants' own figures, where the platform's administrators set them.
    overrides: QuotaOverrides = no_overrides


class SweepServicer(sweep_pb2_grpc.SweepServiceServicer):
    def __init__(
        self,
        planner: SweepPlanner,
        records: SweepRecords,
        store: ResultsStore,
        scheduler: SweepScheduler,
        events: EventPublisher,
        *,
        catalog: ModelCatalog,
        quotas: SweepQuotas,
    ) -> None:
        self._catalog = catalog
        self._quotas = quotas
        self._planner = planner
        self._records = records
        self._store = store
        self._scheduler = scheduler
        self._events = events

    def _visible(self, record: SweepRecord) -> bool:
        # Another tenant's sweep reads exactly as one that does not exist.
        return record.tenant == current_principal().tenant and sweep_in_scope(
            record, current_scope(), self._catalog
        )

    async def _get(self, sweep_id: str) -> Stored:
        stored = await self._records.get(_sweep_id(sweep_id))
        # Outside the caller's scope a sweep reads exactly as one that does not exist.
        if stored is None or not self._visible(stored.record):
            raise NotFoundError("sweep", sweep_id, f"no sweep {sweep_id}")
        return stored

    async def _submit(self, request: Any) -> tuple[Stored, bool]:
        """Plans, stores the job, claims the request id and queues; (the sweep, created)."""
        submitter = _submitter(request.submitter)
        # Request ids are the submitter's own, and submitters are named within their tenant.
        claimant = current_ids().inner(submitter)
        if len(request.request_id) > MAX_REQUEST_ID_CHARS:
            raise InvalidArgumentError(
                "request id too long",
                [FieldViolation("request_id", f"at most {MAX_REQUEST_ID_CHARS} characters")],
            )
        if request.request_id:
            # A retried submit gets its sweep back, whatever the quotas say by now.
            earlier = await self._records.claimed(claimant, request.request_id)
            if earlier is not None:
                return await self._earlier(earlier), False
        self._scheduler.require_ray()
        spec_message = request.spec
        planned = await self._planner.plan(
            SweepRequest(
                spec=spec_of(spec_message),
                model=spec_message.model,
                twin_ids=list(spec_message.twins.twin_ids),
                query=spec_message.twins.query,
                submitted=json_format.MessageToDict(spec_message, preserving_proto_field_name=True),
            )
        )
        job = planned.job
        plan = planned.plan
        tenant = current_principal().tenant
        scenario_steps = plan.scenario_count * plan.run.steps
        await self._require_quotas(tenant, scenario_steps)
        # The job before the record: a driver that sees the record always finds its job.
        await self._store.put(job_name(job.sweep_id, tenant), job.to_json())
        if request.request_id:
            earlier = await self._records.claim_request(claimant, request.request_id, job.sweep_id)
            if earlier is not None:
                return await self._earlier(earlier), False
        record = SweepRecord(
            sweep_id=job.sweep_id,
            state=SweepState.QUEUED,
            submitter=submitter,
            request_id=request.request_id,
            spec=json_format.MessageToDict(spec_message, preserving_proto_field_name=True),
            created_at=time.time(),
            scenarios_total=plan.scenario_count,
            chunks_total=-(-plan.scenario_count // plan.scenarios_per_task),
            provenance_json=job.provenance_json,
            results_uri=self._store.uri(sweep_prefix(job.sweep_id, tenant)),
            keep_rows=plan.spec.keep_rows,
            tenant=tenant,
            scenario_steps=scenario_steps,
        )
        stored = await self._records.create(record)
        await self._publish(stored)
        self._scheduler.wake()
        return stored, True

    async def _require_quotas(self, tenant: str, scenario_steps: int) -> None:
        """Refuses a sweep that would take the tenant's queued and running sweeps, or their
        scenario-steps, over its quotas (QUOTA_EXCEEDED)."""
        quotas = self._quotas
        active = [s.record for s in await self._scheduler.active() if s.record.tenant == tenant]
        require_quota(
            tenant,
            held=len(active),
            adding=1,
            maximum=quota_of(
                quotas.overrides, tenant, "max_active_sweeps", quotas.max_active_sweeps
            ),
            quota="TWINSTACK_TENANT_MAX_ACTIVE_SWEEPS",
            what="queued and running sweeps",
        )
        require_quota(
            tenant,
            held=sum(record.scenario_steps for record in active),
            adding=scenario_steps,
            maximum=quota_of(
                quotas.overrides,
                tenant,
                "max_active_scenario_steps",
                quotas.max_active_scenario_steps,
            ),
            quota="TWINSTACK_TENANT_MAX_ACTIVE_SCENARIO_STEPS",
            what="scenario-steps queued and running",
        )

    async def _earlier(self, sweep_id: str) -> Stored:
        deadline = time.monotonic() + CLAIM_WAIT_S
        while (stored := await self._records.get(sweep_id)) is None:
            if time.monotonic() > deadline:
                raise UnavailableError(
                    "the same request is being submitted; retry", retry_after_s=1
                )
            await asyncio.sleep(0.1)
        return stored

    async def _publish(self, stored: Stored) -> None:
        await self._events.publish(
            SWEEP_CHANGED,
            (stored.record.sweep_id,),
            sweep_message(stored),
            msg_id=f"{stored.record.sweep_id}.{stored.revision}",
        )

    async def SubmitSweep(
        self, request: sweep_pb2.SubmitSweepRequest, context: Any
    ) -> sweep_pb2.SubmitSweepResponse:
        stored, created = await self._submit(request)
        return sweep_pb2.SubmitSweepResponse(sweep=sweep_message(stored), created=created)

    async def GetSweep(
        self, request: sweep_pb2.GetSweepRequest, context: Any
    ) -> sweep_pb2.GetSweepResponse:
        return sweep_pb2.GetSweepResponse(sweep=sweep_message(await self._get(request.sweep_id)))

    async def ListSweeps(
        self, request: sweep_pb2.ListSweepsRequest, context: Any
    ) -> sweep_pb2.ListSweepsResponse:
        page_size = request.page.page_size or DEFAULT_PAGE_SIZE
        if not 0 < page_size <= MAX_PAGE_SIZE:
            raise InvalidArgumentError(
                "page too large",
                [FieldViolation("page.page_size", f"between 1 and {MAX_PAGE_SIZE}")],
            )
        states = set()
        for index, value in enumerate(request.states):
            state = STATE_OF_MESSAGE.get(value)
            if state is None:
                raise InvalidArgumentError(
                    "unknown state", [FieldViolation(f"states[{index}]", "not a sweep state")]
                )
            states.add(state)
        submitter = _submitter_filter(request.submitter) if request.submitter else ""
        after = _after_token(request.page.page_token)
        matching = [
            stored
            async for stored in self._records.all()
            if (not states or stored.record.state in states)
            and (not submitter or stored.record.submitter == submitter)
            and self._visible(stored.record)
        ]
        # Newest first; the page token is the last sweep returned.
        matching.sort(key=lambda s: (s.record.created_at, s.record.sweep_id), reverse=True)
        if after is not None:
            matching = [s for s in matching if (s.record.created_at, s.record.sweep_id) < after]
        page = matching[:page_size]
        response = sweep_pb2.ListSweepsResponse(sweeps=[sweep_message(s) for s in page])
        if len(matching) > page_size:
            response.page.next_page_token = _page_token(page[-1])
        return response

    async def _watch(self, sweep_id: str, after_revision: int) -> AsyncIterator[sweep_pb2.Sweep]:
        await self._get(sweep_id)
        watcher = await self._records.bucket.watch(sweep_key(sweep_id))
        try:
            async for entry in watcher:
                if entry is None or not entry.value:
                    continue
                stored = Stored(SweepRecord.from_bytes(entry.value), entry.revision or 0)
                if stored.revision > after_revision:
                    yield sweep_message(stored)
                if stored.record.state.terminal:
                    return
        finally:
            await stop_watcher(watcher)

    async def WatchSweep(
        self, request: sweep_pb2.WatchSweepRequest, context: Any
    ) -> AsyncIterator[sweep_pb2.WatchSweepResponse]:
        async for sweep in self._watch(request.sweep_id, request.after_revision):
            yield sweep_pb2.WatchSweepResponse(sweep=sweep)

    async def CancelSweep(
        self, request: sweep_pb2.CancelSweepRequest, context: Any
    ) -> sweep_pb2.CancelSweepResponse:
        stored = await self._get(request.sweep_id)

        def cancel(record: SweepRecord) -> SweepRecord:
            if record.state.terminal:
                raise _wrong_state(record, "the sweep already ended")
            return record.ended(SweepState.CANCELLED)

        cancelled = await self._records.change(stored.record.sweep_id, cancel)
        assert cancelled is not None  # cancel() never declines; the record exists
        await self._publish(cancelled)
        if cancelled.record.attempt:
            # The driver notices within a lease interval; stopping its job frees the CPUs now.
            await self._scheduler.stop_driver(cancelled.record)
        return sweep_pb2.CancelSweepResponse(sweep=sweep_message(cancelled))

    async def ReadSweepResults(
        self, request: sweep_pb2.ReadSweepResultsRequest, context: Any
    ) -> AsyncIterator[sweep_pb2.ReadSweepResultsResponse]:
        record = (await self._get(request.sweep_id)).record
        if record.state is not SweepState.SUCCEEDED:
            raise _wrong_state(record, "results are read once the sweep succeeded")
        if not record.keep_rows:
            raise FailedPreconditionError(
                "the sweep kept summaries only (GetSweep has them); it has no rows",
                [FieldViolation("sweep_id", f"sweep {record.sweep_id} kept no rows")],
                violation_type="SWEEP_SUMMARIES_ONLY",
            )
        if request.first_part > record.chunks_total:
            raise InvalidArgumentError(
                "no such part",
                [FieldViolation("first_part", f"the sweep has {record.chunks_total} parts")],
            )
        prefix = sweep_prefix(record.sweep_id, record.tenant)
        for index in range(request.first_part, record.chunks_total):
            name = part_name(index)
            offset = 0
            pieces = self._store.read(prefix + name)
            previous: bytes | None = None
            async for piece in pieces:
                if previous is not None:
                    yield sweep_pb2.ReadSweepResultsResponse(
                        part=name, part_index=index, offset=offset, data=previous
                    )
                    offset += len(previous)
                previous = piece
            yield sweep_pb2.ReadSweepResultsResponse(
                part=name, part_index=index, offset=offset, data=previous or b"", last_piece=True
            )

    async def RunSweep(
        self, request: sweep_pb2.RunSweepRequest, context: Any
    ) -> AsyncIterator[sweep_pb2.RunSweepResponse]:
        stored, _ = await self._submit(request)
        async for sweep in self._watch(stored.record.sweep_id, 0):
            yield sweep_pb2.RunSweepResponse(sweep=sweep)
