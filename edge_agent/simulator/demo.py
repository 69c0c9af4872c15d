"""The demo's plants, as a gateway would record them: a month of readings written into an edge outbox.

:data:`DEMO_PLANTS`: a cement kiln, a steel plant's main stack and an aluminium pot line, each with its CEMS
(CO2, O2, moisture, temperature, static pressure, velocity), fuel or anode meter and product weigher, in three
regions (GB/T 2260: Suzhou 320500 and Nanjing 320100 in Jiangsu 320000, Baotou 150200 in Inner Mongolia 150000) so
that the console's regional isolation shows. Their physics (:mod:`.physics`) is tuned to the accounting formulas,
so honest reports reconcile.

:func:`write_outbox` writes a plant's month in the layout of the agent's durable outbox (``edge_agent/outbox.py``:
one encoded reading batch per ``<seq, 20 digits>.batch`` file), so the centre reads it exactly as it reads a real
gateway's recording (``cems embedded --batches DIR``). The plant keeps running for a while past the month's end:
a month closes by the data's own clock, never by a synthetic signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from schemas.batch import ChannelSpec, ReadingBatch
from schemas.site import Entity

from .generate import CHANNELS, Fault, StackModel, simulate_stack, source_config
from .physics import COAL, Fuel

__all__ = ["ANODE_MIX", "BATCH_S", "DEMO_PLANTS", "SAMPLE_S", "Plant", "batches", "write_outbox"]

SAMPLE_S = 5  # HJ 212 App. D: at least one value per 5 s; 12 per minute make a valid minute
BATCH_S = 300  # one batch per 5 minutes per stack
DAY_S = 86_400


@dataclass(frozen=True)
class Plant:
    sector: str
    entity_id: str
    name: str
    model: StackModel
    seed: int
    meters: dict[str, str]  # channel -> "fuel:<id>" | "material:<id>" | "product"
    province: str = "320000"
    municipality: str = "320500"

    @property
    def agent_id(self) -> str:
        return f"{self.entity_id}-gw"

    @property
    def source_id(self) -> str:
        return f"{self.entity_id}-stack"

    def entity(self) -> Entity:
        """The plant's site entry: one stack with the simulated channels, duct, Kv and barometric pressure."""
        return Entity.model_validate({
            "id": self.entity_id, "name": self.name, "sector": self.sector,
            "region": {"province": self.province, "municipality": self.municipality},
            "sources": [source_config(self.source_id, "main stack", self.model)]})

    def meter_map(self) -> dict[str, str]:
        """``"source/channel" -> what it measures`` (``cems embedded --meter``, the reconciler's ``meters``)."""
        return {f"{self.source_id}/{ch}": what for ch, what in self.meters.items()}


def daily_calibrations(days: int) -> tuple[Fault, ...]:
    """A 10-minute CO2 span check every day at 03:00 local (19:00 UTC), flagged C."""
    return tuple(Fault("calibration", d * DAY_S + 19 * 3600, 600, "co2", 15.0) for d in range(days))


# Cement: coal 14 t/h, clinker 7.8 t per t coal, calcination 93.6 kmol CO2 per t coal (0.528 t CO2 per t clinker:
# CaO 65 %, MgO 2 %, non-carbonate CaO 0.6 %, by the clinker formula). Steel: PCI coal 20 t/h, 6.5 t crude steel per
# t, 157.9 kmol CO2 per t from the rest of the carbon balance (coke 0.33 t/t steel at 86 % C, limestone 0.1 t/t at
# 12 % C, steel 0.4 % C). Aluminium: the "fuel" is anode carbon plus the humidity the pot gas carries (the physics
# takes water only from the fuel): 0.6 kg C, 12.3 g S and 0.38 kg water per kg, i.e. 0.615 kg of anode (C 97.6 %,
# S 2 %, ash 0.4 %); 1.4637 t aluminium per t, which makes 0.42 t anode per t aluminium; pot gas mostly air.
ANODE_MIX = Fuel("anode carbon + pot-gas humidity", carbon=0.6, hydrogen=0.0, oxygen=0.0, nitrogen=0.0,
                 sulphur=0.0123, moisture=0.38)
DEMO_PLANTS = (
    Plant("cement", "demo-cement", "Demo Cement Co. kiln line 1",
          StackModel(fuel=COAL, fuel_t_h=14.0, process_co2_kmol_h_per_fuel_t_h=93.57, product_t_per_fuel_t=7.8,
                     fuel_total_start_t=52_000.0, product_total_start_t=410_000.0, duct_area_m2=12.57),
          seed=11, meters={"fuel_total": "fuel:raw_coal", "product_total": "product"}),
    Plant("steel", "demo-steel", "Demo Iron & Steel blast furnace stack",
          StackModel(fuel=COAL, fuel_t_h=20.0, process_co2_kmol_h_per_fuel_t_h=157.9, product_t_per_fuel_t=6.5,
                     fuel_total_start_t=88_000.0, product_total_start_t=2_150_000.0, duct_area_m2=28.0),
          seed=12, meters={"fuel_total": "material:pci_coal", "product_total": "product"}, municipality="320100"),
    Plant("aluminium", "demo-aluminium", "Demo Aluminium potline 2",
          StackModel(fuel=ANODE_MIX, fuel_t_h=6.0, excess_air=15.0, product_t_per_fuel_t=1.4637, duct_area_m2=40.0,
                     fuel_total_start_t=12_000.0, product_total_start_t=300_000.0),
          seed=13, meters={"product_total": "product"}, province="150000", municipality="150200"),
)


def batches(plant: Plant, start_ns: int, seconds: int, run_on_s: int = 0) -> list[bytes]:
    """The plant's readings every SAMPLE_S seconds as encoded 5-minute batches (sequence numbers from 0), and
    ``run_on_s`` more seconds after them, simulated apart (so the first ``seconds`` are the same whatever the
    run-on) with the totalisers going on from where they stood."""
    model = StackModel(**{**plant.model.__dict__, "faults": plant.model.faults + daily_calibrations(seconds // DAY_S)})
    readings, _ = simulate_stack(model, start_ns, seconds, seed=plant.seed)
    names = list(CHANNELS)
    idx = np.arange(0, seconds, SAMPLE_S)
    value = np.stack([readings[c][0][idx] for c in names])  # [channel, sample]
    flag = np.stack([readings[c][1][idx] for c in names])
    ts = start_ns + idx.astype(np.int64) * 10**9
    if run_on_s:
        more = StackModel(**{**plant.model.__dict__, "fuel_total_start_t": float(readings["fuel_total"][0][-1]),
                             "product_total_start_t": float(readings["product_total"][0][-1])})
        tail, _ = simulate_stack(more, start_ns + seconds * 10**9, run_on_s, seed=plant.seed + 1000)
        t_idx = np.arange(0, run_on_s, SAMPLE_S)
        value = np.concatenate([value, np.stack([tail[c][0][t_idx] for c in names])], axis=1)
        flag = np.concatenate([flag, np.stack([tail[c][1][t_idx] for c in names])], axis=1)
        ts = np.concatenate([ts, start_ns + (seconds + t_idx.astype(np.int64)) * 10**9])
    channels = tuple(ChannelSpec(c, *CHANNELS[c]) for c in names)
    per = BATCH_S // SAMPLE_S
    out = []
    for seq, a in enumerate(range(0, ts.size, per)):  # one batch per 5 minutes: a loop over batches, not readings
        b = slice(a, a + per)
        n = ts[b].size
        out.append(ReadingBatch.from_columns(
            agent_id=plant.agent_id, source_id=plant.source_id, seq=seq, channels=channels,
            ts_ns=np.tile(ts[b], len(names)), channel=np.repeat(np.arange(len(names)), n),
            value=value[:, b].ravel(), flag=flag[:, b].ravel()).encode())
    return out


def write_outbox(directory: Path, encoded: list[bytes]) -> list[Path]:
    """Batches into ``directory`` in the outbox's layout (``<seq:020d>.batch``, numbered from 0). A recording, not
    the agent's live outbox: no fsync per file (:class:`edge_agent.outbox.Outbox` does that for a gateway)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for seq, data in enumerate(encoded):
        path = directory / f"{seq:020d}.batch"
        path.write_bytes(data)
        paths.append(path)
    return paths
