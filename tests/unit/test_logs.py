"""JSON log lines carry the call site's context as fields."""

from __future__ import annotations

import json
import logging

from schemas.logs import JsonFormatter


def test_json_log_line_has_context_fields_and_exception():
    record = logging.LogRecord("edge_agent.agent", logging.WARNING, __file__, 1, "device %s unreachable", ("an1",),
                               None)
    record.created = 1_767_225_600.25  # 2026-01-01T00:00:00.250Z
    record.device, record.event = "an1", "unreachable"
    doc = json.loads(JsonFormatter().format(record))
    assert doc == {"ts": "2026-01-01T00:00:00.250Z", "level": "WARNING", "logger": "edge_agent.agent",
                   "msg": "device an1 unreachable", "device": "an1", "event": "unreachable"}
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(JsonFormatter().format(record))["exc"]
