"""Model versions in the registry bucket (``models.<model key>``): validated, checked for
compatibility with the version before, immutable once stored, and announced as events."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from twinstack.api.common.v1 import events_pb2
from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    require_at_most,
)
from twinstack.common.events import MODEL_CHANGED, EventPublisher
from twinstack.common.nats import MODEL_KEY_PREFIX
from twinstack.common.tenancy import TenantIds, external_id, tenant_of
from twinstack.modeling.batch import Source, SourceFormat, parse_batch, read_batch, resolve_batch
from twinstack.modeling.document import (
    Model,
    canonical_json,
    model_key,
    version_of,
)
from twinstack.modeling.dtdl import SchemaBudgetError
from twinstack.registry.compatibility import breaking_changes
from twinstack.registry.export import resolved_document
from twinstack.registry.index import RegistryIndex

MODEL_RESOURCE = "twinstack.io/Model"
_FORMATS: dict[int, SourceFormat] = {
    registry_pb2.MODEL_FORMAT_NATIVE: "native",
    registry_pb2.MODEL_FORMAT_DTDL: "dtdl",
}


@dataclass(frozen=True)
class ModelLimits:
    """Bounds on one CreateModels request (docs/limits.md); the request's total size is bounded
    by the gRPC message size."""

    max_source_bytes: int = 4 * 1024 * 1024
    max_models: int = 10_000
    max_dtdl_schema_nodes: int = 1_000_000
    max_import_notes: int = 10_000


@dataclass(frozen=True)
class ModelBatch:
    """The models of one CreateModels request, parsed, and what an import could not map."""

    models: list[Model]
    notes: list[registry_pb2.ImportNote]


def parse_sources(
    sources: Sequence[registry_pb2.ModelSource], limits: ModelLimits = ModelLimits()
) -> ModelBatch:
    """Parses every source; InvalidArgumentError listing every problem of every document.

    Raises:
        LimitExceededError: a source, the number of models or the expansion of DTDL schemas goes
            over ``limits``.
    """
    if not sources:
        raise InvalidArgumentError("no models", [FieldViolation("sources", "give at least one")])
    violations: list[FieldViolation] = []
    readable: list[Source] = []
    for index, source in enumerate(sources):
        origin = source.name or f"sources[{index}]"
        require_at_most(
            len(source.content.encode()),
            limits.max_source_bytes,
            limit="TWINSTACK_MAX_MODEL_SOURCE_BYTES",
            what=f"bytes in source {origin!r}",
            field=f"sources[{index}].content",
            hint="split the file, or raise the limit",
        )
        source_format = _FORMATS.get(source.format)
        if source_format is None:
            violations.append(FieldViolation(f"{origin}.format", "NATIVE or DTDL"))
        else:
            readable.append(Source(origin, source_format, source.content))
    try:
        batch = read_batch(
            readable,
            max_schema_nodes=limits.max_dtdl_schema_nodes,
            max_notes=limits.max_import_notes,
        )
    except SchemaBudgetError as error:
        raise LimitExceededError(
            str(error),
            limit="TWINSTACK_MAX_DTDL_SCHEMA_NODES",
            maximum=error.max_schema_nodes,
            violations=[error.violation],
        ) from None
    require_at_most(
        len(batch.documents),
        limits.max_models,
        limit="TWINSTACK_MAX_MODELS_PER_REQUEST",
        what="models",
        field="sources",
        hint="send the ontology in several requests, base models first",
    )
    violations += parse_batch(batch).violations
    if violations:
        raise InvalidArgumentError("invalid models", violations)
    notes = [registry_pb2.ImportNote(path=p, message=m) for p, m in batch.notes]
    return ModelBatch(batch.models, notes)


def dependency_order(models: Sequence[Model]) -> list[Model]:
    """``models`` with every model after the models of the batch it refers to (as far as
    cycles of relationships allow), found without recursion whatever the batch's depth."""
    by_id = {m.id: m for m in models}
    ordered: list[Model] = []
    seen: set[str] = set()
    for root in models:
        if root.id in seen:
            continue
        seen.add(root.id)
        stack = [(root, iter(sorted(root.references())))]
        while stack:
            model, references = stack[-1]
            reference = next(references, None)
            if reference is None:
                stack.pop()
                ordered.append(model)
            elif reference in by_id and reference not in seen:
                seen.add(reference)
                stack.append((by_id[reference], iter(sorted(by_id[reference].references()))))
    return ordered


_UNKNOWN_MODEL = "unknown model "


def _invalid_models_message(violations: Sequence[FieldViolation]) -> str:
    """A summary naming every model that is referenced but defined nowhere."""
    missing = sorted(
        {
            v.description.removeprefix(_UNKNOWN_MODEL)
            for v in violations
            if v.description.startswith(_UNKNOWN_MODEL)
        }
    )
    if not missing:
        return "invalid models"
    shown = ", ".join(missing[:20]) + (
        f" and {len(missing) - 20} more" if len(missing) > 20 else ""
    )
    return (
        f"invalid models: {len(missing)} referenced model(s) defined neither in the request nor "
        f"in the registry: {shown} (field violations say where each is referenced)"
    )


class ModelStore:
    """Stores model versions and answers for them from the index."""

    def __init__(
        self,
        bucket: KeyValue,
        js: JetStreamContext,
        index: RegistryIndex,
        limits: ModelLimits = ModelLimits(),
    ) -> None:
        self._bucket = bucket
        self._js = js
        self._events = EventPublisher(js)
        self._index = index
        self._limits = limits

    async def create(
        self,
        sources: Sequence[registry_pb2.ModelSource],
        ids: TenantIds,
        *,
        allow_breaking_changes: bool = False,
        validate_only: bool = False,
    ) -> registry_pb2.CreateModelsResponse:
        """Stores the models of ``sources`` as the tenant of ``ids``'s (its documents name
        models by DTMI; they are stored, referenced and resolved among that tenant's)."""
        # Parsing a whole ontology takes a while: off the event loop, so other calls go on.
        batch = await asyncio.to_thread(parse_sources, sources, self._limits)
        await self._index.loaded()
        ordered = dependency_order(batch.models)
        new = self._check_immutable(ordered, ids)
        self._check_resolvable(ordered, new, allow_breaking_changes, ids)
        stored = []
        for model in ordered:
            if validate_only or model.id not in new:
                existing = self._index.models.get(ids.inner(model.id))
                stored.append(existing if existing is not None else self._to_proto(model, ids))
            else:
                stored.append(await self._store(model, ids))
        return registry_pb2.CreateModelsResponse(models=stored, notes=batch.notes)

    def _check_immutable(self, models: Sequence[Model], ids: TenantIds) -> set[str]:
        """Ids of the models not stored yet; ALREADY_EXISTS for a changed stored version."""
        new = set()
        for model in models:
            existing = self._index.models.get(ids.inner(model.id))
            if existing is None:
                new.add(model.id)
            elif existing.document != model.document:
                raise AlreadyExistsError(
                    MODEL_RESOURCE,
                    model.id,
                    f"model {model.id} exists with other content; versions are immutable, "
                    "store the change as a new version",
                )
        return new

    def _check_resolvable(
        self, models: Sequence[Model], new: set[str], allow_breaking_changes: bool, ids: TenantIds
    ) -> None:
        resolved_by_id, violations = resolve_batch(
            models, self._index.catalog.tenant_models(ids.tenant)
        )
        if violations:
            raise InvalidArgumentError(_invalid_models_message(violations), violations)
        breaking: list[FieldViolation] = []
        for resolved in resolved_by_id.values():
            model = resolved.model
            base, version = version_of(model.id)
            previous = self._index.latest_version(ids.inner(base))
            if model.id not in new or previous is None or version_of(previous)[1] > version:
                continue
            for change in breaking_changes(self._index.resolve(previous), resolved):
                breaking.append(
                    FieldViolation(
                        f"{model.id}.{change.field}",
                        f"{change.description} (compared with {external_id(previous)})",
                    )
                )
        if breaking and not allow_breaking_changes:
            raise FailedPreconditionError(
                "the new model versions break compatibility with the latest stored versions; "
                "set allow_breaking_changes to store them anyway",
                breaking,
                violation_type="MODEL_COMPATIBILITY",
            )

    def _to_proto(self, model: Model, ids: TenantIds) -> registry_pb2.Model:
        return registry_pb2.Model(
            id=ids.inner(model.id),
            display_name=model.display_name,
            description=model.description,
            extends=[ids.inner(e) for e in model.extends],
            document=model.document,
        )

    async def _store(self, model: Model, ids: TenantIds) -> registry_pb2.Model:
        stored = self._to_proto(model, ids)
        stored.create_time.GetCurrentTime()
        try:
            revision = await self._bucket.create(
                f"{MODEL_KEY_PREFIX}{model_key(stored.id)}", stored.SerializeToString()
            )
        except KeyWrongLastSequenceError:
            # Stored concurrently by another request: fine if it is the same document.
            await self._index.catch_up()
            existing = self._index.models.get(stored.id)
            if existing is not None and existing.document == model.document:
                return existing
            raise AlreadyExistsError(
                MODEL_RESOURCE, model.id, f"model {model.id} was stored concurrently"
            ) from None
        stored.revision = revision
        self._index.remember_model(stored)
        event = events_pb2.ModelChangedEvent(
            model_id=stored.id,
            kind=events_pb2.CHANGE_KIND_CREATED,
            revision=revision,
            time=stored.create_time,
        )
        await self._events.publish(
            MODEL_CHANGED, (model_key(stored.id),), event, msg_id=f"model:{stored.id}:{revision}"
        )
        return stored

    async def get(self, model_id: str) -> registry_pb2.Model:
        await self._index.loaded()
        stored = self._index.models.get(model_id)
        if stored is None:
            raise NotFoundError(MODEL_RESOURCE, model_id, f"no model {model_id!r}")
        result = registry_pb2.Model()
        result.CopyFrom(stored)
        result.resolved_document = canonical_json(resolved_document(self._index.resolve(model_id)))
        return result

    async def page(
        self, after: str, size: int, id_prefix: str, latest_only: bool, tenant: str
    ) -> tuple[list[registry_pb2.Model], bool]:
        """A page of ``tenant``'s models by internal id (``id_prefix`` is one too, or empty)."""
        await self._index.loaded()
        ids = [m for m in self._index.models if m.startswith(id_prefix) and tenant_of(m) == tenant]
        if latest_only:
            ids = list({version_of(m)[0]: m for m in sorted(ids, key=version_of)}.values())
        ids = sorted(m for m in ids if m > after)
        return [self._index.models[m] for m in ids[:size]], len(ids) > size
