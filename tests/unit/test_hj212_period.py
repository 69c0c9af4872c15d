"""HJ 212 period data end to end in pure code: the version-2 batch (period_s), the site file's hj212 block, the
``minutes_from_averages`` kernel and the processor's routing by period. Expected values are worked by hand."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batches import KeyRing
from schemas import envelope
from schemas.batch import ReadingBatch, decode_batch
from schemas.errors import BatchDecodeError, BatchError
from schemas.quantities import Flag
from schemas.site import Entity
from streams.core.processor import Message, PartitionProcessor, Registry
from streams.kernels import get_policy
from streams.kernels.aggregate import (
    HOUR_NS,
    MINUTE_NS,
    hours_from_minutes,
    minutes_from_averages,
)

H0 = 1_772_323_200 * 10**9  # 2026-03-01T00:00Z, an hour boundary
CN = get_policy("cn-hj75")
CHANNELS = [("co2", "a05001", "%"), ("o2", "a19001", "%")]


def batch(period_s=60, seq=0, n=2, agent="gw", source="kiln1", ts=None, value=None, flag=None, channel=None):
    ts = np.full(n, H0) if ts is None else ts
    return ReadingBatch.from_columns(agent_id=agent, source_id=source, seq=seq, channels=CHANNELS, ts_ns=ts,
                                     channel=np.arange(n) % 2 if channel is None else channel,
                                     value=np.full(n, 10.5) if value is None else value,
                                     flag=np.zeros(n, np.uint8) if flag is None else flag, period_s=period_s)


# --- the batch ---------------------------------------------------------------------------------------------------

def test_a_period_batch_is_version_2_and_round_trips():
    b = batch(60)
    data = b.encode()
    assert struct.unpack_from("<H", data, 4) == (2,)
    d = decode_batch(data)
    assert d.version == 2 and d.period_s == 60 and d.equals(b)
    # The metadata holds period_s (u32) right after the source id: agent "gw" (2+2 bytes), source "kiln1" (2+5).
    assert struct.unpack_from("<I", data, 24 + 4 + 7) == (60,)


def test_samples_stay_version_1_byte_for_byte():
    b = batch(0)
    data = b.encode()
    assert struct.unpack_from("<H", data, 4) == (1,) and decode_batch(data).period_s == 0
    assert b"\x3c\x00\x00\x00" not in data[24:48]  # no period field


@pytest.mark.parametrize("bad", [-1, 86_401, 1.5, True, "60"])
def test_a_bad_period_is_refused(bad):
    with pytest.raises(BatchError, match="period_s"):
        batch(bad)


def test_a_version_2_batch_with_period_0_is_undecodable():
    data = bytearray(batch(60).encode())
    struct.pack_into("<I", data, 24 + 4 + 7, 0)
    import zlib

    struct.pack_into("<I", data, len(data) - 4, zlib.crc32(bytes(data[:-4])))
    with pytest.raises(BatchDecodeError, match="period_s"):
        decode_batch(bytes(data))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 86_400), st.integers(0, 50))
def test_any_period_round_trips(period, n):
    b = batch(period, n=n, ts=np.full(n, H0, dtype=np.int64), value=np.linspace(0, 1, n))
    d = decode_batch(b.encode())
    assert d.equals(b) and d.version == (2 if period else 1)


# --- the site file -------------------------------------------------------------------------------------------------

def source(**hj212):
    return {"id": "kiln1", "name": "k", "duct_area_m2": 10.0,
            "channels": [{"id": "co2", "quantity": "a05001", "unit": "%", "basis": "dry"},
                         {"id": "flow", "quantity": "a00000", "unit": "m3/h", "basis": "standard_dry"},
                         {"id": "o2", "quantity": "a19001", "unit": "%", "basis": "dry"}],
            **({"hj212": hj212} if hj212 else {})}


def entity(*sources) -> Entity:
    return Entity.model_validate({"id": "e", "name": "e", "sector": "cement", "sources": list(sources)})


def test_the_hj212_block_maps_codes_and_says_what_feeds_the_figures():
    e = entity(source(mn="LD130133000015", factors={"g13001": "flow"}))
    link = e.sources[0].hj212
    assert link.figures == "minute" and link.period_s == 60
    assert link.channel_of_factor(e.sources[0]) == {"g13001": "flow", "a05001": "co2", "a19001": "o2"}
    assert entity(source(mn="X1", figures="realtime")).sources[0].hj212.period_s == 0
    assert entity(source(mn="X1", min_interval_min=10)).sources[0].hj212.period_s == 600


@pytest.mark.parametrize(("hj212", "message"), [
    ({"mn": "X1", "factors": {"a05001": "nope"}}, "does not have"),
    ({"mn": "X1", "factors": {"g1": "co2", "g2": "co2"}}, "from two codes"),
    ({"mn": "X1", "min_interval_min": 7}, "MinInterval 7"),
    ({"mn": "X;1"}, "pattern"),
    ({"mn": "X1", "factors": {"a-1": "co2"}}, "letters and digits"),
])
def test_the_hj212_block_refuses(hj212, message):
    with pytest.raises(Exception, match=message):
        entity(source(**hj212))


def test_one_mn_one_source():
    two = dict(source(mn="X1"), id="kiln2")
    with pytest.raises(Exception, match="MN 'X1' is given to sources"):
        entity(source(mn="X1"), two)


# --- the kernel --------------------------------------------------------------------------------------------------

def test_minute_means_are_closed_minutes_that_make_hours():
    # 50 minutes at 10.0 (N), 5 in calibration (C, 20.0), 5 with a value out of the plausible range (N, 1e12):
    # valid minutes = 50 (the C ones are not valid; the huge ones become T); hour mean = 10.0; label N since
    # 50 of 60 minutes are N after the T flags (50/60 = 83 % > 75 %).
    n = 60
    start = H0 + np.arange(n, dtype=np.int64) * MINUTE_NS
    value = np.r_[np.full(50, 10.0), np.full(5, 20.0), np.full(5, 1e12)]
    flag = np.r_[np.zeros(50), np.full(5, Flag.C), np.zeros(5)].astype(np.uint8)
    t = minutes_from_averages(np.zeros(n), start, 60, value, flag)
    assert len(t) == 60 and t.valid.sum() == 50 and (t.label[55:] == Flag.T).all()
    assert (t.valid_parts == t.valid).all()  # one part per minute: its mean
    h = hours_from_minutes(t).close(CN)
    assert h.valid.tolist() == [True] and h.valid_parts.tolist() == [50] and h.mean[0] == 10.0
    assert h.label.tolist() == [Flag.N]


def test_44_valid_minute_means_do_not_make_a_valid_hour():
    # HJ 212 App. D Eq. 24: k >= 45. 44 N minutes and 16 B minutes (no value): not valid, label D (44/60 < 75 %).
    flag = np.r_[np.zeros(44), np.full(16, Flag.B)].astype(np.uint8)
    value = np.r_[np.full(44, 9.0), np.full(16, np.nan)]
    t = minutes_from_averages(np.zeros(60), H0 + np.arange(60) * MINUTE_NS, 60, value, flag)
    h = hours_from_minutes(t).close(CN)
    assert h.valid.tolist() == [False] and h.valid_parts.tolist() == [44] and h.label.tolist() == [Flag.D]


def test_a_ten_minute_mean_stands_for_its_ten_minutes():
    # MinInterval 10: six means 1..6, the fifth in calibration. Valid minutes 5 x 10 = 50; hour mean
    # (1 + 2 + 3 + 4 + 6) / 5 = 3.2 (equal weights); label N (50/60 > 75 %).
    t = minutes_from_averages(np.zeros(6), H0 + np.arange(6) * 600 * 10**9, 600, np.arange(1.0, 7.0),
                              np.array([0, 0, 0, 0, Flag.C, 0], np.uint8))
    assert len(t) == 60 and t.valid.sum() == 50
    h = hours_from_minutes(t).close(CN)
    assert h.valid_parts.tolist() == [50] and abs(h.mean[0] - 3.2) < 1e-6 and h.label.tolist() == [Flag.N]


def test_values_recorded_under_f_are_process_evidence_not_valid_minutes():
    t = minutes_from_averages(np.zeros(2), H0 + np.arange(2) * MINUTE_NS, 60, np.array([0.4, np.nan]),
                              np.array([Flag.F, Flag.F], np.uint8))
    assert t.valid.tolist() == [False, False] and t.recorded_samples.tolist() == [1, 0]
    assert t.instrument_stopped.tolist() == [True, True]


@pytest.mark.parametrize(("period", "start", "message"), [
    (45, [H0], "cannot stand for minutes"), (600, [H0 + 60 * 10**9], "boundary"), (60, [H0, H0], "two means")])
def test_means_that_cannot_be_minutes_are_refused(period, start, message):
    n = len(start)
    with pytest.raises(ValueError, match=message):
        minutes_from_averages(np.zeros(n), np.array(start), period, np.ones(n), np.zeros(n, np.uint8))


# --- the processor -------------------------------------------------------------------------------------------------

KEY = b"k" * 32


def processor(figures: str = "minute") -> PartitionProcessor:
    src = {"id": "kiln1", "name": "k", "duct_area_m2": 10.0,
           "channels": [{"id": "co2", "quantity": "a05001", "unit": "%", "basis": "dry"},
                        {"id": "o2", "quantity": "a19001", "unit": "%", "basis": "dry"},
                        {"id": "flow", "quantity": "a00000", "unit": "m3/h", "basis": "standard_dry"}],
           "hj212": {"mn": "X1", "figures": figures}}
    return PartitionProcessor(Registry([entity(src)]), KeyRing(keys={"gw": KEY}))


def message(b: ReadingBatch, offset: int, at_ns: int) -> Message:
    data = b.encode()
    return Message(offset, data, envelope.headers(b.agent_id, b.seq, KEY, data), at_ns // 10**6)


CHANNELS3 = [*CHANNELS, ("flow", "a00000", "m3/h")]


def minute_batch(seq: int, minute: int, co2: float = 10.0, period: int = 60) -> ReadingBatch:
    return ReadingBatch.from_columns(agent_id="gw", source_id="kiln1", seq=seq, channels=CHANNELS3,
                                     ts_ns=np.full(3, H0 + minute * MINUTE_NS), channel=[0, 1, 2],
                                     value=[co2, 8.0, 300_000.0], flag=[0, 0, 0], period_s=period)


def test_minute_batches_feed_the_hours_and_repeats_count_once():
    p = processor()
    msgs = [message(minute_batch(i, i, co2=10.0 + i % 2), i, H0 + (i + 1) * MINUTE_NS) for i in range(60)]
    out = p.process(msgs[:30])
    assert out.accepted == 30 and out.readings == 90 and out.minutes is not None and len(out.minutes) == 90
    # the same minute 5 again in a new batch (a datalogger's retransmission that the receiver did not catch)
    again = p.process([message(minute_batch(60, 5, co2=10.0 + 5 % 2), 60, H0 + 31 * MINUTE_NS)])
    assert again.duplicates == 1 and again.dead_letters == [] and again.accepted == 1
    # minute 6 again with another value, together with minute 30: refused, nothing absorbed
    mixed = ReadingBatch.from_columns(agent_id="gw", source_id="kiln1", seq=61, channels=CHANNELS,
                                      ts_ns=[H0 + 6 * MINUTE_NS, H0 + 30 * MINUTE_NS], channel=[0, 0],
                                      value=[99.0, 99.0], flag=[0, 0], period_s=60)
    refused = p.process([message(mixed, 61, H0 + 31 * MINUTE_NS)])
    assert [r.reason for _, r in refused.dead_letters] == ["minute_closed"]
    out = p.process([message(minute_batch(62 + i - 30, i, co2=10.0 + i % 2), 62 + i - 30, H0 + (i + 1) * MINUTE_NS)
                     for i in range(30, 60)] + [message(batch(0, seq=92, n=0), 92, H0 + 2 * HOUR_NS)])
    (rec,) = [r for r in out.hourly if r.hour_start_ns == H0]
    # co2 alternates 10, 11 % over 60 minutes: hour mean 10.5 % = 105,000 umol/mol x 44.009/22.4 = 206,292.2 mg/m3
    # (HJ212-D20); flow 300,000 m3/h standard dry; mass 206,292.2 x 300,000 x 1e-6 = 61,887.7 kg (HJ212-D33).
    assert rec.measured and rec.readings == 180  # 60 minute means of each of the three channels
    assert abs(rec.co2_mg_m3 - 206_292.2) < 0.1 and abs(rec.co2_kg - 61_887.7) < 0.05


def test_batches_of_other_periods_are_accepted_but_not_fed():
    p = processor()
    hour = p.process([message(batch(3600, seq=0), 0, H0 + HOUR_NS)])
    samples = p.process([message(batch(0, seq=1), 1, H0 + HOUR_NS)])
    assert (hour.not_fed, hour.accepted, hour.readings) == (1, 1, 0)
    assert (samples.not_fed, samples.accepted, samples.readings) == (1, 1, 0)
    fed_by_samples = processor("realtime")
    out = fed_by_samples.process([message(batch(0, seq=0), 0, H0 + 60 * 10**9),
                                  message(batch(60, seq=1), 1, H0 + 60 * 10**9)])
    assert (out.not_fed, out.readings) == (1, 2)


def test_unaligned_or_doubled_means_are_dead_lettered():
    p = processor()
    unaligned = batch(60, seq=0, ts=np.full(2, H0 + 30 * 10**9))
    doubled = batch(60, seq=1, ts=np.full(2, H0), channel=np.zeros(2, dtype=int))
    out = p.process([message(unaligned, 0, H0 + HOUR_NS), message(doubled, 1, H0 + HOUR_NS)])
    assert [r.reason for _, r in out.dead_letters] == ["bad_period", "bad_period"]
