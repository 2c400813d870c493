"""Built-in scenario kernels, hand-written in numba, for what the dynamics language cannot say.

Dynamics compiled from a model (:mod:`twinstack.simulation.compiler`) are continuous ODEs. The
seed use cases also need discrete events: machines that fail and get repaired, doses given on a
schedule, vehicles queueing for a charger, thermostats switching. Those models live here.

Every kernel has one signature: ``kernel(params, seeds, steps, dt_s, kpis)`` with ``params``
``(parameters, scenarios)`` so that each parameter is contiguous across scenarios, ``seeds``
``(scenarios,)`` for the counter-based random numbers of :mod:`twinstack.simulation.rng`, and
``kpis`` ``(kpis, scenarios)`` written by the kernel. Trajectories are reduced to KPIs inside
the kernel, so only KPIs leave it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

from twinstack.simulation.rng import normal, uniform

FloatArray = npt.NDArray[np.float64]
SeedArray = npt.NDArray[np.uint64]

# Scenarios advanced together through all time steps, so that a block's working set stays in
# the L1/L2 cache; the kernels compiled from dynamics use the same blocks, which keeps the
# benchmark of generated against hand-written kernels like for like.
SCENARIO_BLOCK = 256


@numba.njit(cache=True, fastmath=True)
def pump_thermal_rk4(
    params: FloatArray, seeds: SeedArray, steps: int, dt_s: float, kpis: FloatArray
) -> None:
    """First-order thermal model of a pump, integrated with classic RK4.

    ``dT/dt = (heat_kw * load - cooling_kw_per_k * (T - ambient_c)) / heat_capacity_kj_per_k``
    """
    n = params.shape[1]
    # Loop invariants out of the time loop: the divisions cost more than the rest of a step.
    all_heating_k_per_s = params[2] * params[0] / params[4]
    all_cooling_per_s = params[3] / params[4]
    all_ambient_c = params[1]
    all_alarm_c = params[6]
    temperature = params[5].copy()
    peak = params[5].copy()
    above_s = np.zeros(n)
    half = 0.5 * dt_s
    sixth = dt_s / 6.0
    for start in range(0, n, SCENARIO_BLOCK):
        stop = min(start + SCENARIO_BLOCK, n)
        # Views indexed from 0: LLVM can then prove every index non-negative, drop numba's
        # negative-index wraparound and vectorise the scenario loop (4x faster than without).
        block_t = temperature[start:stop]
        block_peak = peak[start:stop]
        block_above_s = above_s[start:stop]
        heating_k_per_s = all_heating_k_per_s[start:stop]
        cooling_per_s = all_cooling_per_s[start:stop]
        ambient_c = all_ambient_c[start:stop]
        alarm_c = all_alarm_c[start:stop]
        for _ in range(steps):
            for i in range(stop - start):
                t = block_t[i]
                k1 = heating_k_per_s[i] - cooling_per_s[i] * (t - ambient_c[i])
                k2 = heating_k_per_s[i] - cooling_per_s[i] * (t + half * k1 - ambient_c[i])
                k3 = heating_k_per_s[i] - cooling_per_s[i] * (t + half * k2 - ambient_c[i])
                k4 = heating_k_per_s[i] - cooling_per_s[i] * (t + dt_s * k3 - ambient_c[i])
                t = t + sixth * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
                block_t[i] = t
                block_peak[i] = max(block_peak[i], t)
                block_above_s[i] += dt_s if t > alarm_c[i] else 0.0
    kpis[0, :] = temperature
    kpis[1, :] = peak
    kpis[2, :] = above_s


# Floating-point operations of one RK4 step of one scenario in pump_thermal_rk4 (for the
# benchmark's fraction of peak): 3 for k1, 5 each for k2-k4, 7 for the update, 1 for the alarm.
PUMP_THERMAL_FLOPS_PER_STEP = 31

LINE_MACHINES = 3


@numba.njit(cache=True)
def production_line(
    params: FloatArray, seeds: SeedArray, steps: int, dt_s: float, kpis: FloatArray
) -> None:
    """Three machines in series with finite buffers between them (a fluid flow line).

    Each step a running machine fails with probability ``dt / mtbf`` and a failed one is
    repaired with probability ``dt / mttr``. Downstream machines move first, so a part freed
    this step makes room upstream. The first machine never starves; the last never blocks.
    """
    n = params.shape[1]
    up = np.empty(LINE_MACHINES, dtype=np.bool_)
    rate = np.empty(LINE_MACHINES)
    buffers = np.empty(LINE_MACHINES - 1)
    for s in range(n):
        rate[0], rate[1], rate[2] = params[0, s], params[1, s], params[2, s]
        fail_p = dt_s / params[3, s]
        repair_p = dt_s / params[4, s]
        capacity = params[5, s]
        up[:] = True
        buffers[:] = 0.0
        produced = 0.0
        wip_integral = 0.0
        up_steps = 0.0
        starved_s = 0.0
        blocked_s = 0.0
        for k in range(steps):
            for j in range(LINE_MACHINES):
                u = uniform(seeds[s], k, j)
                up[j] = (u >= fail_p) if up[j] else (u < repair_p)
                up_steps += 1.0 if up[j] else 0.0
            for j in range(LINE_MACHINES - 1, -1, -1):
                can = rate[j] * dt_s if up[j] else 0.0
                available = buffers[j - 1] if j > 0 else can
                room = capacity - buffers[j] if j < LINE_MACHINES - 1 else can
                moved = min(can, available, room)
                # Capacity a running machine could not use, for want of parts or of room.
                idle_s = dt_s * (1.0 - moved / can) if can > 0.0 else 0.0
                if j > 0:
                    buffers[j - 1] -= moved
                if j == LINE_MACHINES - 1:
                    produced += moved
                    starved_s += idle_s
                else:
                    buffers[j] += moved
                if j == 0:
                    blocked_s += idle_s
            wip_integral += (buffers[0] + buffers[1]) * dt_s
        horizon_s = steps * dt_s
        kpis[0, s] = produced / horizon_s * 3600.0
        kpis[1, s] = wip_integral / horizon_s
        kpis[2, s] = up_steps / (steps * LINE_MACHINES)
        kpis[3, s] = starved_s / horizon_s
        kpis[4, s] = blocked_s / horizon_s


@numba.njit(cache=True)
def pk_dosing(
    params: FloatArray, seeds: SeedArray, steps: int, dt_s: float, kpis: FloatArray
) -> None:
    """Two-compartment pharmacokinetics: an IV bolus every ``interval_s`` on top of a
    continuous infusion, with the patient's elimination rate drawn log-normally.

    ``dC/dt = infusion - (k10 + k12) C + k21 P``, ``dP/dt = k12 C - k21 P`` (amounts in mg),
    RK4 between doses; a dose adds to the central compartment at its time.
    """
    n = params.shape[1]
    for s in range(n):
        dose, interval_s, infusion = params[0, s], params[1, s], params[2, s]
        k12, k21, volume = params[4, s], params[5, s], params[6, s]
        low, high, variability = params[7, s], params[8, s], params[9, s]
        k10 = params[3, s] * math.exp(variability * normal(seeds[s], 0, 0))
        central = 0.0
        peripheral = 0.0
        next_dose = 0.0
        in_window_s = 0.0
        toxic_s = 0.0
        peak = 0.0
        trough = np.inf
        for k in range(steps):
            t = k * dt_s
            if t >= next_dose:
                central += dose
                next_dose += interval_s
            c, p = central, peripheral
            a1 = infusion - (k10 + k12) * c + k21 * p
            b1 = k12 * c - k21 * p
            c2, p2 = c + 0.5 * dt_s * a1, p + 0.5 * dt_s * b1
            a2 = infusion - (k10 + k12) * c2 + k21 * p2
            b2 = k12 * c2 - k21 * p2
            c3, p3 = c + 0.5 * dt_s * a2, p + 0.5 * dt_s * b2
            a3 = infusion - (k10 + k12) * c3 + k21 * p3
            b3 = k12 * c3 - k21 * p3
            c4, p4 = c + dt_s * a3, p + dt_s * b3
            a4 = infusion - (k10 + k12) * c4 + k21 * p4
            b4 = k12 * c4 - k21 * p4
            central = c + dt_s / 6.0 * (a1 + 2.0 * a2 + 2.0 * a3 + a4)
            peripheral = p + dt_s / 6.0 * (b1 + 2.0 * b2 + 2.0 * b3 + b4)
            concentration = central / volume
            peak = max(peak, concentration)
            if t + dt_s >= interval_s:  # troughs count once the first dose has had its interval
                trough = min(trough, concentration)
            in_window_s += dt_s if low <= concentration <= high else 0.0
            toxic_s += dt_s if concentration > high else 0.0
        kpis[0, s] = in_window_s / (steps * dt_s)
        kpis[1, s] = peak
        kpis[2, s] = trough if trough < np.inf else central / volume
        kpis[3, s] = toxic_s


FLEET_MAX_VEHICLES = 64


@numba.njit(cache=True)
def ev_fleet(
    params: FloatArray, seeds: SeedArray, steps: int, dt_s: float, kpis: FloatArray
) -> None:
    """Electric delivery vans on a shift: they drive (speed varies per step), return to the
    depot below ``return_soc_pct``, queue for a limited number of chargers, and go back out
    when full. A van that reaches 0 % on the road is stranded for the rest of the shift.
    """
    n = params.shape[1]
    soc = np.empty(FLEET_MAX_VEHICLES)
    mode = np.empty(FLEET_MAX_VEHICLES, dtype=np.int64)  # 0 driving, 1 waiting, 2 charging, 3 out
    for s in range(n):
        vehicles = min(FLEET_MAX_VEHICLES, max(1, int(params[0, s])))
        battery, consumption, speed_kmh = params[1, s], params[2, s], params[3, s]
        charger_kw, chargers = params[4, s], int(params[5, s])
        return_pct = params[6, s]
        soc[:vehicles] = 100.0
        mode[:vehicles] = 0
        km = 0.0
        waiting_s = 0.0
        charger_busy_s = 0.0
        lowest = 100.0
        for k in range(steps):
            busy = 0
            for v in range(vehicles):
                busy += 1 if mode[v] == 2 else 0
            for v in range(vehicles):
                if mode[v] == 0:
                    speed = max(0.0, speed_kmh * (1.0 + 0.25 * normal(seeds[s], k, v)))
                    distance = speed * dt_s / 3600.0
                    soc[v] -= 100.0 * distance * consumption / battery
                    km += distance
                    if soc[v] <= 0.0:
                        soc[v] = 0.0
                        mode[v] = 3
                    elif soc[v] < return_pct:
                        mode[v] = 1
                elif mode[v] == 1:
                    if busy < chargers:
                        mode[v] = 2
                        busy += 1
                    else:
                        waiting_s += dt_s
                elif mode[v] == 2:
                    soc[v] = min(100.0, soc[v] + 100.0 * charger_kw * dt_s / 3600.0 / battery)
                    charger_busy_s += dt_s
                    if soc[v] >= 100.0:
                        mode[v] = 0
                        busy -= 1
                lowest = min(lowest, soc[v])
        stranded = 0
        for v in range(vehicles):
            stranded += 1 if mode[v] == 3 else 0
        kpis[0, s] = km
        kpis[1, s] = stranded
        kpis[2, s] = waiting_s / vehicles
        kpis[3, s] = charger_busy_s / (steps * dt_s * max(1, chargers))
        kpis[4, s] = lowest


DISTRICT_MAX_BUILDINGS = 64


@numba.njit(cache=True)
def district_energy(
    params: FloatArray, seeds: SeedArray, steps: int, dt_s: float, kpis: FloatArray
) -> None:
    """Buildings of a district heated by heat pumps with on/off thermostats (hysteresis),
    under a daily outdoor temperature cycle with weather noise, on a feeder with a capacity.

    Each building: ``C dT/dt = heater_kw * on - UA (T - T_out)``; when the feeder is over
    capacity, the heaters that switched on last are held off (load shedding).
    """
    n = params.shape[1]
    indoor = np.empty(DISTRICT_MAX_BUILDINGS)
    heating = np.empty(DISTRICT_MAX_BUILDINGS, dtype=np.bool_)
    for s in range(n):
        buildings = min(DISTRICT_MAX_BUILDINGS, max(1, int(params[0, s])))
        setpoint, deadband, heater_kw = params[1, s], params[2, s], params[3, s]
        ua, capacity_kwh_k = params[4, s], params[5, s]
        outdoor_mean, swing, feeder_kw = params[6, s], params[7, s], params[8, s]
        for b in range(buildings):
            indoor[b] = setpoint - deadband * uniform(seeds[s], 0, b)
            heating[b] = False
        energy_kwh = 0.0
        peak_kw = 0.0
        cold_s = 0.0
        shed_s = 0.0
        for k in range(steps):
            t = k * dt_s
            outdoor = outdoor_mean - swing * math.cos(2.0 * math.pi * t / 86400.0)
            outdoor += 0.5 * normal(seeds[s], k, DISTRICT_MAX_BUILDINGS)
            load = 0.0
            shed = False
            for b in range(buildings):
                if indoor[b] < setpoint - deadband:
                    heating[b] = True
                elif indoor[b] > setpoint + deadband:
                    heating[b] = False
                if heating[b] and load + heater_kw > feeder_kw:
                    shed = True
                on = heating[b] and load + heater_kw <= feeder_kw
                load += heater_kw if on else 0.0
                gain = heater_kw if on else 0.0
                indoor[b] += dt_s / 3600.0 * (gain - ua * (indoor[b] - outdoor)) / capacity_kwh_k
                cold_s += dt_s if indoor[b] < setpoint - 1.0 else 0.0
            energy_kwh += load * dt_s / 3600.0
            peak_kw = max(peak_kw, load)
            shed_s += dt_s if shed else 0.0
        kpis[0, s] = energy_kwh
        kpis[1, s] = peak_kw
        kpis[2, s] = cold_s / 3600.0 / buildings
        kpis[3, s] = shed_s / 3600.0


Kernel = Callable[[FloatArray, SeedArray, int, float, FloatArray], None]


@dataclass(frozen=True)
class BuiltinModel:
    """A hand-written kernel with its parameters ((default, min, max), in kernel order), KPIs,
    and the use case it serves."""

    name: str
    use_case: str
    description: str
    parameters: dict[str, tuple[float, float, float]]
    kpis: tuple[str, ...]
    kernel: Kernel

    @property
    def defaults(self) -> dict[str, float]:
        return {name: default for name, (default, _, _) in self.parameters.items()}

    def run(self, params: FloatArray, seeds: SeedArray, steps: int, dt_s: float) -> FloatArray:
        """KPIs ``(kpis, scenarios)`` of the scenarios ``params`` describes."""
        kpis = np.empty((len(self.kpis), params.shape[1]))
        self.kernel(
            np.ascontiguousarray(params, dtype=np.float64),
            np.ascontiguousarray(seeds, dtype=np.uint64),
            steps,
            dt_s,
            kpis,
        )
        return kpis


PUMP_THERMAL = BuiltinModel(
    name="pump_thermal",
    use_case="manufacturing",
    description="Pump casing temperature under load: peak, final, time in alarm",
    parameters={
        "load": (0.8, 0.0, 1.5),
        "ambient_c": (25.0, -20.0, 50.0),
        "heat_kw": (30.0, 0.0, 500.0),
        "cooling_kw_per_k": (0.6, 0.01, 10.0),
        "heat_capacity_kj_per_k": (400.0, 1.0, 1e5),
        "initial_c": (25.0, -20.0, 150.0),
        "alarm_c": (70.0, 0.0, 200.0),
    },
    kpis=("final_temperature_c", "peak_temperature_c", "time_above_alarm_s"),
    kernel=pump_thermal_rk4,
)

PRODUCTION_LINE = BuiltinModel(
    name="production_line",
    use_case="manufacturing",
    description="Three machines in series that fail and get repaired, buffers between them",
    parameters={
        "rate_1_per_s": (0.5, 0.01, 10.0),
        "rate_2_per_s": (0.45, 0.01, 10.0),
        "rate_3_per_s": (0.5, 0.01, 10.0),
        "mtbf_s": (3600.0, 60.0, 1e6),
        "mttr_s": (300.0, 1.0, 1e5),
        "buffer_capacity": (20.0, 1.0, 1000.0),  # a part in transfer at least
    },
    kpis=("throughput_per_h", "mean_wip", "availability", "last_starved", "first_blocked"),
    kernel=production_line,
)

PK_DOSING = BuiltinModel(
    name="pk_dosing",
    use_case="healthcare",
    description="Two-compartment pharmacokinetics, bolus schedule plus infusion: time in window",
    parameters={
        "dose_mg": (40.0, 0.0, 1000.0),
        "interval_s": (28800.0, 600.0, 172800.0),
        "infusion_mg_s": (0.0, 0.0, 1.0),
        "k10_per_s": (1.5e-4, 1e-6, 1e-2),
        "k12_per_s": (2.0e-4, 0.0, 1e-2),
        "k21_per_s": (1.0e-4, 1e-6, 1e-2),
        "volume_l": (12.0, 0.5, 100.0),
        "window_low_mg_l": (1.0, 0.0, 100.0),
        "window_high_mg_l": (4.0, 0.0, 100.0),
        "k10_variability": (0.0, 0.0, 2.0),
    },
    kpis=("time_in_window", "peak_mg_l", "trough_mg_l", "time_toxic_s"),
    kernel=pk_dosing,
)

EV_FLEET = BuiltinModel(
    name="ev_fleet",
    use_case="logistics",
    description="Electric delivery vans on a shift, queueing for a limited number of chargers",
    parameters={
        "vehicles": (20.0, 1.0, FLEET_MAX_VEHICLES),
        "battery_kwh": (75.0, 5.0, 1500.0),
        "consumption_kwh_per_km": (0.25, 0.05, 5.0),
        "speed_kmh": (35.0, 1.0, 120.0),
        "charger_kw": (50.0, 1.0, 400.0),
        "chargers": (4.0, 1.0, FLEET_MAX_VEHICLES),
        "return_soc_pct": (20.0, 0.0, 90.0),
    },
    kpis=("km_driven", "stranded", "mean_wait_s", "charger_utilisation", "lowest_soc_pct"),
    kernel=ev_fleet,
)

DISTRICT_ENERGY = BuiltinModel(
    name="district_energy",
    use_case="smart_city",
    description="Heat-pump buildings with thermostats on a feeder with a capacity limit",
    parameters={
        "buildings": (20.0, 1.0, DISTRICT_MAX_BUILDINGS),
        "setpoint_c": (21.0, 10.0, 30.0),
        "deadband_k": (0.5, 0.05, 5.0),
        "heater_kw": (8.0, 0.5, 100.0),
        "ua_kw_per_k": (0.25, 0.01, 10.0),
        "capacity_kwh_per_k": (5.0, 0.1, 500.0),
        "outdoor_mean_c": (2.0, -30.0, 30.0),
        "outdoor_swing_k": (5.0, 0.0, 20.0),
        "feeder_kw": (120.0, 1.0, 10000.0),
    },
    kpis=("energy_kwh", "peak_kw", "cold_hours_per_building", "shed_hours"),
    kernel=district_energy,
)

BUILTIN_MODELS = {
    model.name: model
    for model in (PUMP_THERMAL, PRODUCTION_LINE, PK_DOSING, EV_FLEET, DISTRICT_ENERGY)
}
