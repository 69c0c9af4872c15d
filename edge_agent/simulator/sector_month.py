"""Ground truth for reconciliation: one month of one emitter, as the CEMS measures it, as the edge meters see
it and as the emitter reports it, with faults injected on request.

The truth is hourly: operating state, fuel burnt, production and the CO2 they make (combustion with the
accounting convention ``C x OF x 44/12``, plus process CO2: cement calcination, aluminium anodes, the steel
carbon balance). The stack's CEMS sees that CO2 through the flue-gas physics of :mod:`.physics` (CO2 and O2 on a
dry basis, standard dry flow) with analyser noise and a daily calibration; the month's measured CO2 carries a
small systematic CEMS error. The edge meters (fuel totaliser, product weigher, electricity meter) see the true
activity with a small meter error, and the report gives the activity and the lab parameters with their own small
errors. The noise levels are this simulator's assumptions (stated below), chosen as a well-run plant: clean
months must reconcile, and the false-positive rate over many seeds is what ``tests/`` and ``bench/`` measure.

Faults (``faults=``): ``fuel_underreport`` (reported fuel 15 % below the truth), ``carbon_understate`` (reported
carbon content 15 % low), ``production_overreport`` (reported clinker/aluminium/steel/generation 10 % high, which
buys allowances under intensity-based allocation), ``analyzer_bias`` (the CO2 analyser reads 10 % low),
``stuck_channel`` (the CO2 reading frozen for 6 hours), ``copied_profiles`` (four days of CEMS data copied from
the day before them), ``forged_signature`` (three batches whose signature does not verify).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from .physics import COAL, Fuel, flue_gas

__all__ = ["FAULTS", "SECTORS", "SectorMonth", "simulate_month"]

SECTORS = ("cement", "steel", "aluminium", "power")
FAULTS = ("fuel_underreport", "carbon_understate", "production_overreport", "analyzer_bias", "stuck_channel",
          "copied_profiles", "forged_signature")

# Noise of a well-run plant (simulator assumptions, 1 sigma, relative): the plant's own weighing of what it
# reports, the edge meter, the lab's carbon and oxide analyses, the month's systematic CEMS error (calibrated
# analyser and flow monitor), analyser noise per minute [vol % absolute].
REPORT_SD, METER_SD, LAB_SD, CEMS_SD, ANALYSER_SD = 0.004, 0.004, 0.008, 0.012, 0.05

#: Per sector: fuel t/h when operating, product t/h (MWh/h for power), the fuel's element carbon [tC/t].
_SHAPE = {
    "cement": dict(fuel_t_h=16.0, product_t_h=140.0, carbon=0.62, oxidation=0.98),
    "steel": dict(fuel_t_h=20.0, product_t_h=130.0, carbon=0.62, oxidation=0.98),  # PCI coal into the furnace
    "aluminium": dict(fuel_t_h=0.0, product_t_h=34.0, carbon=0.62, oxidation=0.98),
    "power": dict(fuel_t_h=180.0, product_t_h=420.0, carbon=0.62, oxidation=0.98),
}
# Cement clinker chemistry, steel balance and aluminium anode parameters of the simulated plants.
CLINKER = dict(cao=0.65, mgo=0.02, noncarbonate_cao=0.006, noncarbonate_mgo=0.0)
STEEL = dict(coke_t_per_t=0.33, coke_carbon=0.86, limestone_t_per_t=0.10, limestone_carbon=0.12, steel_carbon=0.004)
ANODE = dict(consumption=0.42, sulphur=0.02, ash=0.004, aem=0.05)
M_CO2_PER_C = 44.0 / 12.0


@dataclass
class SectorMonth:
    """What the pipeline would have for one entity and month, and the truth behind it."""

    sector: str
    entity: dict  # site file content (one stack), region included
    month: str
    report: dict  # the accounting report as the emitter submits it (JSON form)
    measured_co2_t: float  # the CEMS monthly record's CO2
    metered: dict[str, float]  # "fuel:<id>" / "material:<id>" / "product" -> the edge meters' month total
    minutes: dict[str, np.ndarray]  # channel id (as in ``entity``) -> minute means (NaN: no data), local month grid
    calibrating: np.ndarray  # bool per minute: the analyser was in calibration (flag C)
    operating: np.ndarray  # bool per minute
    start_ns: int  # first minute (local month start, UTC ns)
    signature_failures: int = 0
    true_co2_t: float = 0.0
    faults: tuple[str, ...] = field(default_factory=tuple)


def _month_start(month: str, tz: ZoneInfo) -> tuple[int, int]:
    y, m = map(int, month.split("-"))
    start = datetime(y, m, 1, tzinfo=tz)
    end = datetime(y + m // 12, m % 12 + 1, 1, tzinfo=tz)
    return int(start.timestamp()) * 10**9, int((end - start).total_seconds() // 3600)


def _process_co2_per_t(sector: str) -> float:
    """Process (non-combustion) CO2 per t of product [t CO2/t]: calcination, the iron-making carbon balance, anode
    consumption; none for power."""
    if sector == "cement":
        return ((CLINKER["cao"] - CLINKER["noncarbonate_cao"]) * 44.0 / 56.0
                + (CLINKER["mgo"] - CLINKER["noncarbonate_mgo"]) * 44.0 / 40.0)
    if sector == "steel":
        return (STEEL["coke_t_per_t"] * STEEL["coke_carbon"] + STEEL["limestone_t_per_t"] * STEEL["limestone_carbon"]
                - STEEL["steel_carbon"]) * M_CO2_PER_C
    if sector == "aluminium":
        return ANODE["consumption"] * (1 - ANODE["sulphur"] - ANODE["ash"]) * M_CO2_PER_C
    return 0.0


def simulate_month(sector: str, seed: int, faults: tuple[str, ...] = (), month: str = "2026-02",
                   province: str = "320000", municipality: str = "320500", entity_id: str | None = None) -> SectorMonth:
    """One month of ``sector`` (deterministic from ``seed``). The minutes include the meters' totalisers
    (``fuel_total`` [t], ``product_total`` [t or MWh]), whose month difference is exactly ``metered``."""
    if sector not in SECTORS:
        raise ValueError(f"sector {sector!r} is not one of {SECTORS}")
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {FAULTS}")
    rng = np.random.default_rng(seed)
    tz = ZoneInfo("Asia/Shanghai")
    start_ns, n_hours = _month_start(month, tz)
    shape = _SHAPE[sector]

    # -- hourly truth: one stop of 20-40 h, load varying +-8 % with the day and slowly ------------------------
    hours = np.arange(n_hours)
    operating = np.ones(n_hours, bool)
    stop = int(rng.integers(48, 200))  # in the first ten days, clear of the days the faults use
    operating[stop:stop + int(rng.integers(20, 40))] = False
    days = rng.normal(0, 0.03, n_hours // 24 + 2)  # each day its own load level, reached gradually
    day_level = np.interp(hours / 24.0, np.arange(days.size), days)
    wander = np.convolve(rng.normal(0, 0.02, n_hours + 5), np.ones(6) / np.sqrt(6), "valid")[:n_hours]
    load = (1 + 0.05 * np.sin(2 * np.pi * (hours % 24) / 24 + rng.uniform(0, 6.3)) + day_level + wander) * operating
    fuel_t_h = shape["fuel_t_h"] * load
    product_t_h = shape["product_t_h"] * load
    carbon, oxidation = shape["carbon"], shape["oxidation"]
    combustion_t_h = fuel_t_h * carbon * oxidation * M_CO2_PER_C
    process_t_h = product_t_h * _process_co2_per_t(sector)
    true_co2_t_h = combustion_t_h + process_t_h

    # -- the stack as the CEMS sees it, per minute ------------------------------------------------------------
    n_min = n_hours * 60
    minute_hour = np.arange(n_min) // 60
    burner = Fuel("sim coal", carbon=carbon * oxidation, hydrogen=0.04, oxygen=0.08, nitrogen=0.011, sulphur=0.008,
                  moisture=0.08)
    lam = 12.0 if sector == "aluminium" else 1.35  # pot-line gas is mostly air
    drift = np.cumsum(rng.normal(0, 0.002, n_min))
    excess_air = lam * (1 + drift - np.convolve(drift, np.ones(241) / 241, "same") + rng.normal(0, 0.005, n_min))
    f_t_h = (np.maximum(fuel_t_h[minute_hour], 0.0) if shape["fuel_t_h"]
             else np.full(n_min, 2.0) * operating[minute_hour])
    gas = flue_gas(burner if shape["fuel_t_h"] else COAL, f_t_h, excess_air,
                   process_co2_kmol_h=process_t_h[minute_hour] * 1000 / 44.009)
    on = operating[minute_hour]
    bias = 0.9 if "analyzer_bias" in faults else 1.0
    co2 = np.where(on, gas.co2_dry_pct * bias + rng.normal(0, ANALYSER_SD, n_min), np.nan)
    o2 = np.where(on, gas.o2_dry_pct + rng.normal(0, ANALYSER_SD, n_min), np.nan)
    flow = np.where(on, gas.standard_dry_flow_m3_h * (1 + rng.normal(0, 0.01, n_min)), np.nan)
    calibrating = (np.arange(n_min) % 1440 >= 180) & (np.arange(n_min) % 1440 < 190)  # 03:00-03:10 local daily
    co2[calibrating], o2[calibrating] = np.nan, np.nan
    if "stuck_channel" in faults:
        first = (12 * 24 + 8) * 60  # day 13, 08:00 local: the last value before it repeats for 6 hours
        co2[first:first + 360] = np.round(co2[first - 1], 2)
    if "copied_profiles" in faults:
        day = 1440
        for d in range(15, 19):  # days 16-19 are day 15 again
            for x in (co2, o2, flow):
                x[d * day:(d + 1) * day] = x[14 * day:15 * day]
    cems_month = float(true_co2_t_h.sum()) * bias * (1 + rng.normal(0, CEMS_SD))

    # -- edge meters and the report -------------------------------------------------------------------------
    true_fuel, true_product = float(fuel_t_h.sum()), float(product_t_h.sum())
    metered = {"product": true_product * (1 + rng.normal(0, METER_SD))}
    reported_fuel = true_fuel * (1 + rng.normal(0, REPORT_SD)) * (0.85 if "fuel_underreport" in faults else 1.0)
    overreport = 1.10 if "production_overreport" in faults else 1.0
    reported_product = true_product * (1 + rng.normal(0, REPORT_SD)) * overreport
    lab_carbon = carbon * (1 + rng.normal(0, LAB_SD)) * (0.85 if "carbon_understate" in faults else 1.0)

    def measured(value: float, unit: str) -> dict:
        return {"value": round(float(value), 6), "unit": unit, "basis": "measured"}

    entity_id = entity_id or f"sim-{sector}"
    report: dict = {"entity_id": entity_id, "source_id": None, "month": month, "sector": sector, "fuels": []}
    if shape["fuel_t_h"] and sector != "steel":
        metered["fuel:raw_coal"] = true_fuel * (1 + rng.normal(0, METER_SD))
        report["fuels"].append({"fuel": "raw_coal", "consumption": measured(reported_fuel, "t"),
                                "carbon_content": measured(lab_carbon, "tC/t"),
                                "oxidation_rate": measured(oxidation * (1 + rng.normal(0, 0.002)), "fraction")})
    if sector == "cement":
        lab = {k: v * (1 + rng.normal(0, LAB_SD)) for k, v in CLINKER.items()}
        report["cement"] = {"clinker_output": measured(reported_product, "t"),
                            "clinker_cao": measured(lab["cao"], "fraction"),
                            "clinker_mgo": measured(lab["mgo"], "fraction"),
                            "noncarbonate_cao": measured(lab["noncarbonate_cao"], "fraction"),
                            "noncarbonate_mgo": measured(lab["noncarbonate_mgo"], "fraction")}
    elif sector == "steel":
        metered["material:pci_coal"] = true_fuel * (1 + rng.normal(0, METER_SD))
        coke = true_product * STEEL["coke_t_per_t"]
        limestone = true_product * STEEL["limestone_t_per_t"]
        report["steel"] = {"materials": [
            {"material": "pci_coal", "quantity": measured(reported_fuel, "t"),
             "carbon_content": measured(lab_carbon * oxidation, "tC/t")},
            {"material": "coke", "quantity": measured(coke * (1 + rng.normal(0, REPORT_SD)), "t"),
             "carbon_content": measured(STEEL["coke_carbon"] * (1 + rng.normal(0, LAB_SD)), "tC/t")},
            {"material": "limestone", "quantity": measured(limestone * (1 + rng.normal(0, REPORT_SD)), "t"),
             "carbon_content": measured(STEEL["limestone_carbon"] * (1 + rng.normal(0, LAB_SD)), "tC/t")},
            {"material": "crude_steel", "quantity": measured(reported_product, "t"),
             "carbon_content": measured(STEEL["steel_carbon"], "tC/t")}]}
    elif sector == "aluminium":
        report["aluminium"] = {
            "cell_technology": "CWPB", "aluminium_output": measured(reported_product, "t"),
            "net_anode_consumption": measured(ANODE["consumption"] * (1 + rng.normal(0, LAB_SD)), "t/t"),
            "anode_sulphur": measured(ANODE["sulphur"], "fraction"), "anode_ash": measured(ANODE["ash"], "fraction"),
            "anode_effect_minutes": measured(ANODE["aem"], "min/cell-day"),
            "slope_cf4": {"basis": "default"}, "c2f6_cf4_ratio": {"basis": "default"}}
    else:
        report["power"] = {"gross_generation": measured(reported_product, "MWh")}
    def totaliser(rate_per_h: np.ndarray, total: float, origin: float) -> np.ndarray:
        cum = np.concatenate([[0.0], np.cumsum(rate_per_h[minute_hour])[:-1]])
        return np.where(np.isfinite(cum), origin + total * cum / cum[-1], np.nan)

    minutes = {"co2": co2, "o2": o2, "flow": flow,
               "product_total": totaliser(product_t_h, metered["product"], 1_234_567.0)}
    channels = [{"id": "co2", "quantity": "a05001", "unit": "%", "basis": "dry"},
                {"id": "o2", "quantity": "a19001", "unit": "%", "basis": "dry"},
                {"id": "flow", "quantity": "a00000", "unit": "m3/h", "basis": "standard_dry"},
                {"id": "product_total", "quantity": "xe0002" if sector == "power" else "xp0002",
                 "unit": "MWh" if sector == "power" else "t"}]
    fuel_meter = next((k for k in metered if k != "product"), None)
    if fuel_meter is not None:
        minutes["fuel_total"] = totaliser(fuel_t_h, metered[fuel_meter], 98_765.0)
        channels.append({"id": "fuel_total", "quantity": "xf0003", "unit": "t"})
    entity = {"id": entity_id, "name": f"simulated {sector} plant", "sector": sector,
              "region": {"province": province, "municipality": municipality},
              "sources": [{"id": f"{entity_id}-stack", "name": "main stack", "duct_area_m2": 12.0,
                           "channels": channels}]}
    return SectorMonth(sector=sector, entity=entity, month=month, report=report, measured_co2_t=cems_month,
                       metered=metered, minutes=minutes, calibrating=calibrating,
                       operating=on, start_ns=start_ns, signature_failures=3 if "forged_signature" in faults else 0,
                       true_co2_t=float(true_co2_t_h.sum()), faults=tuple(faults))
