"""NATS connection and the JetStream layout every service relies on.

The layout is provisioned idempotently by each service at start, so no service depends on
another having started first, and a changed setting (replicas, retention) is applied by
updating the stream in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import nats
import nats.errors
import nats.js.errors
from google.protobuf.message import Message
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import (
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from twinstack.common.device_topics import DEVICE_INGRESS_SUBJECTS
from twinstack.common.ids import partition_of
from twinstack.common.settings import ServiceSettings, nats_seeds, revealed
from twinstack.common.tracing import inject_trace_headers

logger = logging.getLogger(__name__)

MessageT = TypeVar("MessageT", bound=Message)

TELEMETRY_STREAM = "TELEMETRY"
EVENTS_STREAM = "EVENTS"
# What devices publish over MQTT (nats-server's listener), until the device gateway has turned
# it into telemetry: a work queue, so a message stays exactly until the gateway acknowledged it.
DEVICES_STREAM = "DEVICES"
# One bucket for twins, models and relationships, so one revision sequence orders every
# registry change and read-your-write works across them. Keys: twins.<twin id>,
# models.<model key> and relationships.<source twin id>.
REGISTRY_BUCKET = "registry"
TWIN_KEY_PREFIX = "twins."
MODEL_KEY_PREFIX = "models."
RELATIONSHIPS_KEY_PREFIX = "relationships."
STATE_TWINS_BUCKET = "state_twins"
# State replicas (members.<member>) and their partition leases (partitions.<n>); entries
# expire unless renewed, so a dead replica's partitions are free after the TTL.
STATE_OWNERSHIP_BUCKET = "state_ownership"
STATE_LEASE_TTL_S = 10.0
# Alert rules by rule id (state).
ALERT_RULES_BUCKET = "alert_rules"
# Sweep records (sweeps.<sweep id>) and idempotency keys (requests.<hash>) (simulation).
SWEEPS_BUCKET = "sweeps"
# The chunk ledger: <sweep id>.<chunk index> exists once that chunk's results are stored.
SWEEP_CHUNKS_BUCKET = "sweep_chunks"
# Each running sweep's driver lease, renewed while the driver lives; entries expire.
SWEEP_DRIVERS_BUCKET = "sweep_drivers"
# API keys (hashed) and role bindings: written by the registry, read by every service.
ACCESS_BUCKET = "access"
# The device gateway's leader lease (one key, expiring unless renewed), and the devices it has
# heard from (one document per device).
DEVICE_GATEWAY_BUCKET = "device_gateway"
DEVICE_GATEWAY_LEASE_TTL_S = 10.0
DEVICES_BUCKET = "devices"
SWEEP_DRIVER_LEASE_TTL_S = 60.0
# The embedded results store: sweep jobs and result parts (Parquet).
SWEEP_RESULTS_STORE = "sweep_results"

# Failures to reach NATS, as opposed to answers from it: a retry later can succeed.
NATS_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.NoServersError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
)

# JetStream's answer to a publish whose message id is that of a copy still being stored (a
# retry that overtook its original while a stream leader changed).
_DUPLICATE_IN_PROCESS = 10158
# JetStream's answer to creating a replicated stream or bucket while too few of the cluster's
# members are online to place it: a member restarting, until it rejoins.
_NO_PEERS_FOR_PLACEMENT = 10005
_FIRST_SERVER_ERROR = 500


def nats_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says NATS could not serve a request now, rather than refused it: no
    answer (:data:`NATS_UNAVAILABLE_ERRORS`), a server-side error of a cluster in flux (a
    stream or bucket without a leader, a raft proposal that failed: 5xx; no members online to
    place a new one on), or an original still being stored. The same request succeeds once the
    cluster settles."""
    if isinstance(error, NATS_UNAVAILABLE_ERRORS):
        return True
    if isinstance(error, nats.js.errors.APIError):
        # Some subclasses (KeyWrongLastSequenceError) never set these attributes.
        code = getattr(error, "code", None) or 0
        server_side = code >= _FIRST_SERVER_ERROR
        return server_side or getattr(error, "err_code", None) in (
            _DUPLICATE_IN_PROCESS,
            _NO_PEERS_FOR_PLACEMENT,
        )
    return False


MSG_ID_HEADER = "Nats-Msg-Id"
# A server that stops answering without closing the connection (a stalled or paused machine)
# is given up after this many unanswered pings this far apart, and another member of the
# cluster is tried; the client's defaults (2 minutes apart) would stall every call that long.
_PING_INTERVAL_S = 2
_MAX_OUTSTANDING_PINGS = 3
# JetStream's error code for "stream name already in use with a different configuration".
_STREAM_CONFIG_CONFLICT = 10058
_DAY_S = 24 * 3600.0


# How long a service keeps retrying the JetStream calls of its start (provisioning, binding its
# consumers) while the cluster cannot answer: a leader election, a member restarting, a
# starved machine. Beyond it the start fails, and the supervisor restarts the process.
STARTUP_RETRY_S = 60.0
_STARTUP_RETRY_PAUSE_S = 0.5

ResultT = TypeVar("ResultT")


async def retried_at_start(
    call: Callable[[], Awaitable[ResultT]], what: str, *, budget_s: float = STARTUP_RETRY_S
) -> ResultT:
    """``call()``, tried again while NATS is unavailable (:func:`nats_unavailable`: no answer,
    or a cluster in flux), for up to ``budget_s``."""
    deadline = time.monotonic() + budget_s
    while True:
        try:
            return await call()
        except Exception as error:
            if not nats_unavailable(error) or time.monotonic() > deadline:
                raise
            logger.warning("%s: NATS could not serve it now (%r); trying again", what, error)
            await asyncio.sleep(_STARTUP_RETRY_PAUSE_S)


def telemetry_subject(twin_id: str, partitions: int) -> str:
    """Subject of a twin's telemetry: ``tel.<partition>.<twin_id>``."""
    return f"tel.{partition_of(twin_id, partitions)}.{twin_id}"


def telemetry_partition_filter(partition: int | None = None) -> str:
    """Subject filter of one partition, or of all of them."""
    return "tel.>" if partition is None else f"tel.{partition}.*"


def twin_key(twin_id: str) -> str:
    """KV key of a twin document in the registry bucket."""
    return f"{TWIN_KEY_PREFIX}{twin_id}"


def message_headers(msg_id: str) -> dict[str, str]:
    """Headers of a published message: the de-duplication id and the current trace context."""
    return inject_trace_headers({MSG_ID_HEADER: msg_id})


@dataclass(frozen=True)
class JetStreamLayout:
    """Streams and KV buckets of the platform, sized from settings."""

    replicas: int = 1
    dedup_window_s: float = 120.0
    telemetry_retention_s: float = 7 * _DAY_S
    events_retention_s: float = 7 * _DAY_S
    # Device messages not yet taken by the gateway: kept this long and up to this size (the
    # gateway down for longer loses the oldest; operations.md says how to size it).
    devices_retention_s: float = 7 * _DAY_S
    devices_max_bytes: int = 10 * 1024**3

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> JetStreamLayout:
        return cls(
            replicas=settings.nats_replicas, dedup_window_s=settings.telemetry_dedup_window_s
        )

    def streams(self) -> list[StreamConfig]:
        return [
            self._stream(
                TELEMETRY_STREAM,
                "Telemetry batches, one twin per message",
                "tel.>",
                self.telemetry_retention_s,
            ),
            self._stream(
                EVENTS_STREAM,
                "Registry, state, alert and simulation events",
                "evt.>",
                self.events_retention_s,
            ),
            StreamConfig(
                name=DEVICES_STREAM,
                description="Device readings (MQTT, Sparkplug B) until the gateway took them",
                subjects=list(DEVICE_INGRESS_SUBJECTS),
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
                duplicate_window=self.dedup_window_s,
                max_age=self.devices_retention_s,
                max_bytes=self.devices_max_bytes,
            ),
        ]

    def _stream(
        self, name: str, description: str, subjects: str, retention_s: float
    ) -> StreamConfig:
        return StreamConfig(
            name=name,
            description=description,
            subjects=[subjects],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            duplicate_window=self.dedup_window_s,
            max_age=retention_s,
        )

    def buckets(self) -> list[KeyValueConfig]:
        return [
            self._bucket(
                REGISTRY_BUCKET,
                "Twin, model and relationship documents (registry)",
                history=5,
            ),
            self._bucket(
                # One revision per twin: a watcher that lags behind skips to the latest state.
                STATE_TWINS_BUCKET,
                "Live twin state documents (state)",
            ),
            self._bucket(
                STATE_OWNERSHIP_BUCKET,
                "State replicas and their telemetry partition leases (state)",
                ttl_s=STATE_LEASE_TTL_S,
            ),
            self._bucket(
                ALERT_RULES_BUCKET,
                "Alert rules (state)",
            ),
            self._bucket(
                SWEEPS_BUCKET,
                "Sweep records and submission keys (simulation)",
            ),
            self._bucket(
                SWEEP_CHUNKS_BUCKET,
                "Chunks of sweeps whose results are stored, with partial summaries",
            ),
            self._bucket(
                SWEEP_DRIVERS_BUCKET,
                "Leases of running sweep drivers (simulation)",
                ttl_s=SWEEP_DRIVER_LEASE_TTL_S,
            ),
            self._bucket(
                DEVICE_GATEWAY_BUCKET,
                "The device gateway's leader lease (ingestion)",
                ttl_s=DEVICE_GATEWAY_LEASE_TTL_S,
            ),
            self._bucket(
                DEVICES_BUCKET,
                "Devices the gateway has heard from, and their connections (ingestion)",
            ),
            self._bucket(
                ACCESS_BUCKET,
                "API keys (hashed) and role bindings (registry; read by all)",
                history=5,
            ),
        ]

    def _bucket(
        self, bucket: str, description: str, *, history: int = 1, ttl_s: float | None = None
    ) -> KeyValueConfig:
        return KeyValueConfig(
            bucket=bucket,
            description=description,
            history=history,
            ttl=ttl_s,
            replicas=self.replicas,
            storage=StorageType.FILE,
        )

    def object_stores(self) -> list[ObjectStoreConfig]:
        return [
            ObjectStoreConfig(
                bucket=SWEEP_RESULTS_STORE,
                description="Sweep jobs and result parts (simulation)",
                replicas=self.replicas,
                storage=StorageType.FILE,
            )
        ]


@dataclass(frozen=True)
class NatsConnection:
    """How to reach NATS: the seeds, credentials and TLS (picklable, so sweep workers on
    other machines connect as the service does).

    Attributes:
        urls: Comma-separated seed URLs; the rest of a cluster is discovered from them.
        user: The NATS user (each service has its own, with its permissions).
        password: Its password.
        credentials_file: A credentials file (JWT and NKey seed) instead of user and password.
        tls_ca_file: The CA that verifies the servers; TLS is used when any TLS file is set.
        tls_cert_file: Client certificate, when the servers verify clients.
        tls_key_file: Its key.
        connect_timeout_s: Timeout of the first connection to each server tried.
    """

    urls: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    credentials_file: str | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    connect_timeout_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> NatsConnection:
        def path(value: Path | None) -> str | None:
            return None if value is None else str(value)

        return cls(
            urls=settings.nats_url,
            user=settings.nats_user,
            password=revealed(settings.nats_password),
            credentials_file=path(settings.nats_credentials_file),
            tls_ca_file=path(settings.nats_tls_ca_file),
            tls_cert_file=path(settings.nats_tls_cert_file),
            tls_key_file=path(settings.nats_tls_key_file),
            connect_timeout_s=settings.nats_connect_timeout_s,
        )

    def tls_context(self) -> ssl.SSLContext | None:
        """The client's TLS context, or None for plaintext (``tls://`` seeds still get one)."""
        uses_tls = any(url.startswith(("tls://", "wss://")) for url in nats_seeds(self.urls))
        if not (uses_tls or self.tls_ca_file or self.tls_cert_file):
            return None
        context = ssl.create_default_context(cafile=self.tls_ca_file)
        if self.tls_cert_file is not None:
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        return context


async def connect_nats(connection: NatsConnection | str, name: str) -> NatsClient:
    """Connects with unbounded reconnects, so a restarted server (or a cluster's other
    members) is picked up again.

    Args:
        connection: Where and as whom; a bare URL list connects anonymously.
        name: The connection's name (shown by the server's monitoring).
    """
    if isinstance(connection, str):
        connection = NatsConnection(connection)

    async def on_error(error: Exception) -> None:
        logger.warning("nats error: %s", error)

    async def on_disconnected() -> None:
        logger.warning("nats disconnected")

    async def on_reconnected() -> None:
        logger.info("nats reconnected", extra={"server": str(client.connected_url)})

    client = await nats.connect(
        servers=nats_seeds(connection.urls),
        name=name,
        user=connection.user,
        password=connection.password,
        user_credentials=connection.credentials_file,
        tls=connection.tls_context(),
        connect_timeout=connection.connect_timeout_s,
        ping_interval=_PING_INTERVAL_S,
        max_outstanding_pings=_MAX_OUTSTANDING_PINGS,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )
    return client


async def provision_jetstream(js: JetStreamContext, layout: JetStreamLayout) -> None:
    """Creates the platform's streams and KV buckets, or updates them to ``layout``.

    A stream's settings are updated in place. A KV bucket or object store that exists keeps its
    settings (their streams carry settings the client library derives, and recreating one would
    drop its data), except its replica count, which is raised or lowered to the layout's: a
    platform that moves from one server to a cluster gets every bucket replicated.
    """
    for config in layout.streams():
        try:
            await js.add_stream(config)
        except BadRequestError as error:
            if error.err_code != _STREAM_CONFIG_CONFLICT:
                raise
            await js.update_stream(config)
    for bucket in layout.buckets():
        try:
            await js.create_key_value(bucket)
        except BadRequestError as error:
            if error.err_code != _STREAM_CONFIG_CONFLICT:
                raise
            await _set_replicas(js, f"KV_{bucket.bucket}", layout.replicas)
    for store in layout.object_stores():
        try:
            # nats-py sets config.bucket from its first argument, even when it is None.
            await js.create_object_store(str(store.bucket), config=store)
        except BadRequestError as error:
            if error.err_code != _STREAM_CONFIG_CONFLICT:
                raise
            await _set_replicas(js, f"OBJ_{store.bucket}", layout.replicas)


async def _set_replicas(js: JetStreamContext, stream: str, replicas: int) -> None:
    info = await js.stream_info(stream)
    if info.config.num_replicas == replicas:
        return
    logger.warning(
        "stream %s has %s replicas; changing it to %s",
        stream,
        info.config.num_replicas,
        replicas,
    )
    await js.update_stream(dataclasses.replace(info.config, num_replicas=replicas))


async def read_document(
    bucket: KeyValue, key: str, kind: type[MessageT]
) -> tuple[MessageT, int] | None:
    """The protobuf document stored under ``key`` and its KV revision; None if there is none."""
    try:
        entry = await bucket.get(key)
    except KeyNotFoundError:
        return None
    if not entry.value:  # a delete marker
        return None
    return kind.FromString(entry.value), entry.revision or 0


async def key_value(js: JetStreamContext, bucket: str) -> KeyValue:
    """Binds to a KV bucket that :func:`provision_jetstream` created."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError as error:
        raise RuntimeError(f"KV bucket {bucket!r} is missing: provision JetStream first") from error


@dataclass
class Backbone:
    """A service's connection to NATS, with the JetStream layout provisioned."""

    client: NatsClient
    js: JetStreamContext

    @classmethod
    async def connect(cls, settings: ServiceSettings, name: str) -> Backbone:
        client = await connect_nats(NatsConnection.from_settings(settings), name)
        js = client.jetstream(timeout=settings.nats_request_timeout_s)
        layout = JetStreamLayout.from_settings(settings)
        await retried_at_start(lambda: provision_jetstream(js, layout), "provisioning JetStream")
        return cls(client, js)

    async def close(self, *, flush_timeout_s: float = 5.0) -> None:
        """Flushes pending publishes, then closes.

        Not ``drain()``: consumers are stopped by their owners before this, and a drain waits
        on pull subscriptions and KV watchers for up to its whole timeout.
        """
        if self.client.is_closed:
            return
        with contextlib.suppress(Exception):
            await self.client.flush(timeout=int(max(1, flush_timeout_s)))
        await self.client.close()
