"""Multi-gas totals: CO2-equivalent with versioned GWP sets (100-year horizon).

Aluminium smelters report CO2, CF4 and C2F6 (China ETS expansion, 2025). Which IPCC assessment the
aluminium guideline CETS-AG-04.01-V01-2024 prescribes is unconfirmed (its Appendix A was not read), so the set
is a configuration value, recorded with every CO2e figure.

Sources (docs/sources.md): SAR (IPCC Second Assessment Report, 1995), which Chinese accounting guidelines have
used (``GWP-SAR`` [S]: CF4 6,500 and C2F6 9,200 in an implementation of the Chinese electrolytic-aluminium
guideline); AR4 as used by the IAI (``GWP-AR4`` [S]); AR5 as in EU MRR 2018/2066 Annex VI (``GWP-AR5`` [U,
memory]); AR6 from IPCC AR6 WG1 Chapter 7 Table 7.SM.7 (``GWP-AR6``: CF4 [S], a public inventory tool; C2F6 [U]).
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

__all__ = ["DEFAULT_GWP_SET", "GWP_SETS", "co2e"]

GWP_SETS = MappingProxyType(
    {
        "SAR": MappingProxyType({"CO2": 1.0, "CF4": 6500.0, "C2F6": 9200.0}),
        "AR4": MappingProxyType({"CO2": 1.0, "CF4": 7390.0, "C2F6": 12200.0}),
        "AR5": MappingProxyType({"CO2": 1.0, "CF4": 6630.0, "C2F6": 11100.0}),
        "AR6": MappingProxyType({"CO2": 1.0, "CF4": 7380.0, "C2F6": 12400.0}),
    }
)
#: Default until CETS-AG-04.01 Appendix A is read: AR4, which the IAI uses for sector statistics. The older Chinese
#: guideline's tools use SAR (``GWP-SAR`` [S]); whether the 2024 guideline keeps it is not confirmed, so the set
#: is configured, and recorded with every CO2e figure.
DEFAULT_GWP_SET = "AR4"


def co2e(masses: dict[str, np.ndarray | float], gwp_set: str = DEFAULT_GWP_SET) -> np.ndarray:
    """Sum of mass x GWP over gases, e.g. ``co2e({"CO2": t_co2, "CF4": t_cf4, "C2F6": t_c2f6}, "AR5")``.

    Parameters
    ----------
    masses : dict of str to array_like or float
        Gas -> mass, all in one unit [t, or kg].
    gwp_set : str
        Name of the GWP set (:data:`GWP_SETS`, 100-year horizon).

    Returns
    -------
    ndarray of float
        CO2e [the masses' unit of CO2e]; NaN where any gas is NaN (a missing gas is not zero).

    Raises
    ------
    KeyError
        An unknown gas or set, naming what is known.

    References
    ----------
    docs/sources.md: GWP-SAR [S], GWP-AR4 [S], GWP-AR5 [U], GWP-AR6 [S for CF4, U for C2F6].
    """
    try:
        gwp = GWP_SETS[gwp_set]
    except KeyError:
        raise KeyError(f"unknown GWP set {gwp_set!r}; known: {sorted(GWP_SETS)}") from None
    unknown = set(masses) - set(gwp)
    if unknown:
        raise KeyError(f"no GWP for {sorted(unknown)} in {gwp_set}; known gases: {sorted(gwp)}")
    total = np.zeros(np.broadcast_shapes(*(np.shape(m) for m in masses.values())) if masses else ())
    for gas, mass in masses.items():  # a handful of gases, not readings
        total = total + np.asarray(mass, dtype=np.float64) * gwp[gas]
    return total
