"""The receiver's per-frame shortcuts against the code they stand in for: a header read once and then known but for
its QN (``frame._known_header``) gives the frame or the refusal a fresh reading gives, for any header and any QN,
in both modes; an answer from its remembered text (``ReceiverSession._answer``) is the bytes ``build_response``
writes; and the premise of the shaped area's lenient number check."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.hj212 import Hj212Error, Version, build_frame, build_response, parse_frame
from schemas.hj212 import frame as frame_module
from schemas.hj212.crc import crc16_hex
from schemas.hj212.session import _ANSWER_RESTS, ReceiverSession

QNS = ["20260301080000123", "20260301080000", "2026030108000012", "20261301080000123", "20260230080000123",
       "\u0662" * 17, "2026030108000012x", " 20260301080000123", "20260301080000123 ", "", "99991231235959999",
       "00000101000000000"]
HEADS = [  # the header after QN=...; as dataloggers write it, and ways it goes wrong
    "ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=5;",
    "ST=31;CN=2011;PW=123456;MN=LD130133000015;Flag=4;",
    "ST=22;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=9;",
    "ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=7;PNUM=2;PNO=1;",
    "ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=9;RF=1;",
    "ST=31;CN=2051;PW=12=34;MN=010000A8900016F000169DC0;Flag=5;",
    "ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=5",
    "ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=5;;",
    "ST=31; CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=5;",
    "CN=2051;ST=31;PW=123456;MN=010000A8900016F000169DC0;Flag=5;",
    "ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=5;QN=20260301080000123;",
    "ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=500;",
    "ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=64;",
    "ST=31;CN=20x1;PW=123456;MN=010000A8900016F000169DC0;Flag=5;",
    "ST=31;CN=2051;MN=010000A8900016F000169DC0;Flag=5;",
    "ST=31;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=5;XX=1;",
    "",
]
TEXT = st.characters(blacklist_categories=["Cs"])  # encodable text
CP = "DataTime=20260301080000;a21026-Avg=20.5,a21026-Flag=N"


def frame_of(head: str) -> bytes:
    """``head`` (the header text before CP) framed with a right length and CRC."""
    segment = f"{head}CP=&&{CP}&&".encode()
    return b"##%04d%s%s\r\n" % (len(segment), segment, crc16_hex(segment).encode())


def fresh(raw: bytes, strict: bool) -> object:
    """The frame (or the refusal's reason and detail) read with no header known."""
    saved = dict(frame_module._HEADERS)
    frame_module._HEADERS.clear()
    try:
        return parse_frame(raw, strict=strict)
    except Hj212Error as exc:
        return (exc.reason, exc.detail)
    finally:
        frame_module._HEADERS.clear()
        frame_module._HEADERS.update(saved)


def known(raw: bytes, strict: bool) -> object:
    try:
        return parse_frame(raw, strict=strict)
    except Hj212Error as exc:
        return (exc.reason, exc.detail)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(HEADS), st.sampled_from(QNS), st.sampled_from(QNS), st.booleans())
def test_a_known_header_reads_as_a_fresh_one(head: str, first_qn: str, qn: str, strict: bool) -> None:
    known(frame_of(f"QN={first_qn};{head}"), strict)  # perhaps remembered
    raw = frame_of(f"QN={qn};{head}")
    assert known(raw, strict) == fresh(raw, strict)


def test_a_header_is_remembered_only_without_notes() -> None:
    frame_module._HEADERS.clear()
    parse_frame(frame_of("QN=20260301080000123;" + HEADS[0]))
    assert list(frame_module._HEADERS) == [(HEADS[0], False)]
    parse_frame(frame_of("QN=20260301080000123;" + HEADS[15]))  # an unknown field: noted, not remembered
    parse_frame(frame_of("QN=2026030108000012;" + HEADS[1]))  # a 16-digit QN: noted
    assert list(frame_module._HEADERS) == [(HEADS[0], False)]
    # a remembered header with an impossible QN date is refused as a fresh one is: 2026-13-01
    refused = known(frame_of("QN=20261301080000123;" + HEADS[0]), False)
    assert isinstance(refused, tuple) and refused[0] == "field"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["9013", "9014"]), st.text(TEXT, max_size=12), st.text(TEXT, max_size=30),
       st.sampled_from([Version.HJ212_2017, Version.HJ212_2025, Version.HJ212_2005, None]),
       st.sampled_from(QNS[:4]))
def test_an_answer_from_its_remembered_text_is_the_built_one(cn: str, pw: str, mn: str, version: Version | None,
                                                             qn: str) -> None:
    raw = build_frame(st="31", cn="2051", pw="x", mn="y", qn="20260301080000000", flag=5)
    frame = dataclasses.replace(parse_frame(raw), qn=qn or None, pw=pw or None, mn=mn or None, version=version)
    written = version if version in (Version.HJ212_2017, Version.HJ212_2025) else Version.HJ212_2017
    for _ in range(2):  # built, then from the remembered text
        answer = ReceiverSession._answer(cn, frame)
        if qn:
            assert answer == build_response(cn, qn=qn, pw=pw, mn=mn, version=written)
        else:  # no QN: the receiver's own time, same layout
            assert answer.startswith(b"##") and b";ST=91;CN=" + cn.encode() in answer
    assert (cn, pw, mn, written) in _ANSWER_RESTS


def test_over_the_number_alphabet_float_reads_exactly_the_plain_numbers() -> None:
    """The premise of the shaped area's lenient number check (``datarea._NUMBER_CHARS``): every string of at most
    5 of the characters 0 9 . + - (3,906 of them) is read by float() exactly when _PLAIN_NUMBERS allows it."""
    import itertools

    from schemas.hj212.datarea import _PLAIN_NUMBERS

    for n in range(6):
        for chars in itertools.product("09.+-", repeat=n):
            text = "".join(chars)
            try:
                float(text)
                reads = True
            except ValueError:
                reads = False
            assert reads == (_PLAIN_NUMBERS.fullmatch(text) is not None), text
