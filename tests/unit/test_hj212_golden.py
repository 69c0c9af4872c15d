"""HJ 212 golden frames: the standards' examples and real frames written by others, with hand-read values.

Where each frame comes from (repository and path, or the standard's clause). Frames of the standards' appendices
that print only a data segment are framed here (length and CRC computed by :func:`build_frame`, itself checked
against the standard's own CRC vector first); frames copied whole keep their CRC as published.

- STD-2017-A: HJ 212-2017 Appendix A CRC example (docs/sources.md HJ212-CRC).
- C2017: HJ 212-2017 Appendix C host commands, data segments as transcribed in repo caoyiliang/HJ212,
  Test/Program.cs (an earlier stored version, Flag=5, QN=20160801085857223).
- C2025: HJ 212-2025 host commands, same repo and file at commit 01171964f397e3a39e27e82bc84a281e252c71d2
  (Flag=9, QN=20240601085857223).
- A2025: HJ 212-2025 Appendix A.1/A.2 vectors as extracted from the PDF by repo Daidai52640/cems-data-pipeline,
  tests/protocol/hj212/test_vectors.json (commit 106a0a48c6b2cd2ce0e93fd114273051127731aa).
- XY2005: real HJ/T 212-2005 datalogger frames of 2016-08-24, repo xiaoyao9184/hj-t212-parser,
  hj-t212-parser/src/test/resources/AllData/2016-08-24 05.h212 (commit 409d9a85ee017655070d2ae05c1af4d7535d491d);
  the file keeps one frame per line, so the line end stands for the trailer.
- XYMAP: repo xiaoyao9184/hj-t212-parser, hj-t212-parser/src/test/java/com/xy/format/hbt212/core/T212MapperTest.java.
- GUOCAY: repo guocay/hj212-protocol, protocol/src/test/java/com/github/guocay/hj212/ApplicationTest.java
  (commit ac6f3806781620efc55cede5e693d1afe5a75968): real 2017 frames with lower-case CRC, and two whose CRC is wrong.
- ICE: repo 1249993110/IceCoffee.HJ212, Test/Program.cs.   FLASH: repo flash520/hj212, parse_test.go.
"""

from __future__ import annotations

from datetime import UTC, datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.hj212 import (
    Hj212Error,
    Version,
    build_frame,
    crc16,
    crc16_hex,
    parse_frame,
)
from schemas.hj212.crc import _TABLE
from schemas.quantities import Flag
from tests.fixtures import A2_EX2_HEX, A2_EX4_HEX, A2_KEY, encrypted_frame

UTC = UTC


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def frame_segment(segment: str) -> bytes:
    """Frame a data segment printed without length and CRC (as most appendix examples are)."""
    return b"##%04d%s%s\r\n" % (len(segment.encode()), segment.encode(), crc16_hex(segment.encode()).encode())


# --- CRC ------------------------------------------------------------------------------------------------------

STD_2017_A = b"##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&" \
             b"RtdInterval=30&&1C80\r\n"


def test_crc_standard_vector_2017():
    # STD-2017-A: the 101-character data segment gives 0x1C80 (the Modbus CRC would give 0x0759).
    segment = STD_2017_A[6:-6]
    assert len(segment) == 101
    assert crc16(segment) == 0x1C80
    assert crc16_hex(segment) == "1C80"


def test_crc_standard_vector_2025():
    # A2025 crc_example_a1: 87-character data segment, CRC 2200, as printed in HJ 212-2025 Appendix A.1.
    segment = b"QN=20240601085857223;ST=32;CN=1011;PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&&&"
    assert len(segment) == 87
    assert crc16_hex(segment) == "2200"


def test_crc_is_not_modbus_and_table_matches_bitwise_definition():
    def bitwise(data: bytes) -> int:  # Appendix A as written: shift the register right by 8, XOR, 8 rounds
        r = 0xFFFF
        for b in data:
            r = (r >> 8) ^ b
            for _ in range(8):
                r = (r >> 1) ^ 0xA001 if r & 1 else r >> 1
        return r

    for data in (b"", b"\x00", b"123456789", STD_2017_A):
        assert crc16(data) == bitwise(data)
    assert crc16(b"") == 0xFFFF  # nothing shifted in
    # T[0] = 0 and T[1] = 0xC0C1: x=1 shifts out its 1 at round 1 -> 0xA001, then 7 rounds of the polynomial
    assert _TABLE[0] == 0 and _TABLE[1] == 0xC0C1
    assert crc16(b"123456789") != 0x4B37  # CRC-16/MODBUS check value: a different algorithm


def _bitwise_crc(data: bytes) -> int:
    """HJ 212-2017 Appendix A as printed: one byte at a time, eight shift/XOR rounds each."""
    r = 0xFFFF
    for b in data:
        r = (r >> 8) ^ b
        for _ in range(8):
            r = (r >> 1) ^ 0xA001 if r & 1 else r >> 1
    return r


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=0, max_size=2100))
def test_the_folded_crc_is_the_bitwise_definition_for_any_bytes(data: bytes) -> None:
    """crc16 folds the data into eight lanes (the high-byte step has order 8): any length, any bytes, equal to the
    loop of the standard, including lengths around the loop/fold switch (16) and the 64-bit word boundaries."""
    assert crc16(data) == _bitwise_crc(data)


def test_the_folded_crc_at_every_length_up_to_300_and_the_longest_segment() -> None:
    for n in [*range(300), 9999]:
        data = bytes((7 * k + n) % 256 for k in range(n))
        assert crc16(data) == _bitwise_crc(data), n


def test_build_frame_reproduces_the_standard_example():
    built = build_frame(st="32", cn="1062", pw="100000", mn="010000A8900016F000169DC0", qn="20160801085857223",
                        flag=5, cp="RtdInterval=30")
    assert built == STD_2017_A


# --- HJ 212-2017 ------------------------------------------------------------------------------------------------

def test_standard_example_2017_strict():
    f = parse_frame(STD_2017_A, strict=True)
    assert (f.qn, f.st, f.cn, f.pw, f.mn) == ("20160801085857223", "32", "1062", "100000", "010000A8900016F000169DC0")
    assert f.flag == 5 and f.version is Version.HJ212_2017 and f.ack_requested  # 5 = 000001 0 1
    assert f.pnum is None and f.pno is None and not f.resend
    assert f.data.params == {"RtdInterval": 30}
    assert f.records == () and f.notes == ()


C2017_HEAD = "QN=20160801085857223;ST=32;CN={cn};PW=123456;MN=010000A8900016F000169DC0;Flag=5;CP=&&{cp}&&"
C2017 = [  # (CN, CP as transcribed, expected params)
    ("1000", "OverTime=5;ReCount=3", {"OverTime": 5, "ReCount": 3}),
    ("1011", "PolId=w01018", {"PolId": "w01018"}),
    # 08:58:57 China time is 00:58:57 UTC
    ("1012", "PolId=w01018;SystemTime=20160801085857", {"PolId": "w01018", "SystemTime": utc(2016, 8, 1, 0, 58, 57)}),
    ("1061", "", {}),
    ("1062", "RtdInterval=30", {"RtdInterval": 30}),
    ("1063", "", {}),
    ("1064", "MinInterval=10", {"MinInterval": 10}),  # the transcription has a stray 's' after '&&', dropped
    ("1072", "NewPW=654321", {"NewPW": "654321"}),
    ("2011", "", {}),
    ("2012", "", {}),
    ("2021", "", {}),
    ("2022", "", {}),
    ("2031", "BeginTime=20160801000000;EndTime=20160801000000",
     {"BeginTime": utc(2016, 7, 31, 16), "EndTime": utc(2016, 7, 31, 16)}),
    ("2041", "BeginTime=20160801000000,EndTime=20160801000000",  # ',' between items of one group
     {"BeginTime": utc(2016, 7, 31, 16), "EndTime": utc(2016, 7, 31, 16)}),
    ("2051", "BeginTime=20160801084000;EndTime=20160801084000",
     {"BeginTime": utc(2016, 8, 1, 0, 40), "EndTime": utc(2016, 8, 1, 0, 40)}),
    ("2061", "BeginTime=20160801080000;EndTime=20160801080000",
     {"BeginTime": utc(2016, 8, 1, 0), "EndTime": utc(2016, 8, 1, 0)}),
    ("3011", "PolId=w01018", {"PolId": "w01018"}),
    ("3015", "", {}),
    ("3016", "PolId=w01018;CstartTime=000000;CTime=2", {"PolId": "w01018", "CstartTime": "000000", "CTime": 2}),
    ("3019", "PolId=w01018", {"PolId": "w01018"}),
    ("3020", "PolId=w01018;InfoId=i11001;BeginTime=20160801010522,EndTime=20160801085857",
     {"PolId": "w01018", "InfoId": "i11001", "BeginTime": utc(2016, 7, 31, 17, 5, 22),
      "EndTime": utc(2016, 8, 1, 0, 58, 57)}),
]


@pytest.mark.parametrize("cn,cp,params", C2017, ids=[c[0] for c in C2017])
def test_appendix_c_2017_host_commands_strict(cn, cp, params):
    f = parse_frame(frame_segment(C2017_HEAD.format(cn=cn, cp=cp)), strict=True)
    assert f.cn == cn and f.version is Version.HJ212_2017 and f.ack_requested
    assert dict(f.data.params) == params and f.records == ()


def test_appendix_c_2017_notification_answer_with_a_space_in_cp():
    # C2017 9013: 'CP=&& &&' (a space in an empty data area): odd spacing, lenient only.
    seg = "QN=20160801085857223;ST=91;CN=9013;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&& &&"
    f = parse_frame(frame_segment(seg))
    assert f.cn == "9013" and f.flag == 4 and not f.ack_requested and f.records == () and f.data.params == {}
    with pytest.raises(Hj212Error) as e:
        parse_frame(frame_segment(seg), strict=True)
    assert e.value.reason == "field"


def test_real_2017_frame_lowercase_crc_guocay():
    # GUOCAY SAMPLE[0]: CRC 'cc01' in lower case, MN of 15 characters: lenient accepts, strict refuses the hex.
    raw = (b"##0317QN=20191012133710130;ST=22;CN=2011;PW=123456;MN=Y80110010000010;Flag=4;CP=&&DataTime=20191012133710;"
           b"a21005-Rtd=0.00,a21005-Flag=N;a21004-Rtd=0.00,a21004-Flag=N;a21007-Rtd=0.033,a21007-Flag=N;a21006-Rtd=0.036,"
           b"a21006-Flag=N;a21001-Rtd=25.40,a21001-Flag=N;a21003-Rtd=101.94,a21003-Flag=N;a21002-Rtd=49.20,"
           b"a21002-Flag=N&&cc01\r\n")
    f = parse_frame(raw)
    assert f.version is Version.HJ212_2017 and f.flag == 4 and not f.ack_requested
    assert f.data_time == utc(2019, 10, 12, 5, 37, 10)  # 13:37:10 +08
    got = {r.code: (r.rtd, r.flag) for r in f.records}
    assert got == {"a21005": (0.0, Flag.N), "a21004": (0.0, Flag.N), "a21007": (0.033, Flag.N),
                   "a21006": (0.036, Flag.N), "a21001": (25.40, Flag.N), "a21003": (101.94, Flag.N),
                   "a21002": (49.20, Flag.N)}
    assert "CRC written in lower-case hex" in f.notes
    with pytest.raises(Hj212Error) as e:
        parse_frame(raw, strict=True)
    assert e.value.reason == "crc"


@pytest.mark.parametrize("raw,computed", [
    # GUOCAY SAMPLE[1]: the frame says 1100; its data segment gives 2D00.
    (b"##0275QN=20190901181526940;ST=32;CN=2011;PW=123456;MN=Y80110010000010;Flag=4;CP=&&DataTime=20190901181500;"
     b"a21005-Rtd=1.760,a21005-Flag=N;a21026-Rtd=106.400,a21026-Flag=N;O3-Rtd=63.400,O3-Flag=N;a21004-Rtd=63.200,"
     b"a21004-Flag=N;a34002-Rtd=9,a34002-Flag=N;a34004-Rtd=4,a34004-Flag=N&&1100\r\n", "2D00"),
    # GUOCAY SAMPLE[6]: split packet (PNO before PNUM, no Flag); says 2800, gives D801.
    (b"##0204QN=20191112091100598;ST=31;CN=2051;PW=123456;MN=14513567846884;PNO=0002;PNUM=0002;CP=&&DataTime="
     b"20230327090000;a01006-Avg=101.85,a01006-Min=101.84,a01006-Max=101.87,a01006-ValidNum=10,a01006-TotalNum=10"
     b"&&2800\r\n", "D801"),
])
@pytest.mark.parametrize("strict", [False, True])
def test_real_frames_with_a_wrong_crc_are_refused(raw, computed, strict):
    with pytest.raises(Hj212Error) as e:
        parse_frame(raw, strict=strict)
    assert e.value.reason == "crc" and computed in str(e.value)


def test_real_2017_hour_frame_icecoffee():
    # ICE: 2061 hourly air-quality data, a 24-character PW, a 15-character MN.
    raw = (b"##0285QN=20190925181031464;ST=22;CN=2061;PW=BF470F88957588DE902D1A52;MN=Z13401000010301;Flag=5;CP=&&"
           b"DataTime=20190924220000;a34006-Avg=2.69700,a34006-Flag=N;a34007-Avg=7.96600,a34007-Flag=N;a34048-Avg="
           b"3.30600,a34048-Flag=N;a34047-Avg=7.35700,a34047-Flag=N;a34049-Avg=10.66300,a34049-Flag=N&&C181\r\n")
    f = parse_frame(raw)
    assert f.cn == "2061" and f.ack_requested and f.data_time == utc(2019, 9, 24, 14)  # 22:00 +08
    assert [(r.code, r.avg) for r in f.records] == [("a34006", 2.697), ("a34007", 7.966), ("a34048", 3.306),
                                                    ("a34047", 7.357), ("a34049", 10.663)]


def test_real_2017_minute_frame_without_trailer_flash520():
    # FLASH: 2051 minute data sent without <CR><LF>, integer values.
    raw = (b"##0411QN=20220513162608370;ST=22;CN=2051;PW=123456;MN=JLYP01_AIR01_0001;Flag=4;CP=&&DataTime="
           b"20220513162600;a21004-Avg=4,a21004-Flag=N;a05024-Avg=63,a05024-Flag=N;a21026-Avg=6,a21026-Flag=N;"
           b"a21005-Avg=0.427,a21005-Flag=N;a34004-Avg=14,a34004-Flag=N;a34002-Avg=31,a34002-Flag=N;a01007-Avg=1,"
           b"a01007-Flag=N;a01008-Avg=11,a01008-Flag=N;a01001-Avg=17,a01001-Flag=N;a01002-Avg=85,a01002-Flag=N;"
           b"a01006-Avg=95,a01006-Flag=N&&D641")
    f = parse_frame(raw)
    assert len(f.records) == 11 and f.records[3].code == "a21005" and f.records[3].avg == 0.427
    assert f.records[-1].code == "a01006" and f.records[-1].avg == 95.0
    assert "trailer <CR><LF> missing or partial" in f.notes
    with pytest.raises(Hj212Error) as e:
        parse_frame(raw, strict=True)
    assert e.value.reason == "trailer"


# --- HJ/T 212-2005 ----------------------------------------------------------------------------------------------

def test_real_2005_cems_realtime_frame():
    # XY2005 line 2: no QN, no Flag, 17-digit DataTime, 2005 codes, ZsRtd in its own group with a repeated Flag.
    raw = (b"##0382ST=31;CN=2011;PW=123456;MN=ZG130182201325;CP=&&DataTime=20160824050243000;S01-Rtd=10.2,S01-Flag=N;"
           b"S02-Rtd=8.93,S02-Flag=N;S03-Rtd=51.1,S03-Flag=N;S05-Rtd=0.0,S05-Flag=N;S07-Rtd=0.00,S07-Flag=N;"
           b"01-Rtd=3.56,01-Flag=N;01-ZsRtd=4.93,01-Flag=N;02-Rtd=13.00,02-Flag=N;02-ZsRtd=18.05,02-Flag=N;"
           b"03-Rtd=32.742,03-Flag=N;03-ZsRtd=45.474,03-Flag=N;B02-Rtd=38.57;S08-Rtd=395.507813,S08-Flag=N&&E8C1\r\n")
    f = parse_frame(raw)
    assert f.version is Version.HJ212_2005 and f.qn is None and f.flag is None and not f.ack_requested
    assert f.data_time == utc(2016, 8, 23, 21, 2, 43)  # 05:02:43.000 +08
    got = {r.code: (r.original_code, r.rtd, r.zs_rtd, r.flag) for r in f.records}
    assert got == {
        "a19001": ("S01", 10.2, None, Flag.N),  # O2
        "a01011": ("S02", 8.93, None, Flag.N),  # velocity
        "a01012": ("S03", 51.1, None, Flag.N),  # temperature
        "a01014": ("S05", 0.0, None, Flag.N),  # moisture
        "a01016": ("S07", 0.0, None, Flag.N),  # duct area
        "a34013": ("01", 3.56, 4.93, Flag.N),  # particulate, raw and O2-corrected
        "a21026": ("02", 13.00, 18.05, Flag.N),  # SO2
        "a21002": ("03", 32.742, 45.474, Flag.N),  # NOx
        "a00000": ("B02", 38.57, None, None),  # flow, sent without a flag
        "a01013": ("S08", 395.507813, None, Flag.N),  # pressure
    }
    assert "no Flag: read as an HJ/T 212-2005 frame" in f.notes


def test_real_2005_cems_minute_frame_with_counts_and_corrected_values():
    # XY2005 line 7: 2051 with Cou and ZsMin/ZsAvg/ZsMax (DataTime 2000-02-02 05:00 +08 as the datalogger sent it).
    raw = (b"##0593ST=31;CN=2051;PW=123456;MN=LD130131000211;CP=&&DataTime=20000202050000000;B02-Cou=198231.17,"
           b"B02-Min=314.81,B02-Avg=330.38,B02-Max=344.08;S01-Min=4.75,S01-Avg=5.06,S01-Max=5.38;S02-Min=7.77,"
           b"S02-Avg=8.15,S02-Max=8.49;S03-Min=135.24,S03-Avg=136.05,S03-Max=137.68;S05-Min=40.00,S05-Avg=40.00,"
           b"S05-Max=40.00;S07-Min=40.50,S07-Avg=40.50,S07-Max=40.50;S08-Min=1046.48,S08-Avg=1058.44,S08-Max=1081.96;"
           b"01-Cou=1.15,01-Min=5.46,01-Avg=5.82,01-Max=6.35;02-Cou=347.94,02-Min=1710.83,02-Avg=1755.24,"
           b"02-Max=1799.22;01-ZsMin=5.19,01-ZsAvg=5.47,01-ZsMax=6.09;02-ZsMin=1588.25,02-ZsAvg=1652.41,"
           b"02-ZsMax=1707.02&&7A80\r\n")
    f = parse_frame(raw)
    assert f.data_time == utc(2000, 2, 1, 21)
    r = {x.code: x for x in f.records}
    assert (r["a00000"].cou, r["a00000"].min, r["a00000"].avg, r["a00000"].max) == (198231.17, 314.81, 330.38, 344.08)
    so2 = r["a21026"]
    assert (so2.cou, so2.min, so2.avg, so2.max, so2.zs_min, so2.zs_avg, so2.zs_max) == (
        347.94, 1710.83, 1755.24, 1799.22, 1588.25, 1652.41, 1707.02)
    assert r["a34013"].zs_avg == 5.47 and r["a01013"].avg == 1058.44 and len(f.records) == 9


def test_real_2005_frame_with_fault_flags():
    # XY2005: S04 (dynamic pressure) flagged D, among N channels.
    raw = (b"##0408ST=31;CN=2011;PW=123456;MN=ZG130131201305;CP=&&DataTime=20160824043500000;01-Rtd=8.35,01-Flag=N;"
           b"02-Rtd=13.01,02-Flag=N;03-Rtd=9.894,03-Flag=N;S01-Rtd=10.3,S01-Flag=N;S02-Rtd=9.24,S02-Flag=N;"
           b"S03-Rtd=75.4,S03-Flag=N;S08-Rtd=-0.267399,S08-Flag=N;S07-Rtd=5.40,S07-Flag=N;01-ZsRtd=9.20,01-Flag=N;"
           b"02-ZsRtd=14.03,02-Flag=N;B02-Rtd=35.87;S05-Rtd=8.0,S05-Flag=N;03-ZsRtd=10.897,03-Flag=N;S04-Rtd=2.000000,"
           b"S04-Flag=D&&4980\r\n")
    r = {x.code: x for x in parse_frame(raw).records}
    assert r["a01017"].original_code == "S04" and r["a01017"].rtd == 2.0 and r["a01017"].flag is Flag.D
    assert r["a01013"].rtd == -0.267399 and r["a21002"].zs_rtd == 10.897


def test_real_2005_water_frame_and_heartbeats():
    # XYMAP: water codes B01 (flow), 011 (COD), 060 (ammonia nitrogen) of Table B.1.
    f = parse_frame(b"##0139ST=32;CN=2011;PW=123456;MN=LD130133000015;CP=&&DataTime=20160824003817000;B01-Rtd=36.91;"
                    b"011-Rtd=231.0,011-Flag=N;060-Rtd=1.803,060-Flag=N&&4980\r\n")
    assert [(r.code, r.original_code, r.rtd, r.flag) for r in f.records] == [
        ("w00000", "B01", 36.91, None), ("w01018", "011", 231.0, Flag.N), ("w21003", "060", 1.803, Flag.N)]
    # XY2005 line 1: a 2005 heartbeat-like frame, Flag=0, 'CON-RT' field.
    hb = parse_frame(b"##0091ST=91;CN=9015;PW=123456;MN=LD130121000243;Flag=0;CP=&&DataTime=20160824045356000;"
                     b"CON-RT=0&&8801\r\n")
    assert hb.version is Version.HJ212_2005 and hb.flag == 0 and hb.records[0].code == "CON"
    assert hb.records[0].extra == {"RT": "0"}
    # XY2005 line 4: CN=8013 with HeartbeatTime.
    hb2 = parse_frame(b"##0073ST=32;CN=8013;PW=123456;MN=ZG130182201205;Flag=0;CP=&&HeartbeatTime=120&&0500\r\n")
    assert hb2.data.params == {"HeartbeatTime": 120}


def test_2005_power_failure_flag_maps_to_fault():
    # HJ212-P-FLAG: 2005 'P' (power failure) -> D in a 2005 frame; in a 2017 frame lenient maps it with a note,
    # strict refuses it.
    seg = "ST=31;CN=2011;PW=123456;MN=ZG130182201325;CP=&&DataTime=20160824050243;01-Rtd=3.56,01-Flag=P&&"
    f = parse_frame(frame_segment(seg))
    assert f.records[0].flag is Flag.D and f.records[0].flag_letter == "P"
    seg17 = ("QN=20160801085857223;ST=31;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&"
             "DataTime=20160801085857;a34013-Rtd=3.56,a34013-Flag=P&&")
    f17 = parse_frame(frame_segment(seg17))
    assert f17.records[0].flag is Flag.D and any("2005 letter" in n for n in f17.notes)
    with pytest.raises(Hj212Error) as e:
        parse_frame(frame_segment(seg17), strict=True)
    assert e.value.reason == "data_flag"


# --- HJ 212-2025 ------------------------------------------------------------------------------------------------

A2025_CRC = b"##0087QN=20240601085857223;ST=32;CN=1011;PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&&&2200\r\n"
A2025_2051 = (b"##0295QN=20240520210700000;ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&DataTime="
              b"20240520210600;a01011-Min=1.35,a01011-Avg=1.35,a01011-Max=1.35,a01011-Flag=N;a01012-Min=9.3,"
              b"a01012-Avg=9.3,a01012-Max=9.3,a01012-Flag=N;a01014-Min=3.20,a01014-Avg=3.211,a01014-Max=3.212,"
              b"a01014-Flag=N&&2200\r\n")
A2025_2051_B = (b"##0234QN=20240520210700000;ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&DataTime="
                b"20240520210600;a01011-Min=1.35,a01011-Avg=1.35,a01011-Max=1.35,a01011-Flag=N;a01014-Min=3.20,"
                b"a01014-Avg=3.20,a01014-Max=3.20,a01014-Flag=N&&B541\r\n")


def test_standard_example_2025_crc_frame_strict():
    f = parse_frame(A2025_CRC, strict=True)
    assert f.flag == 9 and f.version is Version.HJ212_2025 and f.ack_requested and not f.is_split  # 9 = 000010 0 1
    assert f.cn == "1011" and f.cp == ""


def test_standard_examples_2025_minute_data_strict():
    f = parse_frame(A2025_2051, strict=True)
    assert f.version is Version.HJ212_2025 and f.data_time == utc(2024, 5, 20, 13, 6)  # 21:06 +08
    assert [(r.code, r.min, r.avg, r.max, r.flag) for r in f.records] == [
        ("a01011", 1.35, 1.35, 1.35, Flag.N), ("a01012", 9.3, 9.3, 9.3, Flag.N), ("a01014", 3.20, 3.211, 3.212, Flag.N)]
    g = parse_frame(A2025_2051_B, strict=True)
    assert [(r.code, r.avg) for r in g.records] == [("a01011", 1.35), ("a01014", 3.20)]


def test_standard_example_2025_encrypted_data_area_is_refused():
    # A2025 a2_example_2, encrypted form (first bytes of its SM4 block list): the CRC covers the plaintext.
    raw = (b"##0295QN=20240520210700000;ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&"
           b"{0xE4,0x3E,0x15,0x9A,0xCF,0xAB,0x24,0x2C,0xB5,0x31,0x55,0xFB,0x8B,0x92,0x81,0xA1}&&2200\r\n")
    for strict in (False, True):
        with pytest.raises(Hj212Error) as e:
            parse_frame(raw, strict=strict)
        assert e.value.reason == "encrypted"


C2025_HEAD = "QN=20240601085857223;ST={st};CN={cn};PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&{cp}&&"
C2025 = [
    ("32", "1002", "i23005-Info=6970000000001ABCDEFG1234", {}, {"i23005": {"Info": "6970000000001ABCDEFG1234"}}),
    ("32", "1014", "SKCreateTime=20240601085857223,NewSK=0000000000000000",
     {"SKCreateTime": "20240601085857223", "NewSK": "0000000000000000"}, {}),
    ("32", "2013", "BeginTime=20240601080000;EndTime=20240601080000",
     {"BeginTime": utc(2024, 6, 1, 0), "EndTime": utc(2024, 6, 1, 0)}, {}),
    ("32", "2062", "BeginTime=20240601080000;EndTime=20240601080000",
     {"BeginTime": utc(2024, 6, 1, 0), "EndTime": utc(2024, 6, 1, 0)}, {}),
    ("32", "3011", "PolId=w01018,CalibrationType=0", {"PolId": "w01018", "CalibrationType": "0"}, {}),
    ("32", "3022", "PolId=w01018", {"PolId": "w01018"}, {}),
    ("32", "3024", "PolId=w01018", {"PolId": "w01018"}, {}),
    ("44", "2011", "BeginTime=20240601064500;EndTime=20240601084500",
     {"BeginTime": utc(2024, 5, 31, 22, 45), "EndTime": utc(2024, 6, 1, 0, 45)}, {}),
    ("31", "1064", "MinInterval=10", {"MinInterval": 10}, {}),
]


@pytest.mark.parametrize("st,cn,cp,params,extras", C2025, ids=[c[1] + "-" + c[0] for c in C2025])
def test_2025_host_commands_strict(st, cn, cp, params, extras):
    f = parse_frame(frame_segment(C2025_HEAD.format(st=st, cn=cn, cp=cp)), strict=True)
    assert f.version is Version.HJ212_2025 and f.flag == 9 and f.cn == cn and f.st == st
    assert dict(f.data.params) == params
    assert {r.code: dict(r.extra) for r in f.records} == extras


def test_2025_hardware_serial_answer_with_empty_mn():
    # C2025: before an MN is assigned the datalogger answers with 'MN=;' (lenient; strict wants 24 hex chars).
    seg = "QN=20240601085857223;ST=91;CN=9013;PW=123456;MN=;Flag=8;CP=&&&&"
    f = parse_frame(frame_segment(seg))
    assert f.mn == "" and f.flag == 8 and not f.ack_requested and f.version is Version.HJ212_2025
    with pytest.raises(Hj212Error) as e:
        parse_frame(frame_segment(seg), strict=True)
    assert e.value.reason == "field" and "MN" in str(e.value)


def test_2025_resend_field_rf():
    # HJ212-2025-RF: RF=1 marks re-sent data; it is absent otherwise.
    seg = ("QN=20240601085857223;ST=31;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=9;RF=1;CP=&&"
           "DataTime=20240601085857;a21026-Rtd=18.5,a21026-Flag=N&&")
    f = parse_frame(frame_segment(seg), strict=True)
    assert f.resend and f.records[0].rtd == 18.5


# --- hand-made frames for the lenient rules -----------------------------------------------------------------------

def test_missing_qn_and_odd_spacing():
    seg = (" ST=31 ; CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&DataTime=20160801085857; "
           "a21026-Rtd = 18.5 , a21026-Flag=N ; a19001-Rtd=10.7,a19001-Flag=N;&&")
    f = parse_frame(frame_segment(seg))
    assert f.qn is None and f.st == "31" and f.version is Version.HJ212_2017
    assert [(r.code, r.rtd, r.flag) for r in f.records] == [("a21026", 18.5, Flag.N), ("a19001", 10.7, Flag.N)]
    assert "no QN" in f.notes
    with pytest.raises(Hj212Error):
        parse_frame(frame_segment(seg), strict=True)


def test_unknown_flag_is_marked_in_lenient_mode():
    seg = ("QN=20160801085857223;ST=31;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&"
           "DataTime=20160801085857;a21026-Rtd=18.5,a21026-Flag=X&&")
    r = parse_frame(frame_segment(seg)).records[0]
    assert r.flag is None and r.flag_letter == "X" and r.unknown_flag


def test_sample_time_eflag_and_extra_fields():
    seg = ("QN=20160801085857223;ST=32;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=5;CP=&&"
           "DataTime=20160801085857;w01018-Rtd=194.200,w01018-SampleTime=20160801083400,w01018-Flag=N,"
           "w01018-EFlag=A01;a01006-Avg=101.85,a01006-ValidNum=10&&")
    f = parse_frame(frame_segment(seg), strict=True)
    cod, p = f.records
    assert cod.sample_time == utc(2016, 8, 1, 0, 34) and cod.eflag == "A01" and cod.rtd == 194.2
    assert p.extra == {"ValidNum": "10"}


def test_second_datatime_starts_new_records():
    seg = ("QN=20160801085857223;ST=31;CN=2061;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&"
           "DataTime=20160801070000;a21026-Avg=1.5;DataTime=20160801080000;a21026-Avg=2.5&&")
    f = parse_frame(frame_segment(seg), strict=True)
    assert [(r.data_time, r.avg) for r in f.records] == [(utc(2016, 7, 31, 23), 1.5), (utc(2016, 8, 1, 0), 2.5)]
    assert f.data_time == utc(2016, 7, 31, 23)


def test_site_time_zone_is_a_parameter():
    from datetime import timedelta
    seg = ("QN=20160801085857223;ST=31;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=4;CP=&&"
           "DataTime=20160801085857;a21026-Rtd=1&&")
    f = parse_frame(frame_segment(seg), tz=timezone(timedelta(hours=5)))
    assert f.data_time == utc(2016, 8, 1, 3, 58, 57)


def test_non_numeric_value_kept_as_text_in_lenient_mode_only():
    seg = ("QN=20240601085857223;ST=45;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=9;CP=&&"
           "DataTime=20240601085857;p99101-Rtd=St,p99101-Flag=N;a21026-Rtd=nan&&")
    f = parse_frame(frame_segment(seg))
    st, so2 = f.records
    assert st.rtd is None and st.extra == {"Rtd": "St"} and so2.rtd is None and so2.extra == {"Rtd": "nan"}
    assert len([n for n in f.notes if "not a number" in n]) == 2
    with pytest.raises(Hj212Error) as e:
        parse_frame(frame_segment(seg), strict=True)
    assert e.value.reason == "field"


def test_utf8_text_counts_bytes():
    seg = ("QN=20160801085857223;ST=31;CN=3020;PW=123456;MN=010000A8900016F000169DC0;Flag=5;CP=&&"
           "PolId=a21026;i11001-Info=烟气分析仪&&")
    raw = frame_segment(seg)
    assert int(raw[2:6]) == len(seg) + 10  # 5 CJK characters of 3 bytes are 15 bytes, 10 more than characters
    f = parse_frame(raw, strict=True)
    assert f.records[0].extra == {"Info": "烟气分析仪"}


# --- HJ 212-2025 encrypted data areas (Appendix A.2, key = 16 bytes 0x30; the examples are in tests/fixtures.py) ----

def test_2025_encrypted_examples_decrypt_to_the_standard_plaintext():
    pytest.importorskip("cryptography", reason="SM4 comes from the cryptography package (the edge extra)")
    # A2025 a2_example_2: 208 plaintext characters = 13 whole blocks; the length field (0295) counts the plaintext.
    f = parse_frame(encrypted_frame("0295", A2_EX2_HEX, "", "2200"), strict=True, sm4_key=A2_KEY)
    plain = parse_frame(A2025_2051, strict=True)
    assert f.cp == plain.cp and f.records == plain.records and "data area decrypted (SM4)" in f.notes
    # a2_example_4: 147 characters = 9 blocks + a 3-character plaintext tail 'g=N'.
    g = parse_frame(encrypted_frame("0234", A2_EX4_HEX, "g=N", "B541"), strict=True, sm4_key=A2_KEY)
    assert [(r.code, r.min, r.avg, r.max, r.flag) for r in g.records] == [
        ("a01011", 1.35, 1.35, 1.35, Flag.N), ("a01014", 3.20, 3.20, 3.20, Flag.N)]
    # The length field may also count the transmitted segment (as some implementations write it).
    raw = encrypted_frame("0000", A2_EX4_HEX, "g=N", "B541")
    raw = raw[:2] + b"%04d" % (len(raw) - 12) + raw[6:]
    assert parse_frame(raw, strict=True, sm4_key=A2_KEY).records == g.records


def test_2025_encrypted_frame_with_a_wrong_key_or_broken_list_is_refused():
    pytest.importorskip("cryptography", reason="SM4 comes from the cryptography package (the edge extra)")
    with pytest.raises(Hj212Error) as e:
        parse_frame(encrypted_frame("0234", A2_EX4_HEX, "g=N", "B541"), sm4_key=b"1" * 16)
    assert e.value.reason == "crc"  # the decrypted text no longer matches the plaintext CRC
    with pytest.raises(Hj212Error) as e:
        parse_frame(encrypted_frame("0234", A2_EX4_HEX[:-2], "g=N", "B541"), sm4_key=A2_KEY)
    assert e.value.reason == "encrypted" and "16-byte blocks" in str(e.value)
