"""Writing HJ 212 frames in 2017 or 2025 framing: data uploads (2011, 2051, 2061, 2031), answers (9011-9014) and
the 2025 heartbeat (9015). Every frame written here parses back in strict mode (tests check it)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, tzinfo
from decimal import Decimal

from .commands import DATA_UPLOADS
from .crc import crc16_hex
from .datarea import CHINA_TZ, DataRecord, Version
from .errors import Hj212Error
from .frame import MAX_SEGMENT_2017

__all__ = ["build_data_upload", "build_frame", "build_heartbeat", "build_response", "format_qn", "format_time",
           "make_flag"]

_FIELDS = (("rtd", "Rtd"), ("min", "Min"), ("avg", "Avg"), ("max", "Max"), ("cou", "Cou"), ("zs_rtd", "ZsRtd"),
           ("zs_min", "ZsMin"), ("zs_avg", "ZsAvg"), ("zs_max", "ZsMax"))


def make_flag(version: Version, *, ack: bool, split: bool = False) -> int:
    """The Flag value: version bits 2-7, packet bit 1, acknowledgement bit 0 (HJ212-FLAG, HJ212-2025-FLAG).

    2017: 4 (no ack), 5 (ack), 7 (split, ack); 2025: 8, 9, 11.
    """
    if version is Version.HJ212_2005:
        raise ValueError("frames are written in 2017 or 2025 framing only")
    return int(version) << 2 | split << 1 | ack


def _local(t: datetime, tz: tzinfo) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"{t!r} is naive: pass an aware datetime (HJ 212 times are written in the site's zone)")
    return t.astimezone(tz)


def format_time(t: datetime, tz: tzinfo = CHINA_TZ) -> str:
    """``YYYYMMDDhhmmss`` in the site's zone (DataTime, SampleTime...)."""
    return _local(t, tz).strftime("%Y%m%d%H%M%S")


def format_qn(t: datetime, tz: tzinfo = CHINA_TZ) -> str:
    """``YYYYMMDDhhmmsszzz`` in the site's zone: the request code identifying one exchange (HJ212-T3)."""
    local = _local(t, tz)
    return local.strftime("%Y%m%d%H%M%S") + f"{local.microsecond // 1000:03d}"


def _number(value: float | int | str, key: str) -> str:
    if isinstance(value, str):
        return value
    v = float(value)
    if not math.isfinite(v):
        raise Hj212Error("field", f"{key}: {value!r} cannot be written as an HJ 212 number")
    text = repr(v)
    if "e" in text or "E" in text:  # the N type has no exponent
        text = format(Decimal(text), "f")
    return text


def build_frame(*, st: str, cn: str, pw: str, mn: str, qn: str | None, flag: int, cp: str = "",
                pnum: int | None = None, pno: int | None = None, resend: bool = False) -> bytes:
    """``##`` + length + data segment + CRC + ``<CR><LF>`` around the header fields and data area ``cp``."""
    if qn is not None and pnum is None and pno is None and None not in (st, cn, pw, mn, flag):
        head = f"QN={qn};ST={st};CN={cn};PW={pw};MN={mn};Flag={flag};"  # every answer a receiver sends
    else:  # fields given as None are left out (a 2005 frame has no QN and no Flag)
        head = "".join(f"{k}={v};" for k, v in (("QN", qn), ("ST", st), ("CN", cn), ("PW", pw), ("MN", mn),
                                                ("Flag", flag), ("PNUM", pnum), ("PNO", pno)) if v is not None)
    if resend:
        head += "RF=1;"
    segment = f"{head}CP=&&{cp}&&".encode()
    if len(segment) > 9999:
        raise Hj212Error("oversize", f"data segment of {len(segment)} bytes exceeds the 4-digit length field")
    return b"##%04d%s%s\r\n" % (len(segment), segment, crc16_hex(segment).encode("ascii"))


def _record_group(r: DataRecord, tz: tzinfo) -> str:
    items = [f"{r.code}-{name}={_number(v, f'{r.code}-{name}')}" for attr, name in _FIELDS
             if (v := getattr(r, attr)) is not None]
    items += [f"{r.code}-{k}={v}" for k, v in r.extra.items()]
    letter = r.flag.name if r.flag is not None else r.flag_letter
    if letter is not None:
        items.append(f"{r.code}-Flag={letter}")
    if r.eflag is not None:
        items.append(f"{r.code}-EFlag={r.eflag}")
    if r.sample_time is not None:
        items.append(f"{r.code}-SampleTime={format_time(r.sample_time, tz)}")
    if not items:
        raise Hj212Error("field", f"record {r.code} has no value to send")
    return ",".join(items)


def build_data_upload(
    cn: str,
    records: Sequence[DataRecord],
    *,
    data_time: datetime,
    st: str,
    pw: str,
    mn: str,
    qn: str,
    version: Version = Version.HJ212_2017,
    ack: bool = True,
    resend: bool = False,
    tz: tzinfo = CHINA_TZ,
    max_segment_bytes: int = MAX_SEGMENT_2017,
) -> list[bytes]:
    """A data upload (2011 real-time, 2051 minute, 2061 hour, 2031 day) as one frame, or as split packets
    (PNUM/PNO, same QN, each with its own ``DataTime``) when one data segment would exceed ``max_segment_bytes``
    (1024: HJ 212-2017 Table 2; HJ 212-2025 splits above 1024 too).

    ``data_time`` is the acquisition instant for 2011 and the interval start for 2051/2061/2031 (HJ212-T4).
    """
    if cn not in DATA_UPLOADS:
        raise ValueError(f"CN={cn} is not a data upload ({sorted(DATA_UPLOADS)})")
    prefix = f"DataTime={format_time(data_time, tz)}"
    groups = [_record_group(r, tz) for r in records]
    parts: list[list[str]] = [[]]

    def size(part: list[str], packets: bool) -> int:
        cp = ";".join([prefix, *part])
        head = len(build_frame(st=st, cn=cn, pw=pw, mn=mn, qn=qn, flag=make_flag(version, ack=ack, split=packets),
                               cp="", pnum=999 if packets else None, pno=999 if packets else None,
                               resend=resend)) - 12
        return head + len(cp.encode("utf-8"))

    if size(groups, False) <= max_segment_bytes:
        parts = [groups]
    else:
        for g in groups:
            if size([g], True) > max_segment_bytes:
                raise Hj212Error("oversize", f"one record ({g[:40]}...) alone exceeds {max_segment_bytes} bytes")
            if parts[-1] and size([*parts[-1], g], True) > max_segment_bytes:
                parts.append([])
            parts[-1].append(g)
    split = len(parts) > 1
    flag = make_flag(version, ack=ack, split=split)
    return [build_frame(st=st, cn=cn, pw=pw, mn=mn, qn=qn, flag=flag, cp=";".join([prefix, *part]),
                        pnum=len(parts) if split else None, pno=i if split else None, resend=resend)
            for i, part in enumerate(parts, 1)]


def build_response(
    cn: str,
    *,
    qn: str,
    pw: str,
    mn: str,
    result: int | None = None,
    version: Version = Version.HJ212_2017,
) -> bytes:
    """An answer frame, ST=91, no acknowledgement requested, carrying the request's QN (HJ212-T9, App. C):
    9011 request answer (``result`` = QnRtn), 9012 execution result (``result`` = ExeRtn), 9013 notification
    answer and 9014 data answer (no result)."""
    if cn in ("9011", "9012"):
        if result is None:
            raise ValueError(f"CN={cn} needs a result ({'QnRtn' if cn == '9011' else 'ExeRtn'})")
        cp = f"{'QnRtn' if cn == '9011' else 'ExeRtn'}={result}"
    elif cn in ("9013", "9014"):
        if result is not None:
            raise ValueError(f"CN={cn} carries no result")
        cp = ""
    else:
        raise ValueError(f"CN={cn} is not an answer (9011, 9012, 9013, 9014)")
    return build_frame(st="91", cn=cn, pw=pw, mn=mn, qn=qn, flag=make_flag(version, ack=False), cp=cp)


def build_heartbeat(*, st: str, pw: str, mn: str, qn: str, ack: bool = False,
                    version: Version = Version.HJ212_2025) -> bytes:
    """The heartbeat (CN=9015, HJ 212-2025: it tells the platform the link is up; HJ212-2025-CN [S]), empty data
    area. Whether it asks for an answer is not confirmed; implementations differ (Flag 8 and 9 are both seen)."""
    return build_frame(st=st, cn="9015", pw=pw, mn=mn, qn=qn, flag=make_flag(version, ack=ack), cp="")


