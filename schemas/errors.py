"""Exception types shared by every package.

Everything the project raises on purpose derives from :class:`CemsError`, so a worker can tell
"bad input, dead-letter it" from "bug, crash loudly".
"""

from __future__ import annotations

__all__ = ["BatchDecodeError", "BatchError", "CemsError", "ConfigError", "UnsupportedSchemaVersion"]


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
