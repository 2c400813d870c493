"""The shape every service takes for the server bootstrap: acquire dependencies in order,
release them in reverse, also when starting fails half way."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Sequence
from typing import ClassVar, Generic, Protocol, TypeVar

import grpc
from nats.aio.client import Client as NatsClient

from twinstack.common.gatekeeper import AccessDirectory
from twinstack.common.influx import InfluxStore
from twinstack.common.nats import ACCESS_BUCKET, Backbone, key_value
from twinstack.common.quotas import QuotaOverrides
from twinstack.common.server import HealthSetter
from twinstack.common.settings import ServiceSettings

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
Registration = Callable[[grpc.aio.Server], None]


class Lifecycle(Protocol):
    """Something that follows NATS in the background: started once, stopped once."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ServiceApp(abc.ABC, Generic[SettingsT]):
    """A service as :func:`twinstack.common.server.serve` runs it.

    Subclasses implement :meth:`open`: connect what the service needs, registering each
    release with the exit stack (the helpers below do both), and return what adds the servicers
    to a server. :meth:`stop` releases everything in reverse order; a start that fails releases
    what it had acquired before the error propagates.
    """

    service_names: ClassVar[Sequence[str]]

    def __init__(self, settings: SettingsT) -> None:
        self.settings = settings
        self._resources = contextlib.AsyncExitStack()
        self._registration: Registration | None = None
        # What each gRPC service's health should be, applied once the server serves.
        self._serving: dict[str, bool] = {}
        self._set_serving: HealthSetter | None = None
        # API keys and bindings to check callers against, and where audit records go: set
        # with the NATS connection, handed to the server's gatekeeper after start.
        self.access: tuple[AccessDirectory, NatsClient] | None = None

    @abc.abstractmethod
    async def open(self, resources: contextlib.AsyncExitStack) -> Registration:
        """Acquires the dependencies; returns what registers the servicers."""

    async def start(self) -> None:
        try:
            self._registration = await self.open(self._resources)
        except BaseException:
            await self._resources.aclose()
            raise

    def register(self, server: grpc.aio.Server) -> None:
        if self._registration is None:
            raise RuntimeError("start() first")
        self._registration(server)

    async def stop(self) -> None:
        await self._resources.aclose()

    async def attach_health(self, set_serving: HealthSetter) -> None:
        self._set_serving = set_serving
        for name, serving in self._serving.items():
            await set_serving(name, serving)

    async def report_health(self, name: str, serving: bool) -> None:
        """Serving or not for one of :attr:`service_names` (the others are unaffected)."""
        self._serving[name] = serving
        if self._set_serving is not None:
            await self._set_serving(name, serving)

    async def backbone(self, resources: contextlib.AsyncExitStack, name: str) -> Backbone:
        """The NATS connection, closed last of all (it was opened first)."""
        backbone = await Backbone.connect(self.settings, name)
        resources.push_async_callback(backbone.close)
        directory = AccessDirectory(await key_value(backbone.js, ACCESS_BUCKET))
        self.access = (await started(resources, directory), backbone.client)
        return backbone

    @property
    def quota_overrides(self) -> QuotaOverrides:
        """Tenants' own quotas, as the platform's administrators set them (after backbone())."""
        if self.access is None:
            raise RuntimeError("backbone() first")
        return self.access[0].quota

    async def influx(self, resources: contextlib.AsyncExitStack) -> InfluxStore:
        """The InfluxDB store of the settings, connected."""
        store = InfluxStore.from_settings(self.settings)
        resources.push_async_callback(store.close)
        await store.connect()
        return store


LifecycleT = TypeVar("LifecycleT", bound=Lifecycle)


async def started(resources: contextlib.AsyncExitStack, part: LifecycleT) -> LifecycleT:
    """Starts ``part`` and has ``resources`` stop it."""
    await part.start()
    resources.push_async_callback(part.stop)
    return part
