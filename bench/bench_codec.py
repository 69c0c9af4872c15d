"""Reading-batch codec throughput: the vectorised codec against a per-reading baseline, in one run.

    python bench/bench_codec.py [--readings 1000000] [--channels 8] [--repeat 5]
                                [--messages 2000] [--batch-s 5,30] [--only-messages]

The baseline encodes and decodes the same version-1 layout one reading at a time with ``struct``
(what a straightforward implementation does); its output is checked to be byte-identical, so the
two are doing the same work. It runs on a slice (``--baseline-readings``) because it is slow; rates
are per reading either way. Figures are wall-clock on one core.

Then the cost per *message* of ingest's checks, as the stream processor pays it: ``--messages`` signed
messages, each one agent's batch of ``--channels`` channels x ``batch_s`` seconds at 1 Hz, checked one by one
(:func:`ingest.batches.check_message`: signature, decode, column rules per batch) against the whole chunk at
once (:func:`ingest.batches.check_messages`: the column rules of all batches in one vectorised pass), with
the two results checked to be equal; and the same split for the decode alone. Best (and median) of ``--repeat``
runs, the two paths interleaved so that both see the same load on a shared machine.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import math
import platform
import statistics
import struct
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.batches import KeyRing, check_message, check_messages
from schemas.batch import _FIXED, ReadingBatch, _encode_meta, check_batch_columns, decode_batch, encode_batch
from schemas.quantities import FLAG_IS_VALID_CODE, Flag

T0 = 1_767_225_600 * 10**9


def make_batch(n: int, n_channels: int) -> ReadingBatch:
    rng = np.random.default_rng(1)
    flag = np.where(rng.random(n) < 0.02, Flag.C, Flag.N).astype(np.uint8)
    return ReadingBatch.from_columns(
        agent_id="gw-bench",
        source_id="stack-1",
        seq=1,
        channels=[(f"ch{i}", "a05001", "%") for i in range(n_channels)],
        ts_ns=T0 + np.arange(n, dtype=np.int64) * 10**9 // n_channels,
        channel=np.arange(n) % n_channels,
        value=rng.normal(10.0, 1.0, n),
        flag=flag,
    )


def baseline_encode(b: ReadingBatch) -> bytes:
    """Per-reading encoder of the same layout."""
    meta = _encode_meta(b)
    parts = [_FIXED.pack(b"CEMB", 1, 0, len(b), len(meta), b.seq), meta]
    ts, ch, val, fl = b.ts_ns.tolist(), b.channel.tolist(), b.value.tolist(), b.flag.tolist()
    parts += [struct.pack("<q", t) for t in ts]
    parts += [struct.pack("<d", v) for v in val]
    parts += [struct.pack("<H", c) for c in ch]
    parts += [struct.pack("<B", f) for f in fl]
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


def baseline_decode(data: bytes, n_channels: int) -> list[tuple]:
    """Per-reading decoder of the same layout, with the same per-reading checks."""
    _, _, _, n, meta_len, _ = _FIXED.unpack_from(data)
    if zlib.crc32(data[:-4]) != struct.unpack_from("<I", data, len(data) - 4)[0]:
        raise ValueError("checksum")
    off = _FIXED.size + meta_len
    rows = []
    for i in range(n):
        (t,) = struct.unpack_from("<q", data, off + 8 * i)
        (v,) = struct.unpack_from("<d", data, off + 8 * n + 8 * i)
        (c,) = struct.unpack_from("<H", data, off + 16 * n + 2 * i)
        f = data[off + 18 * n + i]
        if c >= n_channels or not FLAG_IS_VALID_CODE[f] or math.isinf(v) or (f == 0 and math.isnan(v)):
            raise ValueError(f"reading {i}")
        rows.append((t, c, v, f))
    return rows


def timed(fn, repeat: int) -> float:
    """Median wall time of ``repeat`` calls [s]."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def signed_messages(n_messages: int, n_channels: int, batch_s: int, key: bytes) -> list[tuple[bytes, dict]]:
    """One signed batch per agent (``n_channels`` x ``batch_s`` s at 1 Hz), with the uplink's headers."""
    rng = np.random.default_rng(2)
    ch = np.tile(np.arange(n_channels, dtype=np.uint16), batch_s)
    ts = np.repeat(T0 + np.arange(batch_s, dtype=np.int64) * 10**9, n_channels)
    out = []
    for a in range(n_messages):
        data = ReadingBatch.from_columns(
            agent_id=f"gw{a}", source_id=f"s{a}", seq=3,
            channels=[(f"ch{i}", "a05001", "%") for i in range(n_channels)],
            ts_ns=ts, channel=ch, value=rng.normal(10.0, 1.0, ch.size), flag=np.zeros(ch.size, np.uint8)).encode()
        out.append((data, {"cems-agent": f"gw{a}".encode(), "cems-seq": b"3",
                           "cems-sig": hmac.new(key, data, hashlib.sha256).digest()}))
    return out


def decode_chunk(values: list[bytes]) -> list[ReadingBatch]:
    """Decode without the per-batch column rules, then check them for the whole chunk (what check_messages does)."""
    bs = [decode_batch(v, check_columns=False) for v in values]
    assert not check_batch_columns(bs)
    return bs


def _accepted(results: Sequence[object]) -> list[ReadingBatch]:
    """The checked batches; none may have been rejected (the messages are made valid)."""
    batches = [r for r in results if isinstance(r, ReadingBatch)]
    assert len(batches) == len(results), "a valid message was rejected"
    return batches


def _paths(items: list[tuple[bytes, dict]], keys: KeyRing) -> dict[str, Callable[[], object]]:
    """The old path (one message at a time) and the new one (a chunk), to run interleaved: the same load for both."""
    values = [v for v, _ in items]
    return {
        "old": lambda: [check_message(v, h, keys) for v, h in items],
        "new": lambda: check_messages(items, keys),
        "decode_old": lambda: [decode_batch(v) for v in values],
        "decode_new": lambda: decode_chunk(values),
    }


def per_message(args) -> None:
    key = b"k" * 32
    print(f"per message: {args.messages:,} signed messages per chunk, one agent each, {args.channels} channels at "
          f"1 Hz; us per message, best of {args.repeat} interleaved runs (median in brackets)")
    print(f"{'batch':>20}{'check_message':>16}{'check_messages':>16}{'saved':>7}"
          f"{'decode_batch':>16}{'+chunk columns':>16}")
    for batch_s in (int(x) for x in args.batch_s.split(",")):
        items = signed_messages(args.messages, args.channels, batch_s, key)
        keys = KeyRing(keys={f"gw{a}": key for a in range(args.messages)})
        old = _accepted([check_message(v, h, keys) for v, h in items])
        new = _accepted(check_messages(items, keys))
        assert all(o.equals(n) for o, n in zip(old, new, strict=True)), "check_messages disagrees with check_message"
        runs = _paths(items, keys)
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeat):
            for k, fn in runs.items():
                times[k].append(timed(fn, 1) * 1e6 / args.messages)
        best = {k: min(v) for k, v in times.items()}
        med = {k: statistics.median(v) for k, v in times.items()}
        cell = {k: f"{best[k]:.1f} ({med[k]:.0f})" for k in runs}
        label = f"{batch_s} s = {batch_s * args.channels} readings"
        print(f"{label:>20}{cell['old']:>16}{cell['new']:>16}{best['old'] - best['new']:>7.1f}"
              f"{cell['decode_old']:>16}{cell['decode_new']:>16}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readings", type=int, default=1_000_000)
    ap.add_argument("--baseline-readings", type=int, default=100_000)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--messages", type=int, default=2000, help="Per-message part: messages per chunk.")
    ap.add_argument("--batch-s", default="5,30", help="Per-message part: seconds per batch, comma-separated.")
    ap.add_argument("--only-messages", action="store_true", help="Only the per-message part.")
    args = ap.parse_args()
    if args.only_messages:
        per_message(args)
        return

    big = make_batch(args.readings, args.channels)
    small = make_batch(args.baseline_readings, args.channels)
    raw, raw_small = encode_batch(big), encode_batch(small)
    assert baseline_encode(small) == raw_small, "baseline and codec disagree on the bytes"
    assert decode_batch(raw).equals(big)

    t_enc = timed(lambda: encode_batch(big), args.repeat)
    t_dec = timed(lambda: decode_batch(raw), args.repeat)
    t_benc = timed(lambda: baseline_encode(small), max(1, args.repeat // 2))
    t_bdec = timed(lambda: baseline_decode(raw_small, args.channels), max(1, args.repeat // 2))

    n, nb = args.readings, args.baseline_readings
    print(f"reading-batch codec v1 | Python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    print(f"batch: {n:,} readings, {args.channels} channels, {len(raw):,} bytes ({len(raw) / n:.2f} B/reading)")
    print(f"{'':10}{'vectorised':>16}{'per-reading':>16}{'speed-up':>10}")
    for name, t, tb in (("encode", t_enc, t_benc), ("decode", t_dec, t_bdec)):
        rate, brate = n / t, nb / tb
        print(f"{name:10}{rate / 1e6:>11.1f} M/s{brate / 1e6:>11.2f} M/s{rate / brate:>9.0f}x"
              f"   ({len(raw) / t / 1e9:.2f} GB/s; {t * 1e3:.1f} ms per {n:,})")
    print()
    per_message(args)


if __name__ == "__main__":
    main()
