"""Built-in scenario kernels, compiled by numba.

A kernel advances many scenarios at once. Parameters come as a ``(parameters, scenarios)``
array so that each parameter is contiguous across scenarios, and the innermost loop runs over
scenarios: the compiler can vectorise it, and each time step touches memory in order. The
trajectory is reduced to KPIs inside the kernel, so only KPIs leave it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@numba.njit(cache=True, fastmath=True)
def pump_thermal_rk4(params: FloatArray, steps: int, dt_s: float, kpis: FloatArray) -> None:
    """First-order thermal model of a pump, integrated with classic RK4.

    ``dT/dt = (heat_kw * load - cooling_kw_per_k * (T - ambient_c)) / heat_capacity_kj_per_k``

    Args:
        params: Rows in the order of ``PUMP_THERMAL.parameters``.
        steps: Number of RK4 steps.
        dt_s: Step in seconds.
        kpis: Output, rows in the order of ``PUMP_THERMAL.kpis``.
    """
    load = params[0]
    ambient_c = params[1]
    heat_kw = params[2]
    cooling_kw_per_k = params[3]
    heat_capacity_kj_per_k = params[4]
    initial_c = params[5]
    alarm_c = params[6]
    n = params.shape[1]
    temperature = initial_c.copy()
    peak = initial_c.copy()
    above_s = np.zeros(n)
    half = 0.5 * dt_s
    sixth = dt_s / 6.0
    for _ in range(steps):
        for i in range(n):
            gain = heat_kw[i] * load[i]
            rate = cooling_kw_per_k[i] / heat_capacity_kj_per_k[i]
            inverse_capacity = 1.0 / heat_capacity_kj_per_k[i]
            t = temperature[i]
            k1 = gain * inverse_capacity - rate * (t - ambient_c[i])
            k2 = gain * inverse_capacity - rate * (t + half * k1 - ambient_c[i])
            k3 = gain * inverse_capacity - rate * (t + half * k2 - ambient_c[i])
            k4 = gain * inverse_capacity - rate * (t + dt_s * k3 - ambient_c[i])
            t = t + sixth * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
            temperature[i] = t
            peak[i] = max(peak[i], t)
            above_s[i] += dt_s if t > alarm_c[i] else 0.0
    kpis[0, :] = temperature
    kpis[1, :] = peak
    kpis[2, :] = above_s


@dataclass(frozen=True)
class BuiltinModel:
    """A hand-written kernel with its parameters (and defaults) and KPIs, in kernel order."""

    name: str
    description: str
    parameters: dict[str, float]
    kpis: tuple[str, ...]
    kernel: Callable[[FloatArray, int, float, FloatArray], None]

    def run(self, params: FloatArray, steps: int, dt_s: float) -> FloatArray:
        """KPIs ``(kpis, scenarios)`` of the scenarios ``params`` describes."""
        kpis = np.empty((len(self.kpis), params.shape[1]))
        self.kernel(np.ascontiguousarray(params), steps, dt_s, kpis)
        return kpis


PUMP_THERMAL = BuiltinModel(
    name="pump_thermal",
    description="Pump casing temperature under load (manufacturing): peak, final, time in alarm",
    parameters={
        "load": 0.8,
        "ambient_c": 25.0,
        "heat_kw": 30.0,
        "cooling_kw_per_k": 0.6,
        "heat_capacity_kj_per_k": 400.0,
        "initial_c": 25.0,
        "alarm_c": 70.0,
    },
    kpis=("final_temperature_c", "peak_temperature_c", "time_above_alarm_s"),
    kernel=pump_thermal_rk4,
)

BUILTIN_MODELS = {model.name: model for model in (PUMP_THERMAL,)}
