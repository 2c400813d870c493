"""Desired values: what a person or a simulation wants a twin's fields to reach, checked
against the twin's model, written with its live state in one compare-and-set, and announced to
the device side as an event."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from twinstack.api.common.v1 import events_pb2, types_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.common.catalog import ModelCatalog
from twinstack.common.errors import (
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    RevisionMismatchError,
)
from twinstack.common.events import DESIRED_CHANGED, EventPublisher
from twinstack.modeling.document import ModelError
from twinstack.modeling.values import value_violations
from twinstack.state.live import set_desired
from twinstack.state.store import StateStore


class DesiredValues:
    """Sets desired values of twins.

    Args:
        catalog: The twins' models.
        store: The live states.
        events: Where ``evt.state.desired.<twin>`` goes.
    """

    def __init__(self, catalog: ModelCatalog, store: StateStore, events: EventPublisher) -> None:
        self._catalog = catalog
        self._store = store
        self._events = events

    async def set(
        self,
        twin_id: str,
        values: Mapping[str, types_pb2.Value],
        remove: Sequence[str],
        expected_revision: int,
    ) -> state_pb2.TwinState:
        """Sets and removes desired values; returns the state that holds them.

        Raises:
            NotFoundError: No such twin.
            InvalidArgumentError: A field its model does not declare as telemetry, a value it
                does not allow, a field both set and removed, or nothing to do.
            RevisionMismatchError: The state moved past ``expected_revision`` (0: any).
        """
        twin = await self._catalog.get(twin_id)
        if twin is None:
            raise NotFoundError("twinstack.io/Twin", twin_id, f"no twin {twin_id!r}")
        try:
            telemetry = (await self._catalog.resolve_current(twin.model_id)).telemetry
        except ModelError as error:
            raise InvalidArgumentError(
                "unknown model", [FieldViolation("twin_id", f"unknown model {twin.model_id!r}")]
            ) from error
        violations = []
        for name, value in values.items():
            spec = telemetry.get(name)
            if spec is None:
                violations.append(
                    FieldViolation(f"set[{name!r}]", f"the model declares no telemetry {name!r}")
                )
                continue
            violations += value_violations(
                spec.schema, value, f"set[{name!r}]", spec.minimum, spec.maximum
            )
        violations += [
            FieldViolation(f"remove[{i}]", f"{name!r} is being set too")
            for i, name in enumerate(remove)
            if name in values
        ]
        if not values and not remove:
            violations.append(FieldViolation("set", "set or remove at least one field"))
        if violations:
            raise InvalidArgumentError("invalid desired values", violations)
        now_ns = time.time_ns()

        def mutate(state: state_pb2.TwinState) -> bool:
            if expected_revision and state.revision != expected_revision:
                raise RevisionMismatchError(
                    f"twins/{twin_id}/state", expected_revision, state.revision
                )
            if not state.model_id:
                state.model_id = twin.model_id
            set_desired(state, values, remove, now_ns)
            return True

        written = await self._store.update(twin_id, mutate)
        assert written is not None  # mutate() always writes
        state = written[0]
        event = events_pb2.DesiredChangedEvent(
            twin_id=state.twin_id,
            desired={name: field.value for name, field in state.desired.items()},
            delta_fields=sorted(state.delta),
            state_revision=state.revision,
        )
        event.time.FromNanoseconds(now_ns)
        await self._events.publish(
            DESIRED_CHANGED, (state.twin_id,), event, msg_id=f"desired:{twin_id}:{state.revision}"
        )
        return state
