"""Who may do what: principals, verbs, the built-in roles, and the decision for one call.

Pure logic, no I/O: the gatekeeper (``twinstack.common.gatekeeper``) authenticates a call into a
:class:`Principal`, looks up the role bindings of its tenant and asks :func:`decide`.

Every RPC of every service maps to exactly one verb (:data:`METHOD_VERBS`); a method missing
from the table is refused, so a new RPC cannot ship open by accident (a unit test checks the
table covers every method of every service).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

DEFAULT_TENANT = "default"
TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class Verb(enum.StrEnum):
    """What a call does, as far as authorization is concerned."""

    MODELS_READ = "models.read"
    MODELS_WRITE = "models.write"
    TWINS_READ = "twins.read"
    TWINS_WRITE = "twins.write"
    TWINS_DELETE = "twins.delete"
    RELATIONSHIPS_WRITE = "relationships.write"
    TELEMETRY_WRITE = "telemetry.write"
    # Live state, Watch, history and alerts.
    STATE_READ = "state.read"
    # Actuation: desired values reach devices, so it is granted apart from other writes.
    DESIRED_WRITE = "desired.write"
    ALERTS_ACKNOWLEDGE = "alerts.acknowledge"
    RULES_WRITE = "rules.write"
    SIMULATION_RUN = "simulation.run"
    RESULTS_READ = "results.read"
    # API keys and role bindings of the tenant.
    ADMIN = "admin"
    # Asking who one is: any authenticated caller.
    SELF = "self"

    @property
    def writes(self) -> bool:
        """Whether a call with this verb changes something (every write is audited)."""
        return self not in _READ_VERBS


_READ_VERBS = frozenset(
    {Verb.MODELS_READ, Verb.TWINS_READ, Verb.STATE_READ, Verb.RESULTS_READ, Verb.SELF}
)

_VIEWER = frozenset(
    {Verb.MODELS_READ, Verb.TWINS_READ, Verb.STATE_READ, Verb.RESULTS_READ, Verb.SELF}
)
ROLES: Mapping[str, frozenset[Verb]] = {
    "viewer": _VIEWER,
    # Runs the assets: feeds telemetry, actuates, acknowledges alerts.
    "operator": _VIEWER | {Verb.TELEMETRY_WRITE, Verb.DESIRED_WRITE, Verb.ALERTS_ACKNOWLEDGE},
    # Shapes the twin graph and its rules.
    "modeler": _VIEWER
    | {
        Verb.MODELS_WRITE,
        Verb.TWINS_WRITE,
        Verb.TWINS_DELETE,
        Verb.RELATIONSHIPS_WRITE,
        Verb.RULES_WRITE,
    },
    # Runs scenarios and sweeps over what it can see.
    "analyst": _VIEWER | {Verb.SIMULATION_RUN},
    "admin": frozenset(Verb),
    # A device key: its own twins' telemetry and nothing else (not even reads).
    "device": frozenset({Verb.TELEMETRY_WRITE, Verb.SELF}),
}
"""The built-in roles and their verbs."""

# Every RPC's verb. Health and (where configured) reflection are open and not listed.
_SERVICE_VERBS: Mapping[str, Mapping[str, Verb]] = {
    "twinstack.api.ingestion.v1.IngestionService": {
        "IngestBatch": Verb.TELEMETRY_WRITE,
        "IngestStream": Verb.TELEMETRY_WRITE,
    },
    "twinstack.api.devices.v1.DeviceService": {
        "ListDevices": Verb.STATE_READ,
        # A command acts on the asset, as desired values do.
        "InvokeCommand": Verb.DESIRED_WRITE,
    },
    "twinstack.api.registry.v1.RegistryService": {
        "CreateModels": Verb.MODELS_WRITE,
        "GetModel": Verb.MODELS_READ,
        "ListModels": Verb.MODELS_READ,
        "CreateTwin": Verb.TWINS_WRITE,
        "GetTwin": Verb.TWINS_READ,
        "UpdateTwin": Verb.TWINS_WRITE,
        "MigrateTwin": Verb.TWINS_WRITE,
        "DeleteTwin": Verb.TWINS_DELETE,
        "ListTwins": Verb.TWINS_READ,
        "QueryTwins": Verb.TWINS_READ,
        "CreateRelationship": Verb.RELATIONSHIPS_WRITE,
        "DeleteRelationship": Verb.RELATIONSHIPS_WRITE,
        "ListRelationships": Verb.TWINS_READ,
    },
    "twinstack.api.state.v1.StateService": {
        "GetState": Verb.STATE_READ,
        "BatchGetStates": Verb.STATE_READ,
        "Watch": Verb.STATE_READ,
        "SetDesired": Verb.DESIRED_WRITE,
        "QueryHistory": Verb.STATE_READ,
        "PutAlertRule": Verb.RULES_WRITE,
        "ListAlertRules": Verb.STATE_READ,
        "DeleteAlertRule": Verb.RULES_WRITE,
        "ListAlerts": Verb.STATE_READ,
        "AcknowledgeAlert": Verb.ALERTS_ACKNOWLEDGE,
        # Only the default tenant's admins (checked in the call): it shows the whole platform.
        "GetClusterStatus": Verb.ADMIN,
    },
    "twinstack.api.simulation.v1.SimulationService": {
        "ListBuiltinModels": Verb.MODELS_READ,
        "RunScenario": Verb.SIMULATION_RUN,
        "Forecast": Verb.SIMULATION_RUN,
        "Calibrate": Verb.SIMULATION_RUN,
    },
    "twinstack.api.simulation.v1.SweepService": {
        "SubmitSweep": Verb.SIMULATION_RUN,
        "GetSweep": Verb.RESULTS_READ,
        "ListSweeps": Verb.RESULTS_READ,
        "WatchSweep": Verb.RESULTS_READ,
        "CancelSweep": Verb.SIMULATION_RUN,
        "ReadSweepResults": Verb.RESULTS_READ,
        "RunSweep": Verb.SIMULATION_RUN,
    },
    "twinstack.api.access.v1.AccessService": {
        "WhoAmI": Verb.SELF,
        # Explaining oneself is open; asking about others is checked in the call.
        "CheckAccess": Verb.SELF,
        "CreateApiKey": Verb.ADMIN,
        "ListApiKeys": Verb.ADMIN,
        "RevokeApiKey": Verb.ADMIN,
        "PutRoleBinding": Verb.ADMIN,
        "ListRoleBindings": Verb.ADMIN,
        "DeleteRoleBinding": Verb.ADMIN,
        # Tenants other than the caller's need an admin of the default tenant (checked in the
        # call).
        "CreateTenant": Verb.ADMIN,
        "GetTenant": Verb.ADMIN,
        "ListTenants": Verb.ADMIN,
        "UpdateTenant": Verb.ADMIN,
        "CreateTenantAdminKey": Verb.ADMIN,
    },
}

MODEL_SCOPE_PREFIX = "model:"
"""A binding scope ``model:<model id>``: the twins of that model and of every model that
extends it."""

MAX_SUBGRAPH_DEPTH = 10  # as deep as a registry query may follow
_SUBGRAPH = re.compile(
    r"\s*FROM\s+'(?P<root>[A-Za-z0-9][A-Za-z0-9_-]{0,127})'"
    r"\s+FOLLOW\s+(?P<names>\*|[A-Za-z][A-Za-z0-9_]{0,63}(?:\s*,\s*[A-Za-z][A-Za-z0-9_]{0,63}){0,15})"
    r"\s+DEPTH\s+(?P<depth>\d{1,2})\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Subgraph:
    """A binding scope given by a registry query, ``FROM 'site' FOLLOW contains DEPTH 2``: the
    root twin and every twin its outgoing relationships of those names (``*``: any) reach
    within ``depth`` steps, as the graph is when a call is checked."""

    root: str
    names: frozenset[str] | None  # None: every relationship
    depth: int

    @classmethod
    def parse(cls, scope: str) -> Subgraph | None:
        """The subgraph a scope names, or None if it is no subgraph scope.

        Raises:
            ValueError: It is one, but its depth is out of range.
        """
        found = _SUBGRAPH.fullmatch(scope)
        if found is None:
            return None
        depth = int(found["depth"])
        if not 1 <= depth <= MAX_SUBGRAPH_DEPTH:
            raise ValueError(f"DEPTH is 1 to {MAX_SUBGRAPH_DEPTH}")
        names = found["names"]
        return cls(
            found["root"],
            None if names == "*" else frozenset(n.strip() for n in names.split(",")),
            depth,
        )

    def follows(self, name: str) -> bool:
        return self.names is None or name in self.names

    def __str__(self) -> str:
        names = "*" if self.names is None else ", ".join(sorted(self.names))
        return f"FROM '{self.root}' FOLLOW {names} DEPTH {self.depth}"


# Methods whose handlers check each twin against scopes (the others need a tenant-wide grant):
# a binding scoped to a model or a subgraph admits a call only where the call can enforce it.
SCOPED_METHODS = frozenset(
    {
        "/twinstack.api.registry.v1.RegistryService/CreateTwin",
        "/twinstack.api.registry.v1.RegistryService/GetTwin",
        "/twinstack.api.registry.v1.RegistryService/UpdateTwin",
        "/twinstack.api.registry.v1.RegistryService/DeleteTwin",
        "/twinstack.api.registry.v1.RegistryService/ListTwins",
        "/twinstack.api.registry.v1.RegistryService/QueryTwins",
        "/twinstack.api.registry.v1.RegistryService/CreateRelationship",
        "/twinstack.api.registry.v1.RegistryService/DeleteRelationship",
        "/twinstack.api.registry.v1.RegistryService/ListRelationships",
        "/twinstack.api.state.v1.StateService/GetState",
        "/twinstack.api.state.v1.StateService/BatchGetStates",
        "/twinstack.api.state.v1.StateService/Watch",
        "/twinstack.api.state.v1.StateService/QueryHistory",
        "/twinstack.api.state.v1.StateService/SetDesired",
        "/twinstack.api.state.v1.StateService/PutAlertRule",
        "/twinstack.api.state.v1.StateService/ListAlertRules",
        "/twinstack.api.state.v1.StateService/DeleteAlertRule",
        "/twinstack.api.state.v1.StateService/ListAlerts",
        "/twinstack.api.state.v1.StateService/AcknowledgeAlert",
        "/twinstack.api.simulation.v1.SimulationService/RunScenario",
        "/twinstack.api.simulation.v1.SimulationService/Forecast",
        "/twinstack.api.simulation.v1.SimulationService/Calibrate",
        "/twinstack.api.simulation.v1.SweepService/SubmitSweep",
        "/twinstack.api.simulation.v1.SweepService/RunSweep",
        "/twinstack.api.simulation.v1.SweepService/GetSweep",
        "/twinstack.api.simulation.v1.SweepService/ListSweeps",
        "/twinstack.api.simulation.v1.SweepService/WatchSweep",
        "/twinstack.api.simulation.v1.SweepService/CancelSweep",
        "/twinstack.api.simulation.v1.SweepService/ReadSweepResults",
        "/twinstack.api.ingestion.v1.IngestionService/IngestBatch",
        "/twinstack.api.ingestion.v1.IngestionService/IngestStream",
        "/twinstack.api.devices.v1.DeviceService/ListDevices",
        "/twinstack.api.devices.v1.DeviceService/InvokeCommand",
    }
)

METHOD_VERBS: Mapping[str, Verb] = {
    f"/{service}/{method}": verb
    for service, methods in _SERVICE_VERBS.items()
    for method, verb in methods.items()
}
"""Full gRPC method name → the verb it needs."""


class PrincipalKind(enum.Enum):
    """How a principal authenticated (the values of the access API's enum)."""

    USER = 1
    API_KEY = 2
    DEVICE = 3
    SERVICE = 4
    ANONYMOUS = 5


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Attributes:
        subject: ``user:<sub>``, ``apikey:<id>``, ``service:<name>`` or ``anonymous``.
        tenant: The tenant it acts in; from its credential, never from a request.
        kind: How it authenticated.
        groups: Groups from the token's groups claim.
        roles: Roles its credential carries tenant-wide (a token's roles claim, an API key's
            role); role bindings add more.
        twin_ids: For a device key, the twins whose telemetry it may write; empty otherwise.
        credential: The presented bearer credential, forwarded when this service calls another
            on the caller's behalf (so the other service checks the caller, not this service).
    """

    subject: str
    tenant: str
    kind: PrincipalKind
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    twin_ids: frozenset[str] = frozenset()
    credential: str | None = field(default=None, repr=False, compare=False)

    @property
    def subjects(self) -> tuple[str, ...]:
        """What bindings may name to match this principal: itself and its groups."""
        return (self.subject, *(f"group:{group}" for group in self.groups))

    @property
    def is_device(self) -> bool:
        return self.kind is PrincipalKind.DEVICE


ANONYMOUS = Principal("anonymous", DEFAULT_TENANT, PrincipalKind.ANONYMOUS, roles=("admin",))
"""The caller when authentication is disabled (local development): admin of the default tenant."""


@dataclass(frozen=True)
class Binding:
    """A role binding as the decision needs it (the stored document has more)."""

    id: str
    subject: str
    role: str
    deny: bool = False
    scope: str = ""


@dataclass(frozen=True)
class Decision:
    """Whether a principal may use a verb, and why.

    Attributes:
        allowed: Granted across the tenant.
        explanation: Why, or why not.
        matched: Every grant and deny that matched the principal.
        models: When not granted tenant-wide: the models whose twins (with those of models
            extending them) it is granted for.
        subgraphs: When not granted tenant-wide: the subgraphs whose twins it is granted for.
    """

    allowed: bool
    explanation: str
    matched: tuple[str, ...] = ()
    models: frozenset[str] = frozenset()
    subgraphs: frozenset[Subgraph] = frozenset()

    @property
    def scoped(self) -> bool:
        """Granted for some twins only."""
        return bool(self.models or self.subgraphs)


def decide(principal: Principal, verb: Verb, bindings: Iterable[Binding]) -> Decision:
    """The decision for ``principal`` using ``verb`` in its tenant.

    A deny binding of the principal or one of its groups refuses everything; otherwise the verb
    is allowed if a role the credential carries, or a tenant-wide grant binding of the principal
    or its groups, includes it.

    Args:
        principal: The caller.
        verb: What the call does.
        bindings: The bindings of the principal's tenant.
    """
    subjects = set(principal.subjects)
    matching = [b for b in bindings if b.subject in subjects]
    matched = tuple(
        f"binding {b.id}: deny {b.subject}"
        if b.deny
        else f"binding {b.id}: {b.role} for {b.subject}" + (f" on {b.scope}" if b.scope else "")
        for b in matching
    ) + tuple(f"credential role {role}" for role in principal.roles)
    for binding in matching:
        if binding.deny:
            return Decision(
                False,
                f"{principal.subject} is denied in tenant {principal.tenant} by binding "
                f"{binding.id}",
                matched,
            )
    for role in principal.roles:
        if verb in ROLES.get(role, ()):
            return Decision(True, f"{verb} is granted by the credential's role {role}", matched)
    for binding in matching:
        if not binding.scope and verb in ROLES.get(binding.role, ()):
            return Decision(
                True,
                f"{verb} is granted by binding {binding.id} ({binding.role} for {binding.subject})",
                matched,
            )
    scoped = [b for b in matching if b.scope and verb in ROLES.get(b.role, ())]
    if scoped and verb is Verb.SELF:
        # Asking who one is concerns no twin: a scoped grant allows it across the tenant.
        return Decision(True, f"{verb} is granted by binding {scoped[0].id}", matched)
    models = frozenset(
        b.scope.removeprefix(MODEL_SCOPE_PREFIX)
        for b in scoped
        if b.scope.startswith(MODEL_SCOPE_PREFIX)
    )
    subgraphs = frozenset(
        subgraph for b in scoped if (subgraph := _subgraph_or_none(b.scope)) is not None
    )
    if models or subgraphs:
        covered = [*(f"twins of {m}" for m in sorted(models)), *sorted(map(str, subgraphs))]
        return Decision(
            False,
            f"{verb} is granted only for "
            + "; ".join(covered)
            + " by binding "
            + ", ".join(sorted(b.id for b in scoped)),
            matched,
            models,
            subgraphs,
        )
    return Decision(
        False,
        f"no role of {principal.subject} in tenant {principal.tenant} grants {verb}",
        matched,
    )


def _subgraph_or_none(scope: str) -> Subgraph | None:
    # Stored scopes were checked when bound; one that no longer parses grants nothing.
    try:
        return Subgraph.parse(scope)
    except ValueError:
        return None


def granted_verbs(principal: Principal, bindings: Iterable[Binding]) -> list[Verb]:
    """Every verb :func:`decide` allows the principal, in table order."""
    bindings = list(bindings)
    return [verb for verb in Verb if decide(principal, verb, bindings).allowed]
