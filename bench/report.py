"""Printing results as tables and writing them to bench/results/<name>.json."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"
console = Console()


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def show(title: str, rows: list[tuple[str, str, str]]) -> None:
    """Rows of (measure, value, ratio or note)."""
    table = Table(title=title, title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("ratio / target", justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


class _Bearer(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the credential to every unary call of a raw channel (the benchmarks' stubs)."""

    def __init__(self, token: str) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),)

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        details = details._replace(metadata=(*(details.metadata or ()), *self._metadata))
        return await continuation(details, request)


def authorized_channel(target: str, token: str) -> grpc.aio.Channel:
    """A plaintext channel whose unary calls carry ``token``."""
    return grpc.aio.insecure_channel(target, interceptors=[_Bearer(token)])


def save(name: str, results: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **results}, indent=2) + "\n")
    return path
