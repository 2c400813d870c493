"""Counter-based random numbers for kernels: a pure function of (seed, step, stream).

A scenario's noise depends only on its own seed, the step and which input it perturbs, never on
which chunk, task or worker runs it or in what order. That is what makes a seeded sweep
reproducible bit for bit however Ray schedules it, and lets a retried task redo exactly the
same work. The mixer is splitmix64's finaliser.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_STREAM = np.uint64(0xD1B54A32D192ED03)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_SALT = np.uint64(0x632BE59BD9B4E019)
_30 = np.uint64(30)
_27 = np.uint64(27)
_31 = np.uint64(31)
_11 = np.uint64(11)
_UNIT = 1.0 / 9007199254740992.0  # 2**-53: 53 random bits to a double in [0, 1)


@numba.njit(inline="always", cache=True)
def mix64(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> _30)) * _MIX_1
    z = (z ^ (z >> _27)) * _MIX_2
    return z ^ (z >> _31)


@numba.njit(inline="always", cache=True)
def uniform(seed: np.uint64, step: int, stream: int) -> float:
    """A double in (0, 1), the same for the same arguments on every machine."""
    bits = mix64(seed + np.uint64(step) * _GOLDEN + np.uint64(stream) * _STREAM)
    return (float(bits >> _11) + 0.5) * _UNIT


@numba.njit(inline="always", cache=True)
def normal(seed: np.uint64, step: int, stream: int) -> float:
    """A standard normal deviate (Box-Muller on two counter-based uniforms)."""
    first = mix64(seed + np.uint64(step) * _GOLDEN + np.uint64(stream) * _STREAM)
    second = mix64(first ^ _SALT)
    u1 = (float(first >> _11) + 0.5) * _UNIT
    u2 = float(second >> _11) * _UNIT
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def scenario_seeds(base_seed: int, count: int, offset: int = 0) -> npt.NDArray[np.uint64]:
    """Seeds of scenarios ``offset .. offset + count - 1`` of a sweep seeded ``base_seed``."""
    index = np.arange(offset, offset + count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(base_seed & 0xFFFFFFFFFFFFFFFF) * _STREAM + (index + np.uint64(1)) * _GOLDEN
        z = (z ^ (z >> _30)) * _MIX_1
        z = (z ^ (z >> _27)) * _MIX_2
    return z ^ (z >> _31)
