"""Vocabulary shared by the wire format and the site model: status flags, quantity codes, units.

Status flags are the data flags of HJ 212-2017 Table 8 (§6.6.4). Quantity codes are the flue-gas
factor codes of HJ 212-2017 Appendix B, Table B.2 (itself based on HJ 524-2009); quantities a CO2
CEMS site needs that Table B.2 does not define (fuel and product meters, analyzer status words) get
project extension codes starting with ``x``, a prefix HJ 212 does not use. Sources (docs/sources.md):
``HJ212-T8`` [P] for the flags, ``HJ212-B2`` [P] for the flue-gas codes.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "FLAG_IS_VALID_CODE",
    "QUANTITIES",
    "REPORT_UNITS",
    "UNITS",
    "Flag",
    "Quantity",
    "flag_codes",
    "flag_letters",
    "status_word_flag",
]


class Flag(IntEnum):
    """Reading status, HJ 212-2017 Table 8. The integer is the wire code; never renumber.

    Only ``N`` readings may enter a valid average (HJ 75/76; HJ 212-2017 Appendix C notes).
    """

    N = 0  # instrument working normally
    F = 1  # instrument stopped (停运)
    M = 2  # maintenance
    S = 3  # manually entered set value
    D = 4  # instrument fault
    C = 5  # calibration
    T = 6  # above the measuring range upper limit
    B = 7  # communication failure between instrument and datalogger

    @property
    def letter(self) -> str:
        return self.name


#: 256-entry lookup: ``FLAG_IS_VALID_CODE[codes]`` checks a whole uint8 column at once.
FLAG_IS_VALID_CODE = np.zeros(256, dtype=bool)
FLAG_IS_VALID_CODE[[f.value for f in Flag]] = True
FLAG_IS_VALID_CODE.setflags(write=False)

_LETTERS = np.array([f.name for f in Flag])


def flag_letters(codes: ArrayLike) -> NDArray[np.str_]:
    """Flag codes -> HJ 212 letters (``'N'``, ``'C'``...), vectorised."""
    return _LETTERS[np.asarray(codes, dtype=np.uint8)]


def flag_codes(letters: ArrayLike) -> NDArray[np.uint8]:
    """HJ 212 letters -> flag codes, vectorised. Unknown letters raise ``KeyError``."""
    arr = np.asarray(letters, dtype="U1")
    out = np.full(arr.shape, 255, dtype=np.uint8)
    for f in Flag:  # eight iterations, not one per reading
        out[arr == f.name] = f.value
    if (out == 255).any():
        bad = sorted(set(arr[out == 255].tolist()))
        raise KeyError(f"unknown HJ 212 flag letter(s) {bad}; known: {[f.name for f in Flag]}")
    return out


#: Canonical unit spellings. ASCII only, so configuration files are easy to type on a gateway.
UNITS: dict[str, str] = {
    "%": "percent by volume (or mass, for moisture as HJ 75 writes it)",
    "ppm": "micromole per mole (umol/mol)",
    "mg/m3": "milligram per cubic metre (standard conditions unless stated)",
    "g/m3": "gram per cubic metre",
    "m3/s": "cubic metre per second",
    "m3/h": "cubic metre per hour",
    "m/s": "metre per second",
    "m2": "square metre",
    "degC": "degree Celsius",
    "K": "kelvin",
    "kPa": "kilopascal",
    "Pa": "pascal",
    "t/h": "tonne per hour",
    "kg/h": "kilogram per hour",
    "t": "tonne",
    "kg": "kilogram",
    "m3": "cubic metre",
    "MWh": "megawatt hour",
    "MW": "megawatt",
    "1": "dimensionless (status words, counters)",
}


#: What the meters' units are in the units the accounting reports count activity in (t, 10^4 Nm3, MWh:
#: ``schemas.accounting.UNITS``, kinds ``quantity`` and ``energy``): unit -> (report unit, factor), the report figure
#: being value x factor. A rate per hour (t/h, m3/h, MW) maps to the unit of its integral over hours. Volumes are
#: standard volumes, as the fuel meters' quantities say (xf0002, xf0004).
REPORT_UNITS: dict[str, tuple[str, float]] = {
    "t": ("t", 1.0),
    "kg": ("t", 1e-3),
    "m3": ("10^4Nm3", 1e-4),
    "MWh": ("MWh", 1.0),
    "t/h": ("t", 1.0),
    "kg/h": ("t", 1e-3),
    "m3/h": ("10^4Nm3", 1e-4),
    "MW": ("MWh", 1.0),
}


class Quantity(NamedTuple):
    code: str
    name: str
    default_unit: str
    units: tuple[str, ...]
    source: str


def _q(code: str, name: str, units: tuple[str, ...], source: str = "HJ 212-2017 Table B.2") -> Quantity:
    return Quantity(code, name, units[0], units, source)


_EXT = "project extension (not in HJ 212-2017)"

#: Quantity code -> definition. ``units[0]`` is the default unit of the source table.
QUANTITIES: dict[str, Quantity] = {
    q.code: q
    for q in (
        # Flue gas (HJ 212-2017 Appendix B, Table B.2).
        _q("a00000", "flue gas flow", ("m3/s", "m3/h")),
        _q("a01011", "flue gas velocity", ("m/s",)),
        _q("a01012", "flue gas temperature", ("degC", "K")),
        _q("a01013", "flue gas static pressure", ("kPa", "Pa")),
        _q("a01014", "flue gas moisture", ("%",)),
        _q("a01016", "duct cross-section area", ("m2",)),
        _q("a01017", "dynamic (velocity) pressure", ("kPa", "Pa")),
        _q("a05001", "carbon dioxide", ("mg/m3", "g/m3", "%", "ppm")),
        _q("a19001", "oxygen", ("%",)),
        _q("a21002", "nitrogen oxides", ("mg/m3", "ppm")),
        _q("a21005", "carbon monoxide", ("mg/m3", "ppm")),
        _q("a21026", "sulphur dioxide", ("mg/m3", "ppm")),
        _q("a34013", "particulate matter", ("mg/m3",)),
        # Ambient (HJ 212-2017 Appendix B, ambient factors).
        _q("a01001", "ambient temperature", ("degC", "K")),
        _q("a01006", "ambient (barometric) pressure", ("kPa", "Pa")),
        # What a CO2 accounting check needs besides the stack (project extensions).
        _q("xf0001", "fuel mass flow rate", ("t/h", "kg/h"), _EXT),
        _q("xf0002", "fuel volume flow rate (standard)", ("m3/h",), _EXT),
        _q("xf0003", "fuel totaliser (mass)", ("t", "kg"), _EXT),
        _q("xf0004", "fuel totaliser (standard volume)", ("m3",), _EXT),
        _q("xp0001", "product mass flow rate (weigher)", ("t/h",), _EXT),
        _q("xp0002", "product totaliser (weigher)", ("t",), _EXT),
        _q("xe0001", "electric power output", ("MW",), _EXT),
        _q("xe0002", "electricity totaliser", ("MWh",), _EXT),
        _q("xs0001", "analyzer status word", ("1",), _EXT),
        _q("xs0002", "source run status (1 running, 0 stopped), e.g. from the DCS", ("1",), _EXT),
    )
}


#: Flags a status word can raise, most severe first: a stopped source (F) outranks a fault (D), which
#: outranks calibration (C), maintenance (M) and out of range (T).
_STATUS_SEVERITY = ("F", "D", "C", "M", "T")


def status_word_flag(bits: dict[int, str], word: int) -> int:
    """The flag an analyser status word means, given its bit -> flag letter map: the most severe set bit."""
    for letter in _STATUS_SEVERITY:
        if any(word >> bit & 1 for bit, f in bits.items() if f == letter):
            return Flag[letter].value
    return Flag.N.value
