"""The state service's gRPC surface, and its start and stop."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence

import grpc
from nats.js.kv import KeyValue

from twinstack.api.state.v1 import state_pb2, state_pb2_grpc
from twinstack.common.catalog import ModelCatalog
from twinstack.common.errors import (
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)
from twinstack.common.events import EventPublisher
from twinstack.common.gatekeeper import (
    acknowledger,
    current_ids,
    current_principal,
    current_scope,
    require_in_scope,
    require_platform_admin,
)
from twinstack.common.ids import require_twin_id, twin_id_violation
from twinstack.common.influx import InfluxError, InfluxStore
from twinstack.common.limits import ConcurrencyLimit, caller_of
from twinstack.common.nats import Backbone, JetStreamLayout
from twinstack.common.pagination import next_page, requested_page
from twinstack.common.quotas import QuotaOverrides, no_overrides
from twinstack.modeling.document import ModelError
from twinstack.modeling.resolve import ResolvedModel
from twinstack.state.alert_index import AlertIndex, alert_key
from twinstack.state.cluster import cluster_status, layout_streams
from twinstack.state.desired import DesiredValues
from twinstack.state.history import plan, series_messages
from twinstack.state.rules import RULE_RESOURCE, RuleBook
from twinstack.state.settings import StateSettings
from twinstack.state.store import StateStore
from twinstack.state.watching import watch_states

logger = logging.getLogger(__name__)

SERVICE_NAME = state_pb2.DESCRIPTOR.services_by_name["StateService"].full_name
STATE_RESOURCE = "twinstack.io/TwinState"
ALERT_RESOURCE = "twinstack.io/Alert"
MAX_BATCH_GET = 1000

Context = grpc.aio.ServicerContext


class StateServicer(state_pb2_grpc.StateServiceServicer):
    def __init__(  # noqa: PLR0917 - the service's whole wiring
        self,
        settings: StateSettings,
        backbone: Backbone,
        store: StateStore,
        catalog: ModelCatalog,
        rules: RuleBook,
        alerts: AlertIndex,
        influx: InfluxStore,
        ownership: KeyValue,
        quotas: QuotaOverrides = no_overrides,
    ) -> None:
        self._settings = settings
        self._ownership = ownership
        self._watches = ConcurrencyLimit(
            "Watches",
            per_caller=(settings.max_watches_per_caller, "TWINSTACK_MAX_WATCHES_PER_CALLER"),
            per_tenant=(settings.tenant_max_watches, "TWINSTACK_TENANT_MAX_WATCHES"),
            total=(settings.max_watches, "TWINSTACK_MAX_WATCHES"),
            overrides=quotas,
            name="max_watches",
        )
        self._backbone = backbone
        self._store = store
        self._catalog = catalog
        self._rules = rules
        self._alerts = alerts
        self._influx = influx
        self._desired = DesiredValues(catalog, store, EventPublisher(backbone.js))

    async def GetState(
        self, request: state_pb2.GetStateRequest, context: Context[object, object]
    ) -> state_pb2.GetStateResponse:
        require_twin_id(request.twin_id)
        return state_pb2.GetStateResponse(state=await self._state_of(request.twin_id))

    def _in_scope(self, state: state_pb2.TwinState) -> bool:
        return current_scope().admits_twin(self._catalog, state.twin_id, state.model_id)

    async def _state_of(self, twin_id: str) -> state_pb2.TwinState:
        state = await self._store.read(twin_id)
        # Outside the caller's scope reads exactly as absent.
        if state is None or not self._in_scope(state):
            raise NotFoundError(
                STATE_RESOURCE, twin_id, f"nothing was reported or desired for twin {twin_id!r}"
            )
        return state

    async def BatchGetStates(
        self, request: state_pb2.BatchGetStatesRequest, context: Context[object, object]
    ) -> state_pb2.BatchGetStatesResponse:
        if len(request.twin_ids) > MAX_BATCH_GET:
            raise InvalidArgumentError(
                "too many twins", [FieldViolation("twin_ids", f"at most {MAX_BATCH_GET}")]
            )
        _require_twin_ids(request.twin_ids)
        response = state_pb2.BatchGetStatesResponse()
        for twin_id in dict.fromkeys(request.twin_ids):
            state = await self._store.read(twin_id)
            if state is None or not self._in_scope(state):
                response.missing_twin_ids.append(twin_id)
            else:
                response.states.append(state)
        return response

    async def Watch(
        self, request: state_pb2.WatchRequest, context: Context[object, object]
    ) -> AsyncIterator[state_pb2.WatchResponse]:
        _require_twin_ids(request.twin_ids)
        if len(request.twin_ids) > MAX_BATCH_GET:
            raise InvalidArgumentError(
                "too many twins", [FieldViolation("twin_ids", f"at most {MAX_BATCH_GET}")]
            )
        model_id = request.model_id
        if model_id:
            await self._require_model(model_id, "model_id")
        elif not request.twin_ids and not request.all_twins:
            raise InvalidArgumentError(
                "nothing to watch",
                [FieldViolation("twin_ids", "name twins or a model, or set all_twins")],
            )
        twin_ids = set(request.twin_ids)

        scope = current_scope()
        ids = current_ids()

        def wanted(state: state_pb2.TwinState) -> bool:
            if not ids.owns(state.twin_id):
                return False
            if not scope.admits_twin(self._catalog, state.twin_id, state.model_id):
                return False
            if not model_id and not twin_ids:
                return True
            return state.twin_id in twin_ids or (
                bool(model_id) and self._catalog.is_a(state.model_id, model_id)
            )

        # Filtering on the server by key only works when no model widens the set.
        keys = sorted(twin_ids) if not model_id else []
        principal = current_principal()
        slot = self._watches.acquire(caller_of(principal, context.peer() or ""), principal.tenant)

        # However the call ends — also when gRPC leaves this generator suspended at a yield,
        # to be closed only by the garbage collector — the slot is free at once.
        def release(_: Context[object, object]) -> None:
            slot.release()

        # grpc-stubs declare the callback as a generic class rather than a callable.
        context.add_done_callback(release)  # type: ignore[arg-type]
        try:
            # Headers now, not with the first change: a caller knows when its Watch is live.
            await context.send_initial_metadata(())
            async for state, catching_up in watch_states(
                self._backbone.js,
                keys,
                wanted,
                after_revision=request.after_revision,
                fetch_messages=self._settings.watch_fetch_messages,
                idle_timeout_s=self._settings.watch_fetch_timeout_s,
                # Its slot and consumer are freed within a fetch timeout of the caller leaving.
                caller_gone=context.done,
            ):
                yield state_pb2.WatchResponse(state=state, catching_up=catching_up)
        finally:
            slot.release()

    async def SetDesired(
        self, request: state_pb2.SetDesiredRequest, context: Context[object, object]
    ) -> state_pb2.SetDesiredResponse:
        require_twin_id(request.twin_id)
        await require_in_scope(self._catalog, request.twin_id)
        state = await self._desired.set(
            request.twin_id, request.set, request.remove, request.expected_revision
        )
        return state_pb2.SetDesiredResponse(state=state)

    async def _require_model(self, model_id: str, field: str) -> ResolvedModel:
        try:
            return await self._catalog.resolve_current(model_id)
        except ModelError as error:
            raise InvalidArgumentError(
                "unknown model", [FieldViolation(field, f"unknown model {model_id!r}")]
            ) from error

    async def QueryHistory(
        self, request: state_pb2.QueryHistoryRequest, context: Context[object, object]
    ) -> AsyncIterator[state_pb2.QueryHistoryResponse]:
        query = plan(request, self._settings.history_max_values)
        for twin_id in query.twin_ids:
            await require_in_scope(self._catalog, twin_id)
        window = state_pb2.QueryHistoryResponse().window
        window.FromNanoseconds(query.window_ns)
        for twin_id in query.twin_ids:
            try:
                results = await self._influx.query(query.influxql, query.params(twin_id))
            except InfluxError as error:
                # The server's own text stays in the log: it describes our infrastructure.
                logger.warning("history query failed", extra={"error": str(error)})
                if error.retryable:
                    raise UnavailableError("InfluxDB did not answer the history query") from error
                raise InvalidArgumentError(
                    "InfluxDB refused the history query",
                    [FieldViolation("fields", "a field cannot be read with this aggregation")],
                ) from error
            for series in series_messages(query, twin_id, results):
                response = state_pb2.QueryHistoryResponse(series=[series])
                if query.window_ns:
                    response.window.CopyFrom(window)
                yield response

    async def _rule_in_scope(self, rule: state_pb2.AlertRule) -> bool:
        """Whether the caller's scope covers every twin the rule watches: its twin, or every
        twin of its model (which no subgraph does)."""
        scope = current_scope()
        if rule.WhichOneof("scope") == "twin_id":
            return await scope.admits(self._catalog, rule.twin_id)
        return scope.admits_model(self._catalog, rule.model_id)

    async def PutAlertRule(
        self, request: state_pb2.PutAlertRuleRequest, context: Context[object, object]
    ) -> state_pb2.PutAlertRuleResponse:
        replaced = self._rules.get(request.rule.id)
        for rule in (request.rule, replaced):
            if (
                rule is not None
                and rule.WhichOneof("scope")
                and not await self._rule_in_scope(rule)
            ):
                raise PermissionDeniedError(
                    f"{current_principal().subject} may write rules of the twins in its scope only",
                    metadata={"verb": "rules.write", "rule_id": request.rule.id[:256]},
                )
        return state_pb2.PutAlertRuleResponse(rule=await self._rules.put(request.rule))

    async def ListAlertRules(
        self, request: state_pb2.ListAlertRulesRequest, context: Context[object, object]
    ) -> state_pb2.ListAlertRulesResponse:
        page = requested_page(request.page)
        rules, more = self._rules.page(page.after, page.size, current_ids().tenant)
        last = rules[-1].id if more and rules else None
        # Filtered after paging, as QueryTwins is: a page may hold fewer rules than asked.
        visible = [rule for rule in rules if await self._rule_in_scope(rule)]
        return state_pb2.ListAlertRulesResponse(rules=visible, page=next_page(last))

    async def DeleteAlertRule(
        self, request: state_pb2.DeleteAlertRuleRequest, context: Context[object, object]
    ) -> state_pb2.DeleteAlertRuleResponse:
        rule = self._rules.get(request.rule_id)
        if rule is not None and not await self._rule_in_scope(rule):
            raise NotFoundError(
                RULE_RESOURCE, request.rule_id, f"no alert rule {request.rule_id!r}"
            )
        await self._rules.delete(request.rule_id)
        return state_pb2.DeleteAlertRuleResponse()

    async def ListAlerts(
        self, request: state_pb2.ListAlertsRequest, context: Context[object, object]
    ) -> state_pb2.ListAlertsResponse:
        if request.twin_id:
            require_twin_id(request.twin_id)
        page = requested_page(request.page)
        alerts, more = self._alerts.page(
            request.twin_id, request.include_cleared, page.after, page.size, current_ids().tenant
        )
        last = alert_key(alerts[-1]) if more and alerts else None
        scope = current_scope()
        if not scope.every_twin:
            alerts = [a for a in alerts if await scope.admits(self._catalog, a.twin_id)]
        return state_pb2.ListAlertsResponse(alerts=alerts, page=next_page(last))

    async def GetClusterStatus(
        self, request: state_pb2.GetClusterStatusRequest, context: Context[object, object]
    ) -> state_pb2.GetClusterStatusResponse:
        require_platform_admin(current_principal(), "the cluster status")
        return await cluster_status(
            self._backbone.client,
            self._backbone.js,
            self._ownership,
            layout_streams(JetStreamLayout.from_settings(self._settings)),
            self._settings.telemetry_partitions,
        )

    async def AcknowledgeAlert(
        self, request: state_pb2.AcknowledgeAlertRequest, context: Context[object, object]
    ) -> state_pb2.AcknowledgeAlertResponse:
        require_twin_id(request.twin_id)
        now_ns = time.time_ns()
        acknowledged_by = acknowledger(current_principal(), request.acknowledged_by)

        def mutate(state: state_pb2.TwinState) -> bool | None:
            alert = state.alerts.get(request.rule_id)
            if alert is None:
                raise NotFoundError(
                    ALERT_RESOURCE,
                    f"{request.twin_id}/{request.rule_id}",
                    f"twin {request.twin_id!r} has no alert of rule {request.rule_id!r}",
                )
            if alert.acknowledged:
                return None
            alert.acknowledged = True
            alert.acknowledged_by = acknowledged_by
            alert.acknowledged_time.FromNanoseconds(now_ns)
            return True

        await self._state_of(request.twin_id)
        await self._store.update(request.twin_id, mutate)
        state = await self._state_of(request.twin_id)
        return state_pb2.AcknowledgeAlertResponse(alert=state.alerts[request.rule_id])


def _require_twin_ids(twin_ids: Sequence[str]) -> None:
    violations = [
        bad
        for i, twin_id in enumerate(twin_ids)
        if (bad := twin_id_violation(twin_id, f"twin_ids[{i}]")) is not None
    ]
    if violations:
        raise InvalidArgumentError("invalid twin ids", violations)
