"""Exception types shared by every package.

Everything the project raises on purpose derives from :class:`CemsError`, so a worker can tell
"bad input, dead-letter it" from "bug, crash loudly".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "BatchDecodeError",
    "BatchError",
    "CemsError",
    "ConfigError",
    "Location",
    "UnsupportedSchemaVersion",
    "field_path",
    "validation_problems",
]

#: Where a problem is, as pydantic reports it: field names and list positions (``("fuels", 0, "ncv")``).
Location = tuple[str | int, ...]


class CemsError(Exception):
    """Root of all deliberate errors in the CEMS pipeline."""


class ConfigError(CemsError, ValueError):
    """A configuration or site file is invalid. The message names the file, line and field."""


class BatchError(CemsError, ValueError):
    """A reading batch violates the contract in :mod:`schemas.batch`.

    ``reason`` is a short stable code (``"truncated"``, ``"checksum"``, ``"bad_flag"``...) fit for
    a dead-letter record or a metric label; the message says what exactly is wrong.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.detail = message


class BatchDecodeError(BatchError):
    """Bytes that are not a valid reading batch. The only exception :func:`schemas.batch.decode_batch` raises."""


class UnsupportedSchemaVersion(BatchDecodeError):
    """A well-framed batch of a schema version this decoder does not know (a newer agent)."""

    def __init__(self, version: int, supported: tuple[int, ...]) -> None:
        super().__init__("unsupported_version", f"schema version {version}; this decoder reads {list(supported)}")
        self.version = version


def field_path(loc: Sequence[str | int], top: str = "(top level)") -> str:
    """An error location as a person reads it: ``("sources", 0, "channels", 2, "unit")`` ->
    ``sources[0].channels[2].unit``; ``top`` for the empty location (the document itself)."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or top


def validation_problems(exc: ValidationError, prefix: Location = (), *, missing: str | None = None,
                        tag: str | None = None) -> list[tuple[Location, str]]:
    """``(location, message)`` of every error of a pydantic ``ValidationError``, for messages that name the field.

    pydantic's ``"Value error, "`` prefix is dropped (the message is the validator's own); ``missing`` replaces the
    message of a missing field when given; ``tag``, the discriminator of a tagged union, is dropped from the front
    of the locations (pydantic puts it first; the reader's document has no such level); ``prefix`` goes in front of
    every location (the position of the validated part in a larger document).
    """
    out: list[tuple[Location, str]] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if tag is not None and loc[:1] == (tag,):
            loc = loc[1:]
        msg = missing if missing is not None and err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
        out.append((prefix + loc, msg))
    return out
