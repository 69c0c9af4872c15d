"""``cems console``: serve the review console, and manage its accounts (``user add|disable|enable|list|token``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from streams.cli.checks import check_listen

__all__ = ["console", "serve"]

ARCHIVE = click.option("--store", type=click.Path(dir_okay=False, path_type=Path),
                       default=Path("demo-output/archive.sqlite"), show_default=True, help="The archive file.")
ACCOUNTS = click.option("--accounts", type=click.Path(dir_okay=False, path_type=Path),
                        help="The accounts file (default: console.sqlite beside the archive).")


def _accounts(store: Path, accounts: Path | None) -> Path:
    return accounts or store.parent / "console.sqlite"


@click.group()
def console() -> None:
    """The web console of the monthly evidence deposit and the three-level review."""


def serve(store: Path, accounts: Path, host: str = "127.0.0.1", port: int = 8481, clock=None,
          secure_cookies: bool = True, banner: str = "") -> None:
    """Run the console until interrupted."""
    from aiohttp import web

    from streams.archive.store import Archive
    from streams.console.app import make_app
    from streams.console.auth import load_secret
    from streams.console.store import Store

    try:
        secret = load_secret(accounts.parent)
    except ValueError as exc:  # CEMS_CONSOLE_SECRET too short, console.key readable by others
        raise click.ClickException(str(exc)) from None
    app = make_app(_open(Archive, store, "an archive"), _open(Store, accounts, "a console accounts file"), secret,
                   clock=clock, secure_cookies=secure_cookies)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    try:
        web.run_app(app, host=host, port=port, access_log=None,
                    print=lambda *_: click.echo(f"{banner}console on {url} (API: {url}api/v1/openapi.json); Ctrl-C "
                                                f"stops"))
    except OSError as exc:  # the port taken since it was checked
        raise click.ClickException(f"cannot serve the console on {host}:{port}: {exc.strerror or exc}") from None


@console.command("serve")
@ARCHIVE
@ACCOUNTS
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Keep loopback unless a TLS reverse proxy is in front.")
@click.option("--port", type=click.IntRange(1, 65535), default=8481, show_default=True)
@click.option("--insecure-cookies", is_flag=True,
              help="Session cookies without the Secure flag (plain http to a non-loopback address; avoid).")
def console_serve(store: Path, accounts: Path | None, host: str, port: int, insecure_cookies: bool) -> None:
    """Serve the console on the archive."""
    if not store.exists():
        raise click.ClickException(f"{store}: no archive there (run ./cems demo, cems embedded or cems archive sync)")
    check_listen(host, port, "the console")
    serve(store, _accounts(store, accounts), host, port, secure_cookies=not insecure_cookies)


@console.group("user")
def user() -> None:
    """Accounts: add, disable, enable, list, and API tokens for provincial platforms."""


def _open(kind, path: Path, what: str):
    """``kind(path)`` (an Archive, a Store), or one line saying the file is not ``what``."""
    import sqlite3

    from streams.archive.store import StoreError

    try:
        return kind(path)
    except StoreError as exc:  # the archive says what is wrong with its file itself
        raise click.ClickException(str(exc)) from None
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(f"{path}: not {what} ({exc})") from None


def _store(store: Path, accounts: Path | None):
    from streams.console.store import Store

    return _open(Store, _accounts(store, accounts), "a console accounts file")


@user.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["plant", "municipal", "provincial", "national", "admin"]), required=True)
@click.option("--entity", default="", help="plant: the entity id (as in the archive).")
@click.option("--province", default="", help="municipal, provincial: GB/T 2260 province code, e.g. 320000.")
@click.option("--municipality", default="", help="municipal: GB/T 2260 municipality code, e.g. 320500.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (else prompted).")
@ARCHIVE
@ACCOUNTS
def user_add(username, role, entity, province, municipality, password_stdin, store, accounts) -> None:
    """Add an account (the password is asked for, at least 12 characters)."""
    from streams.console.auth import Auth
    from streams.console.policy import User
    from streams.console.store import AccountError

    try:
        u = User(username, role, entity, province, municipality)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if store.exists() and role == "plant":
        from streams.archive.store import Archive

        known = {e["entity_id"] for e in _open(Archive, store, "an archive").entities()}
        if entity not in known:
            raise click.ClickException(f"entity {entity!r} is not in {store} (known: {', '.join(sorted(known))})")
    password = (sys.stdin.readline().rstrip("\n") if password_stdin
                else click.prompt("password", hide_input=True, confirmation_prompt=True))
    try:
        _store(store, accounts).add_user(u, Auth.hash_password(password))
    except (AccountError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added {username} ({role} {u.scope})")


@user.command("disable")
@click.argument("username")
@ARCHIVE
@ACCOUNTS
def user_disable(username, store, accounts) -> None:
    """Disable an account: its sessions and API tokens end at once."""
    from streams.console.store import AccountError

    try:
        _store(store, accounts).set_disabled(username, True)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"disabled {username}")


@user.command("enable")
@click.argument("username")
@ARCHIVE
@ACCOUNTS
def user_enable(username, store, accounts) -> None:
    from streams.console.store import AccountError

    try:
        _store(store, accounts).set_disabled(username, False)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"enabled {username}")


@user.command("list")
@ARCHIVE
@ACCOUNTS
def user_list(store, accounts) -> None:
    for u, disabled in _store(store, accounts).users():
        click.echo(f"{u.username:<20}{u.role:<12}{u.scope:<20}{'disabled' if disabled else ''}")


@user.command("token")
@click.argument("username")
@click.option("--label", default="api", show_default=True)
@ARCHIVE
@ACCOUNTS
def user_token(username, label, store, accounts) -> None:
    """A bearer token for the API (printed once; only its hash is kept)."""
    from streams.console.auth import Auth
    from streams.console.store import AccountError

    s = _store(store, accounts)
    try:
        click.echo(Auth(s, b"").new_api_token(username, label))
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
