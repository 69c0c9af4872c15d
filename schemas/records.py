"""Records the centre publishes: one per (source, hour), revised when late data changes it.

An hourly record is keyed by ``{source_id}/{hour start, UTC ISO 8601}`` on the compacted topic
``cems.hourly.v1``; every revision carries the next ``revision`` number and the ``reason`` it was
issued (``closed``: the hour's first publication once event time passed its end plus the allowed
lateness; ``late_data``: readings arrived for an hour already published). Compaction keeps the last
revision per key, the InfluxDB sink overwrites the same point, so a consumer never counts an hour twice.
Missing numbers are JSON ``null`` (an hour with no valid CO2 has no concentration, not a zero).

A monthly record is keyed by ``{source_id}/{YYYY-MM}`` (the entity's local calendar month) on the compacted
topic ``cems.monthly.v1``. While hours of the month are still being published it is ``open`` and updated as
they come (``reason`` ``running``, ``revision`` 0); once the month's last hour is published it is ``closed``
(``reason`` ``closed``, ``revision`` 0), and a late hour that changes its figures afterwards issues the next
``revision`` with reason ``late_data``. The archive takes the closed versions.

A gap report is keyed by agent id on the compacted topic ``cems.gaps.v1``: the batches the centre has not
received below the agent's highest sequence number, re-published whenever that set changes (a hole opens,
or a late batch fills it); an empty ``holes`` list says the sequence is complete again. Reconciliation reads
it as a data-quality indicator (a gateway that loses or withholds batches).

An indicator day is keyed by ``{source_id}/{UTC day, YYYY-MM-DD}`` on the compacted topic ``cems.indicators.v1``:
the hour partials of the source's channels (``streams/kernels/indicators/hours.py``) for the hours of that UTC day
the stream has closed, re-published with the next ``revision`` whenever an hour closes or late minutes change one.
The reconciler reads them instead of the minutes (docs/decisions.md). Binary, not JSON: a month of a national
population is 620,000 of them; one JSON header line (``layout`` 1), then the hours of every channel as packed
``INDICATOR_HOUR`` structs (``[channels, 24]``, 59 bytes each) and of the meter channels as ``METER_HOUR``
(``[meter_channels, 24]``, 27 bytes each).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["INDICATOR_HOUR", "METER_HOUR", "GapReport", "HourlyRecord", "IndicatorDay", "MonthlyRecord"]


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


class _Revised:
    """A record published again under the same key when it changes (dataclass subclasses)."""

    def content(self) -> tuple[tuple[str, Any], ...]:
        """What a revision compares: the figures (and status), not the revision bookkeeping."""
        d = asdict(cast("DataclassInstance", self))
        for k in ("revision", "reason"):
            d.pop(k)
        return tuple((k, _num(v) if isinstance(v, float) else v) for k, v in d.items())

    def _json(self, **extra: object) -> bytes:
        d = asdict(cast("DataclassInstance", self)) | extra
        d |= {k: _num(v) for k, v in d.items() if isinstance(v, float)}
        return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class HourlyRecord(_Revised):
    entity_id: str
    source_id: str
    hour_start_ns: int  # UTC, ns since the epoch; the hour's timestamp is its start
    revision: int  # 0 for the first publication, +1 per revision
    reason: str  # "closed" | "late_data"
    policy: str  # validity policy the hour was judged under (e.g. "cn-hj75")
    co2_kg: float | None  # CO2 mass of the hour [kg]; 0 when stopped; None when missing (needs substitution)
    co2_mg_m3: float | None  # standard dry CO2 concentration [mg/m³] (HJ 212-2017 App. D Eq. 18-20); None: not valid
    flow_m3_h: float | None  # standard dry flow Qsnh [m³/h] (Eq. 31); None: not valid. Each of the two is given
    #                          whenever its own inputs are valid, so a regime can substitute the other one alone.
    operating: bool  # the source ran in this hour, by process evidence (never by an analyser's F flag)
    measured: bool  # operating, and every input of the mass calculation was valid
    missing: bool  # operating but not measured (including out of control): needs substitution
    readings: int  # readings of the source absorbed for this hour (all channels, all flags)
    status: str = "measured"  # "measured" | "missing" | "out_of_control" | "stopped": exactly one per hour
    load: float | None = None  # hour mean of the source's load channel, in its unit (Part 75 load bins); None: none
    analyser_off: bool = False  # operating while the CO2 analyser's readings were mostly F, M or D (data quality)
    co2_ambient: bool = False  # operating while the valid CO2 was at ambient-air level (a probe in air, a bypass)

    @property
    def key(self) -> str:
        return f"{self.source_id}/{self.hour_iso}"

    @property
    def hour_iso(self) -> str:
        return datetime.fromtimestamp(self.hour_start_ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def to_json(self) -> bytes:
        return self._json(hour_start=self.hour_iso)

    @classmethod
    def from_json(cls, data: bytes) -> HourlyRecord:
        d = json.loads(data)
        d.pop("hour_start", None)
        return cls(**d)


@dataclass(frozen=True)
class MonthlyRecord(_Revised):
    """Monthly totals of one source (``streams/core/monthly.py``): hours, validity and substitution counted."""

    entity_id: str
    source_id: str
    month: str  # "YYYY-MM", local calendar of ``timezone``
    timezone: str  # IANA zone of the entity's reporting periods
    month_start_ns: int  # UTC instant of the local month's first hour
    status: str  # "open" (hours still to come) | "closed" (the month's last hour is published)
    revision: int  # 0 while open and for the first closed version; +1 per later change
    reason: str  # "running" | "closed" | "late_data"
    policy: str  # validity policy (e.g. "cn-hj75")
    substitution: str  # substitution policy for missing operating hours (e.g. "hj75-2017")
    co2_t: float  # measured + substituted CO2 [t] (HJ 212-2017 Eq. 34: sum of hourly masses)
    measured_co2_t: float  # CO2 of the measured (valid) hours [t]
    substituted_co2_t: float  # CO2 filled in for missing operating hours [t]
    hours_in_month: int  # clock hours of the local month
    hours: int  # hours of the month published so far (from the source's first data on)
    operating_hours: int
    measured_hours: int  # valid hours
    substituted_hours: int
    missing_hours: int  # operating, not measured, nothing to substitute from (needs review)
    valid_days: int  # days with enough valid hours (policy's day rule)
    valid: bool  # the month meets the policy's month rule (valid days), judged on the hours so far
    completeness: float | None  # measured / operating hours; None when the source never ran
    stopped_hours: int = 0  # hours the source did not run (process evidence)
    out_of_control_hours: int = 0  # operating hours out of control (QA: e.g. after a failed drift check)
    analyser_off_hours: int = 0  # operating hours with the CO2 analyser flagged F, M or D (HourlyRecord.analyser_off)
    co2_ambient_hours: int = 0  # operating hours with CO2 at ambient-air level (HourlyRecord.co2_ambient)
    capture_rate: float | None = None  # valid-data capture rate the substitution used (HJ 75: calendar quarter)

    @property
    def key(self) -> str:
        return f"{self.source_id}/{self.month}"

    def to_json(self) -> bytes:
        return self._json()

    @classmethod
    def from_json(cls, data: bytes) -> MonthlyRecord:
        return cls(**json.loads(data))


@dataclass(frozen=True)
class GapReport:
    """Sequence holes of one agent (``ingest/sequence.py``), as of the partition's event time."""

    agent_id: str
    holes: list[tuple[int, int]]  # missing (first, last) batch numbers, oldest first, at most 100 ranges
    missing: int  # batches missing below the highest sequence number seen
    highest_seq: int  # highest sequence number received
    as_of_ns: int  # newest Kafka timestamp of the partition when the report was made [ns]

    @property
    def key(self) -> str:
        return self.agent_id

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> GapReport:
        d = json.loads(data)
        return cls(**d | {"holes": [tuple(h) for h in d["holes"]]})


#: One hour of one channel in an indicator day: the indicators' fields (every channel), packed
#: (``streams/kernels/indicators/hours.py`` says what each holds).
INDICATOR_HOUR = np.dtype([("mean", "<f8"), ("operating", "?"), ("calibrating", "?"), ("repeats", "<u8"),
                           ("cm", "<u8"), ("head", "<f8"), ("tail", "<f8"), ("lv_count", "u1"), ("lv_mean", "<f8"),
                           ("lv_m2", "<f8")])
#: ... and the meters' fields (meter channels only).
METER_HOUR = np.dtype([("n_valid", "u1"), ("total", "<f8"), ("first", "i1"), ("first_value", "<f8"), ("last", "i1"),
                       ("last_value", "<f8")])


@dataclass(frozen=True, eq=False)
class IndicatorDay:
    """Hour partials of one source over one UTC day (``streams/core/findings.py`` makes them)."""

    entity_id: str
    source_id: str
    day_start_ns: int  # UTC midnight [ns since the epoch]
    channels: list[str]  # channel ids, the rows of ``hours``
    closed: int  # bit h: hour h of the day is closed (its partial is in the arrays)
    stale: int  # bit h: minutes of hour h folded after its minutes were let go: its partial misses them
    revision: int  # 0 for the first publication, +1 per later one
    hours: NDArray[np.void]  # [channels, 24] of INDICATOR_HOUR
    meter_channels: list[str]  # the meter channels (xf/xp/xe quantities) among the channels
    meter_hours: NDArray[np.void]  # [meter_channels, 24] of METER_HOUR

    @property
    def key(self) -> str:
        return f"{self.source_id}/{self.day_iso}"

    @property
    def day_iso(self) -> str:
        return datetime.fromtimestamp(self.day_start_ns // 10**9, UTC).strftime("%Y-%m-%d")

    @property
    def arrays(self) -> dict[str, NDArray[Any]]:
        """The indicators' fields, each ``[channels, 24]`` (views)."""
        return {name: self.hours[name] for name in INDICATOR_HOUR.names or ()}

    @property
    def meters(self) -> dict[str, NDArray[Any]]:
        """The meters' fields, each ``[meter_channels, 24]`` (views)."""
        return {name: self.meter_hours[name] for name in METER_HOUR.names or ()}

    def to_bytes(self) -> bytes:
        head = {"entity_id": self.entity_id, "source_id": self.source_id, "day_start_ns": self.day_start_ns,
                "day": self.day_iso, "channels": self.channels, "closed": self.closed, "stale": self.stale,
                "revision": self.revision, "meter_channels": self.meter_channels, "layout": 1}
        return b"".join([json.dumps(head, separators=(",", ":")).encode(), b"\n",
                         np.ascontiguousarray(self.hours, INDICATOR_HOUR).tobytes(),
                         np.ascontiguousarray(self.meter_hours, METER_HOUR).tobytes()])

    @classmethod
    def from_bytes(cls, data: bytes) -> IndicatorDay:
        """Decode a record; anything else is a ValueError that says what is wrong."""
        try:
            cut = data.index(b"\n")
            head = json.loads(data[:cut])
            return cls._decode(data, cut, head)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an indicator day record: header field {exc} missing or of the wrong type") from None
        except ValueError as exc:
            raise ValueError(f"not an indicator day record: {exc}") from None

    @classmethod
    def _decode(cls, data: bytes, cut: int, head: dict[str, Any]) -> IndicatorDay:
        if head.get("layout") != 1:
            raise ValueError(f"indicator day {head.get('source_id')}/{head.get('day')}: unknown layout "
                             f"{head.get('layout')!r} (this reader knows 1)")
        n, m = len(head["channels"]), len(head["meter_channels"])
        if len(data) - cut - 1 != 24 * (n * INDICATOR_HOUR.itemsize + m * METER_HOUR.itemsize):
            raise ValueError(f"indicator day {head['source_id']}/{head.get('day')}: {len(data) - cut - 1} bytes of "
                             f"hours, not the {24 * (n * INDICATOR_HOUR.itemsize + m * METER_HOUR.itemsize)} its "
                             f"{n} channel(s) and {m} meter(s) take")
        hours = np.frombuffer(data, INDICATOR_HOUR, n * 24, cut + 1).reshape(n, 24)
        meter_hours = np.frombuffer(data, METER_HOUR, m * 24, cut + 1 + n * 24 * INDICATOR_HOUR.itemsize)
        return cls(head["entity_id"], head["source_id"], int(head["day_start_ns"]), list(head["channels"]),
                   int(head["closed"]), int(head["stale"]), int(head["revision"]), hours, list(head["meter_channels"]),
                   meter_hours.reshape(m, 24))
