"""API keys and role bindings of a tenant: created, revoked, bound and explained.

Stored in the ``access`` KV bucket that every service's gatekeeper follows; every change is
published as an event. A key's secret is returned once and stored only as its digest. Nothing
here takes a tenant from a request: every call acts in the caller's own tenant, and ids of other
tenants' keys and bindings answer NOT_FOUND, as if they did not exist.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from datetime import UTC, datetime, timedelta

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from twinstack.api.access.v1 import access_pb2
from twinstack.common.access import (
    DEFAULT_TENANT,
    MODEL_SCOPE_PREFIX,
    ROLES,
    Principal,
    PrincipalKind,
    Subgraph,
    Verb,
    decide,
    granted_verbs,
)
from twinstack.common.errors import (
    AlreadyExistsError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    RevisionMismatchError,
    UnavailableError,
)
from twinstack.common.events import (
    API_KEY_CHANGED,
    ROLE_BINDING_CHANGED,
    TENANT_CHANGED,
    EventPublisher,
    EventType,
)
from twinstack.common.gatekeeper import (
    AccessDirectory,
    StoredApiKey,
    api_key_key,
    binding_key,
    require_platform_admin,
    tenant_key,
)
from twinstack.common.identity import new_api_key
from twinstack.common.ids import model_id_violation, twin_id_violation
from twinstack.common.tenancy import SEPARATOR, tenant_name_violation

KEY_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
BINDING_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
SUBJECT_PATTERN = re.compile(r"(user|group|apikey|service):[^\s]{1,256}")
MAX_DEVICE_TWINS = 1000
MAX_KEY_TTL_S = 10 * 365 * 24 * 3600
MAX_DISPLAY_NAME_CHARS = 256
TENANT_RESOURCE = "twinstack.io/Tenant"
# A write is visible to this service's own gatekeeper before the call returns, so the next call
# (on this replica) already sees it; other replicas follow within their watch latency.
READ_YOUR_WRITE_WAIT_S = 5.0


def _principal_proto(principal: Principal) -> access_pb2.Principal:
    return access_pb2.Principal(
        subject=principal.subject,
        tenant=principal.tenant,
        kind=access_pb2.PrincipalKind.Name(principal.kind.value),
        groups=principal.groups,
        twin_ids=sorted(principal.twin_ids),
    )


class AccessAdmin:
    """The access documents of every tenant.

    Args:
        bucket: The ``access`` KV bucket.
        directory: This service's view of it (the gatekeeper's).
        events: Where changes are published.
    """

    def __init__(
        self, bucket: KeyValue, directory: AccessDirectory, events: EventPublisher
    ) -> None:
        self._bucket = bucket
        self._directory = directory
        self._events = events

    def who_am_i(self, principal: Principal) -> access_pb2.WhoAmIResponse:
        bindings = self._directory.bindings(principal.tenant)
        return access_pb2.WhoAmIResponse(
            principal=_principal_proto(principal),
            verbs=sorted(str(v) for v in granted_verbs(principal, bindings)),
        )

    def check(
        self, caller: Principal, request: access_pb2.CheckAccessRequest
    ) -> access_pb2.CheckAccessResponse:
        try:
            verb = Verb(request.verb)
        except ValueError:
            raise InvalidArgumentError(
                "unknown verb",
                [FieldViolation("verb", "one of " + ", ".join(v.value for v in Verb))],
            ) from None
        bindings = self._directory.bindings(caller.tenant)
        caller_is_admin = caller.kind is PrincipalKind.ANONYMOUS or (
            decide(caller, Verb.ADMIN, bindings).allowed
        )
        subject = self._subject_principal(caller, request, caller_is_admin)
        decision = decide(subject, verb, bindings)
        return access_pb2.CheckAccessResponse(
            allowed=decision.allowed,
            explanation=decision.explanation,
            matched=decision.matched,
        )

    def _subject_principal(
        self, caller: Principal, request: access_pb2.CheckAccessRequest, caller_is_admin: bool
    ) -> Principal:
        if not request.subject or request.subject == caller.subject:
            return caller
        if not caller_is_admin:
            raise PermissionDeniedError(
                "asking about another principal needs the admin verb",
                metadata={"verb": str(Verb.ADMIN), "subject": caller.subject},
            )
        if not SUBJECT_PATTERN.fullmatch(request.subject):
            raise InvalidArgumentError("invalid subject", [_subject_violation("subject")])
        roles: tuple[str, ...] = ()
        twin_ids: frozenset[str] = frozenset()
        kind = PrincipalKind.USER
        if request.subject.startswith("apikey:"):
            stored = self._directory.api_key(request.subject.removeprefix("apikey:"))
            if stored is None or stored.key.tenant != caller.tenant:
                raise NotFoundError("api key", request.subject, f"{request.subject} not found")
            roles = (stored.key.role,)
            twin_ids = frozenset(stored.key.twin_ids)
            kind = PrincipalKind.DEVICE if stored.key.role == "device" else PrincipalKind.API_KEY
        return Principal(
            request.subject,
            caller.tenant,
            kind,
            groups=tuple(request.groups),
            roles=roles,
            twin_ids=twin_ids,
        )

    async def create_api_key(
        self, caller: Principal, request: access_pb2.CreateApiKeyRequest
    ) -> access_pb2.CreateApiKeyResponse:
        violations = []
        if not KEY_NAME_PATTERN.fullmatch(request.name):
            violations.append(FieldViolation("name", "1-64 characters of [A-Za-z0-9_.-]"))
        if request.role not in ROLES:
            violations.append(FieldViolation("role", "one of " + ", ".join(ROLES)))
        device = request.role == "device"
        if device and not request.twin_ids:
            violations.append(FieldViolation("twin_ids", "a device key names its twins"))
        if not device and request.twin_ids:
            violations.append(FieldViolation("twin_ids", "only device keys name twins"))
        if len(request.twin_ids) > MAX_DEVICE_TWINS:
            violations.append(FieldViolation("twin_ids", f"at most {MAX_DEVICE_TWINS}"))
        for number, twin_id in enumerate(request.twin_ids[:MAX_DEVICE_TWINS]):
            violation = twin_id_violation(twin_id, f"twin_ids[{number}]")
            if violation is not None:
                violations.append(violation)
        if not 0 <= request.ttl_seconds <= MAX_KEY_TTL_S:
            violations.append(
                FieldViolation("ttl_seconds", f"0 (no expiry) to {MAX_KEY_TTL_S} seconds")
            )
        if violations:
            raise InvalidArgumentError("invalid API key request", violations)
        for existing in self._directory.api_keys(caller.tenant):
            if existing.key.name == request.name and not existing.key.revoked:
                raise AlreadyExistsError(
                    "api key", request.name, f"an API key named {request.name} exists"
                )
        return await self._new_key(caller.tenant, request, caller.subject)

    async def _new_key(
        self, tenant: str, request: access_pb2.CreateApiKeyRequest, created_by: str
    ) -> access_pb2.CreateApiKeyResponse:
        secret, parts = new_api_key()
        key = access_pb2.ApiKey(
            id=parts.key_id,
            name=request.name,
            tenant=tenant,
            role=request.role,
            twin_ids=sorted(set(request.twin_ids)),
            revoked=False,
            created_by=created_by,
        )
        now = datetime.now(UTC)
        key.created_at.FromDatetime(now)
        if request.ttl_seconds:
            key.expires_at.FromDatetime(now + timedelta(seconds=request.ttl_seconds))
        revision = await self._bucket.create(
            api_key_key(key.id), StoredApiKey(key, parts.digest).to_bytes()
        )
        await self._published_and_seen(API_KEY_CHANGED, (key.tenant, key.id), key, revision)
        return access_pb2.CreateApiKeyResponse(key=key, secret=secret)

    async def create_tenant(
        self, caller: Principal, request: access_pb2.CreateTenantRequest
    ) -> access_pb2.CreateTenantResponse:
        require_platform_admin(caller, "tenant administration")
        tenant = access_pb2.Tenant(
            name=request.tenant.name,
            display_name=request.tenant.display_name,
            quotas=request.tenant.quotas,
            created_by=caller.subject,
        )
        violations = _tenant_violations(tenant, "tenant.")
        if violations:
            raise InvalidArgumentError("invalid tenant", violations)
        if tenant.name == DEFAULT_TENANT:
            raise AlreadyExistsError(TENANT_RESOURCE, tenant.name, "the default tenant exists")
        tenant.create_time.GetCurrentTime()
        try:
            revision = await self._bucket.create(
                tenant_key(tenant.name), tenant.SerializeToString()
            )
        except KeyWrongLastSequenceError:
            raise AlreadyExistsError(
                TENANT_RESOURCE, tenant.name, f"tenant {tenant.name} exists"
            ) from None
        tenant.revision = revision
        await self._published_and_seen(TENANT_CHANGED, (tenant.name,), tenant, revision)
        response = access_pb2.CreateTenantResponse(tenant=tenant)
        if request.create_admin_key:
            created = await self._new_key(
                tenant.name,
                access_pb2.CreateApiKeyRequest(name="admin", role="admin"),
                caller.subject,
            )
            response.admin_key.CopyFrom(created.key)
            response.admin_key_secret = created.secret
        return response

    async def create_tenant_admin_key(
        self, caller: Principal, name: str
    ) -> access_pb2.CreateTenantAdminKeyResponse:
        require_platform_admin(caller, "tenant administration")
        tenant = self.get_tenant(caller, name)
        created = await self._new_key(
            tenant.name,
            access_pb2.CreateApiKeyRequest(name=f"admin-{int(time.time())}", role="admin"),
            caller.subject,
        )
        return access_pb2.CreateTenantAdminKeyResponse(key=created.key, secret=created.secret)

    def get_tenant(self, caller: Principal, name: str) -> access_pb2.Tenant:
        name = name or caller.tenant
        if name != caller.tenant:
            require_platform_admin(caller, "tenant administration")
        found = self._directory.tenant(name)
        if found is None:
            raise NotFoundError(TENANT_RESOURCE, name[:64], f"no tenant {name[:64]!r}")
        return found

    def list_tenants(self, caller: Principal) -> list[access_pb2.Tenant]:
        require_platform_admin(caller, "tenant administration")
        return self._directory.tenants()

    async def update_tenant(
        self, caller: Principal, request: access_pb2.UpdateTenantRequest
    ) -> access_pb2.Tenant:
        require_platform_admin(caller, "tenant administration")
        current = self.get_tenant(caller, request.name or DEFAULT_TENANT)
        updated = access_pb2.Tenant()
        updated.CopyFrom(current)
        updated.display_name = request.display_name or current.display_name
        updated.quotas.CopyFrom(request.quotas)
        updated.revision = 0
        violations = _tenant_violations(updated, "")
        if violations:
            raise InvalidArgumentError("invalid tenant", violations)
        expected = request.expected_revision
        if expected and expected != current.revision:
            raise RevisionMismatchError(f"tenants/{current.name}", expected, current.revision)
        try:
            # The default tenant has no stored document until its first update.
            revision = (
                await self._bucket.update(
                    tenant_key(current.name), updated.SerializeToString(), last=current.revision
                )
                if current.revision
                else await self._bucket.create(
                    tenant_key(current.name), updated.SerializeToString()
                )
            )
        except KeyWrongLastSequenceError:
            latest = self._directory.tenant(current.name)
            raise RevisionMismatchError(
                f"tenants/{current.name}",
                expected or current.revision,
                latest.revision if latest else 0,
            ) from None
        updated.revision = revision
        await self._published_and_seen(TENANT_CHANGED, (updated.name,), updated, revision)
        return updated

    def list_api_keys(self, caller: Principal, include_revoked: bool) -> list[access_pb2.ApiKey]:
        return [
            stored.key
            for stored in self._directory.api_keys(caller.tenant)
            if include_revoked or not stored.key.revoked
        ]

    async def revoke_api_key(self, caller: Principal, key_id: str) -> access_pb2.ApiKey:
        while True:
            try:
                entry = await self._bucket.get(api_key_key(key_id)) if key_id.isalnum() else None
            except KeyNotFoundError:
                entry = None
            stored = StoredApiKey.from_bytes(entry.value) if entry and entry.value else None
            if entry is None or stored is None or stored.key.tenant != caller.tenant:
                raise NotFoundError("api key", key_id, f"API key {key_id} not found")
            if stored.key.revoked:
                return stored.key
            stored.key.revoked = True
            try:
                revision = await self._bucket.update(
                    entry.key, stored.to_bytes(), last=entry.revision
                )
            except KeyWrongLastSequenceError:
                continue  # changed meanwhile: read it again
            await self._published_and_seen(
                API_KEY_CHANGED, (stored.key.tenant, key_id), stored.key, revision
            )
            return stored.key

    async def put_binding(
        self, caller: Principal, request: access_pb2.PutRoleBindingRequest
    ) -> access_pb2.RoleBinding:
        binding = access_pb2.RoleBinding()
        binding.CopyFrom(request.binding)
        deny = binding.effect == access_pb2.RoleBinding.EFFECT_DENY
        violations = []
        if not BINDING_ID_PATTERN.fullmatch(binding.id):
            violations.append(FieldViolation("binding.id", "1-64 characters of [A-Za-z0-9_-]"))
        if not SUBJECT_PATTERN.fullmatch(binding.subject):
            violations.append(_subject_violation("binding.subject"))
        if deny and binding.role:
            violations.append(FieldViolation("binding.role", "a deny binding names no role"))
        if not deny and binding.role not in ROLES:
            violations.append(FieldViolation("binding.role", "one of " + ", ".join(ROLES)))
        if binding.scope:
            scope_violation = _scope_violation(binding.scope)
            if scope_violation is not None:
                violations.append(FieldViolation("binding.scope", scope_violation))
            elif deny:
                violations.append(FieldViolation("binding.scope", "a deny is tenant-wide"))
            else:
                binding.scope = _canonical_scope(binding.scope)
        if violations:
            raise InvalidArgumentError("invalid role binding", violations)
        binding.tenant = caller.tenant
        binding.effect = (
            access_pb2.RoleBinding.EFFECT_DENY if deny else access_pb2.RoleBinding.EFFECT_GRANT
        )
        binding.updated_by = caller.subject
        binding.updated_at.GetCurrentTime()
        binding.revision = 0
        key = binding_key(caller.tenant, binding.id)
        data = binding.SerializeToString()
        expected = request.expected_revision
        try:
            revision = (
                await self._bucket.update(key, data, last=expected)
                if expected
                else await self._bucket.put(key, data)
            )
        except KeyWrongLastSequenceError:
            current = self._directory.bindings_revision(caller.tenant, binding.id)
            raise RevisionMismatchError(f"binding {binding.id}", expected, current) from None
        binding.revision = revision
        await self._published_and_seen(
            ROLE_BINDING_CHANGED, (caller.tenant, binding.id), binding, revision
        )
        return binding

    def list_bindings(self, caller: Principal, subject: str) -> list[access_pb2.RoleBinding]:
        return [
            b
            for b in self._directory.role_bindings(caller.tenant)
            if not subject or b.subject == subject
        ]

    async def delete_binding(self, caller: Principal, binding_id: str) -> None:
        if not BINDING_ID_PATTERN.fullmatch(binding_id) or not self._directory.bindings_revision(
            caller.tenant, binding_id
        ):
            raise NotFoundError("role binding", binding_id, f"binding {binding_id} not found")
        key = binding_key(caller.tenant, binding_id)
        await self._bucket.delete(key)
        status = await self._bucket.status()
        deleted = access_pb2.RoleBinding(id=binding_id, tenant=caller.tenant)
        await self._published_and_seen(
            ROLE_BINDING_CHANGED,
            (caller.tenant, binding_id),
            deleted,
            status.stream_info.state.last_seq,
        )

    async def _published_and_seen(
        self,
        event: EventType,
        resource: tuple[str, ...],
        message: access_pb2.ApiKey | access_pb2.RoleBinding | access_pb2.Tenant,
        revision: int,
    ) -> None:
        await self._events.publish(
            event,
            resource,
            message,
            msg_id=f"access-{'.'.join(resource)}-{revision}",
        )
        try:
            async with asyncio.timeout(READ_YOUR_WRITE_WAIT_S):
                await self._directory.view.wait_for_revision(revision)
        except TimeoutError:
            raise UnavailableError(
                f"the change is stored (revision {revision}) but not yet in force here"
            ) from None


def _tenant_violations(tenant: access_pb2.Tenant, path: str) -> list[FieldViolation]:
    violations = []
    bad_name = tenant_name_violation(tenant.name, f"{path}name")
    if bad_name is not None:
        violations.append(bad_name)
    if len(tenant.display_name) > MAX_DISPLAY_NAME_CHARS or not tenant.display_name.isprintable():
        violations.append(
            FieldViolation(
                f"{path}display_name", f"at most {MAX_DISPLAY_NAME_CHARS} printable characters"
            )
        )
    for item, value in tenant.quotas.ListFields():
        if not (isinstance(value, int) or math.isfinite(value)) or value < 0:
            violations.append(
                FieldViolation(f"{path}quotas.{item.name}", "a finite number, 0 or more")
            )
    return violations


def _subject_violation(field: str) -> FieldViolation:
    return FieldViolation(
        field, "user:<sub>, group:<name>, apikey:<id> or service:<name> (no white space)"
    )


def _scope_violation(scope: str) -> str | None:
    """Why a binding's scope cannot be stored, or None."""
    if scope.startswith(MODEL_SCOPE_PREFIX):
        model_id = scope.removeprefix(MODEL_SCOPE_PREFIX)
        if model_id_violation(model_id, "") is None and SEPARATOR not in model_id:
            return None
    else:
        try:
            if Subgraph.parse(scope) is not None:
                return None
        except ValueError as error:
            return str(error)
    return (
        "empty (the whole tenant), model:<model id> (its twins and those of models extending "
        "it), or FROM '<twin id>' FOLLOW <relationship names, or *> DEPTH <1-10> (a subgraph)"
    )


def _canonical_scope(scope: str) -> str:
    subgraph = Subgraph.parse(scope)
    return scope if subgraph is None else str(subgraph)
