"""Wire format version 3, the agent batch: the documented layout byte for byte, round trips (hypothesis), versions 1
and 2 read by the same decoder, and bad input refused with a reason, never a traceback (fuzz)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.agent_batch import AgentBatch, decode_message
from schemas.batch import ReadingBatch, decode_batch
from schemas.errors import BatchDecodeError, BatchError, UnsupportedSchemaVersion

T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
CO2, O2 = ("co2", "a05001", "%"), ("o2", "a19001", "%")


def section(source_id: str, n: int, *, agent_id: str = "gw-01", period_s: int = 0, channels=(CO2, O2),
            start_s: int = 0) -> ReadingBatch:
    return ReadingBatch.from_columns(
        agent_id=agent_id, source_id=source_id, seq=0, channels=channels,
        ts_ns=[T0 + (start_s + i // len(channels)) * 10**9 for i in range(n)],
        channel=[i % len(channels) for i in range(n)], value=[10.0 + i for i in range(n)], flag=[0] * n,
        period_s=period_s)


def refresh_crc(buf: bytearray) -> bytes:
    struct.pack_into("<I", buf, len(buf) - 4, zlib.crc32(memoryview(buf)[:-4]))
    return bytes(buf)


def test_encoding_matches_the_documented_layout_byte_for_byte():
    # docs/wire-format.md, version 3: agent gw-01, seq 42; kiln1 (co2, o2) two readings, kiln2 (co2) one 60-s mean
    batch = AgentBatch.from_sections(agent_id="gw-01", seq=42, sections=[
        section("kiln1", 2), section("kiln2", 1, period_s=60, channels=(CO2,))])
    meta = b"".join([
        struct.pack("<H", 5), b"gw-01", struct.pack("<H", 2),
        struct.pack("<H", 5), b"kiln1", struct.pack("<IIH", 0, 2, 2),
        b"\x03co2\x06a05001\x01%", b"\x02o2\x06a19001\x01%",
        struct.pack("<H", 5), b"kiln2", struct.pack("<IIH", 60, 1, 1), b"\x03co2\x06a05001\x01%",
    ])
    # agent 2 + 5, count 2; kiln1 2 + 5 + 4 + 4 + 2, co2 1+3+1+6+1+1, o2 1+2+1+6+1+1; kiln2 17, co2 13: 81 bytes
    meta += bytes(-(24 + len(meta)) % 8)  # 24 + 81 = 105: 7 bytes of padding to 112
    assert len(meta) == 88
    ts = [T0, T0, T0]  # kiln1: both readings in second 0 (co2, o2); kiln2: second 0
    body = struct.pack("<4sHHIIQ", b"CEMB", 3, 0, 3, len(meta), 42) + meta + struct.pack(
        "<3q3d3H3B", *ts, 10.0, 11.0, 10.0, 0, 1, 0, 0, 0, 0)
    expected = body + struct.pack("<I", zlib.crc32(body))
    assert len(expected) == 24 + 88 + 3 * 19 + 4 == 173
    assert batch.encode() == expected
    back = decode_message(expected)
    assert back.equals(batch) and back.version == 3
    assert [(s.source_id, s.seq, s.period_s, len(s), s.version) for s in back.sections] == [
        ("kiln1", 42, 0, 2, 3), ("kiln2", 42, 60, 1, 3)]


def test_versions_1_and_2_decode_as_one_section_and_decode_batch_refuses_version_3():
    one = section("kiln1", 4)
    v1 = one.encode()
    got = decode_message(v1)
    assert (got.version, got.agent_id, len(got.sections)) == (1, "gw-01", 1) and got.sections[0].equals(one)
    assert decode_message(section("kiln1", 2, period_s=60).encode()).version == 2
    v3 = AgentBatch.from_sections(agent_id="gw-01", seq=1, sections=[one]).encode()
    with pytest.raises(UnsupportedSchemaVersion) as exc:
        decode_batch(v3)
    assert exc.value.version == 3 and exc.value.reason == "unsupported_version"


def test_an_empty_agent_batch_keeps_the_sequence():
    data = AgentBatch.from_sections(agent_id="gw-01", seq=7, sections=[]).encode()
    back = decode_message(data)
    assert (back.agent_id, back.seq, back.sections, len(back)) == ("gw-01", 7, (), 0)


def test_sections_must_be_the_agents_and_one_per_source():
    with pytest.raises(BatchError, match="two sections"):
        AgentBatch.from_sections(agent_id="gw-01", seq=0, sections=[section("kiln1", 2), section("kiln1", 2)])
    with pytest.raises(BatchError, match="not 'gw-01'"):
        AgentBatch.from_sections(agent_id="gw-01", seq=0, sections=[section("kiln1", 2, agent_id="gw-02")])
    with pytest.raises(BatchError, match="seq"):
        AgentBatch.from_sections(agent_id="gw-01", seq=-1, sections=[section("kiln1", 2)])


def _v3(*sections: ReadingBatch, seq: int = 5) -> bytearray:
    return bytearray(AgentBatch.from_sections(agent_id="gw-01", seq=seq, sections=sections).encode())


def test_bad_version_3_input_is_refused_with_its_reason():
    # the same source twice on the wire (an encoder that skipped the rule): the metadata is refused
    good = _v3(section("kiln1", 2), section("kiln2", 2))
    i = good.index(b"kiln2")
    twice = bytearray(good)
    twice[i : i + 5] = b"kiln1"
    with pytest.raises(BatchDecodeError, match="two sections") as exc:
        decode_message(refresh_crc(twice))
    assert exc.value.reason == "bad_metadata"
    # section reading counts that do not add up to the header's n: kiln1 says 3, kiln2 2: 5 of the 4 readings
    short = bytearray(good)
    j = good.index(b"kiln1") + 5 + 4  # after source_id and period_s
    struct.pack_into("<I", short, j, 3)
    with pytest.raises(BatchDecodeError, match="hold 5 readings, the header says 4"):
        decode_message(refresh_crc(short))
    # a bad reading in the second section: the whole message, the section named
    flagged = _v3(section("kiln1", 2), section("kiln2", 2))
    n, meta_len = struct.unpack_from("<II", flagged, 8)
    flags_at = 24 + meta_len + 18 * n
    flagged[flags_at + 3] = 99  # reading 1 of kiln2
    with pytest.raises(BatchDecodeError, match=r"section 1 \('kiln2'\): reading 1: flag code 99") as exc:
        decode_message(refresh_crc(flagged))
    assert exc.value.reason == "bad_flag"
    # a period above a day
    means = _v3(section("kiln1", 2, period_s=60))
    k = means.index(b"kiln1") + 5
    struct.pack_into("<I", means, k, 86_401)
    with pytest.raises(BatchDecodeError, match="period_s is 86401"):
        decode_message(refresh_crc(means))


readings = st.integers(min_value=0, max_value=12)


@st.composite
def agent_batches(draw) -> AgentBatch:
    n_sources = draw(st.integers(min_value=0, max_value=4))
    sections = []
    for k in range(n_sources):
        n = draw(readings)
        channels = (CO2, O2)[: draw(st.integers(min_value=1, max_value=2))]
        values = draw(st.lists(st.floats(allow_infinity=False, allow_nan=True, width=64), min_size=n, max_size=n))
        flags = [draw(st.integers(min_value=1, max_value=7)) if v != v else draw(st.integers(0, 7)) for v in values]
        sections.append(ReadingBatch.from_columns(
            agent_id="gw-π", source_id=f"stack-{k}", seq=0, channels=channels,
            ts_ns=draw(st.lists(st.integers(min_value=T0, max_value=T0 + 10**15), min_size=n, max_size=n)),
            channel=draw(st.lists(st.integers(0, len(channels) - 1), min_size=n, max_size=n)), value=values,
            flag=flags, period_s=draw(st.sampled_from([0, 60, 3600]))))
    return AgentBatch.from_sections(agent_id="gw-π", seq=draw(st.integers(0, 2**64 - 1)), sections=sections)


@settings(max_examples=200, deadline=None)
@given(agent_batches())
def test_round_trip_and_canonical(batch):
    data = batch.encode()
    back = decode_message(data)
    assert back.equals(batch) and back.encode() == data
    assert len(back) == sum(len(s) for s in batch.sections)


@settings(max_examples=400, deadline=None)
@given(agent_batches(), st.data())
def test_mutated_bytes_decode_or_are_refused_with_a_reason(batch, data):
    buf = bytearray(batch.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        buf = bytearray(refresh_crc(buf))  # past the checksum: the metadata and reading rules must hold
    cut = data.draw(st.sampled_from([None, 0, 5, len(buf) // 2]))
    raw = bytes(buf if cut is None else buf[:cut])
    try:
        got = decode_message(raw)
    except BatchDecodeError as exc:
        assert exc.reason and exc.detail
    else:
        assert got.encode() == raw if got.version == 3 else decode_batch(raw).encode() == raw


def test_columns_are_views_of_the_message():
    data = _v3(section("kiln1", 4), section("kiln2", 2))
    back = decode_message(bytes(data))
    assert [len(s) for s in back.sections] == [4, 2]
    assert np.array_equal(back.sections[1].value, [10.0, 11.0]) and not back.sections[1].value.flags.writeable


def test_an_empty_agent_batch_with_a_control_character_in_its_agent_id_is_a_decode_error():
    """Found by the mutation fuzz: the agent id of a batch without sections was checked outside the decode error's
    net, so a flipped byte gave a BatchError (not the one exception decode_message promises)."""
    data = bytearray(AgentBatch.from_sections(agent_id="gw-π", seq=0, sections=[]).encode())
    at = data.index(b"gw-")
    data[at] = 0  # 'g' -> NUL: a control character
    with pytest.raises(BatchDecodeError, match=r"agent_id .* contains control or unprintable characters"):
        decode_message(refresh_crc(data))
