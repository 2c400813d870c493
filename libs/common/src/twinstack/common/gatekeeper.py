"""Every call checked against its caller: authentication, authorization, audit.

The server bootstrap runs each call through :class:`Gatekeeper`: it turns the call's credential
(a bearer JWT, an API key, or a verified client certificate) into a :class:`Principal`, decides
with the tenant's role bindings whether the method's verb is allowed, makes the principal
available to the servicer (:func:`current_principal`), and publishes an audit record for every
write and every denial. API keys and bindings live in the ``access`` KV bucket; each service
follows it with a watch, so a revoked key or binding takes effect within the watch's latency,
open streams included (:meth:`Gatekeeper.revocation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from nats.aio.client import Client as NatsClient
from nats.js.kv import KeyValue

from twinstack.api.access.v1 import access_pb2
from twinstack.common.access import (
    ANONYMOUS,
    DEFAULT_TENANT,
    METHOD_VERBS,
    SCOPED_METHODS,
    Binding,
    Decision,
    Principal,
    PrincipalKind,
    Subgraph,
    Verb,
    decide,
)
from twinstack.common.catalog import ModelCatalog
from twinstack.common.errors import NotFoundError, PermissionDeniedError, UnauthenticatedError
from twinstack.common.events import AUDIT_ALLOWED, AUDIT_DENIED
from twinstack.common.identity import (
    ApiKeySecret,
    JwksKeys,
    TokenRules,
    TokenVerifier,
    certificate_name,
    parse_api_key,
    secrets_match,
)
from twinstack.common.kv_view import KvView
from twinstack.common.settings import ServiceSettings
from twinstack.common.tasks import cancel_and_wait
from twinstack.common.tenancy import TenantIds, ids_of

logger = logging.getLogger(__name__)

MAX_QUEUED_AUDITS = 100_000
# How long a stopping server waits for queued audit records to be published.
AUDIT_DRAIN_S = 5.0

API_KEY_PREFIX = "apikey."
BINDING_PREFIX = "binding."
TENANT_PREFIX = "tenant."


@dataclass(frozen=True)
class TwinScope:
    """The twins a call may touch: every twin (``models`` None), or those whose model is one of
    ``models`` or extends one, and those in one of ``subgraphs`` as the graph is now."""

    models: frozenset[str] | None
    subgraphs: frozenset[Subgraph] = frozenset()

    @property
    def every_twin(self) -> bool:
        return self.models is None

    def admits_model(self, catalog: ModelCatalog, model_id: str) -> bool:
        """Whether every twin of the model is in scope (a subgraph never covers a model)."""
        if self.models is None:
            return True
        return any(catalog.is_a(model_id, model) for model in self.models)

    def admits_twin(self, catalog: ModelCatalog, twin_id: str, model_id: str) -> bool:
        """Whether the twin, of that model, is in scope."""
        if self.admits_model(catalog, model_id):
            return True
        graph = catalog.graph
        # A service that does not follow the graph cannot tell: the twin is not in scope.
        return graph is not None and any(twin_id in graph.reachable(s) for s in self.subgraphs)

    async def admits(self, catalog: ModelCatalog, twin_id: str) -> bool:
        """Whether the twin is in scope; a twin that does not exist is not."""
        if self.models is None:
            return True
        twin = await catalog.get(twin_id)
        return twin is not None and self.admits_twin(catalog, twin_id, twin.model_id)

    def narrower_than(self, other: TwinScope) -> bool:
        if other.models is None:
            return self.models is not None
        return self.models is not None and not (
            other.models <= self.models and other.subgraphs <= self.subgraphs
        )


EVERY_TWIN = TwinScope(None)
NO_TWIN = TwinScope(frozenset(), frozenset())

_current: contextvars.ContextVar[tuple[Principal, TwinScope]] = contextvars.ContextVar(
    "twinstack_principal"
)


def current_principal() -> Principal:
    """The caller of the call being served (anonymous admin where auth is disabled)."""
    return _current.get((ANONYMOUS, EVERY_TWIN))[0]


def require_platform_admin(caller: Principal, what: str) -> None:
    """Refuses ``what`` to anyone but the platform's administrators: principals of the default
    tenant holding the admin verb (the gatekeeper checked the verb).

    Raises:
        PermissionDeniedError: The caller belongs to another tenant.
    """
    if caller.tenant != DEFAULT_TENANT:
        raise PermissionDeniedError(
            f"{what} is for admins of the default tenant",
            metadata={"verb": str(Verb.ADMIN), "subject": caller.subject},
        )


def current_ids() -> TenantIds:
    """The id translation of the current caller's tenant."""
    return ids_of(current_principal().tenant)


def current_scope() -> TwinScope:
    """The twins the call being served may touch."""
    return _current.get((ANONYMOUS, EVERY_TWIN))[1]


@contextlib.contextmanager
def acting_as(principal: Principal, scope: TwinScope = EVERY_TWIN) -> Any:
    """Makes ``principal`` the current caller (the bootstrap does this for every call)."""
    token = _current.set((principal, scope))
    try:
        yield principal
    finally:
        # A streaming handler spans yields: when gRPC closes its generator from another task
        # (a server shutting down), the context it was set in is not current and cannot be
        # reset, nor needs to be, as that context ends with its call. Raising here would turn
        # a clean close into an error in the middle of gRPC's shutdown.
        with contextlib.suppress(ValueError):
            _current.reset(token)


def twin_not_found(twin_id: str) -> NotFoundError:
    """What a twin outside the caller's scope answers: the same as a twin that does not exist,
    so that ids outside it cannot even be detected."""
    return NotFoundError("twin", twin_id, f"twin {twin_id!r} not found")


async def require_in_scope(catalog: ModelCatalog, twin_id: str) -> None:
    """Raises NOT_FOUND unless the current call may touch ``twin_id``."""
    if not await current_scope().admits(catalog, twin_id):
        raise twin_not_found(twin_id)


def api_key_key(key_id: str) -> str:
    return f"{API_KEY_PREFIX}{key_id}"


def binding_key(tenant: str, binding_id: str) -> str:
    return f"{BINDING_PREFIX}{tenant}.{binding_id}"


def tenant_key(name: str) -> str:
    return f"{TENANT_PREFIX}{name}"


@dataclass(frozen=True)
class StoredApiKey:
    """An API key as stored: its public part and the digest of its secret."""

    key: access_pb2.ApiKey
    secret_sha256: str

    def to_bytes(self) -> bytes:
        return json.dumps(
            {"key": json_format.MessageToDict(self.key), "secret_sha256": self.secret_sha256}
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> StoredApiKey:
        document = json.loads(data)
        key = json_format.ParseDict(document["key"], access_pb2.ApiKey())
        return cls(key, str(document["secret_sha256"]))


class AccessDirectory:
    """Tenants, API keys and role bindings, followed from the ``access`` bucket.

    Args:
        bucket: The ``access`` KV bucket.
    """

    def __init__(self, bucket: KeyValue) -> None:
        self.view = KvView(bucket)
        self._keys: dict[str, StoredApiKey] = {}
        self._bindings: dict[str, dict[str, access_pb2.RoleBinding]] = {}
        self._tenants: dict[str, access_pb2.Tenant] = {}
        self._changed = asyncio.Event()
        self.view.subscribe(self._apply, on_lost=self._lost)

    async def start(self) -> None:
        await self.view.start()
        await self.view.loaded()

    async def stop(self) -> None:
        await self.view.stop()

    def _apply(self, entry: KeyValue.Entry) -> None:
        key = entry.key
        value = entry.value
        deleted = entry.operation in ("DEL", "PURGE") or not value
        if key.startswith(API_KEY_PREFIX):
            key_id = key.removeprefix(API_KEY_PREFIX)
            if deleted:
                self._keys.pop(key_id, None)
            else:
                self._keys[key_id] = StoredApiKey.from_bytes(value or b"")
        elif key.startswith(BINDING_PREFIX):
            tenant, _, binding_id = key.removeprefix(BINDING_PREFIX).partition(".")
            tenant_bindings = self._bindings.setdefault(tenant, {})
            if deleted:
                tenant_bindings.pop(binding_id, None)
            else:
                binding = access_pb2.RoleBinding.FromString(value or b"")
                binding.revision = entry.revision or 0
                tenant_bindings[binding_id] = binding
        elif key.startswith(TENANT_PREFIX):
            name = key.removeprefix(TENANT_PREFIX)
            if deleted:
                self._tenants.pop(name, None)
            else:
                stored = access_pb2.Tenant.FromString(value or b"")
                stored.revision = entry.revision or 0
                self._tenants[name] = stored
        # Wakes every open stream's revocation check, then arms the next change.
        self._changed.set()
        self._changed = asyncio.Event()

    def _lost(self) -> None:
        # Without the watch a revocation could go unseen: forget everything, which refuses
        # API keys and bindings (token roles still work) until the view is back.
        self._keys.clear()
        self._bindings.clear()
        self._tenants.clear()
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        """Returns at the next change of any key or binding."""
        await self._changed.wait()

    def tenant(self, name: str) -> access_pb2.Tenant | None:
        """The stored tenant; the default tenant exists without one (before any update)."""
        stored = self._tenants.get(name)
        if stored is None and name == DEFAULT_TENANT:
            return access_pb2.Tenant(name=DEFAULT_TENANT, display_name="Default tenant")
        return stored

    def quota(self, tenant: str, name: str) -> float | None:
        """A tenant's own figure for a quota (a field of ``TenantQuotas``), or None for the
        setting's."""
        stored = self._tenants.get(tenant)
        if stored is None or not stored.quotas.HasField(name):
            return None
        return float(getattr(stored.quotas, name))

    def tenants(self) -> list[access_pb2.Tenant]:
        """Every tenant, the default one first, then by name."""
        names = sorted(self._tenants.keys() - {DEFAULT_TENANT})
        found = [self.tenant(DEFAULT_TENANT), *(self._tenants[n] for n in names)]
        return [t for t in found if t is not None]

    def api_key(self, key_id: str) -> StoredApiKey | None:
        return self._keys.get(key_id)

    def api_keys(self, tenant: str) -> list[StoredApiKey]:
        return sorted(
            (k for k in self._keys.values() if k.key.tenant == tenant), key=lambda k: k.key.id
        )

    def role_bindings(self, tenant: str) -> list[access_pb2.RoleBinding]:
        return sorted(self._bindings.get(tenant, {}).values(), key=lambda b: b.id)

    def bindings_revision(self, tenant: str, binding_id: str) -> int:
        """The stored revision of a binding; 0 when there is none."""
        binding = self._bindings.get(tenant, {}).get(binding_id)
        return binding.revision if binding is not None else 0

    def bindings(self, tenant: str) -> list[Binding]:
        return [
            Binding(
                id=b.id,
                subject=b.subject,
                role=b.role,
                deny=b.effect == access_pb2.RoleBinding.EFFECT_DENY,
                scope=b.scope,
            )
            for b in self._bindings.get(tenant, {}).values()
        ]


class Gatekeeper:
    """Authenticates and authorizes calls, and audits them.

    Args:
        settings: Auth mode, identity provider and claim names.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self.required = settings.auth_mode == "required"
        self.open_reflection = settings.auth_open_reflection
        self._verifier: TokenVerifier | None = None
        if settings.auth_jwks and settings.auth_issuer:
            self._verifier = TokenVerifier(
                JwksKeys(
                    settings.auth_jwks, refresh_interval_s=settings.auth_jwks_refresh_interval_s
                ),
                TokenRules(
                    issuer=settings.auth_issuer,
                    audience=settings.auth_audience,
                    clock_skew_s=settings.auth_clock_skew_s,
                    tenant_claim=settings.auth_tenant_claim,
                    groups_claim=settings.auth_groups_claim,
                    roles_claim=settings.auth_roles_claim,
                ),
            )
        self.directory: AccessDirectory | None = None
        self._nats: NatsClient | None = None
        # Audit records wait here for one publisher task: a call pays for building its record,
        # not for a task or a publish of its own.
        self._audits: asyncio.Queue[tuple[str, bytes]] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._audits_lost = 0

    def attach(self, directory: AccessDirectory | None, nats: NatsClient | None) -> None:
        """Connects the key and binding directory and the audit publisher (after start)."""
        self.directory = directory
        self._nats = nats
        if nats is not None:
            self._audits = asyncio.Queue(MAX_QUEUED_AUDITS)
            self._publisher = asyncio.create_task(self._publish_audits(nats, self._audits))

    async def close(self) -> None:
        """Publishes the audit records still queued, then stops publishing."""
        if self._publisher is None or self._audits is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(AUDIT_DRAIN_S):
                await self._audits.join()
        await cancel_and_wait(self._publisher)
        self._publisher = None

    @staticmethod
    async def _publish_audits(nats: NatsClient, audits: asyncio.Queue[tuple[str, bytes]]) -> None:
        while True:
            subject, data = await audits.get()
            try:
                if not nats.is_closed:
                    await nats.publish(subject, data)
            except Exception as error:
                logger.warning("audit record not published: %s", error)
            finally:
                audits.task_done()

    async def authenticate(
        self,
        metadata: Mapping[str, str],
        auth_context: Callable[[], Mapping[str, Iterable[bytes]]],
    ) -> Principal:
        """The principal of a call.

        Raises:
            UnauthenticatedError: No credential, or one that does not verify.
        """
        if not self.required:
            return ANONYMOUS
        authorization = metadata.get("authorization", "")
        if authorization:
            scheme, _, credential = authorization.partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                raise UnauthenticatedError("the authorization header must be 'Bearer <credential>'")
            return await self._bearer(credential.strip())
        service = certificate_name(auth_context())
        if service is not None:
            return Principal(f"service:{service}", DEFAULT_TENANT, PrincipalKind.SERVICE)
        raise UnauthenticatedError(
            "this call needs a credential: 'authorization: Bearer <token or API key>'"
        )

    async def _bearer(self, credential: str) -> Principal:
        presented_key = parse_api_key(credential)
        if presented_key is not None:
            return self._api_key_principal(credential, presented_key)
        if self._verifier is None:
            raise UnauthenticatedError("this server accepts API keys only, and that is not one")
        return await self._verifier.principal(credential)

    def _api_key_principal(self, credential: str, presented: ApiKeySecret) -> Principal:
        stored = self.directory.api_key(presented.key_id) if self.directory else None
        # One message for unknown, wrong secret and revoked: a caller learns nothing by probing.
        refused = UnauthenticatedError("the API key is unknown, revoked or expired")
        if stored is None or not secrets_match(stored.secret_sha256, presented):
            raise refused
        key = stored.key
        if key.revoked:
            raise refused
        if key.HasField("expires_at") and key.expires_at.ToDatetime(UTC) <= datetime.now(UTC):
            raise refused
        device = key.role == "device"
        return Principal(
            subject=f"apikey:{key.id}",
            tenant=key.tenant,
            kind=PrincipalKind.DEVICE if device else PrincipalKind.API_KEY,
            roles=(key.role,),
            twin_ids=frozenset(key.twin_ids),
            credential=credential,
        )

    def decide(self, principal: Principal, verb: Verb) -> Decision:
        """Whether ``principal`` may use ``verb`` now."""
        if principal.kind is PrincipalKind.ANONYMOUS:
            return Decision(True, "authentication is disabled on this server")
        if self.directory is None or self.directory.tenant(principal.tenant) is None:
            # A token may name any tenant; only those an administrator created are served.
            return Decision(False, f"tenant {principal.tenant!r} does not exist on this platform")
        if principal.kind in (PrincipalKind.API_KEY, PrincipalKind.DEVICE) and not self._key_live(
            principal
        ):
            return Decision(False, f"{principal.subject} was revoked or has expired")
        bindings = self.directory.bindings(principal.tenant) if self.directory else []
        return decide(principal, verb, bindings)

    def _key_live(self, principal: Principal) -> bool:
        stored = (
            self.directory.api_key(principal.subject.removeprefix("apikey:"))
            if (self.directory)
            else None
        )
        if stored is None or stored.key.revoked:
            return False
        expires = stored.key.expires_at
        return not stored.key.HasField("expires_at") or expires.ToDatetime(UTC) > datetime.now(UTC)

    def authorize_verb(self, principal: Principal, verb: Verb) -> None:
        """Raises PermissionDeniedError unless ``principal`` may use ``verb``."""
        decision = self.decide(principal, verb)
        if not decision.allowed:
            raise PermissionDeniedError(
                f"{principal.subject} may not {verb}: {decision.explanation}",
                metadata={"verb": str(verb), "subject": principal.subject},
            )

    def authorize(self, principal: Principal, method: str) -> tuple[Verb, TwinScope]:
        """The verb of ``method`` and the twins it may be used on, once ``principal`` is
        allowed it.

        Raises:
            PermissionDeniedError: Not allowed, or a method no verb is known for.
        """
        verb = METHOD_VERBS.get(method)
        if verb is None:
            raise PermissionDeniedError(
                f"{method} is not open to callers", metadata={"method": method}
            )
        return verb, self.scope(principal, verb, scoped=method in SCOPED_METHODS)

    def scope(self, principal: Principal, verb: Verb, *, scoped: bool) -> TwinScope:
        """The twins ``principal`` may use ``verb`` on: all of them, or (for a call that checks
        each twin, ``scoped``) those of the models and subgraphs its scoped bindings name.

        Raises:
            PermissionDeniedError: None at all.
        """
        decision = self.decide(principal, verb)
        if decision.allowed:
            return EVERY_TWIN
        if scoped and decision.scoped:
            # Bindings name models and twins as their tenant's callers do; calls compare them
            # with internal ids.
            ids = ids_of(principal.tenant)
            return TwinScope(
                frozenset(ids.inner(m) for m in decision.models or ()),
                frozenset(
                    dataclasses.replace(s, root=ids.inner(s.root)) for s in decision.subgraphs
                ),
            )
        raise PermissionDeniedError(
            f"{principal.subject} may not {verb}"
            + (" here (this call takes tenant-wide grants only)" if decision.scoped else "")
            + f": {decision.explanation}",
            metadata={"verb": str(verb), "subject": principal.subject},
        )

    @contextlib.asynccontextmanager
    async def revocation(
        self, principal: Principal, verb: Verb, scope: TwinScope
    ) -> AsyncIterator[Callable[[], bool]]:
        """While open, cancels the current task when ``principal`` loses ``verb`` on any twin of
        ``scope`` (a revoked key or binding, a narrower scope). Yields whether that happened,
        for the caller to tell a revocation from any other cancellation."""
        if principal.kind is PrincipalKind.ANONYMOUS or self.directory is None:
            yield lambda: False
            return
        directory = self.directory
        task = asyncio.current_task()
        assert task is not None
        revoked = False

        async def watch() -> None:
            nonlocal revoked
            while True:
                await directory.changed()
                try:
                    now = self.scope(principal, verb, scoped=scope is not EVERY_TWIN)
                except PermissionDeniedError:
                    now = NO_TWIN
                if now.narrower_than(scope):
                    revoked = True
                    task.cancel()
                    return

        watcher = asyncio.create_task(watch(), name="revocation-watch")
        try:
            yield lambda: revoked
        finally:
            watcher.cancel()

    def audit(
        self,
        principal: Principal,
        verb: Verb | None,
        method: str,
        *,
        resource: str,
        allowed: bool,
        status: str,
        peer: str,
    ) -> None:
        """Queues one audit record for publishing, without waiting for the stream's
        acknowledgement: the hot paths (ingest, updates) must not pay a round trip per call."""
        if self._audits is None:
            return
        outcome = "allowed" if allowed else "denied"
        record = access_pb2.AuditRecord(
            subject=principal.subject,
            tenant=principal.tenant,
            verb=str(verb or ""),
            method=method,
            resource=resource,
            outcome=outcome,
            status=status,
            peer=peer,
        )
        record.time.GetCurrentTime()
        event = AUDIT_ALLOWED if allowed else AUDIT_DENIED
        subject = event.subject(_subject_token(principal.tenant))
        try:
            self._audits.put_nowait((subject, record.SerializeToString()))
        except asyncio.QueueFull:
            # Said once per episode: a flood of refused calls must not become a flood of logs.
            if not self._audits_lost:
                logger.warning("audit queue full (NATS too slow?): records are being lost")
            self._audits_lost += 1
        else:
            if self._audits_lost:
                logger.warning("audit queue drained; %d records were lost", self._audits_lost)
                self._audits_lost = 0


def _subject_token(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in value) or "_"


_RESOURCE_FIELDS = ("twin_id", "sweep_id", "id", "rule_id", "name")


def resource_of(request: Any) -> str:
    """The resource a request names, for the audit record: its first id-like field."""
    descriptor = getattr(request, "DESCRIPTOR", None)
    if descriptor is None:
        return ""
    for name in _RESOURCE_FIELDS:
        field = descriptor.fields_by_name.get(name)
        if field is not None and field.type == field.TYPE_STRING and not field.is_repeated:
            value = getattr(request, name)
            if value:
                return str(value)[:256]
    return ""


MAX_CLAIMED_NAME_CHARS = 128


def acknowledger(principal: Principal, claimed: str) -> str:
    """Who did something, for the record: the authenticated principal, with a name the caller
    gave kept only as a claim beside it."""
    printable = "".join(c for c in claimed if c.isprintable())[:MAX_CLAIMED_NAME_CHARS]
    if not printable or printable == principal.subject:
        return principal.subject
    return f"{principal.subject} (for {printable})"


def require_devices_twins(principal: Principal, twin_ids: Iterable[str]) -> None:
    """Refuses telemetry of twins a device key does not own (other principals pass).

    Raises:
        PermissionDeniedError: Naming up to ten of the twins it may not write.
    """
    if not principal.is_device:
        return
    # Telemetry ids arrive as the device names them; its key holds them qualified.
    ids = ids_of(principal.tenant)
    foreign = sorted({t for t in twin_ids if ids.inner(t) not in principal.twin_ids})
    if foreign:
        raise PermissionDeniedError(
            f"{principal.subject} may write only its own twins' telemetry, not "
            + ", ".join(foreign[:10]),
            metadata={"verb": str(Verb.TELEMETRY_WRITE), "subject": principal.subject},
        )
