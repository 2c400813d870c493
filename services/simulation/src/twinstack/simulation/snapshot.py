"""Consistent snapshots of live twins, the starting point of scenarios and forecasts.

A snapshot holds, per twin, its registry document and its state document with both KV
revisions. It is consistent: it is collected twice and kept only if no revision moved in
between, so every value in it was current at one instant (the moment between the two
collections); scenarios are pinned to those revisions, and "apply best scenario" can be a
conditional write on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js.kv import KeyValue

from twinstack.api.registry.v1 import registry_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.common.catalog import ModelCatalog
from twinstack.common.errors import (
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from twinstack.common.gatekeeper import current_scope
from twinstack.common.ids import twin_id_violation
from twinstack.common.nats import read_document, twin_key
from twinstack.common.tenancy import ids_of, tenant_of
from twinstack.modeling.document import ModelError
from twinstack.modeling.resolve import ResolvedModel
from twinstack.sdk.values import to_python
from twinstack.simulation.compiler import CompileError, KernelSpec, kernel_spec

# (query text, most ids wanted) -> matching twin ids, at most that many.
TwinQuery = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True)
class TwinStart:
    """Where one twin's scenarios start: values from its documents at pinned revisions."""

    twin_id: str
    model_id: str
    twin_revision: int
    state_revision: int
    initial: dict[str, float]  # state variable -> value
    values: dict[str, float]  # parameter or input -> value


@dataclass(frozen=True)
class Snapshot:
    model: ResolvedModel
    kernel: KernelSpec
    twins: list[TwinStart]
    taken_at: datetime

    @property
    def model_id(self) -> str:
        """The model's internal id (a resolved model carries the DTMI its tenant knows it by)."""
        if not self.twins:
            return self.model.id
        return ids_of(tenant_of(self.twins[0].twin_id)).inner(self.model.id)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _start(
    model: ResolvedModel,
    twin: registry_pb2.Twin,
    twin_revision: int,
    state: state_pb2.TwinState | None,
    state_revision: int,
) -> TwinStart:
    dynamics = model.dynamics
    properties = {name: to_python(value) for name, value in twin.properties.items()}
    reported = {
        name: to_python(field.value) for name, field in (state.reported if state else {}).items()
    }
    missing: list[FieldViolation] = []
    initial: dict[str, float] = {}
    for item in dynamics.states:
        if isinstance(item.initial, str):
            found = _number(reported.get(item.initial, properties.get(item.initial)))
            if found is None:
                missing.append(
                    FieldViolation(
                        f"twins[{twin.id!r}]",
                        f"no value yet for {item.initial!r}, the initial value of state "
                        f"{item.name!r} (no telemetry received and no such property)",
                    )
                )
                continue
            initial[item.name] = found
        else:
            initial[item.name] = item.initial
    if missing:
        raise FailedPreconditionError(
            f"twin {twin.id} cannot start a scenario", missing, violation_type="MISSING_STATE"
        )
    values: dict[str, float] = {}
    for parameter in dynamics.parameters:
        found = _number(properties.get(parameter.property)) if parameter.property else None
        values[parameter.name] = parameter.default if found is None else found
    for model_input in dynamics.inputs:
        found = _number(reported.get(model_input.telemetry)) if model_input.telemetry else None
        values[model_input.name] = model_input.default if found is None else found
    return TwinStart(
        twin.id, twin.model_id, twin_revision, state_revision if state else 0, initial, values
    )


class SnapshotTaker:
    """Reads twins from the registry bucket and their states from the state bucket."""

    def __init__(
        self,
        registry_bucket: KeyValue,
        state_bucket: KeyValue,
        catalog: ModelCatalog,
        query: TwinQuery,
        *,
        attempts: int = 8,
        max_twins: int = 10_000,
    ) -> None:
        self._registry = registry_bucket
        self._states = state_bucket
        self._catalog = catalog
        self._query = query
        self._attempts = attempts
        self._max_twins = max_twins

    async def twin_ids(self, twin_ids: Sequence[str], query: str, path: str) -> list[str]:
        """The selected ids, in order, without repeats: the listed ones, then the query's."""
        violations = [
            violation
            for index, twin_id in enumerate(twin_ids)
            if (violation := twin_id_violation(twin_id, f"{path}.twin_ids[{index}]")) is not None
        ]
        if violations:
            raise InvalidArgumentError("invalid twin selection", violations)
        selected = list(dict.fromkeys(twin_ids))
        if query.strip():
            # Paging stops past the limit: a query matching a million twins costs one page more.
            matches = await self._query(query, self._max_twins + 1)
            selected = list(dict.fromkeys([*selected, *matches]))
        if not selected:
            raise InvalidArgumentError(
                "no twins selected",
                [FieldViolation(path, "give twin ids or a query that matches twins")],
            )
        if len(selected) > self._max_twins:
            raise InvalidArgumentError(
                "too many twins",
                [
                    FieldViolation(
                        path,
                        f"more than {self._max_twins} twins (TWINSTACK_MAX_SNAPSHOT_TWINS)",
                    )
                ],
            )
        return selected

    async def _read(
        self, twin_id: str
    ) -> tuple[registry_pb2.Twin, int, state_pb2.TwinState | None, int]:
        twin = await read_document(self._registry, twin_key(twin_id), registry_pb2.Twin)
        # Outside the caller's scope a twin reads exactly as one that does not exist.
        if twin is None or not current_scope().admits_twin(
            self._catalog, twin_id, twin[0].model_id
        ):
            raise NotFoundError("twin", twin_id, f"twin {twin_id} does not exist")
        state = await read_document(self._states, twin_id, state_pb2.TwinState)
        if state is None:
            return twin[0], twin[1], None, 0
        return twin[0], twin[1], state[0], state[1]

    async def _revisions(self, twin_ids: Sequence[str]) -> list[tuple[int, int]]:
        found = await asyncio.gather(*(self._read(twin_id) for twin_id in twin_ids))
        return [(twin_revision, state_revision) for _, twin_revision, _, state_revision in found]

    async def take(self, twin_ids: Sequence[str], path: str = "twins") -> Snapshot:
        """A consistent snapshot of ``twin_ids``, whose models must share their dynamics."""
        for _ in range(self._attempts):
            taken_at = datetime.now(UTC)
            documents = await asyncio.gather(*(self._read(twin_id) for twin_id in twin_ids))
            first = [(doc[1], doc[3]) for doc in documents]
            if first == await self._revisions(twin_ids):
                return await self._build(documents, taken_at, path)
        raise UnavailableError(
            f"the twins changed during each of {self._attempts} attempts at a consistent "
            "snapshot; try again or select fewer twins"
        )

    async def _build(
        self,
        documents: Sequence[tuple[registry_pb2.Twin, int, state_pb2.TwinState | None, int]],
        taken_at: datetime,
        path: str,
    ) -> Snapshot:
        kernels: dict[str, tuple[ResolvedModel, KernelSpec, list[str]]] = {}
        starts = []
        for twin, twin_revision, state, state_revision in documents:
            try:
                model = await self._catalog.resolve_current(twin.model_id)
                spec = kernel_spec(model.dynamics)
            except ModelError as error:
                raise FailedPreconditionError(
                    f"the model of twin {twin.id} cannot be read",
                    error.violations,
                    violation_type="MODEL",
                ) from None
            except CompileError as error:
                raise FailedPreconditionError(
                    f"the dynamics of {twin.model_id} (twin {twin.id}) cannot be simulated",
                    [
                        FieldViolation(f"{twin.model_id}.{v.field}", v.description)
                        for v in error.violations
                    ],
                    violation_type="DYNAMICS",
                ) from None
            kernels.setdefault(spec.key, (model, spec, []))[2].append(twin.id)
            starts.append(_start(model, twin, twin_revision, state, state_revision))
        if len(kernels) > 1:
            groups = "; ".join(
                f"{model.id}: {', '.join(ids)}" for model, _, ids in kernels.values()
            )
            raise InvalidArgumentError(
                "the selected twins have models with different dynamics",
                [FieldViolation(path, f"select twins whose models share their dynamics: {groups}")],
            )
        model, spec, _ = next(iter(kernels.values()))
        return Snapshot(model, spec, starts, taken_at)
