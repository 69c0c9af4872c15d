"""Substitution of missing operating hours, as pluggable policies. Every substituted hour is marked.

Input: dense ``[source, hour]`` arrays of an hourly quantity (by default the hour's CO2 mass), a
``measured`` mask (valid operating hours) and a ``missing`` mask (operating hours without a valid
value; stopped hours are neither and are never filled). The arrays may start with history: the
lookback windows below look back over the hours passed in, so pass as much as the rule needs.
Vectorised over sources and hours; gaps (runs of missing hours) are handled one run at a time, which
is a loop over outages, never over readings.

Policies (``shared/reference/cems-standards.md``):

``hj75-2017``  **unconfirmed** [S/U, §2: from a third-party implementation, not the primary text]:
    by the capture rate a = (hours - stopped - invalid) / hours of the window passed in (the rule
    speaks of the quarter) and the length N of the outage: a >= 90 % and N <= 24 h: maximum of the
    previous 180 valid hours; a >= 90 % and N > 24 h: maximum of the previous 720; 75 % <= a < 90 %:
    maximum of the previous 2160. Below 75 % the source gives no rule; the 2160-hour maximum is used
    and marked as such (``hj75-2160-below-75``).
``eu-mrr``  Regulation (EU) 2018/2066 Art. 45(3), Eq. 4 [P]: mean + 2 standard deviations of the
    valid hours of the window passed in (the reporting period). MRR prescribes this for
    concentrations; applying it to the hourly mass is this project's simplification, used when the
    caller substitutes mass.
``us-part75``  40 CFR 75.33(b) [P] (720-hour lookback [U]) by percent monitor data availability
    (PMA, over the window passed in, up to 8760 operating hours, §75.32): PMA >= 95 %: gap <= 24 h
    before/after average, else the greater of the 90th percentile and that average; 90-95 %: gap
    <= 8 h average, else the greater of the 95th percentile and that average; 80-90 %: the maximum
    of the lookback; < 80 %: the maximum potential value (``max_potential``, required then).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["METHODS", "Substituted", "substitute"]

#: Method code -> name. 0 = not substituted (measured, stopped, or left missing).
METHODS: dict[int, str] = {
    0: "none",
    1: "hj75-180h-max",
    2: "hj75-720h-max",
    3: "hj75-2160h-max",
    4: "hj75-2160h-max-below-75",
    10: "eu-mean-plus-2sigma",
    20: "us75-before-after-avg",
    21: "us75-p90-or-avg",
    22: "us75-p95-or-avg",
    23: "us75-lookback-max",
    24: "us75-max-potential",
    99: "no-history",  # nothing valid to substitute from: left missing, flagged for review
}
_CODE = {name: code for code, name in METHODS.items()}


@dataclass(frozen=True, eq=False)
class Substituted:
    values: np.ndarray  # measured values, substitutes in missing hours, 0 for stopped hours
    method: np.ndarray  # uint8 [source, hour], METHODS code per hour
    policy: str

    @property
    def substituted(self) -> np.ndarray:
        return (self.method != 0) & (self.method != _CODE["no-history"])


def _runs(mask_row: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    padded = np.concatenate([[False], mask_row, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _lookback(values_row, measured_row, start, n_valid) -> np.ndarray:
    """The last ``n_valid`` measured values before hour ``start``."""
    idx = np.flatnonzero(measured_row[:start])
    return values_row[idx[-n_valid:]]


def _before_after(values_row, measured_row, start, end) -> float:
    before = np.flatnonzero(measured_row[:start])
    after = np.flatnonzero(measured_row[end:])
    vals = ([values_row[before[-1]]] if before.size else []) + ([values_row[end + after[0]]] if after.size else [])
    return float(np.mean(vals)) if vals else np.nan


def substitute(
    values: np.ndarray,
    measured: np.ndarray,
    missing: np.ndarray,
    policy: str = "hj75-2017",
    *,
    max_potential: float | np.ndarray | None = None,
) -> Substituted:
    """Fill ``missing`` hours of ``values`` by ``policy``; see the module docstring for the rules."""
    values = np.asarray(values, dtype=np.float64)
    measured = np.asarray(measured, dtype=bool)
    missing = np.asarray(missing, dtype=bool) & ~measured
    out = np.where(measured, values, np.where(missing, np.nan, 0.0))
    method = np.zeros(values.shape, dtype=np.uint8)
    operating = measured | missing
    if policy == "eu-mrr":  # vectorised over sources: one mean and sigma per source
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a source with < 2 valid hours: no sigma, no fill
            v = np.where(measured, values, np.nan)
            fill = np.nanmean(v, axis=1) + 2 * np.nanstd(v, axis=1, ddof=1)
        fill_grid = np.broadcast_to(fill[:, None], values.shape)
        ok = missing & np.isfinite(fill_grid)
        out[ok] = fill_grid[ok]
        method[ok] = _CODE["eu-mean-plus-2sigma"]
        method[missing & ~ok] = _CODE["no-history"]
        return Substituted(out, method, policy)
    if policy not in ("hj75-2017", "us-part75"):
        raise KeyError(f"unknown substitution policy {policy!r}; known: ['hj75-2017', 'eu-mrr', 'us-part75']")

    n_op = operating.sum(axis=1)
    hours = values.shape[1]
    capture = (hours - (~operating).sum(axis=1) - missing.sum(axis=1)) / max(hours, 1)  # HJ 75 as documented
    with np.errstate(invalid="ignore", divide="ignore"):
        pma = measured.sum(axis=1) / np.where(n_op > 0, n_op, 1)
    mpc = None if max_potential is None else np.broadcast_to(np.asarray(max_potential, dtype=np.float64), (values.shape[0],))
    for s in np.flatnonzero(missing.any(axis=1)):  # sources with outages
        row, ok_row = values[s], measured[s]
        for start, end in _runs(missing[s]):  # outages, not readings
            n = end - start
            if policy == "hj75-2017":
                a = capture[s]
                window, name = (
                    (180, "hj75-180h-max") if a >= 0.90 and n <= 24
                    else (720, "hj75-720h-max") if a >= 0.90
                    else (2160, "hj75-2160h-max") if a >= 0.75
                    else (2160, "hj75-2160h-max-below-75")
                )
                hist = _lookback(row, ok_row, start, window)
                fill = hist.max() if hist.size else np.nan
            else:
                avg = _before_after(row, ok_row, start, end)
                hist = _lookback(row, ok_row, start, 720)
                p = pma[s]
                if p >= 0.95:
                    fill, name = (avg, "us75-before-after-avg") if n <= 24 else (
                        np.nanmax([np.percentile(hist, 90) if hist.size else np.nan, avg]), "us75-p90-or-avg")
                elif p >= 0.90:
                    fill, name = (avg, "us75-before-after-avg") if n <= 8 else (
                        np.nanmax([np.percentile(hist, 95) if hist.size else np.nan, avg]), "us75-p95-or-avg")
                elif p >= 0.80:
                    fill, name = (hist.max() if hist.size else np.nan), "us75-lookback-max"
                else:
                    if mpc is None:
                        raise ValueError("us-part75 needs max_potential when availability is below 80 %")
                    fill, name = mpc[s], "us75-max-potential"
            if np.isfinite(fill):
                out[s, start:end] = fill
                method[s, start:end] = _CODE[name]
            else:
                method[s, start:end] = _CODE["no-history"]
    return Substituted(out, method, policy)
