"""The archive's HTTP API (``cems archive serve``): monthly totals, their versions, exports, the hash chain and the
deadlines. Read-only.

Bad requests get a 4xx with a JSON ``error`` naming the parameter: an unknown or repeated parameter, a month outside
2000-01..2099-12, an ``as_of`` outside 2000-01-01..2100-01-01, a ``limit`` above :data:`MAX_LIMIT`. Lists come in
pages of at most ``limit`` items (default :data:`DEFAULT_LIMIT`); a ``Link: <...>; rel="next"`` header gives the
next page's URL while there is one. SQLite work runs in a worker thread, never on the event loop. A damaged archive
answers 503 (run ``cems archive verify``); anything unforeseen is logged and answers a JSON 500 without a traceback,
as the last resort. The OpenAPI description is at ``/openapi.json``."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from streams.archive.store import AS_OF, FIELDS, Archive, ArchiveError, Entry, StoreError

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "OPENAPI", "make_app"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Items per page unless ``limit`` says otherwise, and the most a page holds.
DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: int() would also take "٣" or "1_0"
_HASH = re.compile(r"[0-9a-f]{64}")

_FORMAT = {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv", "parquet"],
                                                           "default": "json"}}
_PAGE = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                                     "default": DEFAULT_LIMIT}},
         {"name": "cursor", "in": "query", "description": "where the page starts: take it from the Link header's "
          "rel=\"next\" URL", "schema": {"type": "integer", "minimum": 0, "default": 0}}]
_NEXT = {"Link": {"description": "<URL>; rel=\"next\": the next page, while there is one",
                  "schema": {"type": "string"}}}
_MONTH = {"type": "string", "pattern": r"^\d{4}-\d{2}$", "description": "YYYY-MM, 2000-01 to 2099-12"}
_ENTRY = {"type": "object", "properties": {
    "seq": {"type": "integer"}, "entity_id": {"type": "string"},
    "source_id": {"type": "string", "description": "'-': entity total"},
    "month": _MONTH, "version": {"type": "integer"},
    "reason": {"type": "string", "description": "first | late_data | report | alerts | ..."},
    "archived_at": {"type": "string", "format": "date-time"},
    "figures": {"type": "object", "properties": {f: {} for f in FIELDS}},
    "prev_hash": {"type": "string"}, "hash": {"type": "string", "description": "sha256(prev_hash + canonical JSON)"}}}
_JSON_ERROR = {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}
_ERROR = {"description": "bad request (the error names the parameter)", "content": _JSON_ERROR}
_DAMAGED = {"description": "the archive file is damaged or altered (run cems archive verify)", "content": _JSON_ERROR}
_HEAD = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "CEMS monthly archive", "version": "1",
             "description": "Monthly totals per entity, source and month; immutable versions in a hash chain. "
                            "Unknown or repeated query parameters are refused (400)."},
    "paths": {
        "/v1/months": {"get": {
            "summary": "Newest version of every month matching the filters, in chain order",
            "parameters": [{"name": n, "in": "query", "schema": {"type": "string"}} for n in ("entity", "source")]
            + [{"name": "month", "in": "query", "schema": _MONTH}, _FORMAT, *_PAGE],
            "responses": {"200": {"description": "entries", "headers": _NEXT, "content": {
                "application/json": {"schema": {"type": "array", "items": _ENTRY}}, "text/csv": {},
                "application/vnd.apache.parquet": {}}}, "400": _ERROR, "503": _DAMAGED}}},
        "/v1/months/{entity}/{month}": {"get": {
            "summary": "Every version of one month (source '-' for the entity total, or ?source=)",
            "parameters": [{"name": "entity", "in": "path", "required": True, "schema": {"type": "string"}},
                           {"name": "month", "in": "path", "required": True, "schema": _MONTH},
                           {"name": "source", "in": "query", "schema": {"type": "string"}}, _FORMAT, *_PAGE],
            "responses": {"200": {"description": "versions, oldest first", "headers": _NEXT}, "400": _ERROR,
                          "404": _ERROR, "503": _DAMAGED}}},
        "/v1/verify": {"get": {
            "summary": "Recompute the hash chain and check the archive",
            "parameters": [{"name": "expect_head", "in": "query", "schema": _HEAD,
                            "description": "the head the chain must end at now"},
                           {"name": "head", "in": "query", "schema": _HEAD,
                            "description": "a head published earlier, which must still be in the chain"}],
            "responses": {"200": {"description": "{intact, head, versions, records, problems}"}, "400": _ERROR}}},
        "/v1/deadlines": {"get": {
            "summary": "Per entity and month: in_time, late, due or missing (deadline: 40 days after month end)",
            "parameters": [{"name": "as_of", "in": "query", "schema": {
                "type": "string", "format": "date-time", "description": "from 2000-01-01T00:00:00Z up to (not "
                "including) 2100-01-01T00:00:00Z; default now; without an offset: UTC"}}, *_PAGE],
            "responses": {"200": {"description": "rows", "headers": _NEXT}, "400": _ERROR, "503": _DAMAGED}}},
    },
}


@web.middleware
async def _errors(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except ArchiveError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except StoreError as exc:
        log.warning("archive API: %s: %s", request.path, exc)
        return web.json_response({"error": str(exc)}, status=503)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return web.json_response({"error": exc.reason}, status=exc.status)
        raise
    except Exception:  # the last resort: every cause found is handled above
        log.exception("archive API: unforeseen error on %s %r", request.method, request.path_qs)
        return web.json_response({"error": "internal error (logged on the server)"}, status=500)


def _params(request: web.Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query as a dict; 400 naming any parameter that is not ``allowed`` or given more than once."""
    q = request.query
    for name in q:
        if name not in allowed:
            raise ArchiveError(f"unknown parameter {name!r}: {request.path} takes "
                               f"{', '.join(allowed) if allowed else 'none'}")
        if len(q.getall(name)) > 1:
            raise ArchiveError(f"parameter {name!r} given {len(q.getall(name))} times: give it once")
    return dict(q)


def _count(q: Mapping[str, str], name: str, default: int, most: int) -> int:
    text = q.get(name)
    if text is None:
        return default
    if not _DIGITS.fullmatch(text) or not (name == "cursor" or 1 <= int(text) <= most):
        raise ArchiveError(f"{name} must be an integer from {0 if name == 'cursor' else 1} to {most}, got {text!r}")
    return int(text)


def _page(q: Mapping[str, str]) -> tuple[int, int]:
    """(cursor, limit) of a list request."""
    return _count(q, "cursor", 0, 10**18 - 1), _count(q, "limit", DEFAULT_LIMIT, MAX_LIMIT)


def _head(q: Mapping[str, str], name: str) -> str | None:
    text = q.get(name)
    if text is not None and not _HASH.fullmatch(text):
        raise ArchiveError(f"{name} must be a head hash, 64 lowercase hex digits, got {text!r}")
    return text


def _as_of(text: str | None) -> datetime:
    """The deadline report's date-time (now if not given, UTC if without an offset); its range is the store's."""
    lo, hi = AS_OF
    try:
        as_of = datetime.now(UTC) if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ArchiveError(f"as_of must be an ISO 8601 date-time from {lo:%Y-%m-%dT%H:%M:%SZ} up to (not "
                           f"including) {hi:%Y-%m-%dT%H:%M:%SZ}, got {text!r}") from None
    return as_of if as_of.tzinfo is not None else as_of.replace(tzinfo=UTC)


def _link(request: web.Request, cursor: int) -> dict[str, str]:
    return {"Link": f'<{request.rel_url.update_query(cursor=str(cursor))}>; rel="next"'}


def make_app(archive: Archive) -> web.Application:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive")  # one SQLite connection: one at a time

    async def run(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    def page(entries: list[Entry], limit: int, fmt: str, request: web.Request) -> web.Response:
        """The first ``limit`` entries (one more was read: there is a next page) in ``fmt``."""
        body, media = archive.export(entries[:limit], fmt)
        headers = _link(request, entries[limit - 1].seq) if len(entries) > limit else {}
        return web.Response(body=body, content_type=media.split(";")[0], headers=headers,
                            charset="utf-8" if "charset" in media else None)

    async def months(request: web.Request) -> web.Response:
        q = _params(request, ("entity", "source", "month", "format", "limit", "cursor"))
        after, limit = _page(q)

        def read() -> web.Response:
            entries = archive.latest(q.get("entity"), q.get("month"), q.get("source"), after=after, limit=limit + 1)
            return page(entries, limit, q.get("format", "json"), request)

        return await run(read)

    async def versions(request: web.Request) -> web.Response:
        q = _params(request, ("source", "format", "limit", "cursor"))
        after, limit = _page(q)
        match = request.match_info

        def read() -> web.Response:
            entries = archive.history(match["entity"], match["month"], q.get("source"), after=after, limit=limit + 1)
            if not entries and after == 0:
                return web.json_response({"error": "no such entity, source and month in the archive"}, status=404)
            return page(entries, limit, q.get("format", "json"), request)

        return await run(read)

    async def verify(request: web.Request) -> web.Response:
        q = _params(request, ("expect_head", "head"))
        expect_head, head = _head(q, "expect_head"), _head(q, "head")

        def check() -> dict:
            problems = archive.verify(head, expect_head)
            try:
                counts: dict[str, int | None] = {**archive.counts()}
                now: str | None = archive.head()
            except StoreError:
                counts, now = {"versions": None, "records": None}, None
            return {"intact": not problems, "head": now, **counts, "problems": problems}

        return web.json_response(await run(check))

    async def deadlines(request: web.Request) -> web.Response:
        q = _params(request, ("as_of", "limit", "cursor"))
        start, limit = _page(q)
        as_of = _as_of(q.get("as_of"))
        rows = await run(lambda: archive.deadlines(as_of, start=start, limit=limit + 1))
        return web.json_response(rows[:limit], headers=_link(request, start + limit) if len(rows) > limit else {})

    async def openapi(request: web.Request) -> web.Response:
        _params(request, ())
        return web.json_response(OPENAPI)

    async def stop(app: web.Application) -> None:
        pool.shutdown(wait=True, cancel_futures=True)

    app = web.Application(middlewares=[_errors])
    app.router.add_get("/v1/months", months)
    app.router.add_get("/v1/months/{entity}/{month}", versions)
    app.router.add_get("/v1/verify", verify)
    app.router.add_get("/v1/deadlines", deadlines)
    app.router.add_get("/openapi.json", openapi)
    app.on_cleanup.append(stop)
    return app
