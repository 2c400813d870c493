"""A batch of model documents — native and DTDL, possibly referring to each other — parsed and
resolved together, as the registry stores them and as ``twinstack model validate`` checks them
offline."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from twinstack.modeling.document import Model, ModelError, parse_model
from twinstack.modeling.dtdl import convert_dtdl
from twinstack.modeling.resolve import InvalidDependencyError, ResolvedModel, Resolver
from twinstack.modeling.violations import FieldViolation

SourceFormat = Literal["native", "dtdl"]


@dataclass(frozen=True)
class Source:
    """One model file's text: its name (for messages), its format and its content."""

    name: str
    format: SourceFormat
    content: str


@dataclass
class ParsedBatch:
    """A batch on its way to models: the model-language documents (DTDL converted) with their
    origins, then the models; what a DTDL import could not map; and what is wrong."""

    documents: list[tuple[Any, str]] = field(default_factory=list)
    models: list[Model] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    violations: list[FieldViolation] = field(default_factory=list)


def read_batch(
    sources: Sequence[Source], *, max_schema_nodes: int = 1_000_000, max_notes: int = 10_000
) -> ParsedBatch:
    """Reads every source into model-language documents (:func:`parse_batch` parses them),
    collecting every problem.

    Raises:
        SchemaBudgetError: The DTDL schemas expand to more than ``max_schema_nodes`` nodes.
    """
    batch = ParsedBatch()
    documents = batch.documents
    dtdl: list[tuple[Any, str]] = []
    for source in sources:
        try:
            # A byte order mark (common in files written on Windows) is no part of the JSON.
            document = json.loads(source.content.removeprefix("\ufeff"))
        except (ValueError, RecursionError) as error:
            batch.violations.append(FieldViolation(source.name, f"not valid JSON: {error}"))
            continue
        if source.format == "dtdl":
            dtdl.append((document, source.name))
        else:
            items = document if isinstance(document, list) else [document]
            documents.extend(
                (doc, source.name if len(items) == 1 else f"{source.name}[{i}]")
                for i, doc in enumerate(items)
            )
    # A DTDL ontology is converted as a whole: its files refer to each other's schemas.
    converted, batch.notes = convert_dtdl(
        dtdl, max_schema_nodes=max_schema_nodes, max_notes=max_notes
    )
    documents.extend(converted)
    return batch


def parse_batch(batch: ParsedBatch) -> ParsedBatch:
    """Parses the documents :func:`read_batch` read into models, collecting every problem."""
    for document, origin in batch.documents:
        try:
            batch.models.append(parse_model(document, origin))
        except ModelError as error:
            batch.violations.extend(error.violations)
    seen: set[str] = set()
    for model in batch.models:
        if model.id in seen:
            batch.violations.append(FieldViolation(model.id, "defined twice in the request"))
        seen.add(model.id)
    return batch


def resolve_batch(
    models: Sequence[Model], known: Callable[[str], Model | None] = lambda _: None
) -> tuple[dict[str, ResolvedModel], list[FieldViolation]]:
    """Resolves every model of a batch against the batch and ``known`` models.

    Returns:
        The resolved models by id, and the violations: each cause once (a model that fails only
        because a model it builds on is invalid adds nothing of its own).
    """
    by_id = {m.id: m for m in models}
    resolver = Resolver(lambda model_id: by_id.get(model_id) or known(model_id))
    resolved: dict[str, ResolvedModel] = {}
    violations: list[FieldViolation] = []
    secondary: list[FieldViolation] = []
    for model in models:
        try:
            resolved[model.id] = resolver.resolve(model.id)
        except InvalidDependencyError as error:
            secondary.extend(error.violations)
        except ModelError as error:
            violations.extend(error.violations)
    return resolved, violations or secondary
