"""``cems qa``: QA records of the monitors (docs/qa.md) in: validated all or nothing, published to the QA topic."""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["qa"]


@click.group()
def qa() -> None:
    """QA records of the monitors: drift checks, comparison tests, linearity checks, velocity traverses."""


@qa.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("-c", "--config", type=click.Path(dir_okay=False, path_type=Path), help="Central config (else env).")
@click.option("--check", is_flag=True, help="Validate only; publish nothing.")
def qa_import(files: tuple[Path, ...], config: Path | None, check: bool) -> None:
    """Validate CSV/JSON QA files, all files or nothing, and judge every record against the registered sites under
    the configured policy; then publish them to the QA topic, where the stream workers read them."""
    from ingest.qa import QaImportError, load_records
    from schemas.errors import CemsError
    from streams.cli.stream import _load
    from streams.config import load_sites
    from streams.core.processor import Registry
    from streams.core.qa import QaState
    from streams.runtime.qa_topic import publish_records

    try:
        records = load_records(*files)
    except QaImportError as exc:
        click.echo(f"{len(exc.problems)} problem(s), nothing imported:", err=True)
        for p in exc.problems:
            click.echo(f"  {p}", err=True)
        sys.exit(1)
    cfg = _load(config, given_as="-c/--config", reach_kafka=not check)  # --check publishes nothing
    try:
        registry = Registry(load_sites(cfg.sites))
    except CemsError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        QaState(records, registry, cfg.processing.policy)  # what the workers will do with them, refused here first
    except ValueError as exc:
        raise click.ClickException(f"nothing imported: {exc}") from None
    if check:
        click.echo(f"{len(records)} QA record(s) valid")
        return
    keys = publish_records(cfg, records)
    click.echo(f"published {len(keys)} QA record(s) to {cfg.topics.qa}")
