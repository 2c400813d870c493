"""The two clients: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio).

Both have the same areas with the same methods — ``registry``, ``telemetry``, ``state``,
``simulation`` and ``sweeps`` — built from one definition per call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from twinstack.sdk._access import Access, AsyncAccess
from twinstack.sdk._devices import AsyncDevices, Devices
from twinstack.sdk._registry import AsyncRegistry, Registry
from twinstack.sdk._simulation import AsyncSimulation, Simulation
from twinstack.sdk._state import AsyncState, State
from twinstack.sdk._sweeps import AsyncSweeps, Sweeps
from twinstack.sdk._telemetry import AsyncTelemetry, Telemetry
from twinstack.sdk._transport import AsyncTransport, SyncTransport
from twinstack.sdk.config import ConnectConfig

_UNREACHABLE = "UNREACHABLE"


def _status_name(response: health_pb2.HealthCheckResponse) -> str:
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


class Client:
    """A blocking client of the four services.

    >>> with Client() as client:
    ...     client.registry.get_twin("line1-press-3")

    Args:
        config: Addresses, credentials, TLS and retries (``ConnectConfig.from_env()`` when
            None: ``TWINSTACK_<SERVICE>_ADDR``, ``TWINSTACK_AUTH_TOKEN``, ...).

    Attributes:
        registry: Models, twins and relationships.
        telemetry: Telemetry into the platform.
        state: Live state, desired values, history and alerts.
        simulation: Scenario runs, forecasts and calibration.
        sweeps: Sweeps as jobs on the cluster: submit, watch, cancel, results.
        access: Who the caller is and what it may do; API keys and role bindings.
        devices: Devices feeding twins (MQTT, Sparkplug B, OPC UA) and commands to them.
    """

    def __init__(self, config: ConnectConfig | None = None) -> None:
        self.config = config or ConnectConfig.from_env()
        self._transport = SyncTransport(self.config)
        self.registry = Registry(self._transport)
        self.telemetry = Telemetry(self._transport)
        self.state = State(self._transport)
        self.simulation = Simulation(self._transport)
        self.sweeps = Sweeps(self._transport)
        self.access = Access(self._transport)
        self.devices = Devices(self._transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connections; calls in progress are cancelled."""
        self._transport.close()

    def health(self, timeout_s: float = 2.0) -> dict[str, str]:
        """Each service's health.

        Returns:
            Service name → ``SERVING``, ``NOT_SERVING`` or ``UNREACHABLE``.
        """
        found: dict[str, str] = {}
        for name, channel in self._transport.channels.items():
            stub: Any = health_pb2_grpc.HealthStub(channel)
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
                found[name] = _status_name(response)
            except grpc.RpcError:
                found[name] = _UNREACHABLE
        return found


class AsyncClient:
    """An asyncio client of the four services; create it inside the event loop that uses it.

    >>> async with AsyncClient() as client:
    ...     twin = await client.registry.get_twin("line1-press-3")

    Args:
        config: Addresses, credentials, TLS and retries (``ConnectConfig.from_env()`` when
            None).

    Attributes:
        registry: Models, twins and relationships.
        telemetry: Telemetry into the platform.
        state: Live state, desired values, history and alerts.
        simulation: Scenario runs, forecasts and calibration.
        sweeps: Sweeps as jobs on the cluster: submit, watch, cancel, results.
        access: Who the caller is and what it may do; API keys and role bindings.
        devices: Devices feeding twins (MQTT, Sparkplug B, OPC UA) and commands to them.
    """

    def __init__(self, config: ConnectConfig | None = None) -> None:
        self.config = config or ConnectConfig.from_env()
        self._transport = AsyncTransport(self.config)
        self.registry = AsyncRegistry(self._transport)
        self.telemetry = AsyncTelemetry(self._transport)
        self.state = AsyncState(self._transport)
        self.simulation = AsyncSimulation(self._transport)
        self.sweeps = AsyncSweeps(self._transport)
        self.access = AsyncAccess(self._transport)
        self.devices = AsyncDevices(self._transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the connections; calls in progress are cancelled."""
        await self._transport.close()

    async def health(self, timeout_s: float = 2.0) -> dict[str, str]:
        """Each service's health.

        Returns:
            Service name → ``SERVING``, ``NOT_SERVING`` or ``UNREACHABLE``.
        """

        async def check(channel: grpc.aio.Channel) -> str:
            stub: Any = health_pb2_grpc.HealthStub(channel)
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
            except grpc.RpcError:
                return _UNREACHABLE
            return _status_name(response)

        names = list(self._transport.channels)
        statuses = await asyncio.gather(*(check(c) for c in self._transport.channels.values()))
        return dict(zip(names, statuses, strict=True))
