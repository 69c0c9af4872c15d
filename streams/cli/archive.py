"""``cems archive``: the monthly archive (serve its read-only API, verify its hash chain, sync it from Kafka)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["archive", "serve_api"]


def serve_api(archive, port: int) -> None:
    """The read-only archive API on 127.0.0.1 until interrupted."""
    from aiohttp import web

    from streams.archive.api import make_app

    banner = f"archive API on http://127.0.0.1:{port}/v1/months (OpenAPI: /openapi.json)"
    web.run_app(make_app(archive), host="127.0.0.1", port=port, print=lambda *_: click.echo(banner))


@click.group()
def archive() -> None:
    """The monthly archive: immutable versions in a hash chain, deadlines, exports."""


STORE = click.option("--store", type=click.Path(dir_okay=False, path_type=Path),
                     default=Path("demo-output/archive.sqlite"), show_default=True, help="The archive file.")


@archive.command("serve")
@STORE
@click.option("--port", default=8481, show_default=True)
def archive_serve(store: Path, port: int) -> None:
    """Serve the archive API on localhost."""
    from streams.archive.store import Archive

    serve_api(Archive(store), port)


@archive.command("verify")
@STORE
@click.option("--head", help="A head hash published earlier: it must still be in the chain (nothing cut off the end).")
def archive_verify(store: Path, head: str | None) -> None:
    """Recompute the hash chain (monthly versions, evidence files, submissions, review and alert actions); exit 1
    if any link is broken."""
    from streams.archive.store import Archive

    problems = Archive(store).verify(head)
    for p in problems:
        click.echo(p, err=True)
    click.echo("intact" if not problems else f"{len(problems)} broken link(s)")
    sys.exit(1 if problems else 0)


@archive.command("sync")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path), required=False)
@STORE
def archive_sync(config: Path | None, store: Path) -> None:
    """Archive the months of the real pipeline: closed monthly records, reports and alerts from Kafka (a new
    version only where something changed)."""
    from streams.archive.store import Archive
    from streams.cli.stream import _load
    from streams.runtime.archive_sync import sync_archive

    cfg = _load(config)
    written = sync_archive(cfg, Archive(store))
    click.echo(f"{len(written)} new version(s)")
    for e in written:
        click.echo(f"  {e.entity_id}/{e.source_id}/{e.month} v{e.version} ({e.reason})")
