"""``cems embedded`` given bad recordings: bad batch files are dead-lettered with their reason and bytes and the good
ones give the figures of the clean run; a missing batch only lowers coverage; bad arguments are usage errors before
any work (docs/bad-input.md, "Batches and `cems embedded`").

The recording is the start of the processor tests' stream (tests/fixtures.py ``two_stacks``: two agents, one stack
each, from 2026-01-01T00:00Z at 1 Hz in 5-s batches): its first 75 minutes, 900 batch files per agent, written as two
edge outboxes. Hour 0 of each stack is published (its end plus the 600-s lateness is behind the newest reading, at
1:14:59); hour 1 is not yet."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.batch import ChannelSpec, ReadingBatch, decode_batch
from streams.cli.embedded import embedded
from streams.runtime.embedded import batch_files, run_batches
from tests.fixtures import T0, site, two_stacks

PER_AGENT = 75 * 60 // 5  # 900 batches of 5 s in 75 min


def write_outboxes(directory: Path, agents: tuple[str, ...] = ("gw-a", "gw-b"), first: int | None = None) -> Path:
    """The two agents' batches as outboxes ``directory/<agent>/<seq:020d>.batch`` (only the ``first`` of each)."""
    for m in two_stacks()[0]:
        agent, seq = m.headers["cems-agent"].decode(), int(m.headers["cems-seq"])
        if agent in agents and (first is None or seq < first):
            (directory / agent).mkdir(parents=True, exist_ok=True)
            (directory / agent / f"{seq:020d}.batch").write_bytes(m.value)
    return directory


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    return write_outboxes(tmp_path_factory.mktemp("recording") / "outbox", first=PER_AGENT)


@pytest.fixture(scope="module")
def clean(recording):
    return run_batches([site()], sorted(recording.rglob("*.batch")))


def copy_of(recording: Path, tmp_path: Path) -> Path:
    out = tmp_path / "outbox"
    shutil.copytree(recording, out)
    return out


def rebuilt(data: bytes, **changes) -> bytes:
    """A batch's bytes with some fields changed (seq, source_id, channels, value...)."""
    b = decode_batch(data)
    fields = dict(agent_id=b.agent_id, source_id=b.source_id, seq=b.seq, channels=list(b.channels), ts_ns=b.ts_ns,
                  channel=b.channel, value=b.value, flag=b.flag)
    return ReadingBatch.from_columns(**(fields | changes)).encode()


def figures(rec) -> dict:
    """What a run's figures are: the latest hourly and monthly records' contents, and the minute grids."""
    hourly = {r.key: r.content() for res in rec.results for r in res.hourly}
    monthly = {(m.source_id, m.month): (m.co2_t, m.hours, m.measured_hours, m.missing_hours)
               for res in rec.results for m in res.monthly}
    grids = [(res.entity.id, res.minutes.mean, res.minutes.flag) for res in rec.results]
    return {"hourly": hourly, "monthly": monthly, "readings": [r.readings for r in rec.results], "grids": grids}


def assert_same_figures(got, want) -> None:
    a, b = figures(got), figures(want)
    assert a["hourly"] == b["hourly"]
    assert a["monthly"] == b["monthly"]
    assert a["readings"] == b["readings"]
    for (ea, ma, fa), (eb, mb, fb) in zip(a["grids"], b["grids"], strict=True):
        assert ea == eb
        np.testing.assert_array_equal(ma, mb)  # NaN where NaN
        np.testing.assert_array_equal(fa, fb)


# --- the clean recording ------------------------------------------------------------------------------------------


def test_the_clean_recording_gives_no_dead_letter(clean):
    assert clean.dead_letters == [] and clean.repeats == 0 and clean.holes == {}
    # 75 min x 60 s x 10 channels x 2 stacks = 90,000 readings
    assert sum(r.readings for r in clean.results) == 90_000
    # hour 0 of each stack: 2 records
    assert len(clean.results[0].hourly) == 2


# --- bad files next to good ones ------------------------------------------------------------------------------------


def add_bad_files(outbox: Path) -> dict[str, str]:
    """Every kind of bad file the issue names, next to the good ones: file name -> the reason it must get."""
    a = outbox / "gw-a"
    good = (a / f"{100:020d}.batch").read_bytes()
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0x10  # one bit in the middle: CRC-32 detects every single-bit error
    co2_only = decode_batch(good)
    ts = co2_only.ts_ns[co2_only.channel == 0]
    unknown_channel = rebuilt(good, seq=10_001, channels=[ChannelSpec("stack_height", "a01011", "m/s")], ts_ns=ts,
                              channel=np.zeros(ts.size, dtype=np.uint16), value=np.full(ts.size, 9.0),
                              flag=np.zeros(ts.size, dtype=np.uint8))
    files = {
        "empty.batch": (b"", "undecodable"),
        "random.batch": (np.random.default_rng(7).bytes(700), "undecodable"),
        "flipped.batch": (bytes(flipped), "undecodable"),
        "truncated.batch": (good[: len(good) // 3], "undecodable"),
        "unknown-source.batch": (rebuilt(good, seq=10_000, source_id="stack9"), "unknown_source"),
        "unknown-channel.batch": (unknown_channel, "unknown_channel"),
        "replayed.batch": (rebuilt(good, seq=10_002), "duplicate_readings"),  # the same readings, a new seq
        "reused-seq.batch": (rebuilt(good, value=decode_batch(good).value + 1.0), "seq_reused"),  # seq 100 again
    }
    for name, (data, _) in files.items():
        (a / name).write_bytes(data)
    return {name: reason for name, (_, reason) in files.items()}


def test_bad_files_are_dead_lettered_and_the_good_data_gives_the_clean_figures(recording, clean, tmp_path):
    outbox = copy_of(recording, tmp_path)
    expected = add_bad_files(outbox)
    rec = run_batches([site()], sorted(outbox.rglob("*.batch")))
    assert {d.path.name: d.reason for d in rec.dead_letters} == expected
    assert rec.by_reason() == {"undecodable": 4, "duplicate_readings": 1, "seq_reused": 1, "unknown_channel": 1,
                               "unknown_source": 1}
    assert_same_figures(rec, clean)
    details = {d.path.name: d.detail for d in rec.dead_letters}
    assert details["empty.batch"].startswith("truncated: 0 bytes")
    assert details["flipped.batch"].startswith("checksum:")
    assert details["random.batch"].startswith("bad_magic:")
    assert "'stack9'" in details["unknown-source.batch"]
    assert "['stack_height']" in details["unknown-channel.batch"]
    # 5 s x 10 channels = 50 readings, all given by seq 100 already
    assert details["replayed.batch"].startswith(f"50 of its 50 readings were given by {outbox}/gw-a/{100:020d}.batch")


def test_the_cli_writes_each_dead_letter_with_its_reason_and_bytes_and_counts_them(recording, tmp_path):
    outbox = copy_of(recording, tmp_path)
    expected = add_bad_files(outbox)
    (outbox / "notes.txt").write_text("not a batch")
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(site().model_dump(mode="json")))
    out = tmp_path / "out"
    run = CliRunner().invoke(embedded, ["--site", str(site_file), "--batches", str(outbox), "--out", str(out)])
    assert run.exit_code == 0, run.output
    # 2 x 900 good files + 8 bad ones
    assert "processing 1,808 recorded batch(es) of 1 entit(y/ies)" in run.output
    assert f"1 other file(s) not read (not *.batch): {outbox / 'notes.txt'}" in run.output
    assert (f"dead-lettered 8 batch file(s) into {out / 'dead-letter'} (undecodable 4, duplicate_readings 1, "
            "seq_reused 1, unknown_channel 1, unknown_source 1):") in run.output
    assert "plant: 90,000 readings, 2 hourly records" in run.output  # as the clean run
    letters = sorted((out / "dead-letter").glob("*.json"))
    assert len(letters) == 8
    for j in letters:
        meta = json.loads(j.read_text())
        original = Path(meta["file"])
        assert meta["reason"] == expected[original.name]
        assert j.with_suffix("").read_bytes() == original.read_bytes()  # the bytes as they were


def test_an_identical_copy_of_a_file_counts_once_and_is_no_dead_letter(recording, clean, tmp_path):
    outbox = copy_of(recording, tmp_path)
    (outbox / "copy").mkdir()
    shutil.copy(outbox / "gw-b" / f"{7:020d}.batch", outbox / "copy" / "again.batch")  # a subfolder is read too
    rec = run_batches([site()], sorted(outbox.rglob("*.batch")))
    assert rec.dead_letters == [] and rec.repeats == 1
    assert_same_figures(rec, clean)


def test_readings_replayed_under_new_sequence_numbers_are_counted_once(recording, clean, tmp_path):
    """The same readings sent again as new batches (a gateway restored from a backup renumbers its outbox): each
    replayed batch is a dead letter, the figures stay the clean run's."""
    outbox = copy_of(recording, tmp_path)
    for k in range(10):  # the first 50 s of gw-a's stack, again as seq 5,000-5,009
        data = (outbox / "gw-a" / f"{k:020d}.batch").read_bytes()
        (outbox / "gw-a" / f"replay-{k}.batch").write_bytes(rebuilt(data, seq=5_000 + k))
    rec = run_batches([site()], sorted(outbox.rglob("*.batch")))
    assert rec.by_reason() == {"duplicate_readings": 10}
    assert_same_figures(rec, clean)


# --- a missing batch ------------------------------------------------------------------------------------------------


def test_a_missing_batch_only_lowers_coverage_and_keeps_the_meters_last_minute(recording, clean, tmp_path):
    """Batch 360 of gw-a (readings 0:30:00-0:30:04) is not in the recording. The agent's sequence has a hole, which
    keeps the stack's later minutes open on the stream (the batch may still come); at the end of the recording they
    are closed all the same, so the totalisers' last minute is the recording's last and their month loses nothing.
    Before, the minute grid ended at the hole: the fuel and clinker totals of the demo's month came out 7.6 % and
    20.5 % low, and both raised false critical alerts."""
    from streams.core.reconcile import metered_totals
    from streams.runtime.embedded import _channels

    outbox = copy_of(recording, tmp_path)
    (outbox / "gw-a" / f"{360:020d}.batch").unlink()
    rec = run_batches([site()], sorted(outbox.rglob("*.batch")))
    assert rec.dead_letters == [] and rec.holes == {"gw-a": [(360, 360)]}
    (res,) = rec.results
    (ref,) = clean.results
    row = res.series.index(("stack0", "fuel_total"))
    valid = np.flatnonzero(np.isfinite(res.minutes.mean[row]))
    # the grid is the local month (Asia/Shanghai, UTC+8): it starts 8 h = 480 min before the data; the 75 min of
    # data are minutes 480-554, and the last one is there (before: the grid stopped at the hole, minute 510)
    assert res.minutes.start_ns == T0 - 8 * 3600 * 10**9
    assert valid[0] == 480 and valid[-1] == 480 + 74
    # minute 0:30 (480 + 30) lost 5 of its 60 readings per channel and is still a valid minute mean
    assert np.isfinite(res.minutes.mean[row, 510])
    meters = {"stack0/fuel_total": "fuel:coal", "stack0/product_total": "product"}
    got = metered_totals(res.minutes, res.series, _channels(res.entity), meters)
    want = metered_totals(ref.minutes, ref.series, _channels(ref.entity), meters)
    for what in meters.values():  # a totaliser's month is its last valid minute less its first: unchanged
        assert got[what].counted_total == want[what].counted_total
        assert got[what].coverage == want[what].coverage


# --- units in a batch's channel table -----------------------------------------------------------------------------


def with_co2_unit(outbox: Path, agent: str, unit: str, scale: float, quantity: str = "a05001") -> None:
    """Every batch of ``agent`` rewritten with CO2 declared in ``unit`` (values x ``scale``) and code ``quantity``."""
    for f in (outbox / agent).glob("*.batch"):
        b = decode_batch(f.read_bytes())
        channels = [ChannelSpec(c.id, quantity, unit) if c.id == "co2" else c for c in b.channels]
        value = np.where(b.channel == [c.id for c in b.channels].index("co2"), b.value * scale, b.value)
        f.write_bytes(rebuilt(f.read_bytes(), channels=channels, value=value))


def test_co2_sent_in_ppm_is_converted_to_the_site_files_percent(recording, clean, tmp_path):
    """12.5 % = 125,000 ppm: the values x 10^4 in ppm come back as per cent (x 10^-4); the hours are the clean ones
    within the rounding of one multiplication and one division (a few units of 10^-16)."""
    outbox = copy_of(recording, tmp_path)
    with_co2_unit(outbox, "gw-a", "ppm", 1e4)
    rec = run_batches([site()], sorted(outbox.rglob("*.batch")))
    assert rec.dead_letters == []
    got = {r.key: r for r in rec.results[0].hourly}
    want = {r.key: r for r in clean.results[0].hourly}
    assert got.keys() == want.keys() and len(got) == 2  # no hour lost (before: every ppm hour was missing)
    for k, r in want.items():
        assert got[k].status == r.status == "measured"
        assert got[k].co2_kg == pytest.approx(r.co2_kg, rel=1e-12)


@pytest.mark.parametrize(("unit", "quantity", "reason", "words"), [
    ("mg/m3", "a05001", "unit_mismatch", ["'co2'", "'mg/m3'", "'%'", "a05001"]),  # needs a molar mass: refused
    ("%", "a19001", "quantity_mismatch", ["'co2'", "'a19001'", "'a05001'"]),  # CO2 sent with the O2 code
])
def test_a_channel_that_does_not_fit_the_site_file_is_refused_naming_it(recording, clean, tmp_path, unit, quantity,
                                                                       reason, words):
    outbox = copy_of(recording, tmp_path)
    with_co2_unit(outbox, "gw-b", unit, 1.0, quantity)
    rec = run_batches([site()], sorted(outbox.rglob("*.batch")))
    assert len(rec.dead_letters) == PER_AGENT and rec.by_reason() == {reason: PER_AGENT}
    assert all(w in rec.dead_letters[0].detail for w in words), rec.dead_letters[0].detail
    # stack0 (gw-a) keeps its clean hours
    assert {r.key: r.content() for r in rec.results[0].hourly if r.source_id == "stack0"} == \
        {r.key: r.content() for r in clean.results[0].hourly if r.source_id == "stack0"}


# --- months close by the data's clock -------------------------------------------------------------------------------


def test_a_short_recording_leaves_its_month_open_and_unarchived(tmp_path):
    """75 min of 2026-01-01: the month is open (1 of 744 h published so far), nothing is archived; 100 s of data
    (no hour yet) run without a month and without an error."""
    from streams.archive.store import Archive

    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(site().model_dump(mode="json")))
    for name, first in (("75-minutes", PER_AGENT), ("hundred-seconds", 20)):  # 20 batches x 5 s = 100 s
        outbox = write_outboxes(tmp_path / name, ("gw-a",), first)
        out = tmp_path / f"out-{name}"
        run = CliRunner().invoke(embedded, ["--site", str(site_file), "--batches", str(outbox), "--out", str(out)])
        assert run.exit_code == 0, run.output
        assert Archive(out / "archive.sqlite").latest() == []
        if first == PER_AGENT:  # 31 days x 24 h = 744 h
            assert "stack0 2026-01 open, 1 of 744 h so far" in run.output
        else:  # 100 s x 10 channels = 1,000 readings
            assert "plant: 1,000 readings, 0 hourly records" in run.output and " 2026-01 " not in run.output


# --- arguments ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["--meter", "garbage"], "'garbage': expected SOURCE/CHANNEL=WHAT"),
    (["--meter", "stack0/fuel_total"], "'stack0/fuel_total': expected SOURCE/CHANNEL=WHAT"),
    (["--meter", "stack0/fuel_total=coal"], "WHAT is 'coal'; it must be fuel:<id>, material:<id> or product"),
    (["--meter", "stack0/fuel_total=fuel:"], "WHAT is 'fuel:'"),
    (["--meter", "stack7/fuel_total=fuel:coal"], "no site file has a source 'stack7'"),
    (["--meter", "stack0/coal_total=fuel:coal"], "source 'stack0' has the channels ['stack0/co2'"),
    (["--meter", "stack0/co2=fuel:coal"], "channel stack0/co2 is a05001 in %, not a meter"),
    (["--meter", "stack0/fuel_total=fuel:coal", "--meter", "stack0/fuel_total=product"], "already given as"),
    (["--batches", "EMPTY"], "EMPTY: no *.batch file in it (nor in its subdirectories)"),
])
def test_bad_arguments_are_usage_errors_before_any_work(recording, tmp_path, args, message):
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(site().model_dump(mode="json")))
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no batch here")
    args = [str(empty) if a == "EMPTY" else a for a in args]
    batches = [] if "--batches" in args else ["--batches", str(recording)]
    out = tmp_path / "out"
    run = CliRunner().invoke(embedded, ["--site", str(site_file), *batches, *args, "--out", str(out)])
    assert run.exit_code == 2, run.output
    assert message.replace("EMPTY", str(empty)) in run.output
    assert run.exception is None or isinstance(run.exception, SystemExit)  # no traceback
    assert not out.exists()  # nothing was done


# --- fuzz: good and bad files mixed at random -----------------------------------------------------------------------

#: 75 min of gw-a (900 batches), as in :func:`recording`
FUZZ_BATCHES = PER_AGENT


@pytest.fixture(scope="module")
def fuzz_recording(tmp_path_factory):
    outbox = write_outboxes(tmp_path_factory.mktemp("fuzz") / "outbox", ("gw-a",), FUZZ_BATCHES)
    return outbox, run_batches([site()], sorted(outbox.rglob("*.batch")))


def _corrupt(kind: str, data: bytes, k: int, rnd: bytes) -> bytes:
    """A bad file made of good bytes ``data`` (``k``: a number to make it unique; ``rnd``: random bytes)."""
    if kind == "random":
        return rnd
    if kind == "truncated":
        return data[: len(rnd) % len(data)]
    if kind == "flipped":
        out = bytearray(data)
        out[len(rnd) % len(out)] ^= 1 << (k % 8)
        return bytes(out)
    if kind == "appended":
        return data + rnd[:1] + rnd
    if kind == "replayed":
        return rebuilt(data, seq=100_000 + k)
    if kind == "unknown_source":
        return rebuilt(data, seq=200_000 + k, source_id=f"nowhere{k}")
    if kind == "future_version":
        return data[:4] + b"\x09\x00" + data[6:]
    raise AssertionError(kind)


KINDS = ("random", "truncated", "flipped", "appended", "replayed", "unknown_source", "future_version")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, FUZZ_BATCHES - 1),
                              st.binary(min_size=1, max_size=300), st.booleans()), min_size=1, max_size=10))
def test_fuzz_random_bad_files_never_raise_never_change_the_good_figures(fuzz_recording, tmp_path_factory, bad):
    """Random bad files (made of random bytes, or of a good batch cut, bit-flipped, extended, replayed under a new
    sequence number, sent for an unknown source, or stamped with a future version), some in a subfolder: the run
    never raises, the good data give the clean run's figures, and every bad file is a dead letter."""
    outbox, clean_run = fuzz_recording
    work = tmp_path_factory.mktemp("fuzz-run")  # the bad files; the good ones are read where they are
    bad_files = []
    for k, (kind, index, rnd, nested) in enumerate(bad):
        data = (outbox / "gw-a" / f"{index:020d}.batch").read_bytes()
        folder = work / ("nested" if nested else "")
        folder.mkdir(exist_ok=True)
        bad_files.append(folder / f"bad-{k}-{kind}.batch")
        bad_files[-1].write_bytes(_corrupt(kind, data, k, rnd))
    good = batch_files([outbox])
    rec = run_batches([site()], sorted(good + bad_files))
    assert sorted(d.path for d in rec.dead_letters) == sorted(bad_files)
    assert_same_figures(rec, clean_run)
    shutil.rmtree(work)


def test_a_batch_without_readings_takes_its_number_and_opens_no_hole(recording, tmp_path):
    """Batch 360 of gw-a replaced by a valid batch of no readings under the same number: nothing is refused, no hole
    is reported, and the readings are the clean ones less that batch's: 90,000 - 5 s x 10 channels = 89,950."""
    outbox = copy_of(recording, tmp_path)
    path = outbox / "gw-a" / f"{360:020d}.batch"
    path.write_bytes(rebuilt(path.read_bytes(), ts_ns=[], channel=[], value=[], flag=[]))
    rec = run_batches([site()], sorted(outbox.rglob("*.batch")))
    assert rec.dead_letters == [] and rec.holes == {}
    assert sum(r.readings for r in rec.results) == 89_950


def test_a_file_that_cannot_be_read_is_a_dead_letter(recording, clean, tmp_path):
    """A dangling symbolic link named like a batch (the file it pointed to is gone): ``unreadable``, with the
    system's reason; the rest as clean."""
    outbox = copy_of(recording, tmp_path)
    (outbox / "gw-a" / "gone.batch").symlink_to(tmp_path / "nowhere.batch")
    rec = run_batches([site()], batch_files([outbox]))
    assert [(d.path.name, d.reason, d.detail, d.data) for d in rec.dead_letters] == [
        ("gone.batch", "unreadable", "No such file or directory", b"")]
    assert_same_figures(rec, clean)


def test_a_broken_site_or_report_file_is_an_error_before_any_work(recording, tmp_path):
    site_file = tmp_path / "site.yaml"
    site_file.write_text("id: plant\nsources: 7\n")
    out = tmp_path / "out"
    run = CliRunner().invoke(embedded, ["--site", str(site_file), "--batches", str(recording), "--out", str(out)])
    assert run.exit_code == 1 and f"{site_file}" in run.output and "Traceback" not in run.output
    site_file.write_text(yaml.safe_dump(site().model_dump(mode="json")))
    report = tmp_path / "report.csv"
    report.write_text("entity_id,month\nplant,2026-01\n")
    run = CliRunner().invoke(embedded, ["--site", str(site_file), "--batches", str(recording), "--reports",
                                        str(report), "--out", str(out)])
    assert run.exit_code == 1 and f"{report}:1" in run.output and "nothing imported" in run.output
    assert not out.exists()


def test_repeated_readings_by_hand():
    """Batch 0: co2 at t 0, 1, 2; batch 1: co2 at 3, 4 and o2 at 0 (another channel: no repeat); batch 2: co2 at 1,
    2, 5 (two of batch 0's) and o2 at 0 (batch 1's): 3 readings given before, first by batch 0. Batch 3 is HJ 212
    minute means (period 60) at co2 t 0: the processor's own rule, not this one."""
    from streams.runtime.embedded import repeated_readings

    def batch(readings, period_s=0):
        ids = sorted({c for c, _ in readings})
        return ReadingBatch.from_columns(agent_id="gw", source_id="s", seq=0, period_s=period_s,
                                         channels=[(c, "a05001", "%") for c in ids],
                                         ts_ns=[T0 + t * 60 * 10**9 for _, t in readings],
                                         channel=[ids.index(c) for c, _ in readings], value=[1.0] * len(readings),
                                         flag=[0] * len(readings))

    batches = [batch([("co2", 0), ("co2", 1), ("co2", 2)]), batch([("co2", 3), ("co2", 4), ("o2", 0)]),
               batch([("co2", 1), ("co2", 2), ("co2", 5), ("o2", 0)]), batch([("co2", 0)], period_s=60)]
    assert repeated_readings(batches) == {2: (3, 0)}
    assert repeated_readings(batches[:2]) == {}
