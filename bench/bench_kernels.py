"""Emission kernels throughput: readings -> minutes -> hours -> standardised hourly CO2 mass.

    python bench/bench_kernels.py [--stacks 2000] [--seconds 5000] [--batch 5000000]

Streams ``stacks x 5 channels x seconds`` readings at 1 Hz (default 50,000,000) through the
vectorised kernels in batches (incremental absorb, then close minutes, hours, emissions under the
China policy), and runs a straightforward per-reading Python implementation of the same computation
on a slice (``--baseline-stacks``) in the same run; each side is timed as the best of ``--repeat``
runs. Both produce the hourly CO2 mass of the slice;
they are checked to agree. Prints readings per second on one core (the kernels are single-threaded
numpy) and the memory the state and the process used.
"""

from __future__ import annotations

import argparse
import math
import platform
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from schemas.site import EmissionSource
from streams.kernels.aggregate import HOUR_NS, MINUTE_NS, Accumulator, hours_from_minutes
from streams.kernels.emissions import StackLayout, hourly_emissions
from streams.kernels.plausibility import series_bounds
from streams.kernels.policy import POLICIES

T0 = 1_767_225_600 * 10**9
S = 10**9
POLICY = POLICIES["cn-hj75"]
CHANNELS = [("co2", "a05001", "%"), ("h2o", "a01014", "%"), ("t", "a01012", "degC"), ("ps", "a01013", "kPa"),
            ("v", "a01011", "m/s")]
BASE = np.array([10.0, 10.3, 96.4, -0.431, 14.65])
NOISE = np.array([0.5, 0.3, 2.0, 0.01, 0.4])


def stacks(n: int) -> list[EmissionSource]:
    chans = [{"id": c, "quantity": q, "unit": u, **({"basis": "dry"} if q == "a05001" else {})} for c, q, u in CHANNELS]
    return [EmissionSource.model_validate({"id": f"s{i}", "name": f"stack {i}", "duct_area_m2": 5.0,
                                           "velocity_field_coefficient": 1.0, "ambient_pressure": {"kpa": 101.325},
                                           "channels": chans}) for i in range(n)]


def readings(n_stacks: int, t_from: int, t_to: int, seed: int):
    """1 Hz readings of every channel of every stack for seconds [t_from, t_to); 1 % calibration."""
    rng = np.random.default_rng(seed)
    nch = len(CHANNELS)
    secs = np.arange(t_from, t_to, dtype=np.int64)
    series = np.tile(np.arange(n_stacks * nch, dtype=np.int64), secs.size)
    ts = T0 + np.repeat(secs, n_stacks * nch) * S
    ch = series % nch
    value = BASE[ch] + NOISE[ch] * rng.standard_normal(series.size)
    flag = np.where(rng.random(series.size) < 0.01, 5, 0).astype(np.uint8)
    value[flag != 0] = np.nan
    return series, ts, value, flag


def run_kernels(n_stacks, seconds, batch_readings, seed=1):
    nch = len(CHANNELS)
    secs_per_batch = max(1, batch_readings // (n_stacks * nch))
    batches = [readings(n_stacks, a, min(a + secs_per_batch, seconds), seed + a)
               for a in range(0, seconds, secs_per_batch)]
    layout = StackLayout.from_sources(stacks(n_stacks), {(f"s{i}", c[0]): i * nch + j for i in range(n_stacks)
                                                         for j, c in enumerate(CHANNELS)})
    n_hours = math.ceil(seconds / 3600)
    bounds = series_bounds([(q, u) for _ in range(n_stacks) for _, q, u in CHANNELS])
    t = time.perf_counter()
    # As a stream worker does: absorb a batch, close the minutes the watermark has passed, fold them
    # into the hour state; open minutes stay in the (small) minute state.
    minute_state, hour_state, state_bytes = Accumulator.empty(MINUTE_NS), Accumulator.empty(HOUR_NS), 0
    for i, b in enumerate(batches):
        minute_state = minute_state.absorb_readings(*b, batch_id=("bench", i), bounds=bounds)
        closed, minute_state = minute_state.split_closed(int(b[1].max()) // MINUTE_NS * MINUTE_NS)
        hour_state = hour_state.merge(hours_from_minutes(closed.close(POLICY)))
        state_bytes = max(state_bytes, minute_state.nbytes + hour_state.nbytes)
    hour_state = hour_state.merge(hours_from_minutes(minute_state.close(POLICY)))
    t_absorb = time.perf_counter() - t
    hours = hour_state.close(POLICY)
    em = hourly_emissions(hours, n_stacks * nch, layout, T0, n_hours, POLICY.reference)
    elapsed = time.perf_counter() - t
    n = sum(b[0].size for b in batches)
    return n, elapsed, t_absorb, state_bytes, em


def _per_reading_rows(n_stacks, seconds, seed, batch_readings):
    nch = len(CHANNELS)
    secs_per_batch = max(1, batch_readings // (n_stacks * nch))
    data = [readings(n_stacks, a, min(a + secs_per_batch, seconds), seed + a)
            for a in range(0, seconds, secs_per_batch)]
    return [list(zip(*(c.tolist() for c in b), strict=True)) for b in data]


def _per_reading_emissions(n_stacks, seconds, hour_means):
    nch = len(CHANNELS)
    mass = {}
    for s in range(n_stacks):
        for h in range(math.ceil(seconds / 3600)):
            vals = [hour_means.get((s * nch + j, h + T0 // (3600 * S))) for j in range(nch)]
            if None in vals:
                mass[(s, h)] = math.nan
                continue
            co2, h2o, temp, ps, v = vals
            c = co2 * 1e4 * 44.009 / 22.4
            q = 3600 * 5.0 * v * 273 / (273 + temp) * (101325 + ps * 1000) / 101325 * (1 - h2o / 100)
            mass[(s, h)] = c * q * 1e-6
    return mass


def run_per_reading(n_stacks, seconds, seed=1, batch_readings=5_000_000):
    """The same computation one reading at a time, producing the same outputs as the kernels: counts
    by flag, exact integer sums on the 2**-24 grid, valid and operating 5-s slot masks, plausibility."""
    rows = _per_reading_rows(n_stacks, seconds, seed, batch_readings)
    low, high = series_bounds([(q, u) for _ in range(n_stacks) for _, q, u in CHANNELS])
    low, high = low.tolist(), high.tolist()
    scale = 2.0**24
    t = time.perf_counter()
    minute = {}  # (series, minute) -> [count by flag 0..7, qsum, valid slot bits, operating slot bits]
    for batch in rows:
        for series, ts, value, flag in batch:
            key = (series, ts // MINUTE_NS)
            cell = minute.get(key)
            if cell is None:
                cell = minute[key] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            if flag == 0 and not low[series] <= value <= high[series]:
                flag = 6  # T: out of range
            cell[flag] += 1
            bit = 1 << ((ts % MINUTE_NS) // (5 * S))
            if flag == 0:
                cell[8] += round(value * scale)
                cell[9] |= bit
            if flag != 1:
                cell[10] |= bit
    hour = defaultdict(lambda: [0, 0])  # valid minutes, sum of quantised minute means
    for (series, m), cell in minute.items():
        if cell[0] >= 12 and cell[9].bit_count() >= 12:
            h = hour[(series, m // 60)]
            h[0] += 1
            h[1] += round(cell[8] / cell[0])
    means = {k: round(v[1] / v[0]) / scale for k, v in hour.items() if v[0] >= 45}
    mass = _per_reading_emissions(n_stacks, seconds, means)
    return sum(len(r) for r in rows), time.perf_counter() - t, mass


def run_per_reading_minimal(n_stacks, seconds, seed=1, batch_readings=5_000_000):
    """A leaner loop that computes less (float sums, valid counts and valid slots only): a lower bound."""
    rows = _per_reading_rows(n_stacks, seconds, seed, batch_readings)
    low, high = series_bounds([(q, u) for _ in range(n_stacks) for _, q, u in CHANNELS])
    low, high = low.tolist(), high.tolist()
    t = time.perf_counter()
    minute = defaultdict(lambda: [0, 0.0, set()])
    for batch in rows:
        for series, ts, value, flag in batch:
            if flag == 0 and low[series] <= value <= high[series]:
                cell = minute[(series, ts // MINUTE_NS)]
                cell[0] += 1
                cell[1] += value
                cell[2].add((ts % MINUTE_NS) // (5 * S))
    hour = defaultdict(lambda: [0, 0.0])
    for (series, m), (n_valid, total, slots) in minute.items():
        if n_valid >= 12 and len(slots) >= 12:
            h = hour[(series, m // 60)]
            h[0] += 1
            h[1] += total / n_valid
    means = {k: v[1] / v[0] for k, v in hour.items() if v[0] >= 45}
    mass = _per_reading_emissions(n_stacks, seconds, means)
    return sum(len(r) for r in rows), time.perf_counter() - t, mass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stacks", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=5_000_000, help="readings per absorbed batch")
    ap.add_argument("--baseline-stacks", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3, help="each side is timed as the best of this many runs")
    args = ap.parse_args()

    def best(fn, *a):  # the machine is shared: the fastest of a few runs is the least disturbed one
        runs = [fn(*a) for _ in range(args.repeat)]
        return min(runs, key=lambda r: r[1])

    n, t, t_absorb, state_bytes, em = best(run_kernels, args.stacks, args.seconds, args.batch)
    nb, tb, mass = best(run_per_reading, args.baseline_stacks, args.seconds)
    nm, tm, mass_min = best(run_per_reading_minimal, args.baseline_stacks, args.seconds)
    small = run_kernels(args.baseline_stacks, args.seconds, args.batch)[4]
    for m, tol in ((mass, 1e-12), (mass_min, 1e-7)):  # the minimal loop's float sums round differently
        expect = np.array([[m[(s, h)] for h in range(small.n_hours)] for s in range(args.baseline_stacks)])
        assert np.allclose(small.co2_kg, expect, rtol=tol, equal_nan=True), "kernels and per-reading version disagree"

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rate, brate = n / t, nb / tb
    print(f"emission kernels | Python {platform.python_version()}, numpy {np.__version__}, one core")
    print(f"workload: {args.stacks:,} stacks x {len(CHANNELS)} channels x {args.seconds:,} s at 1 Hz = {n:,} readings "
          f"in batches of {args.batch:,}; {em.n_hours} hours, policy {POLICY.name}")
    print(f"vectorised kernels : {t:7.2f} s  {rate / 1e6:6.1f} M readings/s  (readings -> closed minutes -> "
          f"hour state {t_absorb:.2f} s; close hours + emissions {t - t_absorb:.2f} s)")
    print(f"per-reading Python : {tb:7.2f} s  {brate / 1e6:6.2f} M readings/s  ({nb:,} readings, "
          f"{args.baseline_stacks} stacks; same outputs: flag counts, exact sums, slot masks; same masses)")
    print(f"  minimal loop     : {tm:7.2f} s  {nm / tm / 1e6:6.2f} M readings/s  (float sums, valid counts only: "
          f"computes less; a lower bound for any per-reading version)")
    print(f"speed-up           : {rate / brate:.1f}x (vs the minimal loop {rate / (nm / tm):.1f}x)   "
          f"target >= 20 M readings/s and >= 20x")
    print(f"memory             : minute + hour state at most {state_bytes / 2**20:.0f} MiB; "
          f"peak RSS {rss_mb:,.0f} MiB (input batches included)")
    print(f"hourly CO2, stack 0: {np.round(em.co2_kg[0] / 1000, 3).tolist()} t; "
          f"measured hours {int(em.measured.sum())}/{em.measured.size}")


if __name__ == "__main__":
    main()
