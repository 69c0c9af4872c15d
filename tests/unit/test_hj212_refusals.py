"""Every refusal of the HJ 212 codec, with its reason; each reason of REASONS is raised at least once here."""

from __future__ import annotations

import pytest

from schemas.hj212 import REASONS, Hj212Error, build_frame, crc16_hex, parse_frame
from schemas.hj212.frame import Frame, Reassembler

SEG = ("QN=20160801085857223;ST=31;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&"
       "DataTime=20160801085857;a21026-Rtd=18.5,a21026-Flag=N&&")


def frame(segment: str, *, length: int | None = None, crc: str | None = None, trailer: bytes = b"\r\n") -> bytes:
    seg = segment.encode()
    n = len(seg) if length is None else length
    return b"##%04d%s%s%s" % (n, seg, (crc or crc16_hex(seg)).encode(), trailer)


def refuse(raw: bytes, reason: str, *, strict: bool = False, match: str = "") -> Hj212Error:
    with pytest.raises(Hj212Error) as e:
        parse_frame(raw, strict=strict)
    assert e.value.reason == reason, str(e.value)
    assert match in str(e.value)
    return e.value


def seg_with(old: str, new: str) -> str:
    assert old in SEG
    return SEG.replace(old, new)


def test_the_reference_frame_is_valid():
    assert parse_frame(frame(SEG), strict=True).records[0].rtd == 18.5


@pytest.mark.parametrize("strict", [False, True])
def test_bad_header(strict):
    refuse(b"#" + frame(SEG)[2:], "header", strict=strict)
    refuse(b"$$" + frame(SEG)[2:], "header", strict=strict, match="not '##'")
    refuse(b"", "header", strict=strict)


def test_bad_length():
    refuse(b"##00a7" + frame(SEG)[6:], "length", match="4-digit")
    refuse(b"##12", "length")
    n = len(SEG)
    e = refuse(frame(SEG, length=n + 1), "length", strict=True)
    assert f"says {n + 1}" in e.detail and f"holds {n}" in e.detail
    # Lenient mode lets the CRC decide: a miscounted length with a good CRC passes, with a note ...
    f = parse_frame(frame(SEG, length=n - 3))
    assert f.records[0].rtd == 18.5 and any("length field says" in x for x in f.notes)
    # ... and with a bad CRC it is refused for the CRC, the message naming both.
    e = refuse(frame(SEG, length=n - 3, crc="0000"), "crc")
    assert f"length field said {n - 3}" in e.detail


@pytest.mark.parametrize("strict", [False, True])
def test_bad_crc_stops_processing(strict):
    good = crc16_hex(SEG.encode())
    bad = f"{(int(good, 16) ^ 1):04X}"
    e = refuse(frame(SEG, crc=bad), "crc", strict=strict)
    assert bad in e.detail and good in e.detail
    refuse(frame(SEG, crc="12G4"), "crc", strict=strict, match="hex")
    # A content error behind a bad CRC is never reached: the CRC is checked first.
    broken = seg_with("CN=2011", "CN=20X1")
    refuse(frame(broken, crc=bad), "crc", strict=strict)


def test_lower_case_crc_is_strict_only_refusal():
    low = crc16_hex(SEG.encode()).lower()
    if low == low.upper():  # pragma: no cover - the reference CRC has letters
        pytest.skip("CRC without hex letters")
    refuse(frame(SEG, crc=low), "crc", strict=True, match="upper-case")
    assert "CRC written in lower-case hex" in parse_frame(frame(SEG, crc=low)).notes


def test_missing_trailer():
    refuse(frame(SEG, trailer=b""), "trailer", strict=True)
    refuse(frame(SEG, trailer=b"\n"), "trailer", strict=True)
    assert parse_frame(frame(SEG, trailer=b"\n")).records[0].rtd == 18.5
    # Junk after the CRC is no trailer: the CRC field then is not where it should be.
    refuse(frame(SEG, trailer=b"XY\r\n"), "crc")


def test_oversize():
    cp = ";".join(f"a{21000 + i}-Rtd={i}" for i in range(100))
    big = build_frame(st="31", cn="2011", pw="123456", mn="010000A8900016F000169DC0", qn="20160801085857223",
                      flag=4, cp=cp)
    assert int(big[2:6]) > 1024
    refuse(big, "oversize", strict=True, match="limit is 1024")
    assert len(parse_frame(big).records) == 100  # lenient mode: the 4-digit field's own limit, 9999
    refuse_limit = pytest.raises(Hj212Error)
    with refuse_limit as e:
        parse_frame(big, max_segment_bytes=int(big[2:6]) - 1)
    assert e.value.reason == "oversize"
    assert len(parse_frame(big, max_segment_bytes=int(big[2:6])).records) == 100  # the boundary itself passes


def test_bad_encoding():
    seg = SEG.encode().replace(b"N&&", b"\xff&&")
    raw = b"##%04d%s%s\r\n" % (len(seg), seg, crc16_hex(seg).encode())
    refuse(raw, "encoding", match="UTF-8")
    seg = SEG.replace("18.5", "18\t5").encode()
    raw = b"##%04d%s%s\r\n" % (len(seg), seg, crc16_hex(seg).encode())
    refuse(raw, "encoding", match="control character")


@pytest.mark.parametrize("old,new,strict,match", [
    ("CP=&&", "CQ=&&", False, "no 'CP=&&'"),
    ("N&&", "N&", False, "does not end with '&&'"),
    ("ST=31;", "", False, "lacks ST"),
    ("CN=2011", "CN=201", False, "4-digit command code"),
    ("QN=20160801085857223", "QN=20161301085857223", False, "QN"),
    ("DataTime=20160801085857", "DataTime=20160832085857", False, "valid date"),
    ("DataTime=20160801085857", "DataTime=2016080108585", False, "local time"),
    ("a21026-Rtd=18.5", "a21026-Rtd=18.5,a21026-Rtd=18.6", False, "given twice"),
    ("a21026-Rtd=18.5", "a21026-Rtd=18.5,a21026-Rtd=18.5", True, "given twice"),
    ("a21026-Rtd=18.5", "a21026-Rtd=1.8e1", True, "N type"),
    ("a21026-Rtd=18.5", "02-Rtd=18.5", True, "2005 factor code"),
    ("a21026-Rtd=18.5", "a21026-Rtd=18.5;02-Rtd=1", False, "two codes"),
    ("a21026-Rtd=18.5", "a21026Rtd18.5", False, "key=value"),
    ("a21026-Rtd=18.5", "-Rtd=18.5", False, "factor-field"),
    ("QN=20160801085857223;ST=31", "ST=31;QN=20160801085857223", True, "HJ 212 wants"),
    ("MN=010000A8900016F000169DC0", "MN=LD130133000015", True, "24 upper-case hex"),
    ("PW=123456", "PW=12345", True, "6-character"),
    ("Flag=4;", "Flag=4;PNUM=2;", False, "come together"),
    ("Flag=4;", "Flag=6;PNUM=2;PNO=3;", False, "outside 1..PNUM"),
    ("Flag=4;", "Flag=4;RF=0;", False, "RF"),
    ("Flag=4;", "Flag=4;RF=1;", True, "RF"),  # RF belongs to 2025 frames
    ("Flag=4;", "Flag=4;Flag=4;", False, "twice"),
    ("DataTime=20160801085857", "RtdInterval=3x", False, "whole number"),
])
def test_bad_field(old, new, strict, match):
    refuse(frame(seg_with(old, new)), "field", strict=strict, match=match)


@pytest.mark.parametrize("flag", ["256", "-1", "abc", "4.0"])
def test_bad_flag_value(flag):
    refuse(frame(seg_with("Flag=4", f"Flag={flag}")), "flag", match="0-255")


def test_packet_bit_must_match_pnum_pno_in_strict_mode():
    refuse(frame(seg_with("Flag=4;", "Flag=6;")), "flag", strict=True, match="no PNUM/PNO")
    refuse(frame(seg_with("Flag=4;", "Flag=4;PNUM=2;PNO=1;")), "flag", strict=True, match="lacks the packet bit")
    f = parse_frame(frame(seg_with("Flag=4;", "Flag=6;")))
    assert f.pnum is None and any("PNUM/PNO presence decides" in n for n in f.notes)


def test_unknown_version():
    # Flag=12 = 000011 0 0: version bits 3, no edition.
    refuse(frame(seg_with("Flag=4", "Flag=12")), "version", strict=True, match="000011")
    f = parse_frame(frame(seg_with("Flag=4", "Flag=12")))
    assert f.version is None and f.records[0].rtd == 18.5


def test_unknown_data_flag_strict():
    refuse(frame(seg_with("Flag=N", "Flag=X")), "data_flag", strict=True, match="'X'")


def test_encrypted():
    refuse(frame(seg_with("CP=&&DataTime=20160801085857;a21026-Rtd=18.5,a21026-Flag=N", "CP=&&{0xE4,0x3E}")),
           "encrypted")


def _split(pno: int, pnum: int, cp: str = "DataTime=20160801085857;a21026-Rtd=1") -> Frame:
    seg = (f"QN=20160801085857223;ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=7;PNUM={pnum};PNO={pno};"
           f"CP=&&{cp}&&")
    return parse_frame(frame(seg), strict=True)


def test_split_refusals():
    r = Reassembler(max_packets=8)
    with pytest.raises(Hj212Error) as e:
        r.push(_split(1, 9), 0.0)
    assert e.value.reason == "split" and "limit of 8" in str(e.value)
    r.push(_split(1, 3), 0.0)
    with pytest.raises(Hj212Error) as e:
        r.push(_split(2, 4), 1.0)
    assert e.value.reason == "split" and "PNUM" in str(e.value) and r.pending == 0
    r.push(_split(1, 3), 2.0)
    with pytest.raises(Hj212Error) as e:
        r.push(_split(1, 3, "DataTime=20160801085857;a21026-Rtd=2"), 3.0)
    assert "two different packets numbered 1" in str(e.value) and r.pending == 0


ONE_PER_REASON = {
    "header": lambda: parse_frame(b"$$" + frame(SEG)[2:]),
    "length": lambda: parse_frame(frame(SEG, length=len(SEG) + 1), strict=True),
    "crc": lambda: parse_frame(frame(SEG, crc="0000")),
    "trailer": lambda: parse_frame(frame(SEG, trailer=b""), strict=True),
    "oversize": lambda: parse_frame(frame(SEG), max_segment_bytes=len(SEG) - 1),
    "encoding": lambda: parse_frame(frame(SEG.replace("18.5", "18\t5"))),
    "field": lambda: parse_frame(frame(seg_with("ST=31;", ""))),
    "flag": lambda: parse_frame(frame(seg_with("Flag=4", "Flag=256"))),
    "version": lambda: parse_frame(frame(seg_with("Flag=4", "Flag=12")), strict=True),
    "data_flag": lambda: parse_frame(frame(seg_with("Flag=N", "Flag=X")), strict=True),
    "split": lambda: Reassembler(max_packets=1).push(_split(1, 2), 0.0),
    "encrypted": lambda: parse_frame(frame(SEG[:SEG.index("CP=&&") + 5] + "{0xE4,0x3E}&&")),
}


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_every_reason_can_be_raised(reason):
    assert set(ONE_PER_REASON) == set(REASONS)
    with pytest.raises(Hj212Error) as e:
        ONE_PER_REASON[reason]()
    assert e.value.reason == reason and e.value.detail


def test_unknown_reason_is_a_bug():
    with pytest.raises(AssertionError):
        Hj212Error("no-such-reason", "x")
