"""``cems site``, ``cems schema`` and ``cems batch``: the project's files and their contracts (site files, JSON Schemas,
reading batches), checked and shown without any service."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from schemas.errors import BatchDecodeError, ConfigError

__all__ = ["batch", "schema", "site"]

JSON_SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "json"


def _json_schemas() -> dict[str, dict]:
    from schemas.site import site_json_schema
    from streams.cli.plugins import plugin_schemas

    return {"site": site_json_schema(), **plugin_schemas(), **_record_schemas()}


def _record_schemas() -> dict[str, dict]:
    """The records the workers publish, as on their topics (``schemas/records.py``)."""
    from pydantic import TypeAdapter

    from schemas.accounting import AccountingReport
    from schemas.alerts import Ack, Alert
    from schemas.qa import QaRecords
    from schemas.records import GapReport, HourlyRecord, MonthlyRecord

    out = {}
    for name, cls, topic in (("hourly-record", HourlyRecord, "cems.hourly.v1"),
                             ("monthly-record", MonthlyRecord, "cems.monthly.v1"),
                             ("gap-report", GapReport, "cems.gaps.v1"),
                             ("accounting-report", AccountingReport, "cems.accounting.v1 and POST /v1/accounting"),
                             ("alert", Alert, "cems.alerts.v1"),
                             ("alert-ack", Ack, "cems.alerts.ack.v1"),
                             ("qa-records", QaRecords, "QA record files (JSON, ingest/qa.py)")):
        doc = TypeAdapter(cls).json_schema()
        if name == "hourly-record":  # to_json adds the hour's ISO start next to the ns timestamp
            doc["properties"]["hour_start"] = {"type": "string", "format": "date-time", "title": "Hour Start"}
        out[name] = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$comment": f"value of {topic}",
                     **doc}
    return out


@click.group()
def site() -> None:
    """Site files: entity -> emission sources -> channels."""


@site.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def site_check(files: tuple[Path, ...]) -> None:
    """Validate site files; print a summary, or every problem with file, line and field (two files of one entity
    are refused, naming both)."""
    from schemas.site import entity_repeats, load_site

    failed = False
    loaded = []
    for path in files:
        try:
            entity = load_site(path)
        except ConfigError as exc:
            click.echo(str(exc), err=True)
            failed = True
            continue
        loaded.append((path, entity))
        n_channels = sum(len(s.channels) for s in entity.sources)
        click.echo(
            f"{path}: OK: {entity.id} ({entity.sector}, {entity.timezone}), "
            f"{len(entity.sources)} sources, {n_channels} channels"
        )
    for problem in entity_repeats(loaded):
        click.echo(problem, err=True)
        failed = True
    sys.exit(1 if failed else 0)


@click.group()
def schema() -> None:
    """JSON Schemas of the configuration files."""


@schema.command("show")
@click.argument("name")
def schema_show(name: str) -> None:
    """Print one JSON Schema (site, gateway, hourly-record, ...: `cems schema export` writes them all)."""
    schemas = _json_schemas()
    if name not in schemas:
        raise click.BadParameter(f"no schema {name!r}; known: {', '.join(sorted(schemas))} (gateway: only where the "
                                 f"edge extra is installed)", param_hint="NAME")
    click.echo(json.dumps(schemas[name], indent=2))


@schema.command("export")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=JSON_SCHEMA_DIR, show_default=True)
def schema_export(out: Path) -> None:
    """Write every JSON Schema to OUT/<name>.schema.json (the copies committed in schemas/json)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, doc in _json_schemas().items():
            path = out / f"{name}.schema.json"
            path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
            click.echo(f"wrote {path}")
    except OSError as exc:
        raise click.ClickException(f"cannot write {exc.filename}: {exc.strerror or exc}") from None


@click.group()
def batch() -> None:
    """Reading batches in the wire format (schemas/batch.py)."""


@batch.command("inspect")
@click.argument("file", type=click.File("rb"))
@click.option("--csv", "as_csv", is_flag=True, help="Print every reading as CSV instead of a summary.")
def batch_inspect(file, as_csv: bool) -> None:
    """Decode a batch file of any wire version (for example a dead-lettered message) and describe it: an agent
    batch (version 3) source by source."""
    from schemas.agent_batch import decode_message

    try:
        m = decode_message(file.read())
    except BatchDecodeError as exc:
        click.echo(f"{file.name}: not a valid batch: {exc}", err=True)
        sys.exit(1)
    if m.version != 3:
        _inspect_section(m.sections[0], as_csv, with_source=False)
        return
    if as_csv:
        click.echo("time_utc,source,channel,value,flag")
    else:
        click.echo(f"schema v{m.version}  agent {m.agent_id}  seq {m.seq}  sources {len(m.sections)}  "
                   f"readings {len(m)}")
    for section in m.sections:
        _inspect_section(section, as_csv, with_source=True)


def _inspect_section(b, as_csv: bool, with_source: bool) -> None:
    """One batch (or one source's section of an agent batch) as CSV rows or a summary."""
    import numpy as np

    from schemas.quantities import flag_letters

    letters = flag_letters(b.flag)
    if as_csv:
        ids = np.array([c.id for c in b.channels] or [""])[b.channel]
        times = np.datetime_as_string(b.timestamps, unit="ms")
        if not with_source:
            click.echo("time_utc,channel,value,flag")
        prefix = f"{b.source_id}," if with_source else ""
        for row in zip(times, ids, b.value.tolist(), letters, strict=True):  # Python floats: 13.76, not np.float64
            click.echo(f"{row[0]},{prefix}{row[1]},{row[2]!r},{row[3]}")
        return
    if with_source:
        click.echo(f"source {b.source_id}  period_s {b.period_s}  readings {len(b)}")
    else:
        click.echo(f"schema v{b.version}  agent {b.agent_id}  source {b.source_id}  seq {b.seq}  readings {len(b)}")
    if len(b):
        first, last = np.datetime_as_string(b.timestamps[[b.ts_ns.argmin(), b.ts_ns.argmax()]], unit="s")
        click.echo(f"time span {first}Z .. {last}Z")
    for i, c in enumerate(b.channels):
        sel = b.channel == i
        flags, counts = np.unique(letters[sel], return_counts=True)
        by_flag = " ".join(f"{f}={n}" for f, n in zip(flags, counts, strict=True)) or "-"
        click.echo(f"  [{i}] {c.id:<16} {c.quantity:<8} {c.unit:<6} n={int(sel.sum()):<8} {by_flag}")
