"""What the synchronous and the asyncio clients share: call descriptions built once per
operation, and the two transports that carry them out.

An operation (``get_twin``, ``list_twins``...) is written once as a function that returns a
description of the call: which method, which request, how to turn the response into the result.
:func:`sync_call` and :func:`async_call` make the public methods of :class:`Client`'s and
:class:`AsyncClient`'s areas from it, so the two clients cannot drift apart.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar

import grpc
from google.protobuf.message import Message

from twinstack.api.access.v1 import access_pb2_grpc
from twinstack.api.devices.v1 import devices_pb2_grpc
from twinstack.api.ingestion.v1 import ingestion_pb2_grpc
from twinstack.api.registry.v1 import registry_pb2_grpc
from twinstack.api.simulation.v1 import simulation_pb2_grpc, sweep_pb2_grpc
from twinstack.api.state.v1 import state_pb2_grpc
from twinstack.sdk.config import ConnectConfig, ServiceName
from twinstack.sdk.errors import ApiError

P = ParamSpec("P")
T = TypeVar("T")

# A gRPC service and the endpoint that serves it (sweeps are served by the simulation service,
# access by the registry, devices by ingestion).
StubName = ServiceName | Literal["sweeps", "access", "devices"]
_STUBS: dict[StubName, tuple[ServiceName, Callable[[Any], Any]]] = {
    "registry": ("registry", registry_pb2_grpc.RegistryServiceStub),
    "ingestion": ("ingestion", ingestion_pb2_grpc.IngestionServiceStub),
    "state": ("state", state_pb2_grpc.StateServiceStub),
    "simulation": ("simulation", simulation_pb2_grpc.SimulationServiceStub),
    "sweeps": ("simulation", sweep_pb2_grpc.SweepServiceStub),
    "access": ("registry", access_pb2_grpc.AccessServiceStub),
    "devices": ("ingestion", devices_pb2_grpc.DeviceServiceStub),
}


def _stubs(channels: dict[ServiceName, Any]) -> dict[StubName, Any]:
    return {name: stub(channels[endpoint]) for name, (endpoint, stub) in _STUBS.items()}


def _identity(response: Any) -> Any:
    return response


@dataclass(frozen=True)
class Unary(Generic[T]):
    """One request, one response, turned into the result by ``result``."""

    service: StubName
    method: str
    request: Message
    result: Callable[[Any], T] = _identity
    timeout_s: float | None = None


@dataclass(frozen=True)
class Paged(Generic[T]):
    """A List/Query call fetched page after page; yields the items of ``items``."""

    service: StubName
    method: str
    request: Any
    items: str
    page_size: int


class Reduction(Generic[T]):
    """Folds the messages of a server stream into one result."""

    def feed(self, message: Any) -> bool:
        """Takes one message; True when the result is complete (the rest is not read)."""
        raise NotImplementedError

    def result(self) -> T:
        """The result, once the stream ended or :meth:`feed` said it is complete."""
        raise NotImplementedError


@dataclass(frozen=True)
class Streamed(Generic[T]):
    """A server-streaming call whose messages fold into one result."""

    service: StubName
    method: str
    request: Message
    reduction: Reduction[T]
    timeout_s: float | None = None
    # Called when the stream ends without the reduction completing; None accepts it.
    incomplete: Callable[[], ApiError] | None = field(default=None)


class SyncTransport:
    """Carries calls over synchronous gRPC channels (one per service)."""

    def __init__(self, config: ConnectConfig) -> None:
        self.config = config
        self.channels = config.channels()
        self._stubs = _stubs(self.channels)

    def method(self, service: StubName, name: str) -> Any:
        """A stub's method (for the streaming calls the areas drive themselves)."""
        return getattr(self._stubs[service], name)

    def unary(self, call: Unary[T]) -> T:
        try:
            response = self.method(call.service, call.method)(
                call.request,
                timeout=call.timeout_s or self.config.timeout_s,
                metadata=self.config.metadata,
            )
        except grpc.RpcError as error:
            raise ApiError.from_rpc_error(error) from error
        return call.result(response)

    def paged(self, call: Paged[T]) -> Iterator[T]:
        call.request.page.page_size = call.page_size
        while True:
            response: Any = self.unary(Unary(call.service, call.method, call.request))
            yield from getattr(response, call.items)
            if not response.page.next_page_token:
                return
            call.request.page.page_token = response.page.next_page_token

    def streamed(self, call: Streamed[T]) -> T:
        stream = self.method(call.service, call.method)(
            call.request,
            timeout=call.timeout_s or self.config.timeout_s,
            metadata=self.config.metadata,
        )
        try:
            for message in stream:
                if call.reduction.feed(message):
                    return call.reduction.result()
        except grpc.RpcError as error:
            raise ApiError.from_rpc_error(error) from error
        finally:
            # Also reached when the caller is interrupted: the service stops the work.
            stream.cancel()
        if call.incomplete is not None:
            raise call.incomplete()
        return call.reduction.result()

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()


class AsyncTransport:
    """Carries calls over asyncio gRPC channels (one per service)."""

    def __init__(self, config: ConnectConfig) -> None:
        self.config = config
        self.channels = config.aio_channels()
        self._stubs = _stubs(self.channels)

    def method(self, service: StubName, name: str) -> Any:
        """A stub's method (for the streaming calls the areas drive themselves)."""
        return getattr(self._stubs[service], name)

    async def unary(self, call: Unary[T]) -> T:
        try:
            response = await self.method(call.service, call.method)(
                call.request,
                timeout=call.timeout_s or self.config.timeout_s,
                metadata=self.config.metadata,
            )
        except grpc.RpcError as error:
            raise ApiError.from_rpc_error(error) from error
        return call.result(response)

    async def paged(self, call: Paged[T]) -> AsyncIterator[T]:
        call.request.page.page_size = call.page_size
        while True:
            response: Any = await self.unary(Unary(call.service, call.method, call.request))
            for item in getattr(response, call.items):
                yield item
            if not response.page.next_page_token:
                return
            call.request.page.page_token = response.page.next_page_token

    async def streamed(self, call: Streamed[T]) -> T:
        stream = self.method(call.service, call.method)(
            call.request,
            timeout=call.timeout_s or self.config.timeout_s,
            metadata=self.config.metadata,
        )
        try:
            async for message in stream:
                if call.reduction.feed(message):
                    return call.reduction.result()
        except grpc.RpcError as error:
            raise ApiError.from_rpc_error(error) from error
        finally:
            stream.cancel()
        if call.incomplete is not None:
            raise call.incomplete()
        return call.reduction.result()

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()


class SyncArea:
    """One service's calls on a :class:`Client`."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport


class AsyncArea:
    """One service's calls on an :class:`AsyncClient`."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport


def sync_call(operation: Callable[P, Unary[T]]) -> Callable[Concatenate[SyncArea, P], T]:
    """A :class:`SyncArea` method that runs a unary operation."""

    @functools.wraps(operation)
    def method(self: SyncArea, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._transport.unary(operation(*args, **kwargs))

    return method


def async_call(
    operation: Callable[P, Unary[T]],
) -> Callable[Concatenate[AsyncArea, P], Coroutine[Any, Any, T]]:
    """An :class:`AsyncArea` method that runs a unary operation."""

    @functools.wraps(operation)
    async def method(self: AsyncArea, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._transport.unary(operation(*args, **kwargs))

    return method


def sync_pages(operation: Callable[P, Paged[T]]) -> Callable[Concatenate[SyncArea, P], Iterator[T]]:
    """A :class:`SyncArea` method that iterates over every page of a paged operation."""

    @functools.wraps(operation)
    def method(self: SyncArea, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._transport.paged(operation(*args, **kwargs))

    return method


def async_pages(
    operation: Callable[P, Paged[T]],
) -> Callable[Concatenate[AsyncArea, P], AsyncIterator[T]]:
    """An :class:`AsyncArea` method that iterates over every page of a paged operation."""

    @functools.wraps(operation)
    def method(self: AsyncArea, /, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        return self._transport.paged(operation(*args, **kwargs))

    return method


def sync_stream(
    operation: Callable[P, Streamed[T]],
) -> Callable[Concatenate[SyncArea, P], T]:
    """A :class:`SyncArea` method that folds a server stream into its result."""

    @functools.wraps(operation)
    def method(self: SyncArea, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._transport.streamed(operation(*args, **kwargs))

    return method


def async_stream(
    operation: Callable[P, Streamed[T]],
) -> Callable[Concatenate[AsyncArea, P], Coroutine[Any, Any, T]]:
    """An :class:`AsyncArea` method that folds a server stream into its result."""

    @functools.wraps(operation)
    async def method(self: AsyncArea, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._transport.streamed(operation(*args, **kwargs))

    return method
