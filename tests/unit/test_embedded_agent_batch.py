"""``cems embedded`` over agent batches (wire version 3), alone and mixed with version 1: the figures of one batch
per source, one sequence number per message, a refused section dead-lettered alone, bad bytes a named refusal.

The recording is the processor tests' stream (tests/fixtures.py ``two_stacks``) as one agent, ``gw-plant``, sending
both stacks, as in tests/unit/test_processor_agent_batch.py: its first 75 minutes (900 intervals of 5 s), each
interval one version-3 file (one sequence number) or two version-1 files (two numbers), numbered on across versions
as after an upgrade. Hour 0 of each stack is published (its end plus the 600-s lateness is behind the newest reading,
at 1:14:59); the month (2026-01) stays open."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.batches import REASONS
from schemas.agent_batch import decode_message
from schemas.batch import ChannelSpec, ReadingBatch
from schemas.errors import BatchDecodeError
from streams.cli.embedded import embedded
from streams.core.processor import PROCESSOR_REASONS
from streams.kernels import HOUR_NS
from streams.runtime.embedded import RECORDING_REASONS, run_batches
from tests.fixtures import T0, offline_co2_kg, site
from tests.unit.test_embedded_bad_input import assert_same_figures
from tests.unit.test_processor_agent_batch import AGENT, _agent, _single, intervals

INTERVALS = 75 * 60 // 5  # 900 intervals of 5 s in 75 min
READINGS = 75 * 60 * 10 * 2  # 75 min x 60 s x 10 channels x 2 stacks = 90,000


def write_outbox(directory: Path, version_of, n: int = INTERVALS) -> Path:
    """The first ``n`` intervals as an outbox ``directory/<seq:020d>.batch``: interval k as version ``version_of(k)``
    (1: a file per stack, two numbers; 3: one agent batch, one number); the numbers continue across versions."""
    directory.mkdir(parents=True)
    seq = 0
    for k, (b0, b1, _) in enumerate(intervals()[:n]):
        if version_of(k) == 1:
            for b in (b0, b1):
                (directory / f"{seq:020d}.batch").write_bytes(_single(b, seq))
                seq += 1
        else:
            (directory / f"{seq:020d}.batch").write_bytes(_agent([b0, b1], seq))
            seq += 1
    return directory


def files(outbox: Path) -> list[Path]:
    return sorted(outbox.rglob("*.batch"))


@pytest.fixture(scope="module")
def outboxes(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("agent-batches")
    return {"v1": write_outbox(root / "v1", lambda k: 1), "v3": write_outbox(root / "v3", lambda k: 3),
            "upgrade": write_outbox(root / "upgrade", lambda k: 1 if k < 450 else 3),  # v1 for 37.5 min, then v3
            "flapping": write_outbox(root / "flapping", lambda k: 1 + 2 * (k % 2))}  # v1 and v3 by turns


@pytest.fixture(scope="module")
def v1_run(outboxes):
    return run_batches([site()], files(outboxes["v1"]))


@pytest.fixture(scope="module")
def v3_run(outboxes):
    return run_batches([site()], files(outboxes["v3"]))


def test_the_same_readings_as_version_1_and_version_3_give_the_same_figures_bit_for_bit(v1_run, v3_run):
    for rec in (v1_run, v3_run):
        assert rec.dead_letters == [] and rec.repeats == 0 and rec.holes == {}
        (res,) = rec.results
        assert res.readings == READINGS
        hours = {(r.source_id, r.hour_start_ns): r for r in res.hourly}
        assert sorted(hours) == [("stack0", T0), ("stack1", T0)]  # hour 0 of each stack: 2 records
        expected = offline_co2_kg()  # the kernels on all of the readings at once
        for (source, hour_ns), r in hours.items():
            assert r.co2_kg == expected[int(source[-1]), (hour_ns - T0) // HOUR_NS]  # exact sums: bit for bit
            assert r.status == "measured" and r.readings == 3600 * 10  # 3600 s x 10 channels
        for m in res.monthly:  # the open month holds hour 0 only: its CO2 [t] is that hour's [kg] / 1000
            assert m.status == "open" and m.hours == 1
            assert m.co2_t == expected[int(m.source_id[-1]), 0] / 1000
    assert_same_figures(v3_run, v1_run)  # hourly and monthly contents and the minute grids, NaN where NaN


@pytest.mark.parametrize("mix", ["upgrade", "flapping"])
def test_a_mix_of_versions_from_one_agent_gives_the_figures_of_version_1(outboxes, v1_run, mix):
    rec = run_batches([site()], files(outboxes[mix]))
    assert rec.dead_letters == [] and rec.holes == {}
    assert_same_figures(rec, v1_run)


def test_the_cli_writes_the_same_records_for_version_1_and_version_3(outboxes, tmp_path):
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(site().model_dump(mode="json")))
    csv = {}
    for version in ("v1", "v3"):
        out = tmp_path / version
        run = CliRunner().invoke(embedded, ["--site", str(site_file), "--batches", str(outboxes[version]),
                                            "--out", str(out)])
        assert run.exit_code == 0, run.output
        # 1,800 files of version 1 (2 a interval), 900 of version 3
        assert f"processing {2 * INTERVALS if version == 'v1' else INTERVALS:,} recorded batch(es)" in run.output
        assert "plant: 90,000 readings, 2 hourly records" in run.output and "dead-lettered" not in run.output
        csv[version] = ((out / "hourly.csv").read_bytes(), (out / "monthly.csv").read_bytes())
    assert csv["v1"] == csv["v3"]  # byte for byte (floats written in full)


# --- sequence numbers: one per agent message ----------------------------------------------------------------------


def test_a_duplicate_agent_batch_counts_once(outboxes, v3_run, tmp_path):
    """Seq 7 copied byte for byte into a subfolder: read once, no dead letter. Seq 8 again with other bytes: refused
    as ``seq_reused`` (the first file in path order is read). Seq 9's two sections again under a new number (the next,
    900): each a ``duplicate_readings`` section, none read, so the message takes no number (a hole at 900 would show
    only above the highest; 900 is the highest, so none)."""
    import shutil

    outbox = tmp_path / "outbox"
    shutil.copytree(outboxes["v3"], outbox)
    (outbox / "copy").mkdir()
    shutil.copy(outbox / f"{7:020d}.batch", outbox / "copy" / "again.batch")
    b0, b1, _ = intervals()[8]
    changed = ReadingBatch.from_columns(agent_id=AGENT, source_id="stack0", seq=8, channels=b0.channels,
                                        ts_ns=b0.ts_ns, channel=b0.channel, value=b0.value + 1.0, flag=b0.flag)
    (outbox / "copy" / "other.batch").write_bytes(_agent([changed, b1], 8))
    (outbox / "copy" / "replayed.batch").write_bytes(_agent(list(intervals()[9][:2]), INTERVALS))
    rec = run_batches([site()], files(outbox))
    assert rec.repeats == 1 and rec.holes == {}
    got = sorted((d.path.name, d.reason, d.section) for d in rec.dead_letters)
    assert got == [("other.batch", "seq_reused", None), ("replayed.batch", "duplicate_readings", "stack0"),
                   ("replayed.batch", "duplicate_readings", "stack1")]
    replayed = {d.section: d.detail for d in rec.dead_letters if d.reason == "duplicate_readings"}
    # 5 s x 10 channels = 50 readings per section, all given by seq 9 already
    assert replayed["stack1"].startswith(f"source 'stack1': 50 of its 50 readings were given by "
                                         f"{outbox / f'{9:020d}.batch'} already")
    assert_same_figures(rec, v3_run)


def test_a_missing_agent_batch_is_one_hole_of_one_number(outboxes, tmp_path):
    """Seq 300 (both stacks' 0:25:00-0:25:04) not in the recording: one number missing, 100 readings fewer."""
    import shutil

    outbox = tmp_path / "outbox"
    shutil.copytree(outboxes["v3"], outbox)
    (outbox / f"{300:020d}.batch").unlink()
    rec = run_batches([site()], files(outbox))
    assert rec.dead_letters == [] and rec.holes == {AGENT: [(300, 300)]}
    assert rec.results[0].readings == READINGS - 2 * 5 * 10  # 2 stacks x 5 s x 10 channels


# --- one section refused, the others read ---------------------------------------------------------------------------


def _in_mg_m3(b: ReadingBatch) -> ReadingBatch:
    """``b`` with CO2 declared in mg/m3 (the site file: %): a unit that does not convert without a molar mass."""
    chans = tuple(ChannelSpec(c.id, c.quantity, "mg/m3") if c.id == "co2" else c for c in b.channels)
    return ReadingBatch.from_columns(agent_id=AGENT, source_id=b.source_id, seq=b.seq, channels=chans, ts_ns=b.ts_ns,
                                     channel=b.channel, value=b.value, flag=b.flag)


def test_a_refused_section_is_dead_lettered_alone_and_the_others_are_read(outboxes, v3_run, tmp_path):
    """Seq 600 with stack1's CO2 in mg/m3: stack1's section is refused (``unit_mismatch``, by the processor) and
    stack0's is read. Seq 601 with a third section for a source in no site file (``unknown_source``): the two stacks
    are read. Readings: the clean 90,000 less stack1's 5 s x 10 channels of seq 600 = 89,950; stack0's figures are
    the clean run's; both numbers are taken (no hole)."""
    import shutil

    outbox = tmp_path / "outbox"
    shutil.copytree(outboxes["v3"], outbox)
    b0, b1, _ = intervals()[600]
    (outbox / f"{600:020d}.batch").write_bytes(_agent([b0, _in_mg_m3(b1)], 600))
    c0, c1, _ = intervals()[601]
    stray = ReadingBatch.from_columns(agent_id=AGENT, source_id="stack9", seq=601, channels=c0.channels,
                                      ts_ns=c0.ts_ns, channel=c0.channel, value=c0.value, flag=c0.flag)
    (outbox / f"{601:020d}.batch").write_bytes(_agent([c0, stray, c1], 601))
    rec = run_batches([site()], files(outbox))
    assert sorted((d.path.name, d.reason, d.section) for d in rec.dead_letters) == [
        (f"{600:020d}.batch", "unit_mismatch", "stack1"), (f"{601:020d}.batch", "unknown_source", "stack9")]
    assert rec.holes == {}
    details = {d.reason: d.detail for d in rec.dead_letters}
    assert details["unit_mismatch"].startswith("source 'stack1': ") and "'mg/m3'" in details["unit_mismatch"]
    assert details["unknown_source"] == "source 'stack9': in none of the site files"
    assert all(d.data == (outbox / d.path.name).read_bytes() for d in rec.dead_letters)  # the file's own bytes
    (res,) = rec.results
    assert res.readings == READINGS - 5 * 10
    clean = {r.key: r.content() for r in v3_run.results[0].hourly if r.source_id == "stack0"}
    assert {r.key: r.content() for r in res.hourly if r.source_id == "stack0"} == clean
    # stack1's hour 0 lost 5 s of 3,600 of each of its 10 channels: 35,950 readings
    (h1,) = [r for r in res.hourly if r.source_id == "stack1"]
    assert h1.readings == 3600 * 10 - 5 * 10


def test_the_cli_names_a_refused_section_and_writes_its_dead_letter(outboxes, tmp_path):
    import shutil

    outbox = tmp_path / "outbox"
    shutil.copytree(outboxes["v3"], outbox)
    b0, b1, _ = intervals()[600]
    path = outbox / f"{600:020d}.batch"
    path.write_bytes(_agent([b0, _in_mg_m3(b1)], 600))
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(site().model_dump(mode="json")))
    out = tmp_path / "out"
    run = CliRunner().invoke(embedded, ["--site", str(site_file), "--batches", str(outbox), "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert (f"dead-lettered 0 batch file(s) and 1 section(s) of version-3 files into {out / 'dead-letter'} "
            "(unit_mismatch 1):") in run.output
    assert f"  {path} (section stack1): unit_mismatch: source 'stack1': " in run.output
    assert "plant: 89,950 readings, 2 hourly records" in run.output  # 90,000 - 5 s x 10 channels
    (letter,) = (out / "dead-letter").glob("*.json")
    meta = json.loads(letter.read_text())
    assert meta["file"] == str(path) and meta["reason"] == "unit_mismatch" and meta["section"] == "stack1"
    assert letter.with_suffix("").read_bytes() == path.read_bytes()


# --- fuzz: mutated and random version-3 bytes -------------------------------------------------------------------------

FUZZ_INTERVALS = 120  # 10 min


@pytest.fixture(scope="module")
def fuzz_recording(tmp_path_factory):
    outbox = write_outbox(tmp_path_factory.mktemp("fuzz-v3") / "outbox", lambda k: 3, FUZZ_INTERVALS)
    return outbox, run_batches([site()], files(outbox))


def _mutated(kind: str, data: bytes, at: int, bit: int, rnd: bytes) -> bytes:
    """Bad version-3 bytes made of a good message: ``at`` picks a byte, ``bit`` a bit, ``rnd`` random bytes."""
    out = bytearray(data)
    if kind == "random":  # a version-3 header, then anything
        return bytes(out[:8]) + rnd
    if kind == "truncated":
        return bytes(out[: at % len(out)])
    if kind == "appended":
        return data + rnd
    if kind == "sections":  # the section count (after the agent id) changed, the checksum made right again
        pos = 24 + 2 + int.from_bytes(out[24:26], "little")
        struct.pack_into("<H", out, pos, (int.from_bytes(out[pos:pos + 2], "little") + 1 + at) % 65_536)
    else:  # "flipped": one bit anywhere; "flipped_crc": one bit before the checksum, the checksum made right again
        out[at % (len(out) if kind == "flipped" else len(out) - 4)] ^= 1 << bit
    if kind != "flipped":
        struct.pack_into("<I", out, len(out) - 4, zlib.crc32(memoryview(out)[:-4]))
    return bytes(out)


FUZZ_KINDS = ("random", "truncated", "appended", "sections", "flipped", "flipped_crc")
KNOWN = REASONS.keys() | PROCESSOR_REASONS.keys() | RECORDING_REASONS.keys()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=st.lists(st.tuples(st.sampled_from(FUZZ_KINDS), st.integers(0, FUZZ_INTERVALS - 1),
                              st.integers(0, 10**6), st.integers(0, 7), st.binary(max_size=300)),
                    min_size=1, max_size=6))
def test_fuzz_mutated_agent_batches_never_crash_and_are_refused_by_name(fuzz_recording, tmp_path_factory, bad):
    """Version-3 files cut, extended, bit-flipped (with and without a checksum that fits), given another section count,
    or random after a version-3 header, beside the good recording (read first): the run never raises; a file the
    decoder refuses is one dead letter naming the decoder's reason; every dead letter has a known reason code and a
    detail; and the good recording's figures stay as they were. (A single bit flipped under a fitting checksum that
    still decodes is another agent or number with the same readings, ``duplicate_readings``, or the same number with
    other bytes, ``seq_reused``, or a section of an unknown source: never new figures.)"""
    outbox, clean = fuzz_recording
    work = tmp_path_factory.mktemp("fuzz-v3-run")
    bad_files = []
    for k, (kind, index, at, bit, rnd) in enumerate(bad):
        path = work / f"bad-{k}-{kind}.batch"
        path.write_bytes(_mutated(kind, (outbox / f"{index:020d}.batch").read_bytes(), at, bit, rnd))
        bad_files.append(path)
    rec = run_batches([site()], files(outbox) + bad_files)
    for d in rec.dead_letters:
        assert d.reason in KNOWN and d.detail, d
    for path in bad_files:
        data = path.read_bytes()
        try:
            decode_message(data)
        except BatchDecodeError as exc:
            (d,) = [d for d in rec.dead_letters if d.path == path]
            assert d.reason in ("undecodable", "unsupported_version") and d.section is None and d.data == data
            assert d.detail.startswith(exc.reason) or d.reason == "unsupported_version", d.detail
    assert_same_figures(rec, clean)
    for path in bad_files:
        path.unlink()


def test_the_cli_on_a_garbage_version_3_file_names_it_and_gives_no_traceback(fuzz_recording, tmp_path):
    outbox, _ = fuzz_recording
    bad = tmp_path / "bad" / "garbage.batch"
    bad.parent.mkdir()
    bad.write_bytes((outbox / f"{5:020d}.batch").read_bytes()[:8] + np.random.default_rng(3).bytes(200))
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(site().model_dump(mode="json")))
    run = CliRunner().invoke(embedded, ["--site", str(site_file), "--batches", str(outbox), "--batches",
                                        str(bad.parent), "--out", str(tmp_path / "out")])
    assert run.exit_code == 0 and run.exception is None, run.output
    assert f"  {bad}: undecodable: " in run.output and "Traceback" not in run.output


def test_an_agent_whose_sources_are_in_two_site_files_shows_no_false_hole(outboxes, v3_run):
    """stack0 in one site file, stack1 in another, one agent sending both: each entity's processor reads its own
    sections. Intervals 400-499 hold stack0 only (100 messages, numbers 400-499, none for plant-b): plant-b is given
    them as empty messages, so its sequence shows no hole, and its readings are stack1's of the other intervals:
    800 x 5 s x 10 channels = 40,000; plant-a has all of stack0's, 900 x 50 = 45,000."""
    import shutil
    import tempfile

    whole = site()
    a = whole.model_copy(update={"id": "plant-a", "sources": whole.sources[:1]})
    b = whole.model_copy(update={"id": "plant-b", "sources": whole.sources[1:]})
    with tempfile.TemporaryDirectory() as tmp:
        outbox = Path(tmp) / "outbox"
        shutil.copytree(outboxes["v3"], outbox)
        every = intervals()
        for k in range(400, 500):
            (outbox / f"{k:020d}.batch").write_bytes(_agent([every[k][0]], k))
        rec = run_batches([a, b], files(outbox))
    assert rec.dead_letters == [] and rec.holes == {}
    assert [(r.entity.id, r.readings) for r in rec.results] == [("plant-a", 45_000), ("plant-b", 40_000)]
    def stack0(results) -> dict:  # stack0's hour records, less the entity they are filed under
        return {r.key: r.content()[1:] for res in results for r in res.hourly if r.source_id == "stack0"}

    assert stack0(rec.results) == stack0(v3_run.results) and len(stack0(rec.results)) == 1  # hour 0, as in one file
