"""``twinstack auth``: who the CLI calls as, dev tokens from the local issuer, API keys and role
bindings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from twinstack.api.access.v1 import access_pb2
from twinstack.cli.shared import (
    DATA_DIR_VARIABLE,
    UserError,
    console,
    emit,
    open_client,
    parse_assignments,
)

auth_app = typer.Typer(
    help="Identity and access: whoami, local tokens, API keys, role bindings.",
    no_args_is_help=True,
)
keys_app = typer.Typer(
    help="API keys of your tenant (automation and devices).", no_args_is_help=True
)
auth_app.add_typer(keys_app, name="keys")
tenants_app = typer.Typer(
    help="The platform's tenants (an admin of the default tenant manages them).",
    no_args_is_help=True,
)
auth_app.add_typer(tenants_app, name="tenants")

ROLE_HELP = "viewer, operator, modeler, analyst, admin (device: only its twins' telemetry)."


@auth_app.command()
def whoami() -> None:
    """The principal the CLI calls as, its tenant, and the verbs it holds."""
    with open_client() as client:
        me = client.access.who_am_i()

    def human() -> None:
        principal = me.principal
        console.print(f"[bold]{principal.subject}[/bold] in tenant [bold]{principal.tenant}[/bold]")
        if principal.groups:
            console.print("groups: " + ", ".join(principal.groups))
        console.print("may: " + (", ".join(me.verbs) or "nothing"))

    emit(me, human)


@auth_app.command()
def check(
    verb: Annotated[str, typer.Argument(help="E.g. twins.write (docs/security.md).")],
    subject: Annotated[str, typer.Option(help="Another principal (admins only).")] = "",
    group: Annotated[list[str] | None, typer.Option(help="Its groups (repeatable).")] = None,
) -> None:
    """Whether a verb would be allowed, and why. Exits 1 when it would be denied."""
    with open_client() as client:
        answer = client.access.check_access(verb, subject=subject, groups=group or [])

    def human() -> None:
        color = "green" if answer.allowed else "red"
        verdict = "allowed" if answer.allowed else "denied"
        console.print(f"[{color}]{verdict}[/{color}]: {answer.explanation}")
        for line in answer.matched:
            console.print(f"  matched {line}")

    emit(answer, human)
    if not answer.allowed:
        raise typer.Exit(1)


@auth_app.command()
def token(
    subject: Annotated[str, typer.Argument(help="The token's sub claim (a user name).")],
    role: Annotated[list[str] | None, typer.Option(help=ROLE_HELP + " Repeatable.")] = None,
    group: Annotated[list[str] | None, typer.Option(help="Groups (repeatable).")] = None,
    tenant: Annotated[str, typer.Option(help="The token's tenant claim.")] = "default",
    ttl: Annotated[float, typer.Option(min=1, help="Lifetime in seconds.")] = 3600.0,
    data_dir: Annotated[
        Path,
        typer.Option(envvar=DATA_DIR_VARIABLE, help="The local platform's data directory."),
    ] = Path(".local/twinstack"),
) -> None:
    """A token signed by the local platform's issuer (`make up`), printed on stdout.

    Only for the local platform: with a real identity provider, get tokens from it."""
    from twinstack.devstack import LocalIssuer

    issuer = LocalIssuer(data_dir / "auth")
    if not issuer.key_path.exists():
        raise UserError(f"no local issuer in {data_dir / 'auth'}: start the platform (make up)")
    print(
        issuer.issue(
            subject,
            roles=role or (),
            groups=group or (),
            tenant=None if tenant == "default" else tenant,
            ttl_s=ttl,
        )
    )


def _print_new_key(title: str, secret: str) -> None:
    console.print(title)
    console.print("secret (shown once; send as 'authorization: Bearer <secret>'):")
    print(secret)  # plain, so that it can be piped


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Argument(help="Unique among the tenant's live keys.")],
    role: Annotated[str, typer.Option(help=ROLE_HELP)] = "viewer",
    twin: Annotated[
        list[str] | None, typer.Option("--twin", help="A device key's twin (repeatable).")
    ] = None,
    ttl: Annotated[int, typer.Option(min=0, help="Lifetime in seconds; 0 never expires.")] = 0,
) -> None:
    """A new API key; its secret is shown now and never again."""
    with open_client() as client:
        created = client.access.create_api_key(name, role, twin_ids=twin or [], ttl_s=ttl)

    def human() -> None:
        _print_new_key(
            f"API key [bold]{created.key.id}[/bold] ({created.key.role})", created.secret
        )

    emit(created, human)


@keys_app.command("list")
def list_keys(
    revoked: Annotated[bool, typer.Option(help="Include revoked keys.")] = False,
) -> None:
    """The tenant's API keys (never their secrets)."""
    with open_client() as client:
        keys = client.access.list_api_keys(include_revoked=revoked)

    def human() -> None:
        table = Table(title=f"{len(keys)} API key(s)")
        for column in ("id", "name", "role", "twins", "expires", "revoked", "created by"):
            table.add_column(column)
        for key in keys:
            table.add_row(
                key.id,
                key.name,
                key.role,
                ", ".join(key.twin_ids),
                key.expires_at.ToDatetime().isoformat(timespec="seconds")
                if key.HasField("expires_at")
                else "never",
                "yes" if key.revoked else "",
                key.created_by,
            )
        console.print(table)

    emit(keys, human)


@keys_app.command("revoke")
def revoke_key(key_id: Annotated[str, typer.Argument(help="The key's id.")]) -> None:
    """Revokes a key: every service refuses it within seconds, open streams included."""
    with open_client() as client:
        key = client.access.revoke_api_key(key_id)
    emit(key, lambda: console.print(f"revoked {key.id} ({key.name})"))


QUOTA_HELP = (
    "NAME=VALUE (repeatable): max_twins, ingest_points_per_s, max_watches, max_active_sweeps, "
    "max_active_scenario_steps, max_alert_rules; unset quotas take the platform's settings."
)


def _print_tenants(tenants: list[access_pb2.Tenant]) -> None:
    table = Table(title=f"{len(tenants)} tenant(s)")
    for column in ("name", "display name", "quotas", "created by"):
        table.add_column(column)
    for tenant in tenants:
        quotas = ", ".join(f"{f.name}={v:g}" for f, v in tenant.quotas.ListFields())
        table.add_row(tenant.name, tenant.display_name, quotas or "settings", tenant.created_by)
    console.print(table)


@tenants_app.command("create")
def create_tenant(
    name: Annotated[str, typer.Argument(help="1-63 characters of [a-z0-9-].")],
    display_name: Annotated[str, typer.Option(help="For people.")] = "",
    quota: Annotated[list[str] | None, typer.Option(help=QUOTA_HELP)] = None,
    admin_key: Annotated[
        bool, typer.Option(help="Also create the tenant's first admin API key (shown once).")
    ] = False,
) -> None:
    """A new tenant: its own models, twins, state, history, rules, sweeps, keys and bindings."""
    try:
        quotas = parse_assignments(quota or [], "quota")
        with open_client() as client:
            created = client.access.create_tenant(
                name, display_name=display_name, quotas=quotas, create_admin_key=admin_key
            )
    except ValueError as error:
        raise UserError(str(error)) from None

    def human() -> None:
        _print_tenants([created.tenant])
        if created.admin_key_secret:
            title = f"admin API key [bold]{created.admin_key.id}[/bold] of {name}"
            _print_new_key(title, created.admin_key_secret)

    emit(created, human)


@tenants_app.command("list")
def list_tenants() -> None:
    """Every tenant, the default one first."""
    with open_client() as client:
        tenants = client.access.list_tenants()
    emit(tenants, lambda: _print_tenants(tenants))


@tenants_app.command("show")
def show_tenant(
    name: Annotated[str, typer.Argument(help="The tenant; empty: your own.")] = "",
) -> None:
    """One tenant and its quotas."""
    with open_client() as client:
        tenant = client.access.get_tenant(name)
    emit(tenant, lambda: _print_tenants([tenant]))


@tenants_app.command("set-quotas")
def set_quotas(
    name: Annotated[str, typer.Argument(help="The tenant.")],
    quota: Annotated[list[str] | None, typer.Option(help=QUOTA_HELP)] = None,
) -> None:
    """Replaces a tenant's own quotas (none given: the settings' for all)."""
    try:
        quotas = parse_assignments(quota or [], "quota")
        with open_client() as client:
            tenant = client.access.update_tenant(name, quotas=quotas)
    except ValueError as error:
        raise UserError(str(error)) from None
    emit(tenant, lambda: _print_tenants([tenant]))


@tenants_app.command("admin-key")
def tenant_admin_key(name: Annotated[str, typer.Argument(help="The tenant.")]) -> None:
    """A new admin API key of a tenant (its first one lost, or never asked for)."""
    with open_client() as client:
        created = client.access.create_tenant_admin_key(name)

    title = f"admin API key [bold]{created.key.id}[/bold] of {name}"
    emit(created, lambda: _print_new_key(title, created.secret))


@auth_app.command()
def bind(
    binding_id: Annotated[
        str, typer.Argument(help="The binding's id (putting it again replaces it).")
    ],
    subject: Annotated[
        str, typer.Argument(help="user:<sub>, group:<name>, apikey:<id> or service:<name>.")
    ],
    role: Annotated[str, typer.Option(help=ROLE_HELP)] = "",
    model: Annotated[
        str, typer.Option(help="Only the twins of this model (and of models extending it).")
    ] = "",
    subgraph: Annotated[
        str,
        typer.Option(
            help="Only the twins of a subgraph: \"FROM 'site-1' FOLLOW contains DEPTH 2\" "
            "(relationship names, or *)."
        ),
    ] = "",
    deny: Annotated[
        bool, typer.Option(help="Refuse the subject everything in the tenant.")
    ] = False,
) -> None:
    """Grants a role to a principal or group (tenant-wide, on one model's twins or on a
    subgraph's), or denies it everything."""
    if bool(role) == deny:
        raise UserError("give either --role or --deny")
    if model and subgraph:
        raise UserError("give --model or --subgraph, not both")
    scope = f"model:{model}" if model else subgraph
    with open_client() as client:
        binding = client.access.put_role_binding(binding_id, subject, role, scope=scope, deny=deny)
    emit(binding, lambda: console.print(f"{_describe(binding)} (revision {binding.revision})"))


@auth_app.command()
def unbind(binding_id: Annotated[str, typer.Argument(help="The binding's id.")]) -> None:
    """Removes a binding; what it granted ends within seconds, open streams included."""
    with open_client() as client:
        client.access.delete_role_binding(binding_id)
    emit({"deleted": binding_id}, lambda: console.print(f"deleted binding {binding_id}"))


@auth_app.command()
def bindings(subject: Annotated[str, typer.Option(help="Only this subject's.")] = "") -> None:
    """The tenant's role bindings."""
    with open_client() as client:
        found = client.access.list_role_bindings(subject)

    def human() -> None:
        table = Table(title=f"{len(found)} binding(s)")
        for column in ("id", "binding", "revision", "updated by"):
            table.add_column(column)
        for binding in found:
            table.add_row(binding.id, _describe(binding), str(binding.revision), binding.updated_by)
        console.print(table)

    emit(found, human)


def _describe(binding: access_pb2.RoleBinding) -> str:
    if binding.effect == access_pb2.RoleBinding.EFFECT_DENY:
        return f"deny {binding.subject}"
    where = f" on {binding.scope}" if binding.scope else ""
    return f"{binding.role} for {binding.subject}{where}"
