"""HJ 212 codec throughput: frames parsed per second on one core, against a per-character reference parser.

    python bench/bench_hj212.py [--frames 20000] [--reference-frames 2000] [--repeat 5]

Typical CEMS frames of 10 factors: a 2011 real-time frame (Rtd, ZsRtd for the pollutants, Flag) and a 2051 minute
frame (Min/Avg/Max, Cou for the pollutants, CO2 and flow, ZsAvg, Flag), written by the codec's own builder. The
reference parser, written here, is what a straightforward implementation does: a state machine reading one
character at a time, computing the CRC bit by bit as it goes (HJ 212-2017 Appendix A as printed) and collecting
header fields, factors and values. Both parse the same frames; their results are checked to be equal before
anything is timed. A third line runs :class:`FrameSplitter` + :func:`parse_frame` over the frames as one byte
stream cut into 1,460-byte TCP segments, i.e. what the receiver will do. Figures are wall-clock, best (and median)
of ``--repeat`` runs. The national picture is about 1,000 frames/s; the target is 10x that on one core.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from schemas.hj212 import DataRecord, FrameSplitter, build_data_upload, parse_frame  # noqa: E402
from schemas.quantities import Flag  # noqa: E402

MN = "010000A8900016F000169DC0"
T0 = datetime(2026, 3, 1, 0, 0, tzinfo=timezone.utc)
POLLUTANTS = ("a21026", "a21002", "a34013")
OTHERS = ("a05001", "a19001", "a01011", "a01012", "a01013", "a01014", "a00000")


def realtime(i: int) -> bytes:
    x = i % 97 / 10
    recs = [DataRecord(c, rtd=round(20 + k + x, 3), zs_rtd=round(25 + k + x, 3), flag=Flag.N)
            for k, c in enumerate(POLLUTANTS)]
    recs += [DataRecord(c, rtd=round(5 + k + x, 2), flag=Flag.C if (i + k) % 50 == 0 else Flag.N)
             for k, c in enumerate(OTHERS)]
    (raw,) = build_data_upload("2011", recs, data_time=T0, st="31", pw="123456", mn=MN,
                               qn=f"20260301080000{i % 1000:03d}")
    return raw


def minute(i: int) -> bytes:
    x = i % 89 / 10
    recs = [DataRecord(c, min=round(18 + k + x, 2), avg=round(20 + k + x, 2), max=round(23 + k + x, 2),
                       cou=round(0.5 + k + x, 3), zs_avg=round(25 + k + x, 2), flag=Flag.N)
            for k, c in enumerate(POLLUTANTS)]
    recs += [DataRecord(c, min=round(4 + k + x, 2), avg=round(5 + k + x, 2), max=round(6 + k + x, 2),
                        cou=round(300 + x, 1) if c in ("a05001", "a00000") else None, flag=Flag.N)
             for k, c in enumerate(OTHERS)]
    (raw,) = build_data_upload("2051", recs, data_time=T0, st="31", pw="123456", mn=MN,
                               qn=f"20260301080100{i % 1000:03d}")
    return raw


# --- the reference: one character at a time ---------------------------------------------------------------------

NUMERIC = ("Rtd", "Min", "Avg", "Max", "Cou", "ZsRtd", "ZsMin", "ZsAvg", "ZsMax")


def reference_parse(raw: bytes) -> dict:
    """Per-character state machine: ``##``, 4 length digits, the data segment (CRC updated per character, tokens
    cut per character), the 4 CRC digits, ``<CR><LF>``."""
    text = raw.decode("utf-8")
    state, sub = "H1", "KEY"
    digits, crc_text, key, value = "", "", "", ""
    remaining, crc = 0, 0xFFFF
    header: dict[str, str] = {}
    records: dict[str, dict[str, object]] = {}
    params: dict[str, str] = {}

    def store(k: str, v: str) -> None:
        code, dash, name = k.partition("-")
        if dash:
            records.setdefault(code, {})[name] = float(v) if name in NUMERIC else v
        else:
            params[k] = v

    for ch in text:
        if state == "H1" or state == "H2":
            if ch != "#":
                raise ValueError("header")
            state = "H2" if state == "H1" else "LEN"
        elif state == "LEN":
            if not "0" <= ch <= "9":
                raise ValueError("length")
            digits += ch
            if len(digits) == 4:
                remaining, state = int(digits), "SEG"
        elif state == "SEG":
            crc = (crc >> 8) ^ ord(ch)  # HJ 212-2017 Appendix A, one character at a time
            for _ in range(8):
                crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
            remaining -= 1
            if sub == "KEY":
                if ch == "=":
                    sub = "CPAMP1" if key == "CP" else "VALUE"
                else:
                    key += ch
            elif sub == "VALUE":
                if ch == ";":
                    header[key] = value
                    key, value, sub = "", "", "KEY"
                else:
                    value += ch
            elif sub in ("CPAMP1", "CPAMP2"):
                if ch != "&":
                    raise ValueError("CP")
                sub = "CPAMP2" if sub == "CPAMP1" else "CPKEY"
                key = ""
            elif sub == "CPKEY":
                if ch == "=":
                    sub = "CPVALUE"
                elif ch == "&":
                    sub = "CPEND"
                else:
                    key += ch
            elif sub == "CPVALUE":
                if ch in ";,&":
                    store(key, value)
                    key, value = "", ""
                    sub = "CPEND" if ch == "&" else "CPKEY"
                else:
                    value += ch
            elif sub == "CPEND":
                if ch != "&":
                    raise ValueError("CP end")
                sub = "DONE"
            else:
                raise ValueError("text after the data area")
            if remaining == 0:
                if sub != "DONE":
                    raise ValueError("length")
                state = "CRC"
        elif state == "CRC":
            crc_text += ch
            if len(crc_text) == 4:
                if int(crc_text, 16) != crc:
                    raise ValueError("crc")
                state = "CR"
        elif state == "CR":
            if ch != "\r":
                raise ValueError("trailer")
            state = "LF"
        elif state == "LF":
            if ch != "\n":
                raise ValueError("trailer")
            state = "END"
        else:
            raise ValueError("bytes after the trailer")
    if state != "END":
        raise ValueError("truncated")
    return {"header": header, "params": params, "records": records}


def codec_view(raw: bytes) -> dict:
    """The codec's result in the reference's shape, to check that both read the same values."""
    f = parse_frame(raw, strict=True)
    names = {"rtd": "Rtd", "min": "Min", "avg": "Avg", "max": "Max", "cou": "Cou", "zs_rtd": "ZsRtd",
             "zs_avg": "ZsAvg"}
    records = {}
    for r in f.records:
        d = {n: getattr(r, a) for a, n in names.items() if getattr(r, a) is not None}
        d["Flag"] = r.flag_letter
        records[r.code] = d
    header = {"QN": f.qn, "ST": f.st, "CN": f.cn, "PW": f.pw, "MN": f.mn, "Flag": str(f.flag)}
    return {"header": header, "data_time": f.data_time, "records": records}


def timed(fn, frames: list[bytes], repeat: int) -> tuple[float, float]:
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for raw in frames:
            fn(raw)
        rates.append(len(frames) / (time.perf_counter() - t0))
    return max(rates), statistics.median(rates)


def stream_rate(frames: list[bytes], repeat: int) -> tuple[float, float]:
    stream = b"".join(frames)
    chunks = [stream[i:i + 1460] for i in range(0, len(stream), 1460)]
    rates = []
    for _ in range(repeat):
        s = FrameSplitter()
        t0 = time.perf_counter()
        n = 0
        for c in chunks:
            for raw in s.feed(c):
                parse_frame(raw)
                n += 1
        rates.append(n / (time.perf_counter() - t0))
        assert n == len(frames)
    return max(rates), statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=20_000)
    ap.add_argument("--reference-frames", type=int, default=2_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}; {args.frames} frames per codec run, "
          f"{args.reference_frames} per reference run, best (median) of {args.repeat}")
    print(f"{'frames':<34}{'bytes':>6}{'codec frames/s':>22}{'reference frames/s':>24}{'ratio':>8}")
    for name, make in (("2011 real-time, 10 factors", realtime), ("2051 minute, 10 factors", minute)):
        frames = [make(i) for i in range(args.frames)]
        for raw in frames[:500]:  # both read the same values
            ref, got = reference_parse(raw), codec_view(raw)
            assert ref["header"] == got["header"], (ref["header"], got["header"])
            assert ref["records"] == got["records"], raw
            assert ref["params"]["DataTime"] == "20260301080000"
        best, med = timed(parse_frame, frames, args.repeat)
        rbest, rmed = timed(reference_parse, frames[:args.reference_frames], args.repeat)
        print(f"{name:<34}{len(frames[0]):>6}{best:>13,.0f} ({med:,.0f}){rbest:>15,.0f} ({rmed:,.0f})"
              f"{best / rbest:>7.1f}x")
    frames = [f(i) for i in range(args.frames // 2) for f in (realtime, minute)]
    best, med = stream_rate(frames, args.repeat)
    print(f"{'splitter + parse, 1460-byte reads':<34}{'':>6}{best:>13,.0f} ({med:,.0f})")
    print("target: 10,000 frames/s on one core (10x the national ~1,000 frames/s)")


if __name__ == "__main__":
    main()
