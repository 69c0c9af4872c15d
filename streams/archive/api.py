"""The archive's HTTP API (``cems archive serve``): monthly totals, their versions, exports, the hash chain and the
deadlines. Read-only. Bad requests get a 4xx with a JSON ``error``; the OpenAPI description is at
``/openapi.json``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from streams.archive.store import FIELDS, Archive, ArchiveError, Entry

__all__ = ["OPENAPI", "make_app"]

_FORMAT = {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv", "parquet"],
                                                           "default": "json"}}
_ENTRY = {"type": "object", "properties": {
    "seq": {"type": "integer"}, "entity_id": {"type": "string"},
    "source_id": {"type": "string", "description": "'-': entity total"},
    "month": {"type": "string", "pattern": r"^\d{4}-\d{2}$"}, "version": {"type": "integer"},
    "reason": {"type": "string", "description": "first | late_data | report | alerts | ..."},
    "archived_at": {"type": "string", "format": "date-time"},
    "figures": {"type": "object", "properties": {f: {} for f in FIELDS}},
    "prev_hash": {"type": "string"}, "hash": {"type": "string", "description": "sha256(prev_hash + canonical JSON)"}}}
_ERROR = {"description": "bad request", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}}}}}
OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "CEMS monthly archive", "version": "1",
             "description": "Monthly totals per entity, source and month; immutable versions in a hash chain."},
    "paths": {
        "/v1/months": {"get": {
            "summary": "Newest version of every month matching the filters",
            "parameters": [{"name": n, "in": "query", "schema": {"type": "string"}}
                           for n in ("entity", "source", "month")] + [_FORMAT],
            "responses": {"200": {"description": "entries", "content": {
                "application/json": {"schema": {"type": "array", "items": _ENTRY}}, "text/csv": {},
                "application/vnd.apache.parquet": {}}}, "400": _ERROR}}},
        "/v1/months/{entity}/{month}": {"get": {
            "summary": "Every version of one month (source '-' for the entity total, or ?source=)",
            "parameters": [{"name": "entity", "in": "path", "required": True, "schema": {"type": "string"}},
                           {"name": "month", "in": "path", "required": True, "schema": {"type": "string"}},
                           {"name": "source", "in": "query", "schema": {"type": "string"}}, _FORMAT],
            "responses": {"200": {"description": "versions, oldest first"}, "400": _ERROR, "404": _ERROR}}},
        "/v1/verify": {"get": {"summary": "Recompute the hash chain", "responses": {"200": {
            "description": "{intact, head, problems}"}}}},
        "/v1/deadlines": {"get": {
            "summary": "Per entity and month: in_time, late, due or missing (deadline: 40 days after month end)",
            "parameters": [{"name": "as_of", "in": "query", "schema": {"type": "string", "format": "date-time"}}],
            "responses": {"200": {"description": "rows"}, "400": _ERROR}}},
    },
}


@web.middleware
async def _errors(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except ArchiveError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return web.json_response({"error": exc.reason}, status=exc.status)
        raise


def make_app(archive: Archive) -> web.Application:
    def respond(entries: list[Entry], request: web.Request) -> web.Response:
        body, media = archive.export(entries, request.query.get("format", "json"))
        return web.Response(body=body, content_type=media.split(";")[0],
                            charset="utf-8" if "charset" in media else None)

    async def months(request: web.Request) -> web.Response:
        unknown = set(request.query) - {"entity", "source", "month", "format"}
        if unknown:
            raise ArchiveError(f"unknown parameter(s) {sorted(unknown)}")
        q = request.query
        return respond(archive.latest(q.get("entity"), q.get("month"), q.get("source")), request)

    async def versions(request: web.Request) -> web.Response:
        match = request.match_info
        entries = archive.history(match["entity"], match["month"], request.query.get("source"))
        if not entries:
            return web.json_response({"error": "no such entity, source and month in the archive"}, status=404)
        return respond(entries, request)

    async def verify(request: web.Request) -> web.Response:
        problems = archive.verify()
        return web.json_response({"intact": not problems, "head": archive.head(), "problems": problems})

    async def deadlines(request: web.Request) -> web.Response:
        text = request.query.get("as_of")
        try:
            as_of = datetime.now(UTC) if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ArchiveError(f"as_of must be an ISO 8601 date-time, got {text!r}") from None
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=UTC)
        return web.json_response(archive.deadlines(as_of))

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    app = web.Application(middlewares=[_errors])
    app.router.add_get("/v1/months", months)
    app.router.add_get("/v1/months/{entity}/{month}", versions)
    app.router.add_get("/v1/verify", verify)
    app.router.add_get("/v1/deadlines", deadlines)
    app.router.add_get("/openapi.json", openapi)
    return app
