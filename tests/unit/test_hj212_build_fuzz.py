"""Build -> parse round trips (hypothesis), answers and heartbeat, and fuzzing of the parser."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.hj212 import (
    DataRecord,
    Hj212Error,
    Reassembler,
    Version,
    build_data_upload,
    build_frame,
    build_heartbeat,
    build_response,
    crc16_hex,
    format_qn,
    parse_frame,
)
from schemas.quantities import QUANTITIES, Flag

MN = "010000A8900016F000169DC0"
CODES = sorted(c for c in QUANTITIES if c[0] in "aw")
UTC = UTC

# Magnitudes a CEMS sends (an N-type field has no exponent: 1e-300 would be written with 300 zeros).
values = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
                   .filter(lambda v: v == 0 or abs(v) >= 1e-6))
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)) \
    .map(lambda t: t.replace(microsecond=0))


@st.composite
def record_lists(draw):
    codes = draw(st.lists(st.sampled_from(CODES), min_size=1, max_size=len(CODES), unique=True))
    out = []
    for code in codes:
        fields = {k: draw(values) for k in ("rtd", "min", "avg", "max", "cou", "zs_rtd", "zs_avg")}
        flag = draw(st.one_of(st.none(), st.sampled_from(list(Flag))))
        if all(v is None for v in fields.values()) and flag is None:
            flag = Flag.N
        out.append(DataRecord(code, flag=flag, flag_letter=None if flag is None else flag.name,
                              sample_time=draw(st.one_of(st.none(), times)), **fields))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record_lists(), times, st.sampled_from(["2011", "2051", "2061", "2031"]),
       st.sampled_from([Version.HJ212_2017, Version.HJ212_2025]), st.booleans(), st.integers(600, 1024))
def test_build_parse_round_trip(recs, t, cn, version, ack, limit):
    raws = build_data_upload(cn, recs, data_time=t, st="31", pw="123456", mn=MN, qn=format_qn(t), version=version,
                             ack=ack, max_segment_bytes=limit)
    frames = [parse_frame(r, strict=True) for r in raws]
    assert all(len(r) - 12 <= limit for r in raws)
    r = Reassembler()
    msgs = [m for f in frames if (m := r.push(f, 0.0)) is not None]
    assert len(msgs) == 1
    got = msgs[0].records
    assert [g.code for g in got] == [x.code for x in recs]
    for g, x in zip(got, recs, strict=False):
        for k in ("rtd", "min", "avg", "max", "cou", "zs_rtd", "zs_avg", "flag", "sample_time"):
            assert getattr(g, k) == getattr(x, k), k
        assert g.data_time == t
    f0 = frames[0]
    assert f0.version is version and f0.ack_requested == ack and f0.cn == cn and f0.qn == format_qn(t)
    assert f0.flag == (int(version) << 2 | (len(raws) > 1) << 1 | ack)


def test_numbers_are_written_without_exponent():
    (raw,) = build_data_upload("2011", [DataRecord("a21026", rtd=1e-7, zs_rtd=2.5e16)],
                               data_time=datetime(2026, 1, 1, tzinfo=UTC), st="31", pw="123456", mn=MN,
                               qn="20260101080000000")
    assert b"a21026-Rtd=0.0000001," in raw and b"a21026-ZsRtd=25000000000000000&&" in raw
    with pytest.raises(Hj212Error):
        build_data_upload("2011", [DataRecord("a21026", rtd=float("nan"))], data_time=datetime(2026, 1, 1, tzinfo=UTC),
                          st="31", pw="123456", mn=MN, qn="20260101080000000")


def test_builder_rejects_what_it_cannot_write():
    t = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        build_data_upload("9014", [], data_time=t, st="31", pw="123456", mn=MN, qn="20260101080000000")
    with pytest.raises(ValueError, match="naive"):
        build_data_upload("2011", [DataRecord("a21026", rtd=1.0)], data_time=datetime(2026, 1, 1), st="31",
                          pw="123456", mn=MN, qn="20260101080000000")
    with pytest.raises(Hj212Error) as e:
        build_data_upload("2011", [DataRecord("a21026")], data_time=t, st="31", pw="123456", mn=MN,
                          qn="20260101080000000")
    assert e.value.reason == "field"
    with pytest.raises(Hj212Error) as e:
        build_data_upload("2011", [DataRecord("a21026", rtd=1.0, extra={"Info": "x" * 400})], data_time=t,
                          st="31", pw="123456", mn=MN, qn="20260101080000000", max_segment_bytes=300)
    assert e.value.reason == "oversize"


def test_answers_and_heartbeat():
    qn = "20160801085857223"
    # HJ 212-2017 App. C data answer: ST=91;CN=9014;...;Flag=4;CP=&&&&
    a = parse_frame(build_response("9014", qn=qn, pw="123456", mn=MN), strict=True)
    assert (a.st, a.cn, a.qn, a.flag, a.cp) == ("91", "9014", qn, 4, "")
    b = parse_frame(build_response("9011", qn=qn, pw="123456", mn=MN, result=1), strict=True)
    assert b.data.params == {"QnRtn": 1}
    c = parse_frame(build_response("9012", qn=qn, pw="123456", mn=MN, result=100, version=Version.HJ212_2025),
                    strict=True)
    assert c.data.params == {"ExeRtn": 100} and c.flag == 8 and c.version is Version.HJ212_2025
    assert parse_frame(build_response("9013", qn=qn, pw="123456", mn=MN), strict=True).cn == "9013"
    hb = parse_frame(build_heartbeat(st="31", pw="123456", mn=MN, qn=qn), strict=True)
    assert (hb.cn, hb.flag, hb.version, hb.cp) == ("9015", 8, Version.HJ212_2025, "")
    for bad in ({"cn": "9011"}, {"cn": "9014", "result": 1}, {"cn": "2011"}):
        with pytest.raises(ValueError):
            build_response(qn=qn, pw="123456", mn=MN, **bad)


def test_format_qn_uses_the_site_zone():
    t = datetime(2016, 8, 1, 0, 58, 57, 223000, tzinfo=UTC)
    assert format_qn(t) == "20160801085857223"
    assert format_qn(t, timezone(timedelta(hours=0))) == "20160801005857223"


# --- fuzz ---------------------------------------------------------------------------------------------------------

SEED_FRAMES = [
    build_data_upload("2011", [DataRecord("a21026", rtd=18.5, zs_rtd=20.1, flag=Flag.N),
                               DataRecord("a19001", rtd=10.7, flag=Flag.C, eflag="E1",
                                          sample_time=datetime(2026, 1, 1, tzinfo=UTC))],
                      data_time=datetime(2026, 1, 1, tzinfo=UTC), st="31", pw="123456", mn=MN,
                      qn="20260101080000000")[0],
    b"##0382ST=31;CN=2011;PW=123456;MN=ZG130182201325;CP=&&DataTime=20160824050243000;S01-Rtd=10.2,S01-Flag=N;"
    b"S02-Rtd=8.93,S02-Flag=N;S03-Rtd=51.1,S03-Flag=N;S05-Rtd=0.0,S05-Flag=N;S07-Rtd=0.00,S07-Flag=N;"
    b"01-Rtd=3.56,01-Flag=N;01-ZsRtd=4.93,01-Flag=N;02-Rtd=13.00,02-Flag=N;02-ZsRtd=18.05,02-Flag=N;"
    b"03-Rtd=32.742,03-Flag=N;03-ZsRtd=45.474,03-Flag=N;B02-Rtd=38.57;S08-Rtd=395.507813,S08-Flag=N&&E8C1\r\n",
    build_frame(st="32", cn="3020", pw="123456", mn=MN, qn="20160801085857223", flag=7, pnum=2, pno=1,
                cp="PolId=w01018;InfoId=i11001;BeginTime=20160801010522,EndTime=20160801085857;CTime=1,CTime=2"),
]
ALPHABET = b"##&&;,=-.0123456789AZNDCazQNSTCPWMFlagRtdAvg\r\n \x00\xff{}"


def check(raw: bytes, strict: bool) -> None:
    try:
        f = parse_frame(raw, strict=strict)
    except Hj212Error as e:
        assert e.reason and e.detail
        return
    assert f.st and len(f.cn) == 4 and f.raw == raw  # a correct result is a complete Frame


@settings(max_examples=400, deadline=2000)  # generous: the machine is shared; a hang still fails
@given(st.binary(max_size=600), st.booleans())
def test_fuzz_random_bytes(raw, strict):
    check(raw, strict)
    check(b"##" + raw, strict)


def reframe(segment: bytes) -> bytes:
    """Give a mutated data segment a matching length and CRC so the parser reads its content."""
    return b"##%04d%s%s\r\n" % (len(segment), segment, crc16_hex(segment).encode())


@settings(max_examples=600, deadline=2000)
@given(st.sampled_from(SEED_FRAMES), st.lists(st.tuples(st.sampled_from(["flip", "ins", "del", "dup"]),
                                                        st.integers(0, 10_000), st.sampled_from(ALPHABET)),
                                              min_size=1, max_size=6),
       st.booleans(), st.booleans())
def test_fuzz_mutated_valid_frames(seed, edits, keep_crc, strict):
    seg = bytearray(seed[6:-6])
    for op, pos, ch in edits:
        i = pos % (len(seg) + 1)
        if op == "flip" and i < len(seg):
            seg[i] = ch
        elif op == "ins":
            seg.insert(i, ch)
        elif op == "del" and i < len(seg):
            del seg[i]
        elif op == "dup":
            seg[i:i] = seg[i:i + 8]
    raw = seed[:6] + bytes(seg) + seed[-6:] if keep_crc else reframe(bytes(seg))
    check(raw, strict)


def test_fuzz_many_random_mutations_quickly():
    # A plain seeded loop alongside hypothesis: 20,000 mutated frames, each refused or parsed, none hanging.
    rng = random.Random(212)
    for _ in range(20_000):
        seg = bytearray(rng.choice(SEED_FRAMES)[6:-6])
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(seg))
            seg[i] = rng.choice(ALPHABET)
        check(reframe(bytes(seg)), rng.random() < 0.5)


def test_fuzz_encrypted_frames_with_a_key():
    pytest.importorskip("cryptography", reason="SM4 comes from the cryptography package (the edge extra)")
    from tests.fixtures import A2_EX4_HEX, A2_KEY, encrypted_frame

    seed = encrypted_frame("0234", A2_EX4_HEX, "g=N", "B541")
    rng = random.Random(2025)
    for _ in range(3000):
        raw = bytearray(seed)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(6, len(raw) - 6)
            raw[i] = rng.choice(ALPHABET + b"x0F")
        try:
            parse_frame(bytes(raw), sm4_key=A2_KEY, strict=rng.random() < 0.5)
        except Hj212Error as e:
            assert e.reason
