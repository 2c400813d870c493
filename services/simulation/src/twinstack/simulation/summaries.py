"""Sweep summaries from mergeable per-chunk partials, so no process ever holds all the rows.

Each chunk's worker reduces its KPI matrix to a :class:`Partial`: per KPI the count, sum,
extremes and a weighted quantile sketch (at most ``SKETCH_SIZE`` points, so a quantile's rank
error is at most 1/``SKETCH_SIZE``); per swept variable and KPI the co-moments of a Pearson
correlation (merged with Chan et al.'s pairwise formulas, stable over 10^8 scenarios); the best
scenarios by the objective; the count of diverged scenarios. Partials merge associatively; the
driver merges them in chunk order, so a sweep's summary is the same however its chunks were
scheduled, retried or resumed.

Partials travel as ``.npz`` bytes without pickles: a ledger entry is data, never code.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SKETCH_SIZE = 256
HISTOGRAM_BINS = 20
QUANTILES = (0.05, 0.5, 0.95)


@dataclass(frozen=True)
class Partial:
    """What one or more chunks contribute to a sweep's summary.

    Arrays are indexed by KPI ``k``, swept variable ``r`` and best-scenario slot ``b``.
    """

    count: IntArray  # (k,) finite values
    missing: IntArray  # (k,) NaN or infinite values
    total: FloatArray  # (k,) sum of finite values
    low: FloatArray  # (k,) min, +inf when none
    high: FloatArray  # (k,) max, -inf when none
    sketch_values: FloatArray  # (k, SKETCH_SIZE) ascending, NaN-padded
    sketch_weights: FloatArray  # (k, SKETCH_SIZE), 0 where padded
    pairs: FloatArray  # (r, k, 6): n, mean x, mean y, M2 x, M2 y, C xy
    best_scenario: IntArray  # (b,)
    best_objective: FloatArray  # (b,)
    diverged: int

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            count=self.count,
            missing=self.missing,
            total=self.total,
            low=self.low,
            high=self.high,
            sketch_values=self.sketch_values,
            sketch_weights=self.sketch_weights,
            pairs=self.pairs,
            best_scenario=self.best_scenario,
            best_objective=self.best_objective,
            diverged=np.array([self.diverged], dtype=np.int64),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Partial:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return cls(
                count=arrays["count"],
                missing=arrays["missing"],
                total=arrays["total"],
                low=arrays["low"],
                high=arrays["high"],
                sketch_values=arrays["sketch_values"],
                sketch_weights=arrays["sketch_weights"],
                pairs=arrays["pairs"],
                best_scenario=arrays["best_scenario"],
                best_objective=arrays["best_objective"],
                diverged=int(arrays["diverged"][0]),
            )


@dataclass(frozen=True)
class Objective:
    kpi: int  # row of the KPI matrix
    maximize: bool
    count: int


def _sketch(values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The finite ``values`` as at most SKETCH_SIZE weighted points (NaN-padded)."""
    out_values = np.full(SKETCH_SIZE, np.nan)
    out_weights = np.zeros(SKETCH_SIZE)
    n = values.size
    if n == 0:
        return out_values, out_weights
    ordered = np.sort(values)
    if n <= SKETCH_SIZE:
        out_values[:n] = ordered
        out_weights[:n] = 1.0
    else:
        ranks = (np.arange(SKETCH_SIZE) + 0.5) * n / SKETCH_SIZE
        out_values[:] = ordered[np.minimum(ranks.astype(np.int64), n - 1)]
        out_weights[:] = n / SKETCH_SIZE
    return out_values, out_weights


def _merge_sketch(
    values_a: FloatArray, weights_a: FloatArray, values_b: FloatArray, weights_b: FloatArray
) -> tuple[FloatArray, FloatArray]:
    values = np.concatenate([values_a, values_b])
    weights = np.concatenate([weights_a, weights_b])
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    order = np.argsort(values, kind="stable")
    values, weights = values[order], weights[order]
    out_values = np.full(SKETCH_SIZE, np.nan)
    out_weights = np.zeros(SKETCH_SIZE)
    if values.size <= SKETCH_SIZE:
        out_values[: values.size] = values
        out_weights[: values.size] = weights
        return out_values, out_weights
    cumulative = np.cumsum(weights)
    total = cumulative[-1]
    ranks = (np.arange(SKETCH_SIZE) + 0.5) * total / SKETCH_SIZE
    out_values[:] = values[np.minimum(np.searchsorted(cumulative, ranks), values.size - 1)]
    out_weights[:] = total / SKETCH_SIZE
    return out_values, out_weights


def _best(
    scenario: IntArray, objective: FloatArray, maximize: bool, count: int
) -> tuple[IntArray, FloatArray]:
    """The ``count`` best by objective; ties go to the lower scenario index."""
    keep = np.isfinite(objective)
    scenario, objective = scenario[keep], objective[keep]
    order = np.lexsort((scenario, -objective if maximize else objective))[:count]
    return scenario[order], objective[order]


def chunk_partial(
    kpis: FloatArray,
    swept: FloatArray,
    first_scenario: int,
    objective: Objective | None,
    final_rows: Sequence[int],
) -> Partial:
    """The partial of one chunk.

    Args:
        kpis: ``(k, n)`` KPI matrix of the chunk's scenarios.
        swept: ``(r, n)`` values of the swept variables.
        first_scenario: Index of the chunk's first scenario in the sweep.
        objective: How to rank the best scenarios, if at all.
        final_rows: KPI rows that hold final values (a non-finite one marks divergence).
    """
    k, n = kpis.shape
    finite = np.isfinite(kpis)
    count = finite.sum(axis=1).astype(np.int64)
    cleaned = np.where(finite, kpis, 0.0)
    sketches = [_sketch(kpis[row][finite[row]]) for row in range(k)]
    pairs = np.zeros((swept.shape[0], k, 6))
    for r in range(swept.shape[0]):
        x = swept[r]
        for row in range(k):
            mask = finite[row]
            m = int(mask.sum())
            if m == 0:
                continue
            xs, ys = x[mask], kpis[row][mask]
            mx, my = xs.mean(), ys.mean()
            dx, dy = xs - mx, ys - my
            pairs[r, row] = (m, mx, my, dx @ dx, dy @ dy, dx @ dy)
    if objective is not None:
        scenario = np.arange(first_scenario, first_scenario + n, dtype=np.int64)
        best_scenario, best_objective = _best(
            scenario, kpis[objective.kpi], objective.maximize, objective.count
        )
    else:
        best_scenario, best_objective = np.empty(0, np.int64), np.empty(0)
    diverged = int((~np.isfinite(kpis[list(final_rows)])).any(axis=0).sum()) if final_rows else 0
    return Partial(
        count=count,
        missing=(n - count).astype(np.int64),
        total=cleaned.sum(axis=1),
        low=np.where(count > 0, np.where(finite, kpis, np.inf).min(axis=1), np.inf),
        high=np.where(count > 0, np.where(finite, kpis, -np.inf).max(axis=1), -np.inf),
        sketch_values=np.array([s[0] for s in sketches]).reshape(k, SKETCH_SIZE),
        sketch_weights=np.array([s[1] for s in sketches]).reshape(k, SKETCH_SIZE),
        pairs=pairs,
        best_scenario=best_scenario,
        best_objective=best_objective,
        diverged=diverged,
    )


def _merge_pairs(a: FloatArray, b: FloatArray) -> FloatArray:
    na, nb = a[..., 0], b[..., 0]
    n = na + nb
    safe = np.where(n > 0, n, 1.0)
    dx, dy = b[..., 1] - a[..., 1], b[..., 2] - a[..., 2]
    weight = na * nb / safe
    merged = np.empty_like(a)
    merged[..., 0] = n
    merged[..., 1] = a[..., 1] + dx * nb / safe
    merged[..., 2] = a[..., 2] + dy * nb / safe
    merged[..., 3] = a[..., 3] + b[..., 3] + dx * dx * weight
    merged[..., 4] = a[..., 4] + b[..., 4] + dy * dy * weight
    merged[..., 5] = a[..., 5] + b[..., 5] + dx * dy * weight
    return merged


def merge(a: Partial, b: Partial, objective: Objective | None) -> Partial:
    """The partial of both (``a``'s chunks first)."""
    sketches = [
        _merge_sketch(
            a.sketch_values[row], a.sketch_weights[row], b.sketch_values[row], b.sketch_weights[row]
        )
        for row in range(a.count.size)
    ]
    best_scenario = np.concatenate([a.best_scenario, b.best_scenario])
    best_objective = np.concatenate([a.best_objective, b.best_objective])
    if objective is not None:
        best_scenario, best_objective = _best(
            best_scenario, best_objective, objective.maximize, objective.count
        )
    k = a.count.size
    return replace(
        a,
        count=a.count + b.count,
        missing=a.missing + b.missing,
        total=a.total + b.total,
        low=np.minimum(a.low, b.low),
        high=np.maximum(a.high, b.high),
        sketch_values=np.array([s[0] for s in sketches]).reshape(k, SKETCH_SIZE),
        sketch_weights=np.array([s[1] for s in sketches]).reshape(k, SKETCH_SIZE),
        pairs=_merge_pairs(a.pairs, b.pairs),
        best_scenario=best_scenario,
        best_objective=best_objective,
        diverged=a.diverged + b.diverged,
    )


@dataclass(frozen=True)
class KpiStats:
    name: str
    mean: float
    min: float
    max: float
    p05: float
    p50: float
    p95: float
    missing: int
    bin_edges: tuple[float, ...] = ()
    counts: tuple[int, ...] = ()


@dataclass(frozen=True)
class Correlation:
    variable: str
    kpi: str
    correlation: float


def _quantiles(values: FloatArray, weights: FloatArray, low: float, high: float) -> FloatArray:
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    cumulative = np.cumsum(weights)
    midpoints = cumulative - weights / 2
    total = cumulative[-1]
    quantiles: FloatArray = np.interp(
        np.array(QUANTILES) * total, midpoints, values, left=low, right=high
    )
    return quantiles


def _histogram(
    values: FloatArray, weights: FloatArray, low: float, high: float, count: int
) -> tuple[tuple[float, ...], tuple[int, ...]]:
    if not high > low:
        return (low, high), (count,)
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    # Each sketch point's weight goes to the bin it falls in; counts are rounded so that they
    # still add up to the number of values.
    bins = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, HISTOGRAM_BINS - 1)
    weighted = np.bincount(bins, weights=weights, minlength=HISTOGRAM_BINS)
    cumulative = np.rint(np.cumsum(weighted) * count / weighted.sum()).astype(np.int64)
    counts = np.diff(np.concatenate([[0], cumulative]))
    return tuple(float(e) for e in edges), tuple(int(c) for c in counts)


def kpi_stats(names: Sequence[str], partial: Partial) -> list[KpiStats]:
    """Each KPI's distribution: mean, extremes, quantiles and a histogram."""
    stats = []
    for row, name in enumerate(names):
        count = int(partial.count[row])
        missing = int(partial.missing[row])
        if count == 0:
            nan = math.nan
            stats.append(KpiStats(name, nan, nan, nan, nan, nan, nan, missing))
            continue
        low, high = float(partial.low[row]), float(partial.high[row])
        p05, p50, p95 = _quantiles(
            partial.sketch_values[row], partial.sketch_weights[row], low, high
        )
        edges, counts = _histogram(
            partial.sketch_values[row], partial.sketch_weights[row], low, high, count
        )
        stats.append(
            KpiStats(
                name,
                float(partial.total[row] / count),
                low,
                high,
                float(p05),
                float(p50),
                float(p95),
                missing,
                edges,
                counts,
            )
        )
    return stats


def correlations(
    variables: Sequence[str], kpis: Sequence[str], partial: Partial
) -> list[Correlation]:
    """Pearson correlation of every swept variable with every KPI (NaN where undefined)."""
    result = []
    for r, variable in enumerate(variables):
        for row, kpi in enumerate(kpis):
            _, _, _, m2x, m2y, cxy = partial.pairs[r, row]
            denominator = math.sqrt(m2x * m2y)
            value = cxy / denominator if denominator > 0 else math.nan
            result.append(Correlation(variable, kpi, float(value)))
    return result
