"""Printing results as tables and writing them to bench/results/<name>.json."""

from __future__ import annotations

import json
import math
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


def growth_exponent(sizes: list[float], costs: list[float]) -> float:
    """The exponent k of cost ~ size^k, fitted on log-log axes (least squares)."""
    xs = [math.log(s) for s in sizes]
    ys = [math.log(max(c, 1e-12)) for c in costs]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


# A fitted exponent up to this counts as linear: timing noise on a shared 2-core machine bends
# a straight line by a few hundredths.
LINEAR_WITHIN = 1.1


def growth_verdict(exponent: float) -> str:
    """Says how a cost grows with its work, and whether that meets "linear or better"."""
    if exponent <= 0.2:
        shape = "flat"
    elif exponent < 0.9:
        shape = "sublinear"
    elif exponent <= LINEAR_WITHIN:
        shape = "linear"
    else:
        shape = "SUPERLINEAR"
    meets = "meets" if exponent <= LINEAR_WITHIN else "MISSES"
    return f"size^{exponent:.2f}: {shape}, {meets} linear or better"


def curve(
    title: str, size_name: str, sizes: list[int], columns: dict[str, list[float]]
) -> dict[str, Any]:
    """Prints one cost curve (a row per size, a column per cost named with its unit, a last
    row with each cost's growth) and returns it for the JSON results."""
    table = Table(title=title, title_justify="left")
    table.add_column(size_name, justify="right")
    for name in columns:
        table.add_column(name, justify="right")
    for i, size in enumerate(sizes):
        table.add_row(f"{size:,}", *(f"{values[i]:,.3g}" for values in columns.values()))
    exponents = {name: growth_exponent(list(map(float, sizes)), v) for name, v in columns.items()}
    table.add_row("growth", *(growth_verdict(k) for k in exponents.values()))
    console.print(table)
    return {
        "sizes": sizes,
        "costs": columns,
        "exponents": exponents,
        "linear_or_better": all(k <= LINEAR_WITHIN for k in exponents.values()),
    }
