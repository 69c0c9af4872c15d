"""Physical plausibility bounds per quantity: readings outside them are flagged T (out of range).

An analyser flags its own over-range (HJ 212 flag T); these bounds catch what it does not: values
no flue gas can have, from a mis-scaled register, a wrong unit or a tampered device. They are this
project's choice of *physical* limits, deliberately wide (not emission limits, not analyser ranges);
override them per site where a process needs it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PLAUSIBLE", "series_bounds"]

#: (quantity code, unit) -> (low, high), inclusive.
PLAUSIBLE: dict[tuple[str, str], tuple[float, float]] = {
    ("a05001", "%"): (0.0, 100.0),  # a volume fraction
    ("a05001", "ppm"): (0.0, 1e6),
    ("a05001", "mg/m3"): (0.0, 2e6),  # pure CO2 at standard state is about 1.96e6 mg/m3
    ("a05001", "g/m3"): (0.0, 2e3),
    ("a19001", "%"): (0.0, 21.0),  # cannot exceed air
    ("a01014", "%"): (0.0, 100.0),
    ("a01012", "degC"): (-60.0, 1600.0),
    ("a01012", "K"): (213.0, 1873.0),
    ("a01013", "kPa"): (-50.0, 50.0),  # gauge static pressure in a duct
    ("a01013", "Pa"): (-50_000.0, 50_000.0),
    ("a01006", "kPa"): (50.0, 110.0),  # barometric, sea level to 5000 m and then some
    ("a01006", "Pa"): (50_000.0, 110_000.0),
    ("a01011", "m/s"): (0.0, 100.0),
    ("a00000", "m3/s"): (0.0, 1e5),
    ("a00000", "m3/h"): (0.0, 3.6e8),
}


def series_bounds(channels: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Physical bounds of series described by (quantity, unit); unbounded where none is known.

    Parameters
    ----------
    channels : list of (str, str)
        (HJ 212 quantity code, unit) of each series.

    Returns
    -------
    low, high : ndarray of float
        Inclusive bounds per series [the series' unit]; -inf / inf where :data:`PLAUSIBLE` has none.

    References
    ----------
    Project choice: deliberately wide physical limits (module docstring), not emission limits; readings outside
    them are flagged T (docs/sources.md HJ212-T8 [P]).
    """
    low = np.array([PLAUSIBLE.get(c, (-np.inf, np.inf))[0] for c in channels], dtype=np.float64)
    high = np.array([PLAUSIBLE.get(c, (-np.inf, np.inf))[1] for c in channels], dtype=np.float64)
    return low, high
