"""Tenants side by side in one platform: every stored id carries its tenant.

A caller names twins, models and alert rules by its own ids (``pump-1``); inside the platform,
in KV keys and documents, NATS subjects, InfluxDB tags and sweep jobs, the ids of tenant
``acme`` are qualified (``acme/pump-1``, ``acme/dtmi:com:acme:Pump;1``). The server bootstrap
qualifies every id field of a request as it enters and strips the tenant from every response
and error as it leaves (:class:`IdTranslator`), so servicers and the stores behind them work on
internal ids only and cannot mix tenants by forgetting a check. The ``default`` tenant's ids stay
unqualified: data stored before tenants existed is the default tenant's, with no migration.

No id a caller sends may contain ``/`` (the id patterns of :mod:`twinstack.common.ids` exclude
it, and the translator refuses it in every id field), so no caller can spell another tenant's
id. A response that would name an id outside the caller's tenant fails with INTERNAL instead of
leaking it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from google.protobuf import any_pb2, symbol_database
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import status_pb2

from twinstack.common.access import DEFAULT_TENANT, TENANT_PATTERN
from twinstack.common.errors import FieldViolation, InvalidArgumentError, TwinstackError

SEPARATOR = "/"


@dataclass(frozen=True)
class TenantIds:
    """Turns one tenant's ids into internal ids and back."""

    tenant: str
    prefix: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "prefix", "" if self.tenant == DEFAULT_TENANT else self.tenant + SEPARATOR
        )

    @property
    def is_default(self) -> bool:
        return not self.prefix

    def inner(self, external_id: str) -> str:
        """The internal id of one of this tenant's ids (a caller's id has no ``/``)."""
        return self.prefix + external_id

    def owns(self, internal_id: str) -> bool:
        """Whether an internal id is this tenant's."""
        return tenant_of(internal_id) == self.tenant

    def outer(self, internal_id: str) -> str:
        """This tenant's own id for one of its internal ids.

        Raises:
            TwinstackError: INTERNAL: the id is another tenant's, and refusing beats leaking it.
        """
        if not self.owns(internal_id):
            raise TwinstackError("a response would have named data of another tenant")
        return internal_id[len(self.prefix) :]


DEFAULT_IDS = TenantIds(DEFAULT_TENANT)


@functools.lru_cache(maxsize=4096)
def ids_of(tenant: str) -> TenantIds:
    """The id translation of a tenant (one object per tenant, made once)."""
    return TenantIds(tenant)


def tenant_of(internal_id: str) -> str:
    """The tenant an internal id belongs to."""
    tenant, separator, _ = internal_id.partition(SEPARATOR)
    return tenant if separator else DEFAULT_TENANT


def external_id(internal_id: str) -> str:
    """An internal id without its tenant."""
    return internal_id.rpartition(SEPARATOR)[2]


def tenant_name_violation(value: str, field_path: str) -> FieldViolation | None:
    """Why ``value`` is not a valid tenant name, or None."""
    if TENANT_PATTERN.fullmatch(value):
        return None
    return FieldViolation(
        field_path, "tenant names are 1-63 characters of [a-z0-9-] starting with a letter or digit"
    )


class IdKind(Enum):
    TWIN = "twin"
    MODEL = "model"
    RULE = "alert rule"
    # Text for people that may quote internal ids (a violation's description): stripped of
    # the tenant on the way out, left as it is on the way in.
    TEXT = "text"


# Field names that hold ids wherever they appear in the API, and the few messages whose own
# ``id`` is a twin's, a model's or a rule's. A test lists every string field of the API so that
# a new id field cannot be added without saying which it is.
ID_FIELDS: dict[str, IdKind] = {
    "twin_id": IdKind.TWIN,
    "twin_ids": IdKind.TWIN,
    "source_id": IdKind.TWIN,
    "target_id": IdKind.TWIN,
    "missing_twin_ids": IdKind.TWIN,
    "model_id": IdKind.MODEL,
    "previous_model_id": IdKind.MODEL,
    "id_prefix": IdKind.MODEL,
    "extends": IdKind.MODEL,
    "rule_id": IdKind.RULE,
    "description": IdKind.TEXT,
    "message": IdKind.TEXT,
    "provenance_json": IdKind.TEXT,
}
# Telemetry carries a twin id per point: the ingestion service qualifies those itself once per
# twin after grouping the points (a pass over every point here cost about a microsecond each).
SELF_QUALIFIED = frozenset(
    {"twinstack.api.common.v1.TelemetryPoint", "twinstack.api.common.v1.TelemetryFrame"}
)
OWN_ID_FIELDS: dict[str, IdKind] = {
    "twinstack.api.registry.v1.Twin": IdKind.TWIN,
    "twinstack.api.registry.v1.Model": IdKind.MODEL,
    "twinstack.api.state.v1.AlertRule": IdKind.RULE,
}

# Maps keyed by ids: a twin state's alerts and rule memory, by rule id.
ID_KEYED_MAPS: dict[tuple[str, str], IdKind] = {
    ("twinstack.api.state.v1.TwinState", "alerts"): IdKind.RULE,
    ("twinstack.api.state.v1.TwinState", "rule_memory"): IdKind.RULE,
}

# How a field holds ids: one id, a list of ids, a map (of messages holding ids, or keyed by
# ids), a list of messages holding ids, or one such message.
_ONE, _MANY, _MAP, _MESSAGES, _MESSAGE = range(5)
# A field's name, the kind of its ids (of its keys, for a map keyed by ids) and its shape; for
# a list of messages whose ids are all plain fields, those fields, for a tight loop.
_Entry = tuple[str, IdKind | None, int, tuple[tuple[str, IdKind], ...] | None]
_Plan = list[_Entry]


class IdTranslator:
    """Qualifies the ids of requests and strips them from responses, message type by message
    type with a plan computed once per type."""

    def __init__(self) -> None:
        self._plans: dict[str, _Plan] = {}

    def _plan(self, descriptor: Descriptor) -> _Plan:
        """The fields of a message that hold ids, or hold messages that do."""
        plan = self._plans.get(descriptor.full_name)
        if plan is not None:
            return plan
        self._plans[descriptor.full_name] = plan = []  # recursion guard for cyclic types
        if descriptor.full_name in SELF_QUALIFIED:
            return plan
        for item in descriptor.fields:
            if item.type == FieldDescriptor.TYPE_STRING:
                kind = ID_FIELDS.get(item.name)
                if item.name == "id":
                    kind = OWN_ID_FIELDS.get(descriptor.full_name)
                if kind is not None:
                    plan.append((item.name, kind, _MANY if item.is_repeated else _ONE, None))
            elif item.message_type is not None:
                key_kind = ID_KEYED_MAPS.get((descriptor.full_name, item.name))
                if item.message_type.GetOptions().map_entry:
                    values = item.message_type.fields_by_name["value"].message_type
                    if key_kind is not None or (values is not None and self._plan(values)):
                        plan.append((item.name, key_kind, _MAP, None))
                    continue
                inner = self._plan(item.message_type)
                if not inner:
                    continue
                if not item.is_repeated:
                    plan.append((item.name, None, _MESSAGE, None))
                    continue
                flat = None
                if all(shape == _ONE for _, _, shape, _ in inner):
                    flat = tuple((name, kind) for name, kind, _, _ in inner if kind is not None)
                plan.append((item.name, None, _MESSAGES, flat))
        return plan

    def qualify(self, message: Any, ids: TenantIds) -> None:
        """Qualifies every id of a request in place.

        Raises:
            InvalidArgumentError: An id holds ``/``, which no caller's id may.
        """
        if not isinstance(message, Message):
            return  # a method without protobuf messages (raw bytes) names no ids
        refused = False

        def check(value: str, kind: IdKind, path: _Path) -> str:
            nonlocal refused
            refused = refused or (kind is not IdKind.TEXT and SEPARATOR in value)
            return value

        # Checked before anything is changed, without building field paths (a request may
        # hold many ids; the paths are only needed to explain a refusal).
        self._rewrite(message, check, None)
        if refused:
            violations: list[FieldViolation] = []

            def name(value: str, kind: IdKind, path: _Path) -> str:
                if kind is not IdKind.TEXT and SEPARATOR in value and path is not None:
                    violations.append(FieldViolation(path(), "ids cannot contain '/'"))
                return value

            self._rewrite(message, name, "")
            raise InvalidArgumentError("invalid ids", violations[:100])
        prefix = ids.prefix
        if prefix:
            self._rewrite(
                message,
                lambda value, kind, _: value if kind is IdKind.TEXT else prefix + value,
                None,
            )

    def strip(self, message: Any, ids: TenantIds) -> None:
        """Strips the tenant from every id of a response in place.

        Raises:
            TwinstackError: INTERNAL: an id is another tenant's.
        """
        if not isinstance(message, Message):
            return

        def strip_one(value: str, kind: IdKind, path: _Path) -> str:
            if kind is IdKind.TEXT:
                return value.replace(ids.prefix, "") if ids.prefix else value
            return ids.outer(value)

        self._rewrite(message, strip_one, None)

    def _rewrite(self, message: Message, rewrite: _Rewrite, path: str | None) -> None:
        """Applies ``rewrite`` to every non-empty id of ``message``; ``path`` (None: not
        needed) is the message's field path, for the rewrite to name a field."""
        plan = self._plan(message.DESCRIPTOR)  # type: ignore[arg-type]
        for field_name, kind, shape, flat in plan:
            name = None if path is None else path + field_name
            value = getattr(message, field_name)
            if shape == _ONE:
                # Never assigned when empty (that would select a oneof's member), nor when
                # unchanged (the default tenant's ids).
                if value:
                    assert kind is not None
                    rewritten = rewrite(value, kind, None if name is None else _path_of(name, ""))
                    if rewritten != value:
                        setattr(message, field_name, rewritten)
            elif shape == _MANY:
                assert kind is not None
                rewritten_all = [
                    rewrite(v, kind, None if name is None else _path_of(name, f"[{i}]")) if v else v
                    for i, v in enumerate(value)
                ]
                if rewritten_all != list(value):
                    value[:] = rewritten_all
            elif shape == _MAP:
                if kind is not None:
                    self._rewrite_keys(value, rewrite, kind, name)
                for key, entry in value.items():
                    if isinstance(entry, Message):
                        self._rewrite(entry, rewrite, _joined(name, f"[{key!r}]."))
            elif shape == _MESSAGES:
                if flat is not None:
                    self._rewrite_flat(value, flat, rewrite, name)
                else:
                    for index, entry in enumerate(value):
                        self._rewrite(entry, rewrite, _joined(name, f"[{index}]."))
            elif message.HasField(field_name):
                self._rewrite(value, rewrite, _joined(name, "."))

    @staticmethod
    def _rewrite_flat(
        entries: Any, flat: tuple[tuple[str, IdKind], ...], rewrite: _Rewrite, name: str | None
    ) -> None:
        for index, entry in enumerate(entries):
            for field_name, kind in flat:
                value = getattr(entry, field_name)
                if value:
                    path = None if name is None else _path_of(name, f"[{index}].{field_name}")
                    rewritten = rewrite(value, kind, path)
                    if rewritten != value:
                        setattr(entry, field_name, rewritten)

    @staticmethod
    def _rewrite_keys(value: Any, rewrite: _Rewrite, kind: IdKind, name: str | None) -> None:
        entries = list(value.items())
        # Map values are messages here: copy them out before rebuilding the map.
        copies = []
        for key, entry in entries:
            copy = type(entry)()
            copy.CopyFrom(entry)
            copies.append((rewrite(key, kind, _path_of(name, f"[{key!r}]")), copy))
        if [key for key, _ in copies] != [key for key, _ in entries]:
            value.clear()
            for key, copy in copies:
                value[key].CopyFrom(copy)


_Path = Callable[[], str] | None
_Rewrite = Callable[[str, IdKind, _Path], str]


def _joined(name: str | None, suffix: str) -> str | None:
    return None if name is None else name + suffix


def _path_of(name: str | None, suffix: str) -> _Path:
    """The field path of one id, built only if asked for (refusals need it, nothing else)."""
    if name is None:
        return None
    return lambda: name + suffix


def _is_map(item: FieldDescriptor) -> bool:
    return item.message_type is not None and bool(item.message_type.GetOptions().map_entry)


def stripped_status(status: status_pb2.Status, ids: TenantIds) -> status_pb2.Status:
    """An error status with the tenant's prefix taken out of its message and details (which
    name internal ids: resource names, field descriptions)."""
    if ids.is_default:
        return status
    result = status_pb2.Status(code=status.code, message=status.message.replace(ids.prefix, ""))
    database = symbol_database.Default()
    for detail in status.details:
        try:
            message = database.GetSymbol(detail.TypeName())()
        except KeyError:
            continue  # a detail type this process does not know cannot be rewritten: dropped
        detail.Unpack(message)
        _replace_strings(message, ids.prefix)
        packed = any_pb2.Any()
        packed.Pack(message)
        result.details.append(packed)
    return result


def _replace_strings(message: Message, prefix: str) -> None:
    for item, value in message.ListFields():
        if item.type == FieldDescriptor.TYPE_STRING:
            if item.is_repeated:
                value[:] = [v.replace(prefix, "") for v in value]
            else:
                setattr(message, item.name, value.replace(prefix, ""))
        elif item.type == FieldDescriptor.TYPE_MESSAGE:
            if _is_map(item):
                entries = dict(value)
                value.clear()
                for key, entry in entries.items():
                    new_key = key.replace(prefix, "") if isinstance(key, str) else key
                    if isinstance(entry, Message):
                        _replace_strings(entry, prefix)
                        value[new_key].CopyFrom(entry)
                    else:
                        value[new_key] = (
                            entry.replace(prefix, "") if isinstance(entry, str) else entry
                        )
            elif item.is_repeated:
                for entry in value:
                    _replace_strings(entry, prefix)
            else:
                _replace_strings(value, prefix)
