"""The gRPC server every twinstack service runs on.

A service supplies the servicers and its own start and stop (connections to NATS, InfluxDB,
Ray); the bootstrap adds what every service must have: health checking and reflection, rich
error statuses, optional bearer-token auth and TLS, a default deadline, message size limits,
trace context from incoming metadata, and a graceful shutdown on SIGTERM: NOT_SERVING first,
then a drain of the calls in flight, then stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import inspect
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace

from twinstack.common.access import ANONYMOUS, METHOD_VERBS, Principal, Verb
from twinstack.common.errors import (
    FieldViolation,
    InvalidArgumentError,
    PermissionDeniedError,
    TwinstackError,
    UnauthenticatedError,
    UnavailableError,
    internal_status,
    to_grpc_status,
)
from twinstack.common.gatekeeper import (
    EVERY_TWIN,
    Gatekeeper,
    TwinScope,
    acting_as,
    resource_of,
)
from twinstack.common.logs import configure_logging
from twinstack.common.metrics import MetricsEndpoint, configure_metrics, serve_metrics
from twinstack.common.nats import nats_unavailable
from twinstack.common.settings import ServiceSettings
from twinstack.common.tenancy import DEFAULT_IDS, IdTranslator, TenantIds, ids_of, stripped_status
from twinstack.common.tracing import (
    configure_tracing,
    context_from_headers,
    shutdown_tracing,
    span,
)
from twinstack.modeling import units

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("twinstack.grpc")
_CALL_DURATION = metrics.get_meter("twinstack.grpc").create_histogram(
    "rpc.server.duration", unit="s", description="Duration of gRPC calls handled"
)

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# Probes (kubelet's gRPC probe sends no credentials) must work without a principal.
_HEALTH_PREFIX = "/grpc.health.v1.Health/"
_REFLECTION_PREFIX = "/grpc.reflection."
_PUBLIC_PREFIXES = (_HEALTH_PREFIX, _REFLECTION_PREFIX)


class Service(Protocol):
    """What a twinstack service gives the bootstrap."""

    @property
    def service_names(self) -> Sequence[str]:
        """Full names of the gRPC services it serves, for health and reflection."""
        ...

    async def start(self) -> None:
        """Connects to its dependencies; the server serves only after this returns."""

    def register(self, server: grpc.aio.Server) -> None:
        """Adds its servicers to the server."""

    async def stop(self) -> None:
        """Releases its dependencies, after the last call has drained."""


HealthSetter = Callable[[str, bool], Awaitable[None]]


Behavior = Callable[..., Any]
# Strings: grpc's handler type is generic only in its stubs, not at run time.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"


@dataclass(frozen=True)
class _Undecodable:
    """What arrived instead of a request that does not parse as its message type."""

    reason: str


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """The deserializer, answering :class:`_Undecodable` instead of raising: grpc would end the
    call with UNKNOWN before any handler could say what was wrong."""
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as error:  # DecodeError, and RecursionError for hostile nesting
            return _Undecodable(str(error) or type(error).__name__)

    return deserialize


def _decoded(request: Any) -> Any:
    if isinstance(request, _Undecodable):
        raise InvalidArgumentError(
            "the request is not a valid message of its type",
            [FieldViolation("request", f"cannot be parsed: {request.reason}")],
        )
    return request


async def _decoded_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _decoded(request)


def _request_of(handler: Handler, request: Any) -> Any:
    """The request (or request stream) of a call, refusing messages that did not parse."""
    return _decoded_stream(request) if handler.request_streaming else _decoded(request)


class _CallInterceptor(grpc.aio.ServerInterceptor):
    """Traces each call, admits its caller, applies the default deadline and maps errors to
    rich statuses."""

    def __init__(self, default_deadline_s: float, gatekeeper: Gatekeeper) -> None:
        self._default_deadline_s = default_deadline_s
        self._gatekeeper = gatekeeper
        self._translator = IdTranslator()

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method
        parent = context_from_headers(
            {
                key: value
                for key, value in (handler_call_details.invocation_metadata or ())
                if isinstance(value, str)
            }
        )
        if handler.response_streaming:
            return _replace_behavior(handler, self._wrap_stream(method, parent, handler))
        return _replace_behavior(handler, self._wrap_unary(method, parent, handler))

    def _inbound(self, method: str, handler: Handler, request: Any, ids: TenantIds) -> Any:
        """The request (or request stream) with its ids qualified by the caller's tenant,
        refusing messages that did not parse."""
        if method.startswith(_PUBLIC_PREFIXES):
            return _request_of(handler, request)
        translator = self._translator
        if handler.request_streaming:

            async def translated(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
                async for message in requests:
                    translator.qualify(message, ids)
                    yield message

            return translated(_decoded_stream(request))
        message = _decoded(request)
        translator.qualify(message, ids)
        return message

    def _outbound(self, method: str, response: Any, ids: TenantIds) -> None:
        """Strips the caller's tenant from the ids of a response."""
        if response is not None and not method.startswith(_PUBLIC_PREFIXES):
            self._translator.strip(response, ids)

    def _public(self, method: str) -> bool:
        if method.startswith(_HEALTH_PREFIX):
            return True
        return method.startswith(_REFLECTION_PREFIX) and self._gatekeeper.open_reflection

    async def _admit(
        self, method: str, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> _Admission:
        """The caller and the verb of a call that may proceed; raises what refuses it."""
        gatekeeper = self._gatekeeper
        if self._public(method) or not gatekeeper.required:
            return _Admission(ANONYMOUS, None, audited=False, scope=EVERY_TWIN)
        metadata = {
            key: value
            for key, value in (context.invocation_metadata() or ())
            if isinstance(value, str)
        }
        principal = ANONYMOUS
        scope = EVERY_TWIN
        peer = context.peer() or ""
        try:
            principal = await gatekeeper.authenticate(metadata, context.auth_context)
            if method.startswith(_REFLECTION_PREFIX):
                verb = Verb.SELF
                gatekeeper.authorize_verb(principal, verb)
            else:
                verb, scope = gatekeeper.authorize(principal, method)
        except (UnauthenticatedError, PermissionDeniedError) as error:
            gatekeeper.audit(
                principal,
                METHOD_VERBS.get(method),
                method,
                resource=resource_of(request),
                allowed=False,
                status=error.code.name,
                peer=peer,
            )
            raise
        return _Admission(principal, verb, audited=verb.writes, scope=scope, peer=peer)

    def _audit(
        self, admission: _Admission, method: str, request: Any, code: grpc.StatusCode
    ) -> None:
        if admission.audited:
            self._gatekeeper.audit(
                admission.principal,
                admission.verb,
                method,
                resource=resource_of(request),
                allowed=True,
                status=code.name,
                peer=admission.peer,
            )

    def _wrap_unary(self, method: str, parent: otel_context.Context, handler: Handler) -> Behavior:
        behavior = _behavior_of(handler)
        default_deadline_s = self._default_deadline_s

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            with span(tracer, method, context=parent, kind=trace.SpanKind.SERVER):
                call = _AuditedCall(self, method, request)
                async with _rich_statuses(method, context, call.done, call.tenant_ids):
                    admission = call.admission = await self._admit(method, request, context)
                    budget = context.time_remaining()
                    scope = asyncio.timeout(default_deadline_s if budget is None else None)
                    try:
                        with acting_as(admission.principal, admission.scope):
                            async with scope:
                                response = await behavior(
                                    self._inbound(method, handler, request, call.tenant_ids()),
                                    context,
                                )
                                self._outbound(method, response, call.tenant_ids())
                                return response
                    except TimeoutError:
                        if not scope.expired():
                            raise  # a timeout of a dependency, not of this call
                        await context.abort(
                            grpc.StatusCode.DEADLINE_EXCEEDED,
                            f"no answer within the default deadline of {default_deadline_s} s",
                        )

        return unary

    def _wrap_stream(self, method: str, parent: otel_context.Context, handler: Handler) -> Behavior:
        behavior = _behavior_of(handler)
        gatekeeper = self._gatekeeper

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            with span(tracer, method, context=parent, kind=trace.SpanKind.SERVER):
                call = _AuditedCall(self, method, request)
                async with _rich_statuses(method, context, call.done, call.tenant_ids):
                    admission = call.admission = await self._admit(method, request, context)
                    verb = admission.verb
                    ids = call.tenant_ids()
                    with acting_as(admission.principal, admission.scope):
                        revocation: contextlib.AbstractAsyncContextManager[Any] = (
                            contextlib.nullcontext(_never)
                            if verb is None
                            else gatekeeper.revocation(admission.principal, verb, admission.scope)
                        )
                        async with revocation as revoked:
                            try:
                                result = behavior(
                                    self._inbound(method, handler, request, ids), context
                                )
                                if inspect.isasyncgen(result):
                                    async for item in result:
                                        self._outbound(method, item, ids)
                                        yield item
                                else:
                                    await result
                            except asyncio.CancelledError:
                                if not revoked():
                                    raise
                                task = asyncio.current_task()
                                if task is not None:
                                    task.uncancel()
                                raise PermissionDeniedError(
                                    f"{admission.principal.subject} lost {verb}: the stream ends"
                                ) from None

        return stream


def _never() -> bool:
    return False


@dataclass(frozen=True)
class _Admission:
    principal: Principal
    verb: Verb | None
    audited: bool
    scope: TwinScope
    # Read while the call is alive: gRPC's context.peer() on a call that the server's shutdown
    # has already destroyed crashes the process (SIGSEGV inside cygrpc).
    peer: str = ""


@dataclass
class _AuditedCall:
    """One call, audited with the status it ended with once its caller was admitted."""

    interceptor: _CallInterceptor
    method: str
    request: Any
    admission: _Admission | None = None

    def tenant_ids(self) -> TenantIds:
        """The id translation of the caller's tenant (the default one before admission)."""
        return ids_of(self.admission.principal.tenant) if self.admission else DEFAULT_IDS

    def done(self, code: grpc.StatusCode) -> None:
        if self.admission is not None:
            self.interceptor._audit(self.admission, self.method, self.request, code)


@contextlib.asynccontextmanager
async def _rich_statuses(
    method: str,
    context: grpc.aio.ServicerContext[Any, Any],
    done: Callable[[grpc.StatusCode], None],
    tenant_ids: Callable[[], TenantIds],
) -> AsyncIterator[None]:
    """Ends the call with the rich status of a domain error, or INTERNAL for anything else, and
    records the call's duration by method and status. A status names the caller's own ids."""
    started = time.perf_counter()
    code = grpc.StatusCode.OK
    try:
        yield
    except TwinstackError as error:
        code = error.code
        status = stripped_status(error.to_status(), tenant_ids())
        await context.abort_with_status(to_grpc_status(status))
    except grpc.aio.AbortError:
        code = context.code() or grpc.StatusCode.UNKNOWN
        raise
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
        raise
    except Exception as error:
        if nats_unavailable(error):
            unavailable = UnavailableError(
                f"NATS is unavailable ({type(error).__name__}); retry later"
            )
            code = unavailable.code
            status = unavailable.to_status()
        else:
            code = grpc.StatusCode.INTERNAL
            logger.exception("unhandled error in %s", method)
            status = internal_status(f"internal error in {method}")
        await context.abort_with_status(to_grpc_status(status))
    finally:
        _CALL_DURATION.record(
            time.perf_counter() - started,
            {"rpc.method": method, "rpc.grpc.status_code": getattr(code, "name", str(code))},
        )
        done(code)


def _behavior_of(handler: Handler) -> Behavior:
    behavior = (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )
    assert behavior is not None
    return behavior


def _replace_behavior(handler: Handler, behavior: Behavior) -> Handler:
    factories = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    factory = factories[(handler.request_streaming, handler.response_streaming)]
    return factory(
        behavior,
        request_deserializer=_tolerant(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


class GrpcServer:
    """A ``grpc.aio`` server around one :class:`Service`.

    Args:
        settings: Port, limits, auth, TLS and shutdown timings.
        service: The service to serve.
    """

    def __init__(self, settings: ServiceSettings, service: Service) -> None:
        self._settings = settings
        self._service = service
        self._health = HealthServicer()
        self.gatekeeper = Gatekeeper(settings)
        self._server = grpc.aio.server(
            interceptors=[_CallInterceptor(settings.grpc_default_deadline_s, self.gatekeeper)],
            options=[
                ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
                ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
                ("grpc.so_reuseport", 0),
                ("grpc.max_connection_age_ms", int(settings.grpc_max_connection_age_s * 1000)),
                (
                    "grpc.max_connection_age_grace_ms",
                    int(settings.grpc_max_connection_age_grace_s * 1000),
                ),
            ],
        )
        self.port = 0
        self._stopping = False

    @property
    def health_names(self) -> list[str]:
        """Names whose health is reported: the overall server ("") and each service."""
        return ["", *self._service.service_names]

    async def start(self) -> int:
        """Starts the service, binds the port and reports SERVING. Returns the bound port."""
        await self._service.start()
        # Keys, bindings and the audit stream come with the service's NATS connection.
        access = getattr(self._service, "access", None)
        if access is not None:
            self.gatekeeper.attach(*access)
        self._service.register(self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            [*self._service.service_names, HEALTH_SERVICE, reflection.SERVICE_NAME], self._server
        )
        address = f"{self._settings.grpc_host}:{self._settings.grpc_port}"
        if self._settings.tls_cert_file and self._settings.tls_key_file:
            client_ca = self._settings.tls_client_ca_file
            credentials = grpc.ssl_server_credentials(
                [
                    (
                        self._settings.tls_key_file.read_bytes(),
                        self._settings.tls_cert_file.read_bytes(),
                    )
                ],
                root_certificates=client_ca.read_bytes() if client_ca else None,
                require_client_auth=client_ca is not None,
            )
            self.port = self._server.add_secure_port(address, credentials)
        else:
            self.port = self._server.add_insecure_port(address)
        await self._server.start()
        for name in self.health_names:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        # A service whose gRPC services can stop serving one by one (a dependency only one of
        # them needs is down) is told how once the server serves.
        attach_health = getattr(self._service, "attach_health", None)
        if attach_health is not None:
            await attach_health(self._set_serving)
        logger.info("serving", extra={"port": self.port, "services": self._service.service_names})
        return self.port

    async def _set_serving(self, name: str, serving: bool) -> None:
        if name not in self._service.service_names or self._stopping:
            return
        status = health_pb2.HealthCheckResponse
        await self._health.set(name, status.SERVING if serving else status.NOT_SERVING)

    async def stop(self) -> None:
        """NOT_SERVING, wait for probes to notice, drain calls in flight, stop the service."""
        self._stopping = True
        for name in self.health_names:
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._settings.shutdown_not_serving_delay_s:
            await asyncio.sleep(self._settings.shutdown_not_serving_delay_s)
        await self._server.stop(self._settings.shutdown_grace_s)
        await self.gatekeeper.close()
        await _reporting_if_slow(self._service.stop(), "stopping the service")
        logger.info("stopped")


# A shutdown that takes longer than this says what it is still waiting for (a pod would be
# killed before it ends, and a hung one otherwise leaves nothing to go on).
_SLOW_SHUTDOWN_S = 20.0


async def _reporting_if_slow(work: Awaitable[None], what: str) -> None:
    task = asyncio.ensure_future(work)
    while True:
        try:
            done, _ = await asyncio.wait({task}, timeout=_SLOW_SHUTDOWN_S)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if done:
            task.result()
            return
        waiting = [
            f"{other.get_name()}: {frame.f_code.co_name} "
            f"({frame.f_code.co_filename}:{frame.f_lineno})"
            for other in asyncio.all_tasks()
            if other is not asyncio.current_task()
            for frame in other.get_stack()[-1:]
        ]
        logger.warning(
            "%s has taken over %.0f s; tasks still waiting: %s",
            what,
            _SLOW_SHUTDOWN_S,
            "; ".join(waiting) or "none",
        )


async def serve(settings: ServiceSettings, service: Service, *, name: str) -> None:
    """Runs ``service`` until SIGTERM or SIGINT, then shuts it down gracefully."""
    # A crash inside a C extension (gRPC core, numba, cryptography) would otherwise leave only
    # an exit code behind: the Python stacks of every thread go to stderr, i.e. the pod's log.
    faulthandler.enable()
    configure_logging(settings.log_level, settings.log_format, service=name)
    configure_tracing(
        name,
        settings.otel_exporter_otlp_endpoint,
        export_timeout_s=settings.otel_export_timeout_s,
    )
    configure_metrics(
        name,
        prometheus=settings.metrics_enabled,
        otlp_endpoint=(
            settings.otel_exporter_otlp_endpoint if settings.otel_export_metrics else None
        ),
        export_timeout_s=settings.otel_export_timeout_s,
    )
    # Half a second of pint's work, done in a thread while the service starts and serves rather
    # than on the event loop when the first model with units arrives.
    asyncio.get_running_loop().run_in_executor(None, units.prepare)
    server = GrpcServer(settings, service)
    stopping = asyncio.Event()
    metrics_endpoint: MetricsEndpoint | None = None
    try:
        if settings.metrics_enabled:
            metrics_endpoint = await serve_metrics(settings.metrics_host, settings.metrics_port)
            logger.info(
                "metrics on http://%s:%d/metrics", settings.metrics_host, metrics_endpoint.port
            )
        await server.start()
        # Installed after start: dependencies such as Ray install signal handlers of their own
        # when they connect, and the graceful path must be the one that runs.
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()
        logger.info("shutdown requested")
    finally:
        await server.stop()
        # Scraped until the end: the last scrape sees the drain.
        if metrics_endpoint is not None:
            await metrics_endpoint.stop()
        shutdown_tracing()
