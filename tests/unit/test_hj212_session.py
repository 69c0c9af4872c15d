"""The receivers' shared core (schemas/hj212/session.py) and the upload -> batch conversion (readings.py):
frames in, events out, with hand-written frames and hand-computed expectations."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from schemas.hj212 import (
    DataRecord,
    SourceMap,
    build_data_upload,
    build_frame,
    build_heartbeat,
    parse_frame,
)
from schemas.hj212.session import (
    Dedup,
    ReceiverSession,
    Refused,
    Registration,
    Reply,
    Seen,
    Upload,
)
from schemas.quantities import Flag
from schemas.site import EmissionSource

MN = "010000A8900016F000169DC0"
PW = "123456"
T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)  # 08:00 local (UTC+8)
T0_NS = int(T0.timestamp()) * 10**9


def stack(**hj212) -> EmissionSource:
    return EmissionSource.model_validate({
        "id": "kiln1", "name": "kiln 1", "duct_area_m2": 12.0, "velocity_field_coefficient": 1.0,
        "ambient_pressure": {"kpa": 101.0},
        "channels": [{"id": "co2", "quantity": "a05001", "unit": "%", "basis": "dry"},
                     {"id": "o2", "quantity": "a19001", "unit": "%", "basis": "dry"},
                     {"id": "moisture", "quantity": "a01014", "unit": "%"},
                     {"id": "temp", "quantity": "a01012", "unit": "degC"},
                     {"id": "pstatic", "quantity": "a01013", "unit": "kPa"},
                     {"id": "velocity", "quantity": "a01011", "unit": "m/s"}],
        "hj212": {"mn": MN, **hj212}})


def registration(**hj212) -> Registration:
    return Registration(SourceMap.of(stack(**hj212)), PW)


def session(reg: Registration | None = None, **kw) -> ReceiverSession:
    reg = reg or registration()
    return ReceiverSession(lambda mn: reg if mn == reg.mn else None, **kw)


def minute_frame(qn="20260301080100000", pw=PW, mn=MN, co2=10.5, flag=Flag.N) -> bytes:
    recs = [DataRecord("a05001", min=10.0, avg=co2, max=11.0, flag=flag), DataRecord("a19001", avg=8.25, flag=Flag.N),
            DataRecord("a34013", avg=3.0, flag=Flag.N)]  # particulate: the source has no such channel
    (raw,) = build_data_upload("2051", recs, data_time=T0, st="31", pw=pw, mn=mn, qn=qn)
    return raw


def test_a_minute_upload_becomes_columns_with_its_period_and_a_data_answer():
    s = session()
    (ev,) = s.feed(minute_frame(), 0.0)
    assert isinstance(ev, Upload) and not ev.duplicate
    c = ev.converted
    assert c.period_s == 60 and c.source_id == "kiln1"
    assert c.channel.tolist() == [0, 1]  # co2 is channel 0, o2 channel 1 of the site file
    assert c.value.tolist() == [10.5, 8.25] and c.flag.tolist() == [Flag.N, Flag.N]
    assert c.ts_ns.tolist() == [T0_NS, T0_NS]  # DataTime 20260301080000 local = 2026-03-01T00:00Z, interval start
    assert c.unmapped == ("a34013",)
    ack = parse_frame(ev.ack, strict=True)
    assert (ack.cn, ack.st, ack.qn, ack.flag, ack.mn) == ("9014", "91", "20260301080100000", 4, MN)
    assert ev.converted.batch("gw-1", 7).period_s == 60


def test_a_retransmission_with_another_qn_is_acknowledged_but_flagged_duplicate_once_stored():
    dedup = Dedup()
    s = session(dedup=dedup)
    (first,) = s.feed(minute_frame(), 0.0)
    (again,) = s.feed(minute_frame(), 1.0)
    assert not again.duplicate  # not stored yet: a receiver that failed to store must store it
    s.stored(first)
    other = session(dedup=dedup)  # a new connection after a reconnect, same receiver
    (resent,) = other.feed(minute_frame(qn="20260301080500000"), 2.0)  # same data, new QN
    assert resent.duplicate and resent.ack is not None
    (changed,) = other.feed(minute_frame(co2=10.6), 3.0)
    assert not changed.duplicate  # other content: new data


def test_crc_failure_unknown_mn_and_bad_password_are_refused_and_never_answered():
    good = minute_frame()
    bad_crc = good[:-6] + (b"0000" if good[-6:-2] != b"0000" else b"FFFF") + b"\r\n"
    s = session()
    evs = s.feed(bad_crc + minute_frame(mn="010000A8900016F000169DC1") + minute_frame(pw="654321"), 0.0)
    assert [(type(e), e.reason) for e in evs] == [(Refused, "crc"), (Refused, "unknown_mn"), (Refused, "bad_password")]
    assert evs[0].raw == bad_crc and evs[2].mn == MN


def test_split_packets_are_answered_one_by_one_and_stored_as_one_message():
    recs = [DataRecord(f"z9{k}", avg=float(k)) for k in range(1000, 1100)]  # unmapped codes: only the split counts
    recs[0] = DataRecord("a05001", avg=9.5, flag=Flag.N)
    packets = build_data_upload("2051", recs, data_time=T0, st="31", pw=PW, mn=MN, qn="20260301080100000")
    assert len(packets) > 2
    s = session()
    events = [e for p in packets for e in s.feed(p, 0.0)]
    replies, uploads = events[:-1], events[-1:]
    assert all(isinstance(e, Reply) and parse_frame(e.raw).cn == "9014" for e in replies)
    assert len(replies) == len(packets) - 1
    (up,) = uploads
    assert isinstance(up, Upload) and up.converted.value.tolist() == [9.5] and len(up.message.parts) == len(packets)


def test_heartbeat_and_time_request_are_answered():
    clock = datetime(2026, 3, 1, 1, 2, 3, tzinfo=UTC)
    s = session(clock=lambda: clock)
    hb = build_heartbeat(st="31", pw=PW, mn=MN, qn="20260301090000000", ack=True)
    req = build_frame(st="31", cn="1013", pw=PW, mn=MN, qn="20260301090000001", flag=5, cp="PolId=a05001")
    evs = s.feed(hb + req, 0.0)
    assert [type(e) for e in evs] == [Seen, Reply, Seen, Reply]
    assert parse_frame(evs[1].raw).cn == "9013"
    t = parse_frame(evs[3].raw, strict=True)
    assert t.cn == "1012" and t.data.params["SystemTime"] == clock and t.data.params["PolId"] == "a05001"
    assert b"SystemTime=20260301090203" in evs[3].raw  # 01:02:03Z is 09:02:03 local


def test_a_2005_frame_is_read_with_its_old_codes_and_flags():
    # HJ/T 212-2005 style: no QN, no Flag, old codes 30 (CO2) and S01 (O2), P (power failure) read as D.
    cp = "DataTime=20260301080000;30-Rtd=10.25,30-Flag=N;S01-Rtd=8.5,S01-Flag=P"
    raw = build_frame(st="31", cn="2011", pw=PW, mn=MN, qn=None, flag=None, cp=cp)  # type: ignore[arg-type]
    (ev,) = session().feed(raw, 0.0)
    assert ev.ack is None and ev.converted.period_s == 0
    assert ev.converted.value.tolist() == [10.25, 8.5] and ev.converted.flag.tolist() == [Flag.N, Flag.D]


@pytest.mark.parametrize(("unflagged", "expected"), [("invalid", Flag.D), ("valid", Flag.N)])
def test_values_without_a_flag_follow_the_site_policy(unflagged, expected):
    (raw,) = build_data_upload("2011", [DataRecord("a05001", rtd=10.0)], data_time=T0, st="31", pw=PW, mn=MN,
                               qn="20260301080000000")
    (ev,) = session(registration(unflagged=unflagged)).feed(raw, 0.0)
    assert ev.converted.flag.tolist() == [expected]


def test_a_normal_flag_without_a_value_is_not_a_normal_reading():
    (raw,) = build_data_upload("2011", [DataRecord("a05001", flag=Flag.N)], data_time=T0, st="31", pw=PW, mn=MN,
                               qn="20260301080000000")
    (ev,) = session().feed(raw, 0.0)
    assert np.isnan(ev.converted.value[0]) and ev.converted.flag.tolist() == [Flag.D] and ev.converted.repaired == 1


def test_periods_of_each_upload_and_min_interval():
    reg = registration(min_interval_min=10)
    for cn, period in (("2011", 0), ("2051", 600), ("2061", 3600), ("2031", 86_400)):
        (raw,) = build_data_upload(cn, [DataRecord("a05001", rtd=1.0, avg=2.0, flag=Flag.N)], data_time=T0,
                                   st="31", pw=PW, mn=MN, qn="20260301080000000")
        (ev,) = session(reg).feed(raw, 0.0)
        assert ev.converted.period_s == period
        assert ev.converted.value.tolist() == [1.0 if cn == "2011" else 2.0]  # Rtd for 2011, else Avg


def test_a_time_outside_what_a_batch_holds_is_refused():
    raw = build_frame(st="31", cn="2011", pw=PW, mn=MN, qn="20260301080000000", flag=5,
                      cp="DataTime=19990101000000;a05001-Rtd=1.0,a05001-Flag=N")
    (ev,) = session().feed(raw, 0.0)
    assert isinstance(ev, Refused) and ev.reason == "bad_time"


# --- fuzz: the receivers' entry point takes any bytes ----------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_GOOD = [minute_frame(qn=f"2026030108010000{i}") for i in range(3)]


@st.composite
def streams(draw):
    parts = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            parts.append(draw(st.binary(max_size=400)))
        elif kind == 1:
            raw = bytearray(draw(st.sampled_from(_GOOD)))
            for _ in range(draw(st.integers(1, 5))):
                raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
            parts.append(bytes(raw))
        elif kind == 2:
            parts.append(draw(st.sampled_from(_GOOD))[: draw(st.integers(0, 400))])
        else:
            parts.append(draw(st.sampled_from(_GOOD)))
    data = b"".join(parts)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_any_byte_stream_gives_events_never_an_exception_and_bounded_memory(chunks):
    s = session(max_frame_bytes=1024)
    for i, c in enumerate(chunks):
        for ev in s.feed(c, float(i)):
            assert isinstance(ev, Upload | Refused | Reply | Seen)
            if isinstance(ev, Upload):
                assert ev.converted.value.tolist() in ([10.5, 8.25], [10.5]) or len(ev.converted) <= 2
        assert s.splitter.pending_bytes <= 1024 + len(c)
    assert s.joiner.pending <= 64
