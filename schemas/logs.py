"""Log set-up of every ``cems`` command (the edge agent and the central workers alike): one JSON object per line,
so journald, Loki or Elasticsearch can filter by device or event.

Call sites pass context with ``extra=`` (``log.warning("...", extra={"device": d, "event": "unreachable"})``);
the JSON formatter emits it as top-level fields next to ``ts`` (UTC, ISO 8601), ``level``, ``logger`` and
``msg``. The text format stays the default for a person at a terminal.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

__all__ = ["JsonFormatter", "configure_logging"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc |= {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Root logging for a CLI process: ``fmt`` is ``text`` or ``json``."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for chatty in ("pymodbus", "kafka", "asyncua"):  # per-request and per-retry chatter otherwise
        logging.getLogger(chatty).setLevel(max(root.level, logging.WARNING))
