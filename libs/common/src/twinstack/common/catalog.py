"""A read-side view of the registry's twins and models, for services that check data against
a twin's model (ingestion validates telemetry, state validates desired values and judges
staleness) and for the registry's own index.

Models are immutable once stored, so a resolved model is cached for good; a model this view
has not seen yet is looked for again after catching up with the bucket.
"""

from __future__ import annotations

import json
import logging

from nats.js.kv import KeyValue

from twinstack.api.registry.v1 import registry_pb2
from twinstack.common.directory import TwinDirectory
from twinstack.common.nats import MODEL_KEY_PREFIX
from twinstack.modeling.document import Model, ModelError, parse_model, version_of
from twinstack.modeling.resolve import ResolvedModel, Resolver


class ModelCatalog(TwinDirectory):
    """Twins and models of the registry bucket, with models resolved on demand."""

    # Twins and models share the bucket (and its revision sequence) with relationships.
    watched_keys = ">"

    def __init__(self, bucket: KeyValue) -> None:
        super().__init__(bucket)
        self.models: dict[str, registry_pb2.Model] = {}
        self.parsed_models: dict[str, Model] = {}
        self._resolver = Resolver(self.parsed_models.get)

    def apply(self, entry: KeyValue.Entry) -> None:
        if entry.key.startswith(MODEL_KEY_PREFIX):
            if entry.value:
                model = registry_pb2.Model.FromString(entry.value)
                model.revision = entry.revision or 0
                self.remember_model(model)
        else:
            super().apply(entry)

    def remember_model(self, model: registry_pb2.Model) -> None:
        """Takes a stored model version (versions are immutable: the first copy stays)."""
        if model.id in self.models:
            return
        try:
            parsed = parse_model(json.loads(model.document))
        except (ModelError, ValueError):
            # Stored models were validated on the way in; this is a document from a future
            # release that this one cannot read. Skip it rather than stop following.
            logging.getLogger(__name__).exception("stored model %s cannot be read", model.id)
            return
        self.models[model.id] = model
        self.parsed_models[model.id] = parsed
        self._resolver.forget_failures()

    def resolve(self, model_id: str) -> ResolvedModel:
        """The model with its inheritance resolved; ModelError if it or a reference is unknown."""
        return self._resolver.resolve(model_id)

    async def resolve_current(self, model_id: str) -> ResolvedModel:
        """Like :meth:`resolve`, but a model unknown here is looked for again once the view
        has caught up with the bucket (it may have been stored a moment ago)."""
        try:
            return self.resolve(model_id)
        except ModelError:
            await self.catch_up()
            return self.resolve(model_id)

    async def catch_up(self) -> None:
        """Waits until every write the bucket held when called is applied here."""
        status = await self._bucket.status()
        await self.wait_for_revision(status.stream_info.state.last_seq)

    def is_a(self, model_id: str, ancestor_id: str) -> bool:
        try:
            return self.resolve(model_id).is_a(ancestor_id)
        except ModelError:
            return model_id == ancestor_id

    def latest_version(self, base_id: str) -> str | None:
        """Id of the highest stored version of ``base_id`` (the id before ';')."""
        versions = [mid for mid in self.models if version_of(mid)[0] == base_id]
        return max(versions, key=lambda mid: version_of(mid)[1], default=None)
