"""HTTP intake of accounting reports: ``POST /v1/accounting`` with the JSON of one report or a list of them.

The same all-or-nothing checks as the file import (:func:`ingest.accounting.reports_from_http_body`): ``201`` with
the keys of the reports once Kafka has acknowledged every one of them; ``422`` with every problem (file, field,
message) and nothing published; ``400`` when the body is no JSON document of reports (not UTF-8, not JSON, nested
too deeply); ``413`` for a body over the limit; ``401`` without the bearer token when one is configured; ``503`` when
the reports could not be published (nothing is acknowledged, the sender tries again). Given the entity ids of the
site files, a report of any other entity is refused (422). Bad input never answers 500. ``GET /healthz`` answers
``ok``. A resubmitted report replaces the earlier one (same key on the compacted topic), and reconciliation takes the
newest.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Collection

from aiohttp import web

from schemas.accounting import AccountingReport, Plausibility

from .accounting import MAX_BODY_BYTES, UNREADABLE_FIELDS, AccountingImportError, reports_from_http_body

__all__ = ["make_app"]

log = logging.getLogger(__name__)


def make_app(publish: Callable[[list[AccountingReport]], list[str]], token: str | None = None,
             max_bytes: int = MAX_BODY_BYTES, *, entities: Collection[str] | None = None,
             plausibility: Plausibility | None = None) -> web.Application:
    """``publish(reports) -> keys`` (blocking; run in a thread) puts accepted reports on the accounting topic.
    ``entities``: the entity ids of the site files (None: any entity); ``plausibility``: the table of plausible
    values and months (default ``plausibility-cn-2026``)."""
    known = frozenset(entities) if entities is not None else None

    async def accounting(request: web.Request) -> web.Response:
        if token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        if request.content_length is not None and request.content_length > max_bytes:
            return web.json_response({"error": f"body over {max_bytes} bytes"}, status=413)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:  # a chunked body that grew past the limit
            return web.json_response({"error": f"body over {max_bytes} bytes"}, status=413)
        try:
            reports = await asyncio.to_thread(reports_from_http_body, body, max_bytes=max_bytes, entities=known,
                                              plausibility=plausibility)
        except AccountingImportError as exc:
            unreadable = all(p.field in UNREADABLE_FIELDS for p in exc.problems)
            return web.json_response({"error": "nothing imported", "problems": [
                {"where": p.where, "field": p.field, "report": p.report, "message": p.message} for p in exc.problems]},
                status=400 if unreadable else 422)
        try:
            keys = await asyncio.to_thread(publish, reports)
        except Exception as exc:  # Kafka down or slow: nothing acknowledged, the sender retries
            log.exception("publishing %d accounting reports failed", len(reports))
            return web.json_response({"error": f"could not publish the reports ({type(exc).__name__}); nothing "
                                               f"was accepted, send them again"}, status=503)
        return web.json_response({"accepted": keys}, status=201)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=max_bytes + 1024)
    app.router.add_post("/v1/accounting", accounting)
    app.router.add_get("/healthz", healthz)
    return app
