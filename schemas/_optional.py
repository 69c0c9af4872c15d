"""Optional dependencies: import one, or say which extra of ``cems-pipeline`` installs it.

The core install (wire format, site model, kernels, CLI) is small on purpose; whatever talks to a device, a broker or
a database is an extra (pyproject.toml) and imported lazily, where it is used. Without this, a missing extra shows as
``ModuleNotFoundError: No module named 'asyncua'`` in a traceback; with it, as one line naming the install to run::

    with needs_extra("opcua", "an OPC UA device"):
        from asyncua import Client, ua

    require("serial", extra="edge", purpose="Modbus RTU")  # only check (or get the module)

:class:`MissingExtra` is a :class:`ModuleNotFoundError`, so ``except ImportError`` keeps working, and its message is
meant to be shown as it is (``cems`` prints it without a traceback).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

__all__ = ["DISTRIBUTION", "MissingExtra", "install_hint", "needs_extra", "require"]

DISTRIBUTION = "cems-pipeline"


class MissingExtra(ModuleNotFoundError):
    """An optional dependency is not installed; ``extra`` names the extra that installs it."""

    def __init__(self, message: str, *, name: str, extra: str) -> None:
        super().__init__(message, name=name)
        self.extra = extra


def install_hint(extra: str) -> str:
    """The command that installs ``extra`` (into the environment ``cems`` runs in)."""
    return f"pip install '{DISTRIBUTION}[{extra}]' (in a checkout: pip install -e '.[{extra}]', or run ./cems)"


def _missing(exc: ModuleNotFoundError, extra: str, purpose: str) -> MissingExtra:
    if isinstance(exc, MissingExtra):
        return exc
    missing = exc.name or "?"
    return MissingExtra(f"{purpose} needs the '{extra}' extra (no module named {missing!r}): {install_hint(extra)}",
                        name=missing, extra=extra)


@contextmanager
def needs_extra(extra: str, purpose: str) -> Iterator[None]:
    """Imports in this block come with ``extra``: a missing module raises :class:`MissingExtra` saying that
    ``purpose`` ("an OPC UA device") needs it. Wrap third-party imports only (a typo in our own would be blamed on
    the extra)."""
    try:
        yield
    except ModuleNotFoundError as exc:
        raise _missing(exc, extra, purpose) from None


def require(module: str, *, extra: str, purpose: str | None = None) -> ModuleType:
    """Import ``module`` and return it, or raise :class:`MissingExtra` naming ``extra`` (see :func:`needs_extra`)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise _missing(exc, extra, purpose or module) from None
