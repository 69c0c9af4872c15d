"""``cems archive``: the monthly archive (serve its read-only API, verify its hash chain, sync it from Kafka)."""

from __future__ import annotations

import re
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from streams.archive.store import Archive

__all__ = ["archive", "serve_api"]


def serve_api(archive: Archive, port: int) -> None:
    """The read-only archive API on 127.0.0.1 until interrupted; a port that cannot be bound is a usage error."""
    from aiohttp import web

    from streams.archive.api import make_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp's own: a port in TIME_WAIT is free
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise click.UsageError(f"port {port} on 127.0.0.1 cannot be used: {exc.strerror} (another server on it? "
                               f"choose one with --port)") from None
    banner = f"archive API on http://127.0.0.1:{port}/v1/months (OpenAPI: /openapi.json)"
    web.run_app(make_app(archive), sock=sock, print=lambda *_: click.echo(banner))


def _open(store: Path, read_only: bool = True) -> Archive:
    """The archive, read-only unless it is written to (a missing file is never created then); a file that is not an
    archive is a clear error (exit 1), not a traceback."""
    from streams.archive.store import Archive, StoreError, printable

    try:
        return Archive(store, read_only=read_only)
    except StoreError as exc:
        raise click.ClickException(printable(str(exc))) from None


def _hash(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value):
        raise click.BadParameter(f"a head hash is 64 lowercase hex digits (sha256), got {value!r}")
    return value


@click.group()
def archive() -> None:
    """The monthly archive: immutable versions in a hash chain, deadlines, exports."""


STORE_PATH = Path("demo-output/archive.sqlite")
STORE = click.option("--store", type=click.Path(dir_okay=False, path_type=Path), default=STORE_PATH,
                     show_default=True, help="The archive file (created if missing).")
EXISTING_STORE = click.option("--store", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                              default=STORE_PATH, show_default=True,
                              help="The archive file (opened read-only: never created or changed).")


@archive.command("serve")
@EXISTING_STORE
@click.option("--port", type=click.IntRange(1, 65535), default=8481, show_default=True)
def archive_serve(store: Path, port: int) -> None:
    """Serve the archive API on localhost (read-only)."""
    serve_api(_open(store), port)


@archive.command("verify")
@EXISTING_STORE
@click.option("--expect-head", metavar="HASH", callback=_hash,
              help="The head hash published with the last filing: the chain must end there now (catches versions or "
                   "records cut off the end, including the last one, and any added since).")
@click.option("--head", metavar="HASH", callback=_hash,
              help="A head hash published earlier: it must still be in the chain (catches versions or records cut off "
                   "its end; later ones may follow).")
def archive_verify(store: Path, expect_head: str | None, head: str | None) -> None:
    """Recompute the hash chain (monthly versions, evidence files, submissions, review and alert actions, and the
    entities' time zones, regions and first months) and SQLite's integrity check; print the head hash and how many
    versions and records the chain holds. Exit 1 if anything is broken, the archive is empty or the head is not the
    one expected."""
    from streams.archive.store import StoreError, printable

    a = _open(store)
    problems = a.verify(head, expect_head)
    try:
        counts = a.counts()
        summary = f"head {a.head()}, {counts['versions']} monthly version(s), {counts['records']} record(s)"
    except StoreError:
        summary = "head unknown (the chain cannot be read)"
    finally:
        a.close()
    for p in problems:
        click.echo(printable(p), err=True)
    click.echo(printable(f"intact: {summary}" if not problems else f"BROKEN: {len(problems)} problem(s); {summary}"))
    sys.exit(1 if problems else 0)


@archive.command("sync")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path), required=False)
@STORE
def archive_sync(config: Path | None, store: Path) -> None:
    """Archive the months of the real pipeline: closed monthly records, reports and alerts from Kafka (a new
    version only where something changed)."""
    from streams.cli.stream import _load
    from streams.runtime.archive_sync import sync_archive

    cfg = _load(config)
    written = sync_archive(cfg, _open(store, read_only=False))
    click.echo(f"{len(written)} new version(s)")
    for e in written:
        click.echo(f"  {e.entity_id}/{e.source_id}/{e.month} v{e.version} ({e.reason})")
