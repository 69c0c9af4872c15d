"""OPC UA DataValues -> readings: value, HJ 212 flag and timestamp. Pure: no client, no server, no I/O.

Flags (HJ 212-2017 Table 8) from the OPC UA StatusCode of each value (Part 4 §7.39, Part 8 §A.4):

* Good -> N, then NaN/inf (or a value that is not a number) -> D, outside the point's low/high -> T;
* Bad communication codes (BadCommunicationError, BadNoCommunication, BadNotConnected, BadTimeout,
  BadServerNotConnected, BadWaitingForInitialData, ...) -> B: the server cannot reach the instrument;
* BadOutOfRange and UncertainEngineeringUnitsExceeded -> T;
* any other Bad -> D; any other Uncertain -> D. Uncertain means the server itself doubts the value
  (last usable value, sensor not accurate, substituted...): HJ 75 only averages N readings, so doubtful
  data is kept, with its value, but not treated as valid.

A StatusCode's top two bits are its severity (00 Good, 01 Uncertain, 10 Bad) and its upper 16 bits the code;
the lower 16 are info bits (overflow, limits), ignored here (docs/sources.md OPCUA-SC). Timestamps: SourceTimestamp,
else ServerTimestamp (the driver falls back to the cycle time when neither is set); an absent StatusCode is Good and
an absent timestamp is none (OPCUA-DV).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from schemas._optional import needs_extra
from schemas.quantities import Flag

with needs_extra("opcua", "an OPC UA device"):
    from asyncua import ua

__all__ = ["COMM_CODES", "RANGE_CODES", "as_number", "flag_values", "reading_time_ns", "status_code", "status_word",
           "timestamp_ns", "variant_value"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_SC = ua.StatusCodes
#: Bad codes meaning "the server cannot reach the instrument" (upper 16 bits; the lower 16 are info bits).
COMM_CODES = np.array([_SC.BadCommunicationError, _SC.BadNoCommunication, _SC.BadNotConnected, _SC.BadTimeout,
                       _SC.BadServerNotConnected, _SC.BadWaitingForInitialData, _SC.BadConnectionClosed,
                       _SC.BadShutdown, _SC.BadServerHalted], dtype=np.uint32)
#: Codes meaning "the value is outside the instrument's range": T, whatever the severity.
RANGE_CODES = np.array([_SC.BadOutOfRange, _SC.UncertainEngineeringUnitsExceeded], dtype=np.uint32)


def flag_values(raw: np.ndarray, code: np.ndarray, scale: np.ndarray, offset: np.ndarray, low: np.ndarray,
                high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scaled values and HJ 212 flags of many DataValues at once (see the module docstring for the rules).

    ``raw`` is the variant as float (NaN when missing or not a number), ``code`` the uint32 StatusCode;
    the other arrays are the points' constants aligned with them (``low``/``high`` -inf/inf when unset). Bad
    values come back as NaN; Uncertain ones keep their value (flagged D or T).
    """
    code = np.asarray(code, dtype=np.uint32)
    severity = code >> np.uint32(30)  # 0 good, 1 uncertain, 2 and 3 bad
    kind = code & np.uint32(0xFFFF0000)
    with np.errstate(invalid="ignore", over="ignore"):
        value = raw * scale + offset
        finite = np.isfinite(value)
        outside = (value < low) | (value > high)
    flag = np.where(~finite, Flag.D, np.where(outside, Flag.T, Flag.N)).astype(np.uint8)
    flag[severity != 0] = Flag.D
    flag[(severity >= 2) & np.isin(kind, COMM_CODES)] = Flag.B
    flag[(severity != 0) & np.isin(kind, RANGE_CODES)] = Flag.T
    value = np.where(finite & (severity < 2), value, np.nan)
    return value, flag


def timestamp_ns(dt: datetime | None) -> int | None:
    """A DataValue timestamp as ns since the Unix epoch; None when absent (or the OPC UA 'null' 1601 date, OPCUA-DV).
    asyncua gives naive datetimes in UTC; microseconds are all a DateTime carries through it."""
    if dt is None or dt.year <= 1601:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _US * 1000


def reading_time_ns(dv: ua.DataValue) -> int | None:
    """When the value was taken: the SourceTimestamp, else the ServerTimestamp, else None."""
    src = timestamp_ns(dv.SourceTimestamp)
    return src if src is not None else timestamp_ns(dv.ServerTimestamp)


def variant_value(dv: ua.DataValue) -> Any:
    """The value a DataValue carries (None when it has none)."""
    return dv.Value.Value if dv.Value is not None else None


def status_code(dv: ua.DataValue) -> int:
    """The DataValue's StatusCode as an integer; an absent StatusCode means Good (OPCUA-DV)."""
    return dv.StatusCode.value if dv.StatusCode is not None else 0


def as_number(v: Any) -> float:
    """A variant as float; NaN for anything that is not a number (a string, a structure, None)."""
    if isinstance(v, bool | int | float | np.number):
        return float(v)
    return math.nan


def status_word(v: Any, code: int) -> int | None:
    """An analyser status word from its variant: a Good, non-negative whole number; else None (not usable)."""
    numeric = (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    return int(v) if (code >> 30) == 0 and numeric and v >= 0 else None
