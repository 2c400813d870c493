"""Parameter spaces: the points a sweep visits, in the unit cube, then scaled to ranges.

Grid (a level count per dimension), uniform random, Latin hypercube and scrambled Sobol
(``scipy.stats.qmc``). Every sampler is seeded, so the same spec always gives the same points.
"""

from __future__ import annotations

import enum
import itertools
import math
import warnings
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy.stats import qmc

FloatArray = npt.NDArray[np.float64]


class Sampler(enum.Enum):
    GRID = "grid"
    RANDOM = "random"
    LATIN_HYPERCUBE = "latin_hypercube"
    SOBOL = "sobol"


def point_count(sampler: Sampler, samples: int, levels: Sequence[int]) -> int:
    """How many points ``unit_points`` returns, without computing them."""
    if not levels:
        return 1
    if sampler is Sampler.GRID:
        # Exact integers: a product in int64 wraps (65536 levels in four dimensions is 0).
        return math.prod(max(1, int(level)) for level in levels)
    return samples


def unit_points(sampler: Sampler, samples: int, levels: Sequence[int], seed: int) -> FloatArray:
    """``(points, dimensions)`` in [0, 1]; ``levels`` has one entry per dimension (used by the
    grid; its length is the dimension count for every sampler)."""
    dimensions = len(levels)
    if dimensions == 0:
        return np.zeros((1, 0))
    if sampler is Sampler.GRID:
        axes = [np.linspace(0.0, 1.0, level) if level > 1 else np.array([0.5]) for level in levels]
        return np.array(list(itertools.product(*axes)), dtype=np.float64)
    if sampler is Sampler.RANDOM:
        return np.random.default_rng(seed).random((samples, dimensions))
    if sampler is Sampler.LATIN_HYPERCUBE:
        return qmc.LatinHypercube(d=dimensions, rng=np.random.default_rng(seed)).random(samples)
    with warnings.catch_warnings():
        # Sobol's balance properties need a power of two; other counts are still valid points.
        warnings.simplefilter("ignore", UserWarning)
        sobol = qmc.Sobol(d=dimensions, scramble=True, rng=np.random.default_rng(seed))
        return sobol.random(samples)


def scale(points: FloatArray, low: FloatArray, high: FloatArray) -> FloatArray:
    """Unit-cube points scaled to ``[low, high]`` per dimension."""
    return low + points * (high - low)
