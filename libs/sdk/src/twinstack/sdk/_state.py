"""The state service's calls: live state, desired values, history and alerts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import datetime

import grpc

from twinstack.api.state.v1 import state_pb2
from twinstack.sdk._transport import (
    AsyncArea,
    Paged,
    Reduction,
    Streamed,
    SyncArea,
    Unary,
    async_call,
    async_pages,
    async_stream,
    sync_call,
    sync_pages,
    sync_stream,
)
from twinstack.sdk.errors import ApiError
from twinstack.sdk.values import Scalar, to_values

AGGREGATIONS = (
    "none",
    "mean",
    "min",
    "max",
    "first",
    "last",
    "count",
    "sum",
    "median",
    "stddev",
    "percentile",
)
"""The aggregations :meth:`State.query_history` accepts."""


def get_state(twin_id: str) -> Unary[state_pb2.TwinState]:
    """A twin's live state: reported and desired values, their times, and its revision.

    Raises:
        NotFoundError: No twin has this id.
    """
    request = state_pb2.GetStateRequest(twin_id=twin_id)
    return Unary("state", "GetState", request, lambda r: r.state)


def get_states(twin_ids: Sequence[str]) -> Unary[state_pb2.BatchGetStatesResponse]:
    """The live state of several twins in one call; unknown ids are listed as missing."""
    request = state_pb2.BatchGetStatesRequest(twin_ids=twin_ids)
    return Unary("state", "BatchGetStates", request)


def set_desired(
    twin_id: str,
    values: Mapping[str, Scalar],
    *,
    remove: Sequence[str] = (),
    expected_revision: int = 0,
) -> Unary[state_pb2.TwinState]:
    """Sets values the twin should reach (for devices and operators to act on).

    Args:
        twin_id: The twin.
        values: Field name → desired value.
        remove: Desired values to withdraw.
        expected_revision: Apply only if the state is still at this revision (0: always).

    Raises:
        RevisionMismatchError: The state moved past ``expected_revision``.
    """
    request = state_pb2.SetDesiredRequest(
        twin_id=twin_id, set=to_values(values), remove=remove, expected_revision=expected_revision
    )
    return Unary("state", "SetDesired", request, lambda r: r.state)


class _JoinedSeries(Reduction[list[state_pb2.HistorySeries]]):
    """Joins the chunks of each (twin, field) series the stream delivers."""

    def __init__(self) -> None:
        self._joined: dict[tuple[str, str], state_pb2.HistorySeries] = {}

    def feed(self, message: state_pb2.QueryHistoryResponse) -> bool:
        for series in message.series:
            key = (series.twin_id, series.field)
            if key in self._joined:
                self._joined[key].MergeFrom(series)
            else:
                self._joined[key] = series
        return False

    def result(self) -> list[state_pb2.HistorySeries]:
        return list(self._joined.values())


def query_history(
    twin_ids: Sequence[str],
    fields: Sequence[str],
    start: datetime,
    end: datetime,
    aggregation: str = "none",
    *,
    window_s: float | None = None,
    percentile: float = 0.0,
    max_points_per_series: int = 0,
) -> Streamed[list[state_pb2.HistorySeries]]:
    """Stored telemetry of some fields of some twins between two times.

    Args:
        twin_ids: The twins.
        fields: Their telemetry fields.
        start: From (aware datetime).
        end: To (aware datetime).
        aggregation: One of :data:`AGGREGATIONS`; anything but ``none`` needs ``window_s``.
        window_s: Width of an aggregation window.
        percentile: The percentile (0 to 100) when ``aggregation`` is ``percentile``.
        max_points_per_series: Stop a series after this many points (0: the service's limit).

    Returns:
        One series per (twin, field) that has data, chunks joined.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}")
    request = state_pb2.QueryHistoryRequest(
        twin_ids=twin_ids,
        fields=fields,
        aggregation=f"AGGREGATION_{aggregation.upper()}",
        percentile=percentile,
        max_points_per_series=max_points_per_series,
    )
    request.start_time.FromDatetime(start)
    request.end_time.FromDatetime(end)
    if window_s is not None:
        request.window.FromNanoseconds(int(window_s * 1e9))
    return Streamed("state", "QueryHistory", request, _JoinedSeries())


def put_alert_rule(rule: state_pb2.AlertRule) -> Unary[state_pb2.AlertRule]:
    """Creates or replaces an alert rule (``docs/alerts.md`` describes them)."""
    request = state_pb2.PutAlertRuleRequest(rule=rule)
    return Unary("state", "PutAlertRule", request, lambda r: r.rule)


def list_alert_rules(*, page_size: int = 1000) -> Paged[state_pb2.AlertRule]:
    """Every alert rule in id order, fetched a page at a time."""
    request = state_pb2.ListAlertRulesRequest()
    return Paged("state", "ListAlertRules", request, "rules", page_size)


def delete_alert_rule(rule_id: str) -> Unary[None]:
    """Deletes an alert rule; its open alerts clear."""
    request = state_pb2.DeleteAlertRuleRequest(rule_id=rule_id)
    return Unary("state", "DeleteAlertRule", request, lambda _: None)


def list_alerts(
    twin_id: str = "", *, include_cleared: bool = False, page_size: int = 100
) -> Paged[state_pb2.Alert]:
    """Open alerts (of one twin, or all), fetched a page at a time.

    Args:
        twin_id: Only this twin's alerts (empty: every twin's).
        include_cleared: Also alerts whose condition has cleared.
        page_size: Alerts per page.
    """
    request = state_pb2.ListAlertsRequest(twin_id=twin_id, include_cleared=include_cleared)
    return Paged("state", "ListAlerts", request, "alerts", page_size)


def acknowledge_alert(
    twin_id: str, rule_id: str, acknowledged_by: str = ""
) -> Unary[state_pb2.Alert]:
    """Marks an open alert as seen by someone.

    Args:
        twin_id: The twin that raised it.
        rule_id: The rule that raised it.
        acknowledged_by: Who saw it.
    """
    request = state_pb2.AcknowledgeAlertRequest(
        twin_id=twin_id, rule_id=rule_id, acknowledged_by=acknowledged_by
    )
    return Unary("state", "AcknowledgeAlert", request, lambda r: r.alert)


def cluster_status() -> Unary[state_pb2.GetClusterStatusResponse]:
    """The cluster as a state replica sees it: NATS servers, each stream's leader and
    replicas, and the owner of each telemetry partition (platform administrators only)."""
    return Unary("state", "GetClusterStatus", state_pb2.GetClusterStatusRequest(), lambda r: r)


def _watch_request(
    twin_ids: Sequence[str], model_id: str, all_twins: bool, after_revision: int
) -> state_pb2.WatchRequest:
    return state_pb2.WatchRequest(
        twin_ids=twin_ids, model_id=model_id, all_twins=all_twins, after_revision=after_revision
    )


# A watch whose connection is lost (a replica restarting, a server's maximum connection age, a
# NATS cluster electing leaders during a rolling restart) opens again after the last change it
# delivered, with growing pauses, until it has failed to open for this long in a row.
_WATCH_OUTAGE_S = 60.0
_WATCH_RESUME_FIRST_PAUSE_S = 0.25
_WATCH_RESUME_MAX_PAUSE_S = 2.0


class _WatchCursor:
    """Where a watch stands, so that a lost one resumes without a gap or a repeat."""

    def __init__(self, request: state_pb2.WatchRequest, timeout_s: float | None) -> None:
        self.request = request
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._losses = 0
        self._first_loss_at = 0.0

    def remaining_s(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def delivered(self, message: state_pb2.WatchResponse) -> None:
        self.request.after_revision = max(self.request.after_revision, message.state.revision)
        self._losses = 0

    def pause_before_resuming(self, error: grpc.RpcError) -> float | None:
        """Seconds to wait before opening the watch again, or None to raise ``error``."""
        if error.code() != grpc.StatusCode.UNAVAILABLE:
            return None
        now = time.monotonic()
        if self._losses == 0:
            self._first_loss_at = now
        elif now - self._first_loss_at > _WATCH_OUTAGE_S:
            return None
        self._losses += 1
        pause = min(
            _WATCH_RESUME_MAX_PAUSE_S, _WATCH_RESUME_FIRST_PAUSE_S * 2 ** (self._losses - 1)
        )
        remaining = self.remaining_s()
        return pause if remaining is None or pause < remaining else None


class State(SyncArea):
    """Live state, desired values, history and alerts (``client.state``)."""

    get_state = sync_call(get_state)
    get_states = sync_call(get_states)
    set_desired = sync_call(set_desired)
    query_history = sync_stream(query_history)
    put_alert_rule = sync_call(put_alert_rule)
    list_alert_rules = sync_pages(list_alert_rules)
    delete_alert_rule = sync_call(delete_alert_rule)
    list_alerts = sync_pages(list_alerts)
    acknowledge_alert = sync_call(acknowledge_alert)
    cluster_status = sync_call(cluster_status)

    def watch(
        self,
        twin_ids: Sequence[str] = (),
        *,
        model_id: str = "",
        all_twins: bool = False,
        after_revision: int = 0,
        timeout_s: float | None = None,
    ) -> Iterator[state_pb2.WatchResponse]:
        """State changes as they happen.

        The first message says the watch is live; then one message per change of a selected
        twin. Stop iterating (or close the client) to end it.

        Args:
            twin_ids: Watch these twins.
            model_id: Watch every twin of this model.
            all_twins: Watch every twin.
            after_revision: Replay changes after this state revision first.
            timeout_s: End after this long (None: run until stopped).

        A watch whose connection is lost (UNAVAILABLE: a replica restarting or rotating its
        connections, a NATS cluster electing leaders) opens again after the last change it
        delivered, through outages of up to a minute.
        """
        cursor = _WatchCursor(
            _watch_request(twin_ids, model_id, all_twins, after_revision), timeout_s
        )
        method = self._transport.method("state", "Watch")
        while True:
            call = method(
                cursor.request,
                timeout=cursor.remaining_s(),
                metadata=self._transport.config.metadata,
            )
            try:
                for message in call:
                    cursor.delivered(message)
                    yield message
                return
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    return
                pause = cursor.pause_before_resuming(error)
                if pause is None:
                    raise ApiError.from_rpc_error(error) from error
                time.sleep(pause)
            finally:
                call.cancel()


class AsyncState(AsyncArea):
    """Live state, desired values, history and alerts (``client.state`` of an
    :class:`AsyncClient`)."""

    get_state = async_call(get_state)
    get_states = async_call(get_states)
    set_desired = async_call(set_desired)
    query_history = async_stream(query_history)
    put_alert_rule = async_call(put_alert_rule)
    list_alert_rules = async_pages(list_alert_rules)
    delete_alert_rule = async_call(delete_alert_rule)
    list_alerts = async_pages(list_alerts)
    acknowledge_alert = async_call(acknowledge_alert)
    cluster_status = async_call(cluster_status)

    async def watch(
        self,
        twin_ids: Sequence[str] = (),
        *,
        model_id: str = "",
        all_twins: bool = False,
        after_revision: int = 0,
        timeout_s: float | None = None,
    ) -> AsyncIterator[state_pb2.WatchResponse]:
        """State changes as they happen (see :meth:`State.watch`).

        Args:
            twin_ids: Watch these twins.
            model_id: Watch every twin of this model.
            all_twins: Watch every twin.
            after_revision: Replay changes after this state revision first.
            timeout_s: End after this long (None: run until stopped).
        """
        cursor = _WatchCursor(
            _watch_request(twin_ids, model_id, all_twins, after_revision), timeout_s
        )
        method = self._transport.method("state", "Watch")
        while True:
            call = method(
                cursor.request,
                timeout=cursor.remaining_s(),
                metadata=self._transport.config.metadata,
            )
            try:
                async for message in call:
                    cursor.delivered(message)
                    yield message
                return
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    return
                pause = cursor.pause_before_resuming(error)
                if pause is None:
                    raise ApiError.from_rpc_error(error) from error
                await asyncio.sleep(pause)
            finally:
                call.cancel()
