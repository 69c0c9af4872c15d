"""A simulated CEMS datalogger (数采仪): the generator's 1 Hz series as HJ 212 uploads, pushed over TCP to one or
more upper platforms, each upload re-sent until its data answer comes back.

The uploads (pure, vectorised over the series):

* 2051 minute data: per channel the minute's flag and the mean, min and max of the samples carrying it. The flag
  follows HJ 212-2017 Appendix C (HJ212-AC): N when more than 75 % of the minute's samples are N, otherwise the most
  frequent other flag (C in a calibration, B in a communication loss, F while stopped), a choice of this simulator:
  real dataloggers write D or the instrument's own state there. An F minute keeps the values recorded under F (the
  process evidence of a stop, HJ212-T8-F); a B minute has none. Values are rounded to ``decimals`` places
  per factor, as the datalogger's data types (HJ 212-2017 Table B.2, e.g. N3.1 for O2) make them.
* 2011 real-time data every ``interval_s``: the sample at that second and its flag.
* 2061 hourly data: the mean of the valid minute means (at least 45, HJ212-D24), flagged like a minute.

:class:`SimulatedDatalogger` sends a list of uploads to one address in order, like a datalogger working off its
buffer: each packet with the ack bit, then waits ``overtime_s`` for the 9014 with the same QN, re-sends up to
``recount`` times, reconnects (and starts again from the first unacknowledged upload) when the link is down. Several
instances, one per upstream, is how a datalogger feeds several platforms at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from schemas.hj212 import (
    CHINA_TZ,
    DataRecord,
    FrameSplitter,
    Hj212Error,
    Version,
    build_data_upload,
    build_response,
    format_qn,
    parse_frame,
)
from schemas.quantities import Flag

from .generate import CHANNELS

__all__ = ["DECIMALS", "SimulatedDatalogger", "Upload", "hour_uploads", "minute_uploads", "realtime_uploads"]

#: Decimal places per factor code, after the data types of HJ 212-2017 Table B.2 (N3.1 -> 1...); CO2 in % with 3.
DECIMALS = {"a05001": 3, "a19001": 2, "a01014": 2, "a01012": 1, "a01013": 3, "a01011": 2, "a00000": 1}
_DEFAULT_DECIMALS = 3


@dataclass(frozen=True)
class Upload:
    cn: str
    data_time_ns: int
    records: tuple[DataRecord, ...]


def _codes(channels) -> dict[str, str]:
    return {ch: CHANNELS[ch][0] for ch in channels if ch in CHANNELS and not CHANNELS[ch][0].startswith("x")}


def _minute_stats(value: np.ndarray, flag: np.ndarray, per: int):
    """Per block of ``per`` samples: the block's flag (HJ212-AC), and the mean/min/max and count of the samples that
    carry it with a value (the N samples of a normal minute; the recorded values of an F or C minute)."""
    n = value.size // per
    v, f = value[: n * per].reshape(n, per), flag[: n * per].reshape(n, per)
    per_flag = np.stack([(f == k).sum(axis=1) for k in range(len(Flag))], axis=1)
    others = per_flag.copy()
    others[:, Flag.N] = -1
    block_flag = np.where(per_flag[:, Flag.N] > 0.75 * per, Flag.N, others.argmax(axis=1)).astype(np.uint8)
    use = (f == block_flag[:, None]) & np.isfinite(v)
    count = use.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, np.where(use, v, 0.0).sum(axis=1) / np.maximum(count, 1), np.nan)
    lo = np.where(use, v, np.inf).min(axis=1)
    hi = np.where(use, v, -np.inf).max(axis=1)
    return mean, lo, hi, count, block_flag


def minute_uploads(readings: dict, start_ns: int, *, channels=None, decimals: dict | None = None,
                   min_interval_min: int = 1) -> list[Upload]:
    """2051 uploads of 1 Hz ``readings`` (channel -> (value, flag), from ``start_ns``, a minute boundary)."""
    decimals = {**DECIMALS, **(decimals or {})}
    codes = _codes(channels or readings)
    per = 60 * min_interval_min
    stats = {ch: _minute_stats(*readings[ch], per) for ch in codes}
    n = min(s[0].size for s in stats.values())
    out = []
    for i in range(n):  # one upload per minute: a loop over messages, not samples
        recs = []
        for ch, code in codes.items():
            mean, lo, hi, count, f = (x[i] for x in stats[ch])
            d = decimals.get(code, _DEFAULT_DECIMALS)
            ok = count > 0
            recs.append(DataRecord(code, min=round(float(lo), d) if ok else None, avg=round(float(mean), d) if ok else None,
                                   max=round(float(hi), d) if ok else None, flag=Flag(int(f))))
        out.append(Upload("2051", start_ns + i * per * 10**9, tuple(recs)))
    return out


def realtime_uploads(readings: dict, start_ns: int, interval_s: int, *, channels=None,
                     decimals: dict | None = None) -> list[Upload]:
    """2011 uploads: the sample every ``interval_s`` seconds."""
    decimals = {**DECIMALS, **(decimals or {})}
    codes = _codes(channels or readings)
    n = min(readings[ch][0].size for ch in codes)
    out = []
    for i in range(0, n, interval_s):
        recs = []
        for ch, code in codes.items():
            v, f = readings[ch][0][i], readings[ch][1][i]
            recs.append(DataRecord(code, rtd=None if not np.isfinite(v) else round(float(v), decimals.get(code, 3)),
                                   flag=Flag(int(f))))
        out.append(Upload("2011", start_ns + i * 10**9, tuple(recs)))
    return out


def hour_uploads(readings: dict, start_ns: int, *, channels=None, decimals: dict | None = None) -> list[Upload]:
    """2061 uploads: the mean of the valid minute means, at least 45 (HJ212-D24); flagged by HJ212-AC."""
    decimals = {**DECIMALS, **(decimals or {})}
    codes = _codes(channels or readings)
    minutes = {ch: _minute_stats(*readings[ch], 60) for ch in codes}
    n = min(m[0].size for m in minutes.values()) // 60
    out = []
    for h in range(n):
        recs = []
        for ch, code in codes.items():
            mean, _, _, count, f = (x[h * 60:(h + 1) * 60] for x in minutes[ch])
            valid = (f == Flag.N) & (count >= 12)
            d = decimals.get(code, _DEFAULT_DECIMALS)
            ok = valid.sum() >= 45
            hflag = Flag.N if (f == Flag.N).sum() > 45 else Flag.D
            recs.append(DataRecord(code, min=round(float(mean[valid].min()), d) if ok else None,
                                   avg=round(float(mean[valid].mean()), d) if ok else None,
                                   max=round(float(mean[valid].max()), d) if ok else None, flag=hflag))
        out.append(Upload("2061", start_ns + h * 3_600 * 10**9, tuple(recs)))
    return out


@dataclass
class SimulatedDatalogger:
    """Send uploads to one upper platform, each until acknowledged. ``stats`` counts what happened."""

    host: str
    port: int
    mn: str
    password: str
    st: str = "31"
    version: Version = Version.HJ212_2017
    overtime_s: float = 2.0
    recount: int = 3
    tz: object = CHINA_TZ
    stats: dict = field(default_factory=lambda: {"sent": 0, "resent": 0, "acked": 0, "connects": 0, "commands": 0})

    def frames(self, up: Upload, qn: str) -> list[bytes]:
        return build_data_upload(up.cn, up.records, data_time=datetime.fromtimestamp(up.data_time_ns / 1e9, UTC),
                                 st=self.st, pw=self.password, mn=self.mn, qn=qn, version=self.version, tz=self.tz)

    async def send(self, uploads: list[Upload], *, give_up_s: float = 60.0, qn_base_ns: int | None = None) -> int:
        """Send every upload in order, re-sending and reconnecting as needed; return how many were acknowledged.
        Stops early (what is left stays unsent) after ``give_up_s`` without progress."""
        base = qn_base_ns if qn_base_ns is not None else uploads[0].data_time_ns if uploads else 0
        built: dict[int, list[bytes]] = {}  # built when first sent; one QN per upload, kept across re-sends

        def frames_of(i: int) -> list[bytes]:
            if i not in built:
                built.clear()
                built[i] = self.frames(uploads[i], format_qn(datetime.fromtimestamp((base + i * 10**6) / 1e9,
                                                                                    UTC), self.tz))
            return built[i]

        done, stalled_since = 0, asyncio.get_running_loop().time()
        while done < len(uploads):
            if asyncio.get_running_loop().time() - stalled_since > give_up_s:
                break
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.overtime_s)
            except (OSError, TimeoutError):
                await asyncio.sleep(0.2)
                continue
            self.stats["connects"] += 1
            link = _Link(reader, writer, self)
            try:
                while done < len(uploads):
                    for raw in frames_of(done):
                        if not await link.send(raw):
                            raise ConnectionError("no answer")
                    done += 1
                    self.stats["acked"] += 1
                    stalled_since = asyncio.get_running_loop().time()
            except (ConnectionError, OSError):
                pass
            finally:
                link.close()
        return done


class _Link:
    """One connection: send a packet, wait for its 9014 (answering the platform's commands meanwhile)."""

    def __init__(self, reader, writer, owner: SimulatedDatalogger) -> None:
        self.reader, self.writer, self.owner = reader, writer, owner
        self.splitter = FrameSplitter()
        self.acked: set[str] = set()

    async def send(self, raw: bytes) -> bool:
        qn = raw[raw.find(b"QN=") + 3: raw.find(b";", raw.find(b"QN="))].decode()
        o = self.owner
        for attempt in range(o.recount + 1):
            self.writer.write(raw)
            await self.writer.drain()
            o.stats["sent"] += 1
            o.stats["resent"] += attempt > 0
            deadline = asyncio.get_running_loop().time() + o.overtime_s
            while qn not in self.acked:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    data = await asyncio.wait_for(self.reader.read(65_536), left)
                except TimeoutError:
                    break
                if not data:
                    raise ConnectionError("closed by the platform")
                for frame_raw in self.splitter.feed(data):
                    self._incoming(frame_raw)
            if qn in self.acked:
                return True
        return False

    def _incoming(self, raw: bytes) -> None:
        try:
            f = parse_frame(raw)
        except Hj212Error:
            return
        if f.cn == "9014" and f.qn:
            self.acked.add(f.qn)
        elif f.cn not in ("9011", "9012", "9013") and f.qn:  # a command (1012 time...): accepted, as loggers do
            o = self.owner
            o.stats["commands"] += 1
            self.writer.write(build_response("9011", qn=f.qn, pw=o.password, mn=o.mn, result=1))
            self.writer.write(build_response("9012", qn=f.qn, pw=o.password, mn=o.mn, result=1))

    def close(self) -> None:
        self.writer.close()
