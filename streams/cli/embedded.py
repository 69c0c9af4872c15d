"""``cems embedded``: recorded reading batches (an edge outbox) through the whole pipeline in this process.

What it is given is checked before any work starts (site files, reports, ``--meter``, batch folders that hold no
batch): a usage error names what is wrong. Batch files that cannot be used go to ``OUT/dead-letter/`` with their
reason, and the rest are processed as if they had never been there (docs/bad-input.md).
"""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["embedded", "month_line", "parse_meters"]

#: What an edge meter can measure (``streams.core.reconcile``): a fuel or a material by its id, or the product.
_MEASURES = ("fuel:", "material:")
#: Meter quantities (schemas/quantities.py: fuel xf, product xp, electricity xe); other channels are not meters.
_METER_PREFIXES = ("xf", "xp", "xe")


def month_line(m) -> str:
    """A month as a user should read it: open or closed, the total, and how much of it was measured."""
    hours = "" if m.status == "closed" else f", {m.hours} of {m.hours_in_month} h so far"
    return (f"{m.source_id} {m.month} {m.status}{hours}: {m.co2_t:,.1f} t CO2 = {m.measured_co2_t:,.1f} t measured "
            f"({m.measured_hours} h) + {m.substituted_co2_t:,.1f} t substituted ({m.substituted_hours} h)"
            + (f", {m.missing_hours} h missing" if m.missing_hours else "")
            + (f", {m.out_of_control_hours} h out of control" if m.out_of_control_hours else ""))


def parse_meters(values: tuple[str, ...] | list[str], entities) -> dict[str, str]:
    """``--meter SOURCE/CHANNEL=WHAT`` values -> ``{"source/channel": what}``, each checked against the site files:
    the channel exists and is a meter quantity, and WHAT is ``fuel:<id>``, ``material:<id>`` or ``product``. Raises
    :class:`click.BadParameter` naming the value and what is wrong with it."""
    channels = {f"{s.id}/{c.id}": c for e in entities for s in e.sources for c in s.channels}
    out: dict[str, str] = {}
    for v in values:
        name, eq, what = v.partition("=")
        if not eq or "/" not in name or not what:
            raise click.BadParameter(f"{v!r}: expected SOURCE/CHANNEL=WHAT, e.g. kiln1-fuel/coal_total=fuel:raw_coal",
                                     param_hint="--meter")
        if not (what == "product" or (what.startswith(_MEASURES) and what.partition(":")[2])):
            raise click.BadParameter(f"{v!r}: WHAT is {what!r}; it must be fuel:<id>, material:<id> or product",
                                     param_hint="--meter")
        c = channels.get(name)
        if c is None:
            source = name.partition("/")[0]
            known = sorted(k for k in channels if k.startswith(f"{source}/"))
            where = (f"source {source!r} has the channels {known}" if known
                     else f"no site file has a source {source!r}")
            raise click.BadParameter(f"{v!r}: {where}", param_hint="--meter")
        if not c.quantity.startswith(_METER_PREFIXES):
            raise click.BadParameter(f"{v!r}: channel {name} is {c.quantity} in {c.unit}, not a meter (a fuel, "
                                     "product or electricity quantity, x...)", param_hint="--meter")
        if name in out and out[name] != what:
            raise click.BadParameter(f"{v!r}: {name} is already given as {out[name]!r}", param_hint="--meter")
        out[name] = what
    return out


def _qa_records(paths) -> list:
    """QA records of every file, all or nothing (``ingest.qa``); their problems as a clean error, file:line first."""
    if not paths:
        return []
    from ingest.qa import QaImportError, load_records

    try:
        return load_records(*paths)
    except QaImportError as exc:
        raise click.ClickException(str(exc)) from None


def _summary(rec, out: Path) -> None:
    """What the recording lacked or repeated, and the files dead-lettered, by reason: nothing left unsaid."""
    for agent, holes in sorted(rec.holes.items()):
        missing = sum(b - a + 1 for a, b in holes)
        ranges = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in holes[:5]) + (" ..." if len(holes) > 5 else "")
        click.echo(f"agent {agent}: {missing:,} sequence number(s) without a usable batch (seq {ranges}), not in "
                   "the recording or dead-lettered: their readings are missing from the figures")
    if rec.repeats:
        click.echo(f"{rec.repeats:,} file(s) repeat another byte for byte (same agent and seq): read once")
    if rec.dead_letters:
        reasons = ", ".join(f"{reason} {n}" for reason, n in rec.by_reason().items())
        sections = sum(d.section is not None for d in rec.dead_letters)  # of version-3 files, the rest of them read
        what = (f"{len(rec.dead_letters) - sections:,} batch file(s)"
                + (f" and {sections:,} section(s) of version-3 files" if sections else ""))
        click.echo(f"dead-lettered {what} into {out / 'dead-letter'} ({reasons}):")
        for d in sorted(rec.dead_letters, key=lambda d: (str(d.path), d.section or ""))[:20]:
            click.echo(f"  {d.path}{f' (section {d.section})' if d.section else ''}: {d.reason}: {d.detail}")
        if len(rec.dead_letters) > 20:
            click.echo(f"  ... and {len(rec.dead_letters) - 20} more (each with its .json in the folder)")


@click.command("embedded")
@click.option("--site", "sites", type=click.Path(exists=True, path_type=Path), multiple=True, required=True,
              help="Site files (or directories of *.yaml) of the sources in the batches.")
@click.option("--batches", type=click.Path(exists=True, path_type=Path), multiple=True, required=True,
              help="Recorded reading batches: files, or directories of *.batch (an edge outbox; subdirectories too).")
@click.option("--reports", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="Self-reported files.")
@click.option("--meter", "meters", multiple=True, metavar="SOURCE/CHANNEL=WHAT",
              help="An edge meter and what it measures, e.g. kiln1-fuel/coal_total=fuel:raw_coal (repeatable).")
@click.option("--qa", "qa_files", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="QA record files (CSV/JSON, docs/qa.md): failed or overdue checks put hours out of control.")
@click.option("--qa-recompute", is_flag=True,
              help="Let a QA result (Kv, bias factor) apply before its test was completed: an explicit recomputation, "
                   "archived as a new version (reason qa_recompute) of the months it changes.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("cems-output"), show_default=True)
def embedded(sites, batches, reports, meters, qa_files, qa_recompute, out: Path) -> None:
    """Recorded data through the whole pipeline in this process (no Kafka, no InfluxDB): records, reconciliation
    against the reports, the archive (OUT/archive.sqlite) and an HTML report (OUT/report.html). Batch files that
    cannot be used go to OUT/dead-letter/ with their reason; the others are processed."""
    from ingest.accounting import load_reports
    from schemas.errors import CemsError
    from streams.archive.store import Archive, StoreError
    from streams.config import load_sites
    from streams.report.html import render
    from streams.runtime.embedded import (
        archive_plants,
        batch_files,
        other_files,
        reconcile_plants,
        run_batches,
        write_dead_letters,
        write_records,
    )

    try:  # every input checked before any work
        entities = load_sites(list(sites))
        for f in reports:
            load_reports(f)
    except CemsError as exc:
        raise click.ClickException(str(exc)) from None
    if not entities:
        raise click.BadParameter(f"no site file (*.yaml, *.yml) in {', '.join(map(str, sites))}", param_hint="--site")
    meter_map = parse_meters(meters, entities)
    for b in batches:
        if not batch_files([b]):
            raise click.BadParameter(f"{b}: no *.batch file in it (nor in its subdirectories)", param_hint="--batches")
    files = batch_files(list(batches))
    qa = _qa_records(qa_files)
    skipped = other_files(list(batches))
    click.echo(f"processing {len(files):,} recorded batch(es) of {len(entities)} entit(y/ies)"
               + (f", {len(qa)} QA record(s)" if qa_files else ""))
    if skipped:
        click.echo(f"  {len(skipped)} other file(s) not read (not *.batch): "
                   + ", ".join(map(str, skipped[:5])) + (" ..." if len(skipped) > 5 else ""))
    try:
        rec = run_batches(entities, files, meter_map, qa_records=qa, qa_recompute=qa_recompute)
    except ValueError as exc:
        if not qa_files or "QA record" not in str(exc):
            raise
        raise click.ClickException(str(exc)) from None
    results = rec.results
    reconcile_plants(results, list(reports))
    out.mkdir(parents=True, exist_ok=True)
    write_dead_letters(rec.dead_letters, out / "dead-letter")
    try:
        archive = Archive(out / "archive.sqlite")
    except StoreError as exc:  # OUT/archive.sqlite is some other file
        raise click.ClickException(str(exc)) from None
    archive_plants(results, archive)
    shown = [r for r in results if r.monthly]  # a recording shorter than an hour has no month yet
    (out / "report.html").write_text(render(shown, "CEMS monthly reconciliation", archive.head()), encoding="utf-8")
    for r in results:
        click.echo(f"{r.entity.id}: {r.readings:,} readings, {len(r.hourly)} hourly records; {len(r.alerts)} alert(s)")
        for m in sorted(r.monthly, key=lambda m: (m.month, m.source_id)):
            click.echo(f"  {month_line(m)}")
    _summary(rec, out)
    hourly, monthly = write_records(results, out)
    click.echo(f"wrote {out / 'archive.sqlite'}, {out / 'report.html'}, {hourly} and {monthly}")
