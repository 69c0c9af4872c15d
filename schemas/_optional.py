"""Optional dependencies: import one, or say which extra of ``cems-pipeline`` installs it.

The core install (wire format, site model, kernels, CLI) is small on purpose; whatever talks to a device, a broker or
a database is an extra (pyproject.toml) and imported lazily, where it is used. Without this, a missing extra shows as
``ModuleNotFoundError: No module named 'asyncua'`` in a traceback; with it, as one line naming the install to run::

    require("asyncua", extra="opcua", purpose="an OPC UA device")
    from asyncua import Client  # now known to be installed

:class:`MissingExtra` is a :class:`ModuleNotFoundError`, so ``except ImportError`` keeps working, and its message is
meant to be shown as it is (``cems`` prints it without a traceback).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtra", "install_hint", "require"]

DISTRIBUTION = "cems-pipeline"


class MissingExtra(ModuleNotFoundError):
    """An optional dependency is not installed; ``extra`` names the extra that installs it."""

    def __init__(self, message: str, *, name: str, extra: str) -> None:
        super().__init__(message, name=name)
        self.extra = extra


def install_hint(extra: str) -> str:
    """The command that installs ``extra`` (into the environment ``cems`` runs in)."""
    return f"pip install '{DISTRIBUTION}[{extra}]' (in a checkout: pip install -e '.[{extra}]', or run ./cems)"


def require(module: str, *, extra: str, purpose: str | None = None) -> ModuleType:
    """Import ``module`` and return it; if it (or a package it needs) is missing, raise :class:`MissingExtra` naming
    ``extra``. ``purpose`` says what needs it ("an OPC UA device"); default: the module's name."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        raise MissingExtra(f"{purpose or module} needs the '{extra}' extra (no module named {missing!r}): "
                           f"{install_hint(extra)}", name=missing, extra=extra) from None
