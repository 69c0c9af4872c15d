"""Checks of a command line made before any work starts: a month, the settings a command needs, a broker that
answers, a port that can be served. Each refusal is a click error naming the option or setting and what is wrong
(usage errors exit 2, an unreachable service exits 1), never a traceback after minutes of work."""

from __future__ import annotations

import os
import re
import socket
from typing import Any

import click

__all__ = ["FIRST_MONTH", "LAST_MONTH", "LOG_LEVELS", "Month", "Seconds", "check_listen", "kafka_reachable",
           "listen_problem", "missing_settings"]

#: The months a command takes: each local month, in any time zone (UTC-12 .. UTC+14) and with a month's lateness
#: run on past its end, lies inside the timestamps a reading batch may carry, [2000-01-01, 2200-01-01) UTC
#: (``schemas.batch.TS_MIN_NS`` .. ``TS_MAX_NS``).
FIRST_MONTH, LAST_MONTH = "2000-02", "2199-11"
#: How long one broker address may take to accept a TCP connection before it counts as unreachable.
CONNECT_TIMEOUT_S = 3.0
KAFKA_PORT = 9092  # what kafka-python assumes for an address without a port
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")  # --log-level of the commands that run


class Seconds(click.FloatRange):
    """A duration in seconds within ``min`` .. ``max``: click's FloatRange lets NaN through (no comparison fails)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        out = super().convert(value, param, ctx)
        if out != out:  # NaN
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return out


class Month(click.ParamType):
    """A local calendar month ``YYYY-MM`` (01..12) between :data:`FIRST_MONTH` and :data:`LAST_MONTH`."""

    name = "YYYY-MM"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", text):
            self.fail(f"{text!r} is not a month YYYY-MM (MM 01..12)", param, ctx)
        if not FIRST_MONTH <= text <= LAST_MONTH:
            self.fail(f"{text} is outside {FIRST_MONTH}..{LAST_MONTH}", param, ctx)
        return text


def missing_settings(model: Any, environ: dict[str, str] | None = None) -> list[str]:
    """The required settings of a pydantic-settings ``model`` that no environment variable gives, each with the
    variable that would: ``kafka.bootstrap_servers (CEMS_STREAM__KAFKA__BOOTSTRAP_SERVERS)``. A section given in
    part is left to the model's own message (which names the variable)."""
    from pydantic import BaseModel

    prefix = str(model.model_config["env_prefix"]).upper()
    given = {name.upper() for name in (os.environ if environ is None else environ)}
    out: list[str] = []
    for name, field in model.model_fields.items():
        var = f"{prefix}{name.upper()}"
        if not field.is_required() or any(g == var or g.startswith(f"{var}__") for g in given):
            continue
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            out += [f"{name}.{sub} ({var}__{sub.upper()})" for sub, f in section.model_fields.items()
                    if f.is_required()]
        else:
            out.append(f"{name} ({var})")
    return out


def _address(server: str) -> tuple[str, int]:
    host, sep, port = server.rpartition(":")
    if not sep or "]" in port:  # no port, or an IPv6 address without one
        host, port = server, str(KAFKA_PORT)
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"{server!r} is not HOST:PORT")
    return host.removeprefix("[").removesuffix("]"), int(port)


def kafka_reachable(bootstrap_servers: str, setting: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """At least one bootstrap address accepts a TCP connection within ``timeout_s`` each; else a
    :class:`click.ClickException` (exit 1) ``Kafka at HOST:PORT is not reachable (why); check SETTING``. Without
    it the Kafka clients retry for half a minute and end in a traceback."""
    reasons = []
    for server in (s.strip() for s in bootstrap_servers.split(",")):
        try:
            with socket.create_connection(_address(server), timeout=timeout_s):
                return
        except ValueError as exc:
            reasons.append(str(exc))
        except socket.gaierror as exc:
            reasons.append(f"{server}: host name does not resolve ({exc.strerror})")
        except TimeoutError:
            reasons.append(f"{server}: no answer in {timeout_s:g} s")
        except OSError as exc:
            reasons.append(f"{server}: {exc.strerror or exc}")
    raise click.ClickException(f"Kafka at {bootstrap_servers} is not reachable ({'; '.join(reasons)}); "
                               f"check {setting}")


def listen_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served now (``host`` does not resolve or is not this machine's, the port is
    taken), or None: checked before the work that precedes serving, rather than a server failing after it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        return f"{host!r} does not resolve: {getattr(exc, 'strerror', None) or exc}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does: TIME_WAIT is no conflict
        try:
            sock.bind(address)
        except OSError as exc:
            return f"cannot serve on {host}:{port}: {exc.strerror or exc}"
    return None


def check_listen(host: str, port: int, what: str, param_hint: str = "'--host' / '--port'") -> None:
    """A usage error naming the options when :func:`listen_problem` finds a problem (``what``: the server)."""
    if (problem := listen_problem(host, port)) is not None:
        raise click.BadParameter(f"{what}: {problem}", param_hint=param_hint)
