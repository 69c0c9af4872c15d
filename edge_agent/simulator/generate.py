"""Vectorised generator: a stack's CEMS readings at 1 Hz for any period, with scripted faults.

Deterministic from a seed. The load follows a daily cycle with slow random variation; the analysers
add white noise; every value is computed from :mod:`.physics`, so the truth (CO2 produced, fuel and
its carbon burnt) is known exactly and returned alongside the readings.

Faults (``Fault(kind, start_s, duration_s, channel, amount)``), each as an HJ 212 flag would show it:

* ``calibration``: the analyser reads its span gas (``amount``), flagged C;
* ``comm_loss``: no value, flagged B;
* ``stuck``: the channel repeats its value at ``start_s``, flagged N (an undetected failure);
* ``drift``: a linear drift reaching ``amount`` (relative) at the end, flagged N;
* ``bias``: a tampered analyser reading ``amount`` (relative, e.g. -0.10) low or high, flagged N;
* ``out_of_range``: values above the analyser range, flagged T;
* ``stopped``: the source stops (no fuel), every channel flagged F (a datalogger still records their values);
* ``instrument_stopped``: the channel's instrument stops while the source runs: flagged F, value as read.

``StackModel.velocity_field_coefficient`` (Kv) makes the velocity probe read the duct mean divided by Kv, as a
real probe off the profile's mean does (HJ 212 App. D Eq. 29: mean = Kv x point). :data:`OPTIONAL_CHANNELS` are
produced too, for stacks that measure differently (a standard dry flow meter), but are not in the demo plants.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from schemas.quantities import Flag

from .physics import COAL, Fuel, flue_gas

__all__ = ["CHANNELS", "CHANNEL_BASIS", "Fault", "StackModel", "channel_configs", "simulate_stack",
           "simulator_stack_model", "source_config"]

#: Channel id -> (HJ 212 quantity, unit), the order of the generated series.
CHANNELS = {
    "co2": ("a05001", "%"),
    "o2": ("a19001", "%"),
    "moisture": ("a01014", "%"),
    "temp": ("a01012", "degC"),
    "pstatic": ("a01013", "kPa"),
    "velocity": ("a01011", "m/s"),
    "fuel_rate": ("xf0001", "t/h"),
    "fuel_total": ("xf0003", "t"),
    "product_rate": ("xp0001", "t/h"),
    "product_total": ("xp0002", "t"),
}
#: Channels produced besides :data:`CHANNELS`: a flow meter reading standard dry flow (标干), m³/h.
OPTIONAL_CHANNELS = {"flow": ("a00000", "m3/h")}
#: Gas basis of the simulated analysers (:mod:`.physics`: CO2 and O2 on a dry basis, as an extractive analyser reads)
#: and of the optional flow meter.
CHANNEL_BASIS = {"co2": "dry", "o2": "dry", "flow": "standard_dry"}
#: Standard deviation of each channel's white noise, in its unit. Totalisers integrate inside the meter and
#: carry no sample noise of their own; their error is the meter's bias (a ``bias`` fault).
_NOISE = {"co2": 0.05, "o2": 0.05, "moisture": 0.1, "temp": 0.5, "pstatic": 0.005, "velocity": 0.1, "fuel_rate": 0.05,
          "fuel_total": 0.0, "product_rate": 0.2, "product_total": 0.0, "flow": 500.0}


@dataclass(frozen=True)
class Fault:
    kind: str
    start_s: int
    duration_s: int
    channel: str = "co2"
    amount: float = 0.0


@dataclass(frozen=True)
class StackModel:
    fuel: Fuel = COAL
    fuel_t_h: float = 12.0  # mean firing rate
    load_swing: float = 0.10  # daily relative amplitude
    excess_air: float = 1.35
    process_co2_kmol_h_per_fuel_t_h: float = 0.0  # e.g. calcination CO2 in a cement kiln, scales with load
    temperature_c: float = 96.0
    static_pressure_kpa: float = -0.45
    ambient_pressure_pa: float = 100_800.0
    duct_area_m2: float = 12.57
    velocity_field_coefficient: float = 1.0  # Kv: the probe reads the duct's mean velocity / Kv
    product_t_per_fuel_t: float = 0.0  # weigher output, e.g. about 7.8 t clinker per t coal in a cement kiln; 0: none
    fuel_total_start_t: float = 0.0  # totaliser readings at the start of the series
    product_total_start_t: float = 0.0
    faults: tuple[Fault, ...] = field(default_factory=tuple)


def channel_configs(names=None) -> list[dict]:
    """Site-file entries of the simulated channels (all, or those in ``names``), with the analysers' basis."""
    known = CHANNELS | OPTIONAL_CHANNELS
    return [{"id": c, "quantity": known[c][0], "unit": known[c][1],
             **({"basis": CHANNEL_BASIS[c]} if c in CHANNEL_BASIS else {})}
            for c in (CHANNELS if names is None else names)]


def source_config(source_id: str, name: str, model: StackModel | None = None, names=None) -> dict:
    """Site-file entry of a simulated stack: its channels, the duct, Kv 1 (the simulated velocity is the duct's mean
    velocity) and the barometric pressure the simulation used."""
    model = model or StackModel()
    return {"id": source_id, "name": name, "duct_area_m2": model.duct_area_m2,
            "velocity_field_coefficient": model.velocity_field_coefficient,
            "ambient_pressure": {"kpa": model.ambient_pressure_pa / 1000.0}, "channels": channel_configs(names)}


def simulator_stack_model(k: int) -> StackModel:
    """Stack ``k`` of the protocol simulators: coal firing 8-14 t/h, a weigher (7.8 t product per t fuel,
    about a cement kiln's clinker to coal ratio) and totalisers that start at plausible non-zero readings."""
    return StackModel(fuel_t_h=8.0 + k % 7, product_t_per_fuel_t=7.8, fuel_total_start_t=10_000.0 * (k + 1),
                      product_total_start_t=80_000.0 * (k + 1))


def simulate_stack(model: StackModel, start_ns: int, seconds: int, seed: int = 0, optional: tuple[str, ...] = ()):
    """Return ``(readings, truth)``: readings maps channel id -> (value [float64], flag [uint8]) at 1 Hz
    from ``start_ns`` for :data:`CHANNELS` and the ``optional`` ones asked for (:data:`OPTIONAL_CHANNELS`); truth
    holds per-second ``co2_kg_h``, ``fuel_t_h``, ``fuel_carbon_t_h``, ``product_t_h``.

    The fuel meter reads rate and totaliser, the weigher product rate and totaliser; a totaliser reading is
    its start value plus the integral of the true rate, so meter totals reconcile exactly with the truth."""
    rng = np.random.default_rng(seed)
    t = np.arange(seconds, dtype=np.float64)
    hours = int(np.ceil(seconds / 3600)) + 2
    slow = np.interp(t / 3600.0, np.arange(hours), 1.0 + 0.03 * rng.standard_normal(hours))
    phase = ((start_ns // 10**9) % 86_400 + t) / 86_400.0
    load = (1.0 + model.load_swing * np.sin(2 * np.pi * phase)) * slow
    running = np.ones(seconds, dtype=bool)
    for f in model.faults:
        if f.kind == "stopped":
            running[f.start_s : f.start_s + f.duration_s] = False
    fuel = np.where(running, model.fuel_t_h * load, 0.0)
    lam = model.excess_air + 0.02 * np.interp(t / 3600.0, np.arange(hours), rng.standard_normal(hours))
    gas = flue_gas(model.fuel, fuel, lam, model.process_co2_kmol_h_per_fuel_t_h * fuel)
    temp = np.full(seconds, model.temperature_c)
    ps_kpa = np.full(seconds, model.static_pressure_kpa)
    q_actual = gas.actual_wet_flow_m3_h(temp, ps_kpa * 1000.0, model.ambient_pressure_pa)
    product = fuel * model.product_t_per_fuel_t
    true = {
        "co2": gas.co2_dry_pct, "o2": gas.o2_dry_pct, "moisture": gas.moisture_pct, "temp": temp,
        "pstatic": ps_kpa, "velocity": q_actual / 3600.0 / model.duct_area_m2 / model.velocity_field_coefficient,
        "fuel_rate": fuel,
        "fuel_total": model.fuel_total_start_t + np.cumsum(fuel) / 3600.0,  # t: each second adds rate [t/h] / 3600
        "product_rate": product,
        "product_total": model.product_total_start_t + np.cumsum(product) / 3600.0,
        "flow": gas.standard_dry_flow_m3_h,  # last: the noise of the channels before it is drawn as it always was
    }
    readings: dict[str, list[np.ndarray]] = {}  # channel -> [values, flags]
    for ch in [c for c in true if c in CHANNELS or c in optional]:  # each vectorised over every second
        v = true[ch]
        noise_on = running | (ch in ("temp", "pstatic"))
        noisy = v + _NOISE[ch] * rng.standard_normal(seconds) * noise_on if _NOISE[ch] else v.copy()
        readings[ch] = [noisy, np.full(seconds, Flag.N, dtype=np.uint8)]
    for f in model.faults:
        sl = slice(f.start_s, f.start_s + f.duration_s)
        chans = list(readings) if f.kind == "stopped" else [f.channel]
        for ch in chans:
            value, flag = readings[ch]
            if f.kind in ("stopped", "instrument_stopped"):
                flag[sl] = Flag.F
            elif f.kind == "calibration":
                value[sl], flag[sl] = f.amount, Flag.C
            elif f.kind == "comm_loss":
                value[sl], flag[sl] = np.nan, Flag.B
            elif f.kind == "stuck":
                value[sl] = value[f.start_s]
            elif f.kind == "drift":
                n = len(value[sl])
                value[sl] *= 1.0 + f.amount * np.arange(1, n + 1) / max(n, 1)
            elif f.kind == "bias":
                value[sl] *= 1.0 + f.amount
            elif f.kind == "out_of_range":
                value[sl], flag[sl] = f.amount, Flag.T
            else:
                raise ValueError(f"unknown fault kind {f.kind!r}")
    truth = {
        "co2_kg_h": gas.co2_kg_h,
        "fuel_t_h": fuel,
        "product_t_h": product,
        "fuel_carbon_t_h": fuel * model.fuel.carbon,
        "process_co2_kg_h": model.process_co2_kmol_h_per_fuel_t_h * fuel * 44.009,
        "running": running,
    }
    return {ch: (v, f) for ch, (v, f) in readings.items()}, truth
