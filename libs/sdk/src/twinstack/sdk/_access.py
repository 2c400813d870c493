"""The access calls (served by the registry): who the caller is, what it may do, API keys and
role bindings of its tenant, and the platform's tenants."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from twinstack.api.access.v1 import access_pb2
from twinstack.sdk._transport import AsyncArea, SyncArea, Unary, async_call, sync_call


def who_am_i() -> Unary[access_pb2.WhoAmIResponse]:
    """The caller as the platform sees it: principal, tenant and the verbs it holds."""
    return Unary("access", "WhoAmI", access_pb2.WhoAmIRequest())


def check_access(
    verb: str, *, subject: str = "", groups: Sequence[str] = ()
) -> Unary[access_pb2.CheckAccessResponse]:
    """Whether a principal may use a verb, and why.

    Args:
        verb: E.g. ``twins.write`` (docs/security.md lists the verbs).
        subject: Another principal of the tenant (``user:…``, ``apikey:…``); empty: the
            caller. Asking about another needs the admin verb.
        groups: That principal's groups.
    """
    request = access_pb2.CheckAccessRequest(verb=verb, subject=subject, groups=groups)
    return Unary("access", "CheckAccess", request)


def create_api_key(
    name: str, role: str, *, twin_ids: Sequence[str] = (), ttl_s: int = 0
) -> Unary[access_pb2.CreateApiKeyResponse]:
    """A new API key; its ``secret`` is in the response only.

    Args:
        name: Unique among the tenant's live keys.
        role: ``viewer``, ``operator``, ``modeler``, ``analyst``, ``admin`` or ``device``.
        twin_ids: A device key's twins (the only telemetry it may write).
        ttl_s: Lifetime in seconds; 0 never expires.
    """
    request = access_pb2.CreateApiKeyRequest(
        name=name, role=role, twin_ids=twin_ids, ttl_seconds=ttl_s
    )
    return Unary("access", "CreateApiKey", request)


def list_api_keys(*, include_revoked: bool = False) -> Unary[list[access_pb2.ApiKey]]:
    """The tenant's API keys (never their secrets)."""
    request = access_pb2.ListApiKeysRequest(include_revoked=include_revoked)
    return Unary("access", "ListApiKeys", request, lambda r: list(r.keys))


def revoke_api_key(key_id: str) -> Unary[access_pb2.ApiKey]:
    """Revokes a key; every service refuses it within seconds, open streams included."""
    request = access_pb2.RevokeApiKeyRequest(id=key_id)
    return Unary("access", "RevokeApiKey", request, lambda r: r.key)


def put_role_binding(
    binding_id: str,
    subject: str,
    role: str = "",
    *,
    scope: str = "",
    deny: bool = False,
    expected_revision: int = 0,
) -> Unary[access_pb2.RoleBinding]:
    """Grants ``role`` to ``subject`` (tenant-wide, or on the twins of a model), or (``deny``)
    refuses it everything.

    Args:
        binding_id: The binding's id; putting it again replaces it.
        subject: ``user:<sub>``, ``group:<name>``, ``apikey:<id>`` or ``service:<name>``.
        role: A built-in role (empty for a deny).
        scope: Empty: the whole tenant; ``model:<model id>``: the twins of that model and of
            the models extending it.
        deny: Refuse the subject everything in the tenant, whatever grants it.
        expected_revision: Replace only this revision (0: unconditionally).
    """
    effect = access_pb2.RoleBinding.EFFECT_DENY if deny else access_pb2.RoleBinding.EFFECT_GRANT
    binding = access_pb2.RoleBinding(
        id=binding_id, subject=subject, role=role, scope=scope, effect=effect
    )
    request = access_pb2.PutRoleBindingRequest(binding=binding, expected_revision=expected_revision)
    return Unary("access", "PutRoleBinding", request, lambda r: r.binding)


def list_role_bindings(subject: str = "") -> Unary[list[access_pb2.RoleBinding]]:
    """The tenant's bindings, or those of one subject."""
    request = access_pb2.ListRoleBindingsRequest(subject=subject)
    return Unary("access", "ListRoleBindings", request, lambda r: list(r.bindings))


def delete_role_binding(binding_id: str) -> Unary[None]:
    """Removes a binding; what it granted is gone within seconds, open streams included."""
    request = access_pb2.DeleteRoleBindingRequest(id=binding_id)
    return Unary("access", "DeleteRoleBinding", request, lambda _: None)


_QUOTA_NAMES = (
    "max_twins",
    "ingest_points_per_s",
    "max_watches",
    "max_active_sweeps",
    "max_active_scenario_steps",
    "max_alert_rules",
)


def _quotas(quotas: Mapping[str, float]) -> access_pb2.TenantQuotas:
    unknown = sorted(set(quotas) - set(_QUOTA_NAMES))
    if unknown:
        raise ValueError(f"unknown quotas {unknown}; known: {list(_QUOTA_NAMES)}")
    message = access_pb2.TenantQuotas()
    for name, value in quotas.items():
        field = access_pb2.TenantQuotas.DESCRIPTOR.fields_by_name[name]
        whole = field.cpp_type != field.CPPTYPE_DOUBLE
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"quota {name}: {value!r} is not a number")
        if whole and value != int(value):
            raise ValueError(f"quota {name}: {value!r} is not a whole number")
        try:
            setattr(message, name, int(value) if whole else float(value))
        except (TypeError, ValueError) as error:  # out of the field's range
            raise ValueError(f"quota {name}: {error}") from None
    return message


def create_tenant(
    name: str,
    *,
    display_name: str = "",
    quotas: Mapping[str, float] | None = None,
    create_admin_key: bool = False,
) -> Unary[access_pb2.CreateTenantResponse]:
    """A new tenant (needs an admin of the default tenant).

    Args:
        name: 1-63 characters of ``[a-z0-9-]``.
        display_name: For people.
        quotas: Where the tenant's quotas differ from the platform's settings: any of
            ``max_twins``, ``ingest_points_per_s``, ``max_watches``, ``max_active_sweeps``,
            ``max_active_scenario_steps``, ``max_alert_rules``.
        create_admin_key: Also create the tenant's first admin API key; its secret is in the
            response only (``admin_key_secret``).
    """
    tenant = access_pb2.Tenant(name=name, display_name=display_name, quotas=_quotas(quotas or {}))
    request = access_pb2.CreateTenantRequest(tenant=tenant, create_admin_key=create_admin_key)
    return Unary("access", "CreateTenant", request)


def get_tenant(name: str = "") -> Unary[access_pb2.Tenant]:
    """A tenant; empty: the caller's own."""
    request = access_pb2.GetTenantRequest(name=name)
    return Unary("access", "GetTenant", request, lambda r: r.tenant)


def list_tenants() -> Unary[list[access_pb2.Tenant]]:
    """Every tenant, the default one first (needs an admin of the default tenant)."""
    return Unary(
        "access", "ListTenants", access_pb2.ListTenantsRequest(), lambda r: list(r.tenants)
    )


def update_tenant(
    name: str,
    *,
    display_name: str = "",
    quotas: Mapping[str, float] | None = None,
    expected_revision: int = 0,
) -> Unary[access_pb2.Tenant]:
    """Replaces a tenant's quotas (and display name, when given)."""
    request = access_pb2.UpdateTenantRequest(
        name=name,
        display_name=display_name,
        quotas=_quotas(quotas or {}),
        expected_revision=expected_revision,
    )
    return Unary("access", "UpdateTenant", request, lambda r: r.tenant)


def create_tenant_admin_key(name: str) -> Unary[access_pb2.CreateTenantAdminKeyResponse]:
    """A new admin API key of a tenant, its ``secret`` in the response only (needs an admin of
    the default tenant): how a tenant whose first key was lost is reached again."""
    request = access_pb2.CreateTenantAdminKeyRequest(name=name)
    return Unary("access", "CreateTenantAdminKey", request)


class Access(SyncArea):
    """Identity and authorization of the caller's tenant (on the registry's endpoint)."""

    who_am_i = sync_call(who_am_i)
    check_access = sync_call(check_access)
    create_api_key = sync_call(create_api_key)
    list_api_keys = sync_call(list_api_keys)
    revoke_api_key = sync_call(revoke_api_key)
    put_role_binding = sync_call(put_role_binding)
    list_role_bindings = sync_call(list_role_bindings)
    delete_role_binding = sync_call(delete_role_binding)
    create_tenant = sync_call(create_tenant)
    get_tenant = sync_call(get_tenant)
    list_tenants = sync_call(list_tenants)
    update_tenant = sync_call(update_tenant)
    create_tenant_admin_key = sync_call(create_tenant_admin_key)


class AsyncAccess(AsyncArea):
    """Identity and authorization of the caller's tenant (on the registry's endpoint)."""

    who_am_i = async_call(who_am_i)
    check_access = async_call(check_access)
    create_api_key = async_call(create_api_key)
    list_api_keys = async_call(list_api_keys)
    revoke_api_key = async_call(revoke_api_key)
    put_role_binding = async_call(put_role_binding)
    list_role_bindings = async_call(list_role_bindings)
    delete_role_binding = async_call(delete_role_binding)
    create_tenant = async_call(create_tenant)
    get_tenant = async_call(get_tenant)
    list_tenants = async_call(list_tenants)
    update_tenant = async_call(update_tenant)
    create_tenant_admin_key = async_call(create_tenant_admin_key)
