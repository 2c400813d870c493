"""A synchronous client of the four twinstack services."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from twinstack.api.common.v1 import types_pb2
from twinstack.api.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.api.simulation.v1 import simulation_pb2, simulation_pb2_grpc
from twinstack.api.state.v1 import state_pb2, state_pb2_grpc
from twinstack.common.errors import unpack_details
from twinstack.common.values import Scalar, from_python


def _integrator(name: str) -> simulation_pb2.Integrator:
    integrators = {"rk4": simulation_pb2.INTEGRATOR_RK4, "euler": simulation_pb2.INTEGRATOR_EULER}
    if name not in integrators:
        raise ValueError(f"integrator must be one of {sorted(integrators)}")
    return integrators[name]


class ApiError(Exception):
    """A twinstack API call failed.

    Attributes:
        code: The gRPC status code.
        message: The server's message.
        details: The rich details (``ErrorInfo``, ``BadRequest``, ``ResourceInfo``, ...).
    """

    def __init__(self, code: grpc.StatusCode, message: str, details: list[Message]) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.details = details

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> ApiError:
        call: Any = error
        status = rpc_status.from_call(call)
        details = unpack_details(status) if status is not None else []
        return cls(call.code(), call.details() or "", details)


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Endpoints:
    """Addresses (host:port) of the services; defaults from ``TWINSTACK_<SERVICE>_ADDR``."""

    registry: str = field(
        default_factory=lambda: _env("TWINSTACK_REGISTRY_ADDR", "127.0.0.1:50051")
    )
    ingestion: str = field(
        default_factory=lambda: _env("TWINSTACK_INGESTION_ADDR", "127.0.0.1:50052")
    )
    state: str = field(default_factory=lambda: _env("TWINSTACK_STATE_ADDR", "127.0.0.1:50053"))
    simulation: str = field(
        default_factory=lambda: _env("TWINSTACK_SIMULATION_ADDR", "127.0.0.1:50054")
    )

    def items(self) -> list[tuple[str, str]]:
        return [
            ("registry", self.registry),
            ("ingestion", self.ingestion),
            ("state", self.state),
            ("simulation", self.simulation),
        ]


@dataclass(frozen=True)
class Point:
    """One telemetry sample: a twin, field values, and the source time (now when omitted)."""

    twin_id: str
    fields: Mapping[str, Scalar]
    time: datetime | int | None = None  # datetime, or integer nanoseconds since the epoch

    def to_proto(self) -> types_pb2.TelemetryPoint:
        point = types_pb2.TelemetryPoint(
            twin_id=self.twin_id,
            fields={name: from_python(value) for name, value in self.fields.items()},
        )
        if isinstance(self.time, datetime):
            point.time.FromDatetime(self.time)
        else:
            point.time.FromNanoseconds(time.time_ns() if self.time is None else self.time)
        return point


def make_frame(
    twin_id: str, times_ns: Sequence[int], columns: Mapping[str, Sequence[Scalar]]
) -> types_pb2.TelemetryFrame:
    """A frame of one twin's samples: one time per row, one equally long column per field.

    A column's type follows its values: all booleans, all integers, numbers (doubles) or
    strings. NumPy arrays work too.
    """
    frame = types_pb2.TelemetryFrame(twin_id=twin_id)
    frame.time_unix_ns.extend(int(t) for t in times_ns)
    for name, values in columns.items():
        column = frame.columns.add(field=name)
        items: list[Any] = values.tolist() if hasattr(values, "tolist") else list(values)
        if items and all(isinstance(v, bool) for v in items):
            column.bool_values.values.extend(items)
        elif items and all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            column.int_values.values.extend(items)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            column.double_values.values.extend(float(v) for v in items)
        else:
            column.string_values.values.extend(items)
    return frame


# Per-batch outcomes of IngestStream after which the same batch may succeed when sent again.
_RESEND_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE.value[0], grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]}
)
_RECONNECT_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN}
)


# A service that restarts (a rollout, a crash) is found again within seconds: gRPC's default
# reconnect backoff grows to two minutes, which would stall a stream that waits to resume.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5000),
]


class TwinstackClient:
    """Calls the registry, ingestion, state and simulation services.

    Args:
        endpoints: Where the services listen.
        token: Bearer token, when the services require one.
        tls: Use TLS instead of plaintext.
        root_certificates: PEM roots to verify the servers with (system roots when None).
        timeout_s: Deadline of every call.
    """

    def __init__(
        self,
        endpoints: Endpoints | None = None,
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.endpoints = endpoints or Endpoints()
        self._timeout_s = timeout_s
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._channels = {
            name: (
                grpc.secure_channel(
                    address, grpc.ssl_channel_credentials(root_certificates), _CHANNEL_OPTIONS
                )
                if tls
                else grpc.insecure_channel(address, _CHANNEL_OPTIONS)
            )
            for name, address in self.endpoints.items()
        }
        self._registry = registry_pb2_grpc.RegistryServiceStub(self._channels["registry"])
        self._ingestion = ingestion_pb2_grpc.IngestionServiceStub(self._channels["ingestion"])
        self._state = state_pb2_grpc.StateServiceStub(self._channels["state"])
        self._simulation = simulation_pb2_grpc.SimulationServiceStub(self._channels["simulation"])

    def __enter__(self) -> TwinstackClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def _call(self, method: Any, request: Message, timeout_s: float | None = None) -> Any:
        try:
            return method(request, timeout=timeout_s or self._timeout_s, metadata=self._metadata)
        except grpc.RpcError as error:
            raise ApiError.from_rpc_error(error) from error

    def _pages(self, method: Any, request: Any, items: str, page_size: int) -> Iterator[Any]:
        """Every item of a paged List/Query call, fetching page after page."""
        request.page.page_size = page_size
        while True:
            response = self._call(method, request)
            yield from getattr(response, items)
            if not response.page.next_page_token:
                return
            request.page.page_token = response.page.next_page_token

    def health(self, timeout_s: float = 2.0) -> dict[str, str]:
        """Service name to ``SERVING``, ``NOT_SERVING`` or ``UNREACHABLE``."""
        found = {}
        for name, channel in self._channels.items():
            stub: Any = health_pb2_grpc.HealthStub(channel)
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
                found[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            except grpc.RpcError:
                found[name] = "UNREACHABLE"
        return found

    def create_models(
        self,
        sources: Sequence[registry_pb2.ModelSource],
        *,
        allow_breaking_changes: bool = False,
        validate_only: bool = False,
    ) -> registry_pb2.CreateModelsResponse:
        """Stores models (see :func:`twinstack.sdk.models.model_sources` to read files); the
        response lists them and what a DTDL import could not map."""
        request = registry_pb2.CreateModelsRequest(
            sources=sources,
            allow_breaking_changes=allow_breaking_changes,
            validate_only=validate_only,
        )
        response: registry_pb2.CreateModelsResponse = self._call(
            self._registry.CreateModels, request
        )
        return response

    def get_model(self, model_id: str) -> registry_pb2.Model:
        """A model with its inheritance resolved (``resolved_document``)."""
        request = registry_pb2.GetModelRequest(model_id=model_id)
        model: registry_pb2.Model = self._call(self._registry.GetModel, request).model
        return model

    def list_models(
        self, *, id_prefix: str = "", latest_only: bool = False, page_size: int = 500
    ) -> Iterator[registry_pb2.Model]:
        request = registry_pb2.ListModelsRequest(id_prefix=id_prefix, latest_only=latest_only)
        yield from self._pages(self._registry.ListModels, request, "models", page_size)

    def create_twin(
        self, twin_id: str, model_id: str, properties: Mapping[str, Any] | None = None
    ) -> registry_pb2.Twin:
        twin = registry_pb2.Twin(
            id=twin_id,
            model_id=model_id,
            properties={k: from_python(v) for k, v in (properties or {}).items()},
        )
        response = self._call(self._registry.CreateTwin, registry_pb2.CreateTwinRequest(twin=twin))
        created: registry_pb2.Twin = response.twin
        return created

    def get_twin(self, twin_id: str) -> registry_pb2.Twin:
        response = self._call(self._registry.GetTwin, registry_pb2.GetTwinRequest(twin_id=twin_id))
        twin: registry_pb2.Twin = response.twin
        return twin

    def update_twin(
        self,
        twin_id: str,
        set_properties: Mapping[str, Any] | None = None,
        remove_properties: Sequence[str] = (),
        *,
        expected_revision: int = 0,
        merge_patch: Mapping[str, Any] | None = None,
    ) -> registry_pb2.Twin:
        """Patches properties; with ``expected_revision``, only if the twin is still at it
        (``ApiError`` ABORTED with a ``RevisionMismatch`` detail otherwise). ``merge_patch`` is
        a JSON merge patch (RFC 7386) over the properties: None removes."""
        request = registry_pb2.UpdateTwinRequest(
            twin_id=twin_id,
            set_properties={k: from_python(v) for k, v in (set_properties or {}).items()},
            remove_properties=remove_properties,
            expected_revision=expected_revision,
            json_merge_patch=json.dumps(merge_patch) if merge_patch is not None else "",
        )
        response = self._call(self._registry.UpdateTwin, request)
        updated: registry_pb2.Twin = response.twin
        return updated

    def migrate_twin(
        self,
        twin_id: str,
        model_id: str,
        set_properties: Mapping[str, Any] | None = None,
        *,
        drop_undeclared: bool = False,
        expected_revision: int = 0,
    ) -> registry_pb2.Twin:
        """Moves a twin to another model version."""
        request = registry_pb2.MigrateTwinRequest(
            twin_id=twin_id,
            model_id=model_id,
            set_properties={k: from_python(v) for k, v in (set_properties or {}).items()},
            drop_undeclared=drop_undeclared,
            expected_revision=expected_revision,
        )
        twin: registry_pb2.Twin = self._call(self._registry.MigrateTwin, request).twin
        return twin

    def query_twins(
        self, query: str, *, page_size: int = 500, min_revision: int = 0
    ) -> Iterator[registry_pb2.Twin]:
        """Every twin the query matches (docs/models.md has the grammar), in id order."""
        request = registry_pb2.QueryTwinsRequest(query=query, min_revision=min_revision)
        yield from self._pages(self._registry.QueryTwins, request, "twins", page_size)

    def create_relationship(
        self,
        source_id: str,
        name: str,
        target_id: str,
        properties: Mapping[str, Any] | None = None,
        *,
        relationship_id: str = "",
    ) -> registry_pb2.Relationship:
        relationship = registry_pb2.Relationship(
            id=relationship_id,
            source_id=source_id,
            name=name,
            target_id=target_id,
            properties={k: from_python(v) for k, v in (properties or {}).items()},
        )
        request = registry_pb2.CreateRelationshipRequest(relationship=relationship)
        created: registry_pb2.Relationship = self._call(
            self._registry.CreateRelationship, request
        ).relationship
        return created

    def delete_relationship(
        self, source_id: str, relationship_id: str, *, expected_revision: int = 0
    ) -> int:
        request = registry_pb2.DeleteRelationshipRequest(
            source_id=source_id,
            relationship_id=relationship_id,
            expected_revision=expected_revision,
        )
        return int(self._call(self._registry.DeleteRelationship, request).revision)

    def list_relationships(
        self, twin_id: str, *, incoming: bool = False, name: str = "", min_revision: int = 0
    ) -> Iterator[registry_pb2.Relationship]:
        direction = (
            registry_pb2.RELATIONSHIP_DIRECTION_INCOMING
            if incoming
            else registry_pb2.RELATIONSHIP_DIRECTION_OUTGOING
        )
        request = registry_pb2.ListRelationshipsRequest(
            twin_id=twin_id, direction=direction, name=name, min_revision=min_revision
        )
        yield from self._pages(self._registry.ListRelationships, request, "relationships", 1000)

    def delete_twin(self, twin_id: str, *, expected_revision: int = 0) -> int:
        """Deletes a twin; returns a revision at or after the deletion."""
        request = registry_pb2.DeleteTwinRequest(
            twin_id=twin_id, expected_revision=expected_revision
        )
        response = self._call(self._registry.DeleteTwin, request)
        return int(response.revision)

    def list_twins(
        self, *, page_size: int = 500, min_revision: int = 0
    ) -> Iterator[registry_pb2.Twin]:
        """Every twin in id order, fetched a page at a time. ``min_revision`` (a revision one of
        your writes returned) makes the listing reflect that write."""
        request = registry_pb2.ListTwinsRequest(min_revision=min_revision)
        yield from self._pages(self._registry.ListTwins, request, "twins", page_size)

    def ingest(
        self,
        points: Iterable[Point] = (),
        frames: Iterable[types_pb2.TelemetryFrame] = (),
    ) -> ingestion_pb2.IngestBatchResponse:
        """Ingests points and frames in one batch; returns once all are durable in the stream."""
        return self.ingest_batch(
            ingestion_pb2.IngestBatchRequest(
                points=[p.to_proto() for p in points], frames=list(frames)
            )
        )

    def ingest_batch(
        self, request: ingestion_pb2.IngestBatchRequest
    ) -> ingestion_pb2.IngestBatchResponse:
        """Ingests a request built by the caller (producers that keep protos at hand)."""
        response: ingestion_pb2.IngestBatchResponse = self._call(
            self._ingestion.IngestBatch, request
        )
        return response

    def ingest_stream(
        self,
        batches: Iterable[ingestion_pb2.IngestStreamRequest],
        *,
        reconnect_timeout_s: float = 60.0,
    ) -> Iterator[ingestion_pb2.IngestStreamResponse]:
        """Streams batches and yields each one's final acknowledgement, in order.

        Sequence numbers are assigned here. A batch the service could not make durable for
        now (UNAVAILABLE, RESOURCE_EXHAUSTED), and every batch unacknowledged when the
        connection breaks (a service restarting), is sent again until it is acknowledged or
        ``reconnect_timeout_s`` passes without progress; resending is safe because the stream
        de-duplicates. A rejected batch (INVALID_ARGUMENT) is yielded with its violations and
        not resent.
        """
        source = iter(batches)
        unacknowledged: list[ingestion_pb2.IngestStreamRequest] = []
        next_sequence = 1
        progress_at = time.monotonic()

        def requests() -> Iterator[ingestion_pb2.IngestStreamRequest]:
            nonlocal next_sequence
            yield from list(unacknowledged)
            for batch in source:
                batch.sequence = next_sequence
                next_sequence += 1
                unacknowledged.append(batch)
                yield batch

        while True:
            pause_s = 0.0
            try:
                for ack in self._ingestion.IngestStream(requests(), metadata=self._metadata):
                    if ack.code in _RESEND_CODES:
                        pause_s = max(ack.retry_after_ms / 1000, 0.05)
                        break
                    unacknowledged.pop(0)
                    progress_at = time.monotonic()
                    yield ack
                else:
                    if not unacknowledged:
                        return
            except grpc.RpcError as error:
                if error.code() not in _RECONNECT_CODES:
                    raise ApiError.from_rpc_error(error) from error
                pause_s = 0.2
            if time.monotonic() - progress_at > reconnect_timeout_s:
                raise ApiError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"no batch acknowledged for {reconnect_timeout_s:g} s; giving up",
                    [],
                )
            time.sleep(pause_s)

    def get_state(self, twin_id: str) -> state_pb2.TwinState:
        response = self._call(self._state.GetState, state_pb2.GetStateRequest(twin_id=twin_id))
        state: state_pb2.TwinState = response.state
        return state

    def get_states(self, twin_ids: Sequence[str]) -> state_pb2.BatchGetStatesResponse:
        response: state_pb2.BatchGetStatesResponse = self._call(
            self._state.BatchGetStates, state_pb2.BatchGetStatesRequest(twin_ids=twin_ids)
        )
        return response

    def watch(
        self,
        twin_ids: Sequence[str] = (),
        *,
        model_id: str = "",
        all_twins: bool = False,
        after_revision: int = 0,
        timeout_s: float | None = None,
    ) -> Iterator[state_pb2.WatchResponse]:
        """State changes as they happen; runs until ``timeout_s`` (None: until closed)."""
        request = state_pb2.WatchRequest(
            twin_ids=twin_ids, model_id=model_id, all_twins=all_twins, after_revision=after_revision
        )
        responses = self._state.Watch(request, timeout=timeout_s, metadata=self._metadata)
        try:
            yield from responses
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ApiError.from_rpc_error(error) from error
        finally:
            responses.cancel()

    def set_desired(
        self,
        twin_id: str,
        values: Mapping[str, Scalar],
        *,
        remove: Sequence[str] = (),
        expected_revision: int = 0,
    ) -> state_pb2.TwinState:
        request = state_pb2.SetDesiredRequest(
            twin_id=twin_id,
            set={name: from_python(value) for name, value in values.items()},
            remove=remove,
            expected_revision=expected_revision,
        )
        response = self._call(self._state.SetDesired, request)
        state: state_pb2.TwinState = response.state
        return state

    def query_history(
        self,
        twin_ids: Sequence[str],
        fields: Sequence[str],
        start: datetime,
        end: datetime,
        aggregation: str = "none",
        *,
        window_s: float | None = None,
        percentile: float = 0.0,
        max_points_per_series: int = 0,
    ) -> list[state_pb2.HistorySeries]:
        """History of some fields of some twins; chunks of a series are joined.

        ``aggregation`` is none, mean, min, max, first, last, count, sum, median, stddev or
        percentile.
        """
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
        joined: dict[tuple[str, str], state_pb2.HistorySeries] = {}
        try:
            for response in self._state.QueryHistory(
                request, timeout=self._timeout_s, metadata=self._metadata
            ):
                for series in response.series:
                    key = (series.twin_id, series.field)
                    if key in joined:
                        joined[key].MergeFrom(series)
                    else:
                        joined[key] = series
        except grpc.RpcError as error:
            raise ApiError.from_rpc_error(error) from error
        return list(joined.values())

    def put_alert_rule(self, rule: state_pb2.AlertRule) -> state_pb2.AlertRule:
        response = self._call(self._state.PutAlertRule, state_pb2.PutAlertRuleRequest(rule=rule))
        stored: state_pb2.AlertRule = response.rule
        return stored

    def list_alert_rules(self, *, page_size: int = 1000) -> list[state_pb2.AlertRule]:
        """Every alert rule, in id order (fetched page after page)."""
        return list(
            self._pages(
                self._state.ListAlertRules, state_pb2.ListAlertRulesRequest(), "rules", page_size
            )
        )

    def delete_alert_rule(self, rule_id: str) -> None:
        self._call(self._state.DeleteAlertRule, state_pb2.DeleteAlertRuleRequest(rule_id=rule_id))

    def list_alerts(
        self, twin_id: str = "", *, include_cleared: bool = False, page_size: int = 100
    ) -> Iterator[state_pb2.Alert]:
        request = state_pb2.ListAlertsRequest(twin_id=twin_id, include_cleared=include_cleared)
        yield from self._pages(self._state.ListAlerts, request, "alerts", page_size)

    def acknowledge_alert(
        self, twin_id: str, rule_id: str, acknowledged_by: str = ""
    ) -> state_pb2.Alert:
        request = state_pb2.AcknowledgeAlertRequest(
            twin_id=twin_id, rule_id=rule_id, acknowledged_by=acknowledged_by
        )
        response = self._call(self._state.AcknowledgeAlert, request)
        alert: state_pb2.Alert = response.alert
        return alert

    def list_builtin_models(self) -> list[simulation_pb2.BuiltinModel]:
        response = self._call(
            self._simulation.ListBuiltinModels, simulation_pb2.ListBuiltinModelsRequest()
        )
        return list(response.models)

    def run_scenario(
        self,
        twin_ids: Sequence[str] = (),
        *,
        query: str = "",
        horizon_s: float,
        step_s: float,
        overrides: Mapping[str, float] | None = None,
        input_noise: Mapping[str, float] | None = None,
        thresholds: Mapping[str, float] | None = None,
        integrator: str = "rk4",
        max_points: int = 200,
        seed: int = 0,
        timeout_s: float = 300.0,
    ) -> simulation_pb2.RunScenarioResponse:
        """Forks the live twins (ids and/or a registry query) and runs one scenario each."""
        request = simulation_pb2.RunScenarioRequest(
            twins=simulation_pb2.TwinSelection(twin_ids=twin_ids, query=query),
            overrides=overrides or {},
            horizon_s=horizon_s,
            step_s=step_s,
            integrator=_integrator(integrator),
            max_points=max_points,
            input_noise=input_noise or {},
            seed=seed,
            thresholds=thresholds or {},
        )
        response: simulation_pb2.RunScenarioResponse = self._call(
            self._simulation.RunScenario, request, timeout_s
        )
        return response

    def run_sweep(
        self,
        model: str = "",
        *,
        twin_ids: Sequence[str] = (),
        query: str = "",
        horizon_s: float,
        step_s: float,
        sampler: str = "random",
        ranges: Mapping[str, tuple[float, float] | tuple[float, float, int]] | None = None,
        samples: int = 0,
        replicates: int = 1,
        overrides: Mapping[str, float] | None = None,
        input_noise: Mapping[str, float] | None = None,
        input_schedule: Sequence[tuple[float, Mapping[str, float]]] = (),
        thresholds: Mapping[str, float] | None = None,
        integrator: str = "rk4",
        seed: int = 0,
        on_progress: Callable[[simulation_pb2.RunSweepResponse], None] | None = None,
        timeout_s: float = 3600.0,
    ) -> simulation_pb2.SweepResult:
        """Runs a sweep of a built-in ``model`` or of the selected twins' own dynamics.

        ``ranges`` maps parameter or input names to ``(min, max)`` or, for the grid sampler,
        ``(min, max, levels)``. ``on_progress`` sees every progress message; interrupting the
        call (KeyboardInterrupt) cancels the sweep on the cluster.
        """
        samplers = {
            "grid": simulation_pb2.SAMPLER_GRID,
            "random": simulation_pb2.SAMPLER_RANDOM,
            "lhs": simulation_pb2.SAMPLER_LATIN_HYPERCUBE,
            "latin_hypercube": simulation_pb2.SAMPLER_LATIN_HYPERCUBE,
            "sobol": simulation_pb2.SAMPLER_SOBOL,
        }
        if sampler not in samplers:
            raise ValueError(f"sampler must be one of {sorted(samplers)}")
        request = simulation_pb2.RunSweepRequest(
            model=model,
            twins=simulation_pb2.TwinSelection(twin_ids=twin_ids, query=query),
            sampler=samplers[sampler],
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
                simulation_pb2.InputStep(at_s=at_s, values=values)
                for at_s, values in input_schedule
            ],
            horizon_s=horizon_s,
            step_s=step_s,
            integrator=_integrator(integrator),
            seed=seed,
            thresholds=thresholds or {},
        )
        call = self._simulation.RunSweep(request, timeout=timeout_s, metadata=self._metadata)
        try:
            for message in call:
                if on_progress is not None:
                    on_progress(message)
                if message.HasField("result"):
                    result: simulation_pb2.SweepResult = message.result
                    return result
        except grpc.RpcError as error:
            raise ApiError.from_rpc_error(error) from error
        except BaseException:
            call.cancel()
            raise
        raise ApiError(grpc.StatusCode.UNKNOWN, "the sweep ended without a result", [])

    def fetch_sweep_results(self, sweep_id: str, timeout_s: float = 600.0) -> bytes:
        """The sweep's Parquet file (one row per scenario, provenance in its metadata)."""
        request = simulation_pb2.FetchSweepResultsRequest(sweep_id=sweep_id)
        try:
            return b"".join(
                chunk.data
                for chunk in self._simulation.FetchSweepResults(
                    request, timeout=timeout_s, metadata=self._metadata
                )
            )
        except grpc.RpcError as error:
            raise ApiError.from_rpc_error(error) from error

    def forecast(
        self,
        twin_ids: Sequence[str] = (),
        *,
        query: str = "",
        horizon_s: float,
        step_s: float,
        samples: int = 1000,
        uncertain: Mapping[str, tuple[float, float]] | None = None,
        input_noise: Mapping[str, float] | None = None,
        alert_probability: float = 0.5,
        integrator: str = "rk4",
        max_points: int = 100,
        seed: int = 0,
        timeout_s: float = 600.0,
    ) -> simulation_pb2.ForecastResponse:
        """Monte Carlo forecast from the twins' live state; stored in InfluxDB, and likely
        failure conditions published as predicted alerts."""
        request = simulation_pb2.ForecastRequest(
            twins=simulation_pb2.TwinSelection(twin_ids=twin_ids, query=query),
            samples=samples,
            horizon_s=horizon_s,
            step_s=step_s,
            integrator=_integrator(integrator),
            uncertain={
                name: simulation_pb2.ParameterRange(min=low, max=high)
                for name, (low, high) in (uncertain or {}).items()
            },
            input_noise=input_noise or {},
            seed=seed,
            alert_probability=alert_probability,
            max_points=max_points,
        )
        response: simulation_pb2.ForecastResponse = self._call(
            self._simulation.Forecast, request, timeout_s
        )
        return response

    def calibrate(
        self,
        twin_id: str,
        parameters: Sequence[str] = (),
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        step_s: float = 1.0,
        integrator: str = "rk4",
        timeout_s: float = 600.0,
    ) -> simulation_pb2.CalibrateResponse:
        """Fits ``parameters`` of the twin's model to its history between ``start`` and
        ``end`` (default: the last hour)."""
        request = simulation_pb2.CalibrateRequest(
            twin_id=twin_id,
            parameters=parameters,
            step_s=step_s,
            integrator=_integrator(integrator),
        )
        if start is not None:
            request.start_time.FromDatetime(start)
        if end is not None:
            request.end_time.FromDatetime(end)
        response: simulation_pb2.CalibrateResponse = self._call(
            self._simulation.Calibrate, request, timeout_s
        )
        return response
