"""Model files (YAML or JSON, native or DTDL) read into requests, and the example models."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from twinstack.api.registry.v1 import registry_pb2

EXAMPLE_MODEL_FILES = (
    "common.yaml",
    "manufacturing.yaml",
    "healthcare.yaml",
    "smart_city.yaml",
    "logistics.yaml",
)


MODEL_FILE_SUFFIXES = (".yaml", ".yml", ".json")


class ModelFileError(ValueError):
    """A model file that cannot be read (not UTF-8, not JSON or YAML); says which."""


def _is_dtdl(document: Any) -> bool:
    items = document if isinstance(document, list) else [document]
    return any(isinstance(item, dict) and "@context" in item for item in items)


def _is_native(document: Any) -> bool:
    items = document if isinstance(document, list) else [document]
    return bool(items) and all(isinstance(item, dict) and "id" in item for item in items)


def _parse(name: str, text: str) -> Any:
    # Files written on Windows often start with a byte order mark, which is no part of the JSON.
    text = text.removeprefix("\ufeff")
    try:
        return yaml.safe_load(text) if not name.endswith(".json") else json.loads(text)
    except (ValueError, yaml.YAMLError) as error:
        raise ModelFileError(f"{name}: neither JSON nor YAML: {error}") from None


def model_source(name: str, text: str) -> registry_pb2.ModelSource:
    """A request source from file text: YAML or JSON, DTDL when it carries an ``@context``.

    YAML is read here, on the client, with the safe loader; the API takes JSON only. A leading
    byte order mark is ignored.

    Raises:
        ModelFileError: the text is neither JSON nor YAML.
    """
    document = _parse(name, text)
    return registry_pb2.ModelSource(
        name=name,
        format=(
            registry_pb2.MODEL_FORMAT_DTDL
            if _is_dtdl(document)
            else registry_pb2.MODEL_FORMAT_NATIVE
        ),
        content=json.dumps(document, default=str),
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ModelFileError(f"{path}: not UTF-8 text: {error}") from None


def model_sources(
    paths: Iterable[Path], *, on_skip: Callable[[Path, str], None] | None = None
) -> list[registry_pb2.ModelSource]:
    """Sources from files and directories.

    Below a directory, every .yaml, .yml and .json file is read, except in hidden folders
    (``.git``, ``.github``...) and hidden files, and except files that are neither a DTDL
    document nor native models (package manifests, editor settings): each of those is passed to
    ``on_skip`` with the reason. A file named directly is always sent.

    Raises:
        ModelFileError: a file that cannot be read as JSON or YAML.
    """
    sources: list[registry_pb2.ModelSource] = []
    for path in paths:
        if not path.is_dir():
            sources.append(model_source(str(path), _read(path)))
            continue
        for file in sorted(path.rglob("*")):
            relative = file.relative_to(path)
            if file.suffix not in MODEL_FILE_SUFFIXES or not file.is_file():
                continue
            if any(part.startswith(".") for part in relative.parts):
                if on_skip is not None:
                    on_skip(file, "hidden")
                continue
            source = model_source(str(file), _read(file))
            document = json.loads(source.content)
            if source.format == registry_pb2.MODEL_FORMAT_NATIVE and not _is_native(document):
                if on_skip is not None:
                    on_skip(file, "neither DTDL (no @context) nor a model (no id)")
                continue
            sources.append(source)
    return sources


def example_model_sources() -> list[registry_pb2.ModelSource]:
    """The models of the four seed use cases shipped with the SDK."""
    folder = resources.files("twinstack.sdk") / "models"
    return [model_source(name, (folder / name).read_text()) for name in EXAMPLE_MODEL_FILES]
