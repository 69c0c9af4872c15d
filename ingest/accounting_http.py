"""HTTP intake of accounting reports: ``POST /v1/accounting`` with the JSON of one report or a list of them.

The same all-or-nothing checks as the file import (:func:`ingest.accounting.reports_from_http_body`): ``201`` with
the keys of the reports once Kafka has acknowledged every one of them, ``422`` with every problem (file, field,
message) and nothing published, ``401`` without the bearer token when one is configured, ``413`` for a body over
the limit. ``GET /healthz`` answers ``ok``. A resubmitted report replaces the earlier one (same key on the
compacted topic), and reconciliation takes the newest.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable

from aiohttp import web

from schemas.accounting import AccountingReport

from .accounting import MAX_BODY_BYTES, AccountingImportError, reports_from_http_body

__all__ = ["make_app"]


def make_app(publish: Callable[[list[AccountingReport]], list[str]], token: str | None = None,
             max_bytes: int = MAX_BODY_BYTES) -> web.Application:
    """``publish(reports) -> keys`` (blocking; run in a thread) puts accepted reports on the accounting topic."""

    async def accounting(request: web.Request) -> web.Response:
        if token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        if request.content_length is not None and request.content_length > max_bytes:
            return web.json_response({"error": f"body over {max_bytes} bytes"}, status=413)
        body = await request.read()
        try:
            reports = reports_from_http_body(body, max_bytes=max_bytes)
        except AccountingImportError as exc:
            return web.json_response({"error": "nothing imported", "problems": [
                {"where": p.where, "field": p.field, "report": p.report, "message": p.message} for p in exc.problems]},
                status=422)
        keys = await asyncio.to_thread(publish, reports)
        return web.json_response({"accepted": keys}, status=201)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=max_bytes + 1024)
    app.router.add_post("/v1/accounting", accounting)
    app.router.add_get("/healthz", healthz)
    return app

