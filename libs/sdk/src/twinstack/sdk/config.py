"""Where the services are and how to reach them: one configuration for the SDK, the CLI and
service-to-service calls."""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc

from twinstack.api.access.v1 import access_pb2
from twinstack.api.devices.v1 import devices_pb2
from twinstack.api.ingestion.v1 import ingestion_pb2
from twinstack.api.registry.v1 import registry_pb2
from twinstack.api.simulation.v1 import simulation_pb2, sweep_pb2
from twinstack.api.state.v1 import state_pb2

ServiceName = Literal["registry", "ingestion", "state", "simulation"]
SERVICE_NAMES: tuple[ServiceName, ...] = ("registry", "ingestion", "state", "simulation")

_DEFAULT_ADDRESSES: dict[ServiceName, str] = {
    "registry": "127.0.0.1:50051",
    "ingestion": "127.0.0.1:50052",
    "state": "127.0.0.1:50053",
    "simulation": "127.0.0.1:50054",
}
# The gRPC services each endpoint serves (the simulation service serves sweeps too).
_SERVICE_DESCRIPTORS = {
    "registry": [
        registry_pb2.DESCRIPTOR.services_by_name["RegistryService"],
        access_pb2.DESCRIPTOR.services_by_name["AccessService"],
    ],
    "ingestion": [
        ingestion_pb2.DESCRIPTOR.services_by_name["IngestionService"],
        devices_pb2.DESCRIPTOR.services_by_name["DeviceService"],
    ],
    "state": [state_pb2.DESCRIPTOR.services_by_name["StateService"]],
    "simulation": [
        simulation_pb2.DESCRIPTOR.services_by_name["SimulationService"],
        sweep_pb2.DESCRIPTOR.services_by_name["SweepService"],
    ],
}
# Calls that change nothing: sending one again after a lost answer cannot apply anything twice.
_READ_ONLY_PREFIXES = ("Get", "BatchGet", "List", "Query", "Fetch")
# Calls that change something, but the same request twice has the effect of one: identical
# telemetry is de-duplicated by the stream, the SDK gives every sweep submit a request id, an
# alert rule is put whole, and the rest compute without storing.
_IDEMPOTENT_METHODS = frozenset(
    {
        "IngestBatch",
        "SubmitSweep",
        "PutAlertRule",
        "WhoAmI",
        "CheckAccess",
        "RunScenario",
        "Forecast",
        "Calibrate",
    }
)


ENVIRONMENT_VARIABLES = (
    *(f"TWINSTACK_{service.upper()}_ADDR" for service in SERVICE_NAMES),
    "TWINSTACK_AUTH_TOKEN",
    "TWINSTACK_AUTH_TOKEN_FILE",
    "TWINSTACK_TLS",
    "TWINSTACK_TLS_ROOTS",
    "TWINSTACK_TLS_CERT",
    "TWINSTACK_TLS_KEY",
    "TWINSTACK_TLS_SERVER_NAME",
)
"""Every variable :meth:`ConnectConfig.from_env` reads."""


LOCAL_ADMIN_TOKEN = Path(".local/twinstack/auth/admin.token")
"""Where ``make up`` leaves the local admin's token; used when no token is configured."""


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _token_from_file(path: Path | None) -> str | None:
    candidate = path or LOCAL_ADMIN_TOKEN
    try:
        return candidate.read_text().strip() or None
    except FileNotFoundError:
        if path is not None:
            raise ValueError(f"TWINSTACK_AUTH_TOKEN_FILE names a missing file: {path}") from None
        return None


def channel_target(address: str) -> str:
    """The gRPC target of an address: ``host:port`` as it is (a name that resolves to several
    replicas, such as a headless Service, is spread over all of them), or several
    ``ip:port`` separated by commas, as one target over all of them.

    Raises:
        ValueError: A list that names a host by name (gRPC cannot mix resolvers in a target).
    """
    parts = [part.strip() for part in address.split(",") if part.strip()]
    if len(parts) <= 1:
        return address
    families = set()
    for part in parts:
        host, _, port = part.rpartition(":")
        if not (host and port.isdigit()):
            raise ValueError(f"{address!r}: {part!r} is not host:port")
        try:
            families.add(ipaddress.ip_address(host.strip("[]")).version)
        except ValueError:
            raise ValueError(
                f"{address!r}: a list of addresses takes IP addresses only ({host!r} is a name); "
                "name several replicas with one DNS name that resolves to all of them"
            ) from None
    if len(families) > 1:
        raise ValueError(f"{address!r}: mixes IPv4 and IPv6 addresses")
    return f"ipv{families.pop()}:{','.join(parts)}"


@dataclass(frozen=True)
class Endpoints:
    """Addresses (``host:port``, or several ``ip:port`` separated by commas) of the four
    services.

    Attributes:
        registry: Defaults to ``TWINSTACK_REGISTRY_ADDR`` or ``127.0.0.1:50051``.
        ingestion: Defaults to ``TWINSTACK_INGESTION_ADDR`` or ``127.0.0.1:50052``.
        state: Defaults to ``TWINSTACK_STATE_ADDR`` or ``127.0.0.1:50053``.
        simulation: Defaults to ``TWINSTACK_SIMULATION_ADDR`` or ``127.0.0.1:50054``.
    """

    registry: str = field(default_factory=lambda: Endpoints._from_env("registry"))
    ingestion: str = field(default_factory=lambda: Endpoints._from_env("ingestion"))
    state: str = field(default_factory=lambda: Endpoints._from_env("state"))
    simulation: str = field(default_factory=lambda: Endpoints._from_env("simulation"))

    @staticmethod
    def _from_env(service: ServiceName) -> str:
        return _env(f"TWINSTACK_{service.upper()}_ADDR") or _DEFAULT_ADDRESSES[service]

    def address(self, service: ServiceName) -> str:
        """The address of one service."""
        address: str = getattr(self, service)
        return address

    def items(self) -> list[tuple[ServiceName, str]]:
        """``(service, address)`` of every service, registry first."""
        return [(name, self.address(name)) for name in SERVICE_NAMES]


@dataclass(frozen=True)
class RetryPolicy:
    """How gRPC retries an idempotent call whose service was unreachable.

    Only calls that change nothing (Get, List, Query, Fetch) or that are idempotent
    (IngestBatch, SubmitSweep with the request id the SDK gives it, PutAlertRule, and calls that
    compute without storing) are retried: another write whose answer was lost may have been
    applied, so the SDK leaves resending it to the caller (conditional writes with
    ``expected_revision`` make that safe). gRPC retries transparently, with exponential backoff
    and jitter, within the call's deadline; a call that never left the client is retried
    whatever it is.

    Attributes:
        max_attempts: Attempts in all, the first included (gRPC allows at most 5).
        initial_backoff_s: The first pause.
        max_backoff_s: The longest pause.
        backoff_multiplier: Growth of the pause per attempt.
        retryable_codes: Status codes worth another attempt.
    """

    max_attempts: int = 4
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    backoff_multiplier: float = 2.0
    # CANCELLED too: a replica that stops cancels the calls it could not finish (gRPC never
    # retries a cancellation the caller made itself).
    retryable_codes: tuple[str, ...] = ("UNAVAILABLE", "CANCELLED")

    def method_config(self, service: ServiceName) -> dict[str, Any]:
        """The gRPC method config that applies this policy to ``service``'s idempotent
        methods."""
        names = [
            {"service": descriptor.full_name, "method": method.name}
            for descriptor in _SERVICE_DESCRIPTORS[service]
            for method in descriptor.methods
            if method.name.startswith(_READ_ONLY_PREFIXES) or method.name in _IDEMPOTENT_METHODS
        ]
        names.append({"service": "grpc.health.v1.Health", "method": "Check"})
        policy = {
            "maxAttempts": self.max_attempts,
            "initialBackoff": f"{self.initial_backoff_s:g}s",
            "maxBackoff": f"{self.max_backoff_s:g}s",
            "backoffMultiplier": self.backoff_multiplier,
            "retryableStatusCodes": list(self.retryable_codes),
        }
        return {"name": names, "retryPolicy": policy}


@dataclass(frozen=True)
class ConnectConfig:
    """How to reach the services: addresses, credentials, TLS and retries.

    Attributes:
        endpoints: Where the services listen.
        token: Bearer token sent with every call, when the services require one.
        tls: Use TLS instead of plaintext.
        root_certificates_file: PEM roots that verify the servers (system roots when None).
        client_certificate_file: PEM certificate for mutual TLS (with ``client_key_file``).
        client_key_file: PEM private key of ``client_certificate_file``.
        server_name_override: The name to verify the servers' certificates against when it
            differs from the address (an IP address, a port-forward).
        timeout_s: Deadline of a unary call that sets none of its own.
        retry: Retries of read-only calls (None: no retries).
    """

    endpoints: Endpoints = field(default_factory=Endpoints)
    token: str | None = None
    tls: bool = False
    root_certificates_file: Path | None = None
    client_certificate_file: Path | None = None
    client_key_file: Path | None = None
    server_name_override: str | None = None
    timeout_s: float = 30.0
    retry: RetryPolicy | None = field(default_factory=RetryPolicy)

    @classmethod
    def from_env(cls) -> ConnectConfig:
        """A configuration from the environment.

        Reads ``TWINSTACK_<SERVICE>_ADDR``, ``TWINSTACK_AUTH_TOKEN`` (else the token in
        ``TWINSTACK_AUTH_TOKEN_FILE``, else the local admin's token that ``make up`` leaves in
        ``.local/twinstack/auth/admin.token`` of the working directory), ``TWINSTACK_TLS``
        (``1``/``true``), ``TWINSTACK_TLS_ROOTS``, ``TWINSTACK_TLS_CERT``, ``TWINSTACK_TLS_KEY``
        and ``TWINSTACK_TLS_SERVER_NAME``; what is unset keeps its default.
        """

        def path(name: str) -> Path | None:
            value = _env(name)
            return Path(value) if value else None

        return cls(
            token=_env("TWINSTACK_AUTH_TOKEN")
            or _token_from_file(path("TWINSTACK_AUTH_TOKEN_FILE")),
            tls=(_env("TWINSTACK_TLS") or "").lower() in ("1", "true", "yes"),
            root_certificates_file=path("TWINSTACK_TLS_ROOTS"),
            client_certificate_file=path("TWINSTACK_TLS_CERT"),
            client_key_file=path("TWINSTACK_TLS_KEY"),
            server_name_override=_env("TWINSTACK_TLS_SERVER_NAME"),
        )

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata sent with every call."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS channel credentials, or None for plaintext."""
        if not (self.tls or self.root_certificates_file or self.client_certificate_file):
            return None
        if (self.client_certificate_file is None) != (self.client_key_file is None):
            raise ValueError("mutual TLS needs both a client certificate and its key")

        def read(path: Path | None) -> bytes | None:
            return path.read_bytes() if path is not None else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.root_certificates_file),
            private_key=read(self.client_key_file),
            certificate_chain=read(self.client_certificate_file),
        )

    def channel_options(self, service: ServiceName) -> list[tuple[str, str | int]]:
        """gRPC channel options for one service's channel."""
        # A service that restarts (a rollout, a crash) is found again within seconds: gRPC's
        # default reconnect backoff grows to two minutes, which would stall a waiting stream.
        options: list[tuple[str, str | int]] = [
            ("grpc.initial_reconnect_backoff_ms", 250),
            ("grpc.min_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", 5000),
            ("grpc.enable_retries", 1 if self.retry is not None else 0),
            ("grpc.service_config", self.service_config(service)),
        ]
        if self.server_name_override:
            options.append(("grpc.ssl_target_name_override", self.server_name_override))
        return options

    def service_config(self, service: ServiceName) -> str:
        """The gRPC service config (JSON) of ``service``'s channel: calls spread round robin
        over every address the target resolves to (several replicas), and the retry policy."""
        config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
        if self.retry is not None:
            config["methodConfig"] = [self.retry.method_config(service)]
        return json.dumps(config)

    def channels(self) -> dict[ServiceName, grpc.Channel]:
        """A synchronous channel to each service (the TLS files read once for all)."""
        credentials = self.credentials()
        found: dict[ServiceName, grpc.Channel] = {}
        for service, address in self.endpoints.items():
            options = self.channel_options(service)
            target = channel_target(address)
            found[service] = (
                grpc.insecure_channel(target, options)
                if credentials is None
                else grpc.secure_channel(target, credentials, options)
            )
        return found

    def aio_channels(self) -> dict[ServiceName, grpc.aio.Channel]:
        """An asyncio channel to each service; create them inside the event loop that uses
        them."""
        credentials = self.credentials()
        found: dict[ServiceName, grpc.aio.Channel] = {}
        for service, address in self.endpoints.items():
            options = self.channel_options(service)
            target = channel_target(address)
            found[service] = (
                grpc.aio.insecure_channel(target, options)
                if credentials is None
                else grpc.aio.secure_channel(target, credentials, options)
            )
        return found
