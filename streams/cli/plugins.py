"""Commands and JSON Schemas that other packages add to ``cems``, found through entry points.

Central code never imports the gateway's (``edge_agent``): ``cems edge`` and the gateway file's JSON Schema reach
``cems`` as the entry points ``cems.commands`` and ``cems.schemas`` that pyproject.toml declares. A plugin that
cannot be imported (its extra or its package is not installed) is skipped; its command stays listed, and running
it says what to install rather than "No such command".
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

import click

from schemas._optional import DISTRIBUTION, MissingExtra, install_hint

__all__ = ["COMMANDS", "SCHEMAS", "load_commands", "plugin_schemas"]

COMMANDS = "cems.commands"  # name -> a click command or group
SCHEMAS = "cems.schemas"  # name -> a function returning a JSON Schema (dict)


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _hint(ep: EntryPoint, exc: BaseException) -> str:
    """What to install: the extra a :class:`MissingExtra` names; else the extra named like the plugin, if the
    distribution has one (``edge``); else the plugin's distribution."""
    if isinstance(exc, MissingExtra):
        return install_hint(exc.extra)
    if ep.dist is not None and ep.name in (ep.dist.metadata.get_all("Provides-Extra") or []):
        return install_hint(ep.name)
    dist = ep.dist.name if ep.dist is not None else DISTRIBUTION
    return f"pip install '{dist}'"


def _unavailable(ep: EntryPoint, exc: BaseException) -> click.Command:
    """A stand-in for a command whose plugin failed to import: listed in ``cems --help``, and when run it says why
    and what to install (exit status 1), whatever the arguments."""
    message = f"cems {ep.name} is not available: {ep.value} failed to import ({_why(exc)}); {_hint(ep, exc)}"

    def fail() -> None:
        raise click.ClickException(message)

    return click.Command(ep.name, callback=fail, help=f"(not available: {_hint(ep, exc)})", add_help_option=False,
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


def load_commands(group: click.Group) -> None:
    """Add every ``cems.commands`` entry point to ``group`` under its entry point's name."""
    for ep in entry_points(group=COMMANDS):
        try:
            command = ep.load()
            if not isinstance(command, click.Command):
                raise TypeError(f"{ep.value} is a {type(command).__name__}, not a click command")
        except Exception as exc:  # an import error, or a broken plugin: the other commands still work
            command = _unavailable(ep, exc)
        group.add_command(command, ep.name)


def plugin_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schemas of the ``cems.schemas`` entry points, by name. A plugin that fails is left out, with one line
    on stderr saying why and what to install."""
    out: dict[str, dict[str, Any]] = {}
    for ep in entry_points(group=SCHEMAS):
        try:
            out[ep.name] = ep.load()()
        except Exception as exc:
            click.echo(f"cems: schema {ep.name!r} is not available: {ep.value} failed ({_why(exc)}); {_hint(ep, exc)}",
                       err=True)
    return out
