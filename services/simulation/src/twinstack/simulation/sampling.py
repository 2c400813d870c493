"""Parameter spaces: the points a sweep visits, in the unit cube, then scaled to ranges.

Grid (a level count per dimension), uniform random, Latin hypercube and scrambled Sobol
(``scipy.stats.qmc``). Every sampler is seeded, so the same spec always gives the same points.

Points are computed by index (:func:`points_at`), never as a whole: a chunk of a sweep of 10^8
scenarios computes only its own points, so no process holds the sweep's parameter space. Random
draws are counter-based (a pure function of seed, point and dimension); a Latin hypercube's
strata are a keyed pseudo-random permutation of the points (a Feistel network with cycle
walking), so each point finds its stratum without the permutation being stored; Sobol points are
reached by fast-forwarding the scrambled sequence.
"""

from __future__ import annotations

import enum
import math
import warnings
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy.stats import qmc

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_DIMENSION = np.uint64(0xD1B54A32D192ED03)
_ROUND = np.uint64(0xA24BAED4963EE407)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_LHS_SALT = np.uint64(0x5851F42D4C957F2D)
_FEISTEL_ROUNDS = 4


class Sampler(enum.Enum):
    GRID = "grid"
    RANDOM = "random"
    LATIN_HYPERCUBE = "latin_hypercube"
    SOBOL = "sobol"


def point_count(sampler: Sampler, samples: int, levels: Sequence[int]) -> int:
    """How many points the sampler visits, without computing them."""
    if not levels:
        return 1
    if sampler is Sampler.GRID:
        # Exact integers: a product in int64 wraps (65536 levels in four dimensions is 0).
        return math.prod(max(1, int(level)) for level in levels)
    return samples


def _mix(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _MIX_1
        z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def _hash(seed: int, index: IndexArray, stream: int) -> npt.NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        z = (
            np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _DIMENSION
            + (index.astype(np.uint64) + np.uint64(1)) * _GOLDEN
            + np.uint64(stream) * _ROUND
        )
    return _mix(z)


def _uniform(seed: int, index: IndexArray, stream: int) -> FloatArray:
    """Doubles in [0, 1): 53 bits of a counter-based hash of (seed, index, stream)."""
    bits = _hash(seed, index, stream) >> np.uint64(11)
    return bits.astype(np.float64) * (1.0 / 9007199254740992.0)


def permute(index: IndexArray, size: int, key: int) -> IndexArray:
    """A keyed pseudo-random permutation of ``range(size)``, evaluated at ``index``.

    A balanced Feistel network over the smallest even number of bits that covers ``size``,
    with cycle walking: an image outside the domain is permuted again until it falls inside,
    which keeps the map a bijection of ``range(size)``.
    """
    if size <= 1:
        return np.zeros_like(index)
    half = max(1, math.ceil(math.ceil(math.log2(size)) / 2))
    mask = np.uint64((1 << half) - 1)
    shift = np.uint64(half)
    keys = [_mix(np.array([key, r], dtype=np.uint64))[0] ^ np.uint64(r) for r in range(4)]

    def rounds(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
        left, right = x >> shift, x & mask
        for r in range(_FEISTEL_ROUNDS):
            left, right = right, left ^ (_mix(right ^ keys[r]) & mask)
        return (left << shift) | right

    x = rounds(index.astype(np.uint64))
    outside = x >= np.uint64(size)
    while outside.any():
        x[outside] = rounds(x[outside])
        outside = x >= np.uint64(size)
    return x.astype(np.int64)


def _sobol(index: IndexArray, dimensions: int, seed: int) -> FloatArray:
    """Scrambled Sobol points at ``index``, each contiguous run reached by fast-forwarding."""
    points = np.empty((index.size, dimensions))
    order = np.argsort(index, kind="stable")
    ordered = index[order]
    breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
    with warnings.catch_warnings():
        # Sobol's balance properties need a power of two; other counts are still valid points.
        warnings.simplefilter("ignore", UserWarning)
        for run in np.split(np.arange(ordered.size), breaks):
            if run.size == 0:
                continue
            sobol = qmc.Sobol(d=dimensions, scramble=True, rng=np.random.default_rng(seed))
            if ordered[run[0]] > 0:  # scipy refuses to fast-forward by nothing
                sobol.fast_forward(int(ordered[run[0]]))
            points[order[run]] = sobol.random(run.size)
    return points


def points_at(
    sampler: Sampler, index: IndexArray, samples: int, levels: Sequence[int], seed: int
) -> FloatArray:
    """Unit-cube points ``(len(index), dimensions)`` at the given point indices.

    ``levels`` has one entry per dimension (used by the grid; its length is the dimension
    count for every sampler); ``samples`` is the number of points of the random samplers.
    """
    dimensions = len(levels)
    index = np.asarray(index, dtype=np.int64)
    if dimensions == 0:
        return np.zeros((index.size, 0))
    if sampler is Sampler.GRID:
        points = np.empty((index.size, dimensions))
        rest = index.copy()
        # itertools.product order: the last dimension varies fastest.
        for d in reversed(range(dimensions)):
            level = max(1, int(levels[d]))
            digit = rest % level
            rest //= level
            points[:, d] = digit / (level - 1) if level > 1 else 0.5
        return points
    if sampler is Sampler.RANDOM:
        return np.stack([_uniform(seed, index, d) for d in range(dimensions)], axis=1)
    if sampler is Sampler.LATIN_HYPERCUBE:
        columns = []
        for d in range(dimensions):
            stratum = permute(index, samples, (seed * 1_000_003 + d) & 0xFFFFFFFFFFFFFFFF)
            jitter = _uniform(seed ^ int(_LHS_SALT), index, d)
            columns.append((stratum + jitter) / samples)
        return np.stack(columns, axis=1)
    return _sobol(index, dimensions, seed)


def scale(points: FloatArray, low: FloatArray, high: FloatArray) -> FloatArray:
    """Unit-cube points scaled to ``[low, high]`` per dimension."""
    return low + points * (high - low)
