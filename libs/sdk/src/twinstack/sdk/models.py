"""Model files (YAML or JSON, native or DTDL) read into requests, and the example models."""

from __future__ import annotations

import json
from collections.abc import Iterable
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


def _is_dtdl(document: Any) -> bool:
    items = document if isinstance(document, list) else [document]
    return any(isinstance(item, dict) and "@context" in item for item in items)


def model_source(name: str, text: str) -> registry_pb2.ModelSource:
    """A request source from file text: YAML or JSON, DTDL when it carries an ``@context``.

    YAML is read here, on the client, with the safe loader; the API takes JSON only.
    """
    document = yaml.safe_load(text) if not name.endswith(".json") else json.loads(text)
    return registry_pb2.ModelSource(
        name=name,
        format=(
            registry_pb2.MODEL_FORMAT_DTDL
            if _is_dtdl(document)
            else registry_pb2.MODEL_FORMAT_NATIVE
        ),
        content=json.dumps(document, default=str),
    )


def model_sources(paths: Iterable[Path]) -> list[registry_pb2.ModelSource]:
    """Sources from files and directories (every .yaml, .yml and .json below a directory)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
            )
        else:
            files.append(path)
    return [model_source(str(f), f.read_text()) for f in files]


def example_model_sources() -> list[registry_pb2.ModelSource]:
    """The models of the four seed use cases shipped with the SDK."""
    folder = resources.files("twinstack.sdk") / "models"
    return [model_source(name, (folder / name).read_text()) for name in EXAMPLE_MODEL_FILES]
