"""The console's aiohttp application: pages for people, ``/api/v1`` for provincial platforms, one policy.

Every route is in :data:`ROUTES`. Authentication, CSRF and error mapping are middlewares, so no handler can forget
them; what a user sees is decided by :class:`~streams.console.service.Console` through
:mod:`streams.console.policy`. Pages post their forms to the same API routes (with a ``next`` field, answered with
a redirect), so the pages and the API share one implementation of every action.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web

from streams.archive.store import Archive, StoreError
from streams.core.figures import HOUR_STATUS

from . import review
from .auth import Auth, Limits, LoginRefused
from .i18n import LABELS, LANGS, label, region_name
from .openapi import OPENAPI
from .policy import User
from .service import CATEGORIES, MAX_FILE_BYTES, BadRequest, Conflict, Console, NotFound, Refused
from .store import Store

__all__ = ["ROUTES", "make_app"]

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "cems_session"
LOGIN_COOKIE = "cems_login"
PUBLIC = ("/login", "/static/", "/api/v1/openapi.json")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
CONSOLE = web.AppKey("console", Console)
USER = web.RequestKey("user", User)  # the user of the request, when logged in
SESSION: web.RequestKey[str | None] = web.RequestKey("session")  # the session token, when a cookie sent one
VIA = web.RequestKey("via", str)  # "cookie" | "bearer"
AUTH = web.AppKey("auth", Auth)
SETTINGS = web.AppKey("settings", dict)

log = logging.getLogger(__name__)

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                          autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)


def _api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


# -- middlewares -----------------------------------------------------------------------------------------------

@web.middleware
async def _errors(request: web.Request, handler):
    try:
        return await handler(request)
    except (NotFound, web.HTTPNotFound):
        return _error(request, 404, label("not_found", _lang(request)))
    except Refused as exc:
        return _error(request, 403, str(exc))
    except Conflict as exc:
        return _error(request, 409, str(exc))
    except BadRequest as exc:
        return _error(request, 400, str(exc))
    except web.HTTPRequestEntityTooLarge:
        return _error(request, 413, f"request larger than {request.app[SETTINGS]['max_body']:,} bytes")
    except web.HTTPMethodNotAllowed:
        return _error(request, 405, "method not allowed")
    except web.HTTPException:
        raise  # redirects and the other answers aiohttp builds on purpose
    except (StoreError, sqlite3.Error) as exc:  # the archive or the console's store unusable: not the request's fault
        log.error("console: %s %s: store unavailable: %s", request.method, request.path, exc,
                  extra={"event": "console_store_error"})
        return _error(request, 503, "the archive or the console's store is unavailable; try again later")
    except Exception:  # the last resort: every cause found is handled above; the traceback stays in the log
        log.exception("console: unforeseen error on %s %s", request.method, request.path,
                      extra={"event": "console_unforeseen_error"})
        return _error(request, 500, "internal error (logged on the server)")


def _error(request: web.Request, status: int, message: str) -> web.Response:
    if _api(request) or USER not in request:
        return web.json_response({"error": message}, status=status)
    return _page(request, "error.html", status=status, status_code=status, message=message)


@web.middleware
async def _authenticate(request: web.Request, handler):
    auth = request.app[AUTH]
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        user = auth.bearer_user(header[7:].strip())
        request[VIA] = "bearer"
    else:
        request[SESSION] = request.cookies.get(SESSION_COOKIE)
        user = auth.session_user(request[SESSION])
        request[VIA] = "cookie"
    if user is not None:
        request[USER] = user
    elif not request.path.startswith(PUBLIC):
        if _api(request):
            return web.json_response({"error": "authentication required"}, status=401)
        raise web.HTTPSeeOther("/login")
    return await handler(request)


@web.middleware
async def _csrf(request: web.Request, handler):
    """State changes with a session cookie need the session's CSRF token and, when sent, our own Origin."""
    if request.method in ("GET", "HEAD", "OPTIONS") or request.get(VIA) == "bearer":
        return await handler(request)
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return _csrf_refused(request)
    if request.path == "/login":
        return await handler(request)  # checked against the login cookie in the handler
    sent = request.headers.get("X-CSRF-Token")
    if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        sent = _form_text((await request.post()).get("csrf"))
    session = request.get(SESSION)
    if not session or not request.app[AUTH].csrf_ok(session, sent):
        return _csrf_refused(request)
    return await handler(request)


def _form_text(value: object) -> str | None:
    """A form field's text; None for a missing field or an uploaded file in its place."""
    return value if isinstance(value, str) else None


def _csrf_refused(request: web.Request) -> web.Response:
    return web.json_response({"error": "CSRF check failed: missing or wrong token, or a foreign Origin"}, status=403)


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"  # "no-referrer" would make browsers send Origin: null
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"


# -- rendering -------------------------------------------------------------------------------------------------

def _lang(request: web.Request) -> str:
    q = request.query.get("lang")
    if q in LANGS:
        return q
    c = request.cookies.get("lang")
    if c in LANGS:
        return c
    return "zh" if request.headers.get("Accept-Language", "").lower().startswith("zh") else "en"


def _page(request: web.Request, template: str, status: int = 200, **context) -> web.Response:
    lang = _lang(request)
    user = request.get(USER)
    session = request.get(SESSION)
    csrf = request.app[AUTH].csrf(session) if session else ""
    data = context.pop("page_data", None)
    labels = {k: label(k, lang) for k in LABELS} | {f"status_{k}": label(v, lang) for k, v in HOUR_STATUS.items()}
    data = {"regions": {c: region_name(c, lang) for c in _region_codes(data)}, **(data or {})}
    html = _env.get_template(template).render(
        user=user, lang=lang, t=lambda k: label(k, lang), region=lambda c: region_name(c, lang), csrf=csrf,
        path=request.path, msg=request.query.get("msg", ""), error_msg=request.query.get("error", ""),
        page_data=json.dumps({"labels": labels, "lang": lang, **(data or {})}, ensure_ascii=False)
        .replace("</", "<\\/"), other_lang="en" if lang == "zh" else "zh", **context)
    response = web.Response(text=html, content_type="text/html", status=status)
    if request.query.get("lang") in LANGS:
        response.set_cookie("lang", lang, httponly=True, samesite="Strict", max_age=365 * 86400)
    return response


def _region_codes(data: dict | None) -> set[str]:
    if not data:
        return set()
    codes = {r["region"] for r in data.get("overview", {}).get("regions", [])}
    return codes | {a[k] for a in data.get("queue", []) for k in ("province", "municipality")}


def _user(request: web.Request) -> User:
    return request[USER]


def _console(request: web.Request) -> Console:
    return request.app[CONSOLE]


# -- pages -----------------------------------------------------------------------------------------------------

async def login_page(request: web.Request) -> web.Response:
    if USER in request:
        raise web.HTTPSeeOther("/")
    return _login_form(request)


def _login_form(request: web.Request, status: int = 200, error: str = "") -> web.Response:
    # one login token per browser until it logs in (a second tab or a favicon fetch must not invalidate the first)
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    response = _page(request, "login.html", status=status, login_csrf=request.app[AUTH].csrf("login:" + token),
                     error=error)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict", path="/login",
                        secure=request.app[SETTINGS]["secure_cookies"])
    return response


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    auth = request.app[AUTH]
    pre = request.cookies.get(LOGIN_COOKIE)
    if not pre or not auth.csrf_ok("login:" + pre, _form_text(form.get("csrf"))):
        return _csrf_refused(request)
    try:
        user, token = auth.login(str(form.get("username", "")), str(form.get("password", "")),
                                 request.remote or "?")
    except LoginRefused as exc:
        return _login_form(request, exc.status, str(exc))
    response = _redirect("/" if user.role != "plant" else f"/entities/{quote(user.entity_id)}")
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict", path="/",
                        secure=request.app[SETTINGS]["secure_cookies"])
    response.del_cookie(LOGIN_COOKIE, path="/login")
    return response


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def logout(request: web.Request) -> web.Response:
    session = request.get(SESSION)
    if session:  # a bearer token's request has no session to end
        request.app[AUTH].logout(session)
    response = _redirect("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def overview_page(request: web.Request) -> web.Response:
    user = _user(request)
    if user.role == "plant":
        raise web.HTTPSeeOther(f"/entities/{quote(user.entity_id)}")
    c = _console(request)
    ov = c.overview(user, request.query.get("month") or None)
    alerts = c.alerts(user, month=ov["month"]) if ov["month"] else []
    return _page(request, "overview.html", ov=ov, page_data={"overview": ov, "alerts": _alert_counts(alerts, ov)})


def _alert_counts(alerts: list[dict], ov: dict) -> dict:
    counts: dict[str, dict[str, int]] = {r["region"]: {} for r in ov["regions"]}
    for a in alerts:
        if a["state"] in ("open", "acknowledged"):
            row = counts.setdefault(a[ov["by"]] or "-", {})
            row[a["severity"]] = row.get(a["severity"], 0) + 1
    return counts


async def alerts_page(request: web.Request) -> web.Response:
    user, c = _user(request), _console(request)
    q = {k: request.query.get(k) or None for k in ("severity", "state", "province", "municipality", "month")}
    rows = c.alerts(user, **q)
    entities = c.entities(user)
    return _page(request, "alerts.html", rows=rows, q=q,
                 provinces=sorted({e["province"] for e in entities if e["province"]}),
                 municipalities=sorted({e["municipality"] for e in entities if e["municipality"]}),
                 severities=("critical", "warning", "info"), states=review.ALERT_STATES,
                 page_data={"queue": rows})


async def entities_page(request: web.Request) -> web.Response:
    user, c = _user(request), _console(request)
    rows = [(e, c.months(user, e["entity_id"])) for e in c.entities(user)]
    return _page(request, "entities.html", rows=rows)


async def entity_page(request: web.Request) -> web.Response:
    user, c = _user(request), _console(request)
    e = c.entity(user, request.match_info["entity"])
    return _page(request, "entity.html", entity=e, months=c.months(user, e["entity_id"]))


async def month_page(request: web.Request) -> web.Response:
    user, c = _user(request), _console(request)
    view = c.month(user, request.match_info["entity"], request.match_info["month"])
    data = {k: view[k] for k in ("hourly", "comparison", "alerts", "month")}
    data["timezone"] = view["entity"]["timezone"]
    return _page(request, "month.html", v=view, categories=CATEGORIES, page_data=data,
                 max_mib=MAX_FILE_BYTES // 2**20)


# -- API -------------------------------------------------------------------------------------------------------

async def api_me(request: web.Request) -> web.Response:
    return web.json_response(asdict(_user(request)))


async def api_entities(request: web.Request) -> web.Response:
    return web.json_response(_console(request).entities(_user(request)))


async def api_months(request: web.Request) -> web.Response:
    return web.json_response(_console(request).months(_user(request), request.match_info["entity"]))


async def api_month(request: web.Request) -> web.Response:
    return web.json_response(_console(request).month(_user(request), request.match_info["entity"],
                                                     request.match_info["month"]))


async def api_alerts(request: web.Request) -> web.Response:
    q = {k: request.query.get(k) or None for k in ("severity", "state", "province", "municipality", "month")}
    q["entity_id"] = request.query.get("entity") or None
    return web.json_response(_console(request).alerts(_user(request), **q))


async def api_overview(request: web.Request) -> web.Response:
    return web.json_response(_console(request).overview(_user(request), request.query.get("month") or None))


async def evidence_file(request: web.Request) -> web.Response:
    meta, data = _console(request).evidence_file(_user(request), request.match_info["entity"],
                                                 request.match_info["sha256"])
    return web.Response(body=data, content_type=meta["media_type"], headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(meta['name'])}",
        "Content-Security-Policy": "sandbox; default-src 'none'"})


async def _body(request: web.Request) -> dict:
    """The request's fields: a JSON object, or a form (files as (name, bytes))."""
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise BadRequest("the body is not JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return body
    form = await request.post()
    out: dict = {}
    for key in set(form.keys()):
        values = form.getall(key)
        v = [(x.filename, x.file.read()) if isinstance(x, web.FileField) else x for x in values]
        out[key] = v if key == "evidence" else v[-1]
    return out


def _done(request: web.Request, body: dict, result, message: str) -> web.Response:
    nxt = body.get("next")
    if isinstance(nxt, str) and nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt:
        raise web.HTTPSeeOther(nxt.split("?")[0] + "?" + urlencode({"msg": message}))
    return web.json_response(result)


async def _acting(request: web.Request, act):
    """Run an action; for a page's form post, an error goes back to the page as ``?error=``."""
    body = await _body(request)
    try:
        return body, act(body)
    except (BadRequest, Conflict, Refused) as exc:
        nxt = body.get("next")
        if isinstance(nxt, str) and nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt:
            raise web.HTTPSeeOther(nxt.split("?")[0] + "?" + urlencode({"error": str(exc)})) from None
        raise


async def api_deposit(request: web.Request) -> web.Response:
    m = request.match_info

    def act(body):
        _console(request).entity(_user(request), m["entity"])  # outside the region: 404 before anything else
        f = body.get("file")
        if not isinstance(f, tuple):
            raise BadRequest("a multipart field 'file' is needed")
        return _console(request).deposit(_user(request), m["entity"], m["month"], str(body.get("category", "")),
                                         f[0], f[1])

    body, result = await _acting(request, act)
    return _done(request, body, result, f"deposited {result['data']['name']}")


async def api_submit(request: web.Request) -> web.Response:
    m = request.match_info

    def act(body):
        _console(request).entity(_user(request), m["entity"])
        ev = body.get("evidence")
        ev = [ev] if isinstance(ev, str) else ev
        if ev is not None and not (isinstance(ev, list) and all(isinstance(x, str) for x in ev)):
            raise BadRequest("evidence: a list of sha256")
        return _console(request).submit(_user(request), m["entity"], m["month"], str(body.get("reason", "")), ev)

    body, result = await _acting(request, act)
    return _done(request, body, result, "submitted")


async def api_review(request: web.Request) -> web.Response:
    m = request.match_info
    body, result = await _acting(request, lambda body: _console(request).act(
        _user(request), m["entity"], m["month"], str(body.get("action", "")), str(body.get("reason", ""))))
    return _done(request, body, result, f"{body.get('action')}: {result['state']}")


async def api_alert_action(request: web.Request) -> web.Response:
    body, result = await _acting(request, lambda body: _console(request).alert_action(
        _user(request), str(body.get("alert_id", "")), str(body.get("action", "")), str(body.get("reason", ""))))
    return _done(request, body, result, f"{result['data']['action']}: {result['data']['alert_id']}")


async def api_openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


E, M = "/{entity}", "/{month:\\d{4}-\\d{2}}"
#: (method, path, handler): every route of the console (the policy tests go over all of them).
ROUTES = [
    ("GET", "/login", login_page), ("POST", "/login", login), ("POST", "/logout", logout),
    ("GET", "/", overview_page), ("GET", "/alerts", alerts_page), ("GET", "/entities", entities_page),
    ("GET", "/entities" + E, entity_page), ("GET", "/entities" + E + M, month_page),
    ("GET", "/entities" + E + M + "/evidence/{sha256}", evidence_file),
    ("GET", "/api/v1/openapi.json", api_openapi), ("GET", "/api/v1/me", api_me),
    ("GET", "/api/v1/entities", api_entities), ("GET", "/api/v1/entities" + E + "/months", api_months),
    ("GET", "/api/v1/entities" + E + "/months" + M, api_month),
    ("GET", "/api/v1/entities" + E + "/months" + M + "/evidence/{sha256}", evidence_file),
    ("POST", "/api/v1/entities" + E + "/months" + M + "/evidence", api_deposit),
    ("POST", "/api/v1/entities" + E + "/months" + M + "/submit", api_submit),
    ("POST", "/api/v1/entities" + E + "/months" + M + "/review", api_review),
    ("GET", "/api/v1/alerts", api_alerts), ("POST", "/api/v1/alerts/action", api_alert_action),
    ("GET", "/api/v1/overview", api_overview),
]


def make_app(archive: Archive, store: Store, secret: bytes, *, clock=None, limits: Limits = Limits(),
             secure_cookies: bool = True) -> web.Application:
    """The console on ``archive`` with the accounts of ``store``. ``clock``: the console's idea of now (deadlines,
    action times; the demo shifts it); ``secure_cookies`` False only for plain http on loopback."""
    max_body = MAX_FILE_BYTES + 2**20
    app = web.Application(middlewares=[_errors, _authenticate, _csrf], client_max_size=max_body)
    app[CONSOLE] = Console(archive, clock or (lambda: datetime.now(UTC)))
    app[AUTH] = Auth(store, secret, limits)
    app[SETTINGS] = {"secure_cookies": secure_cookies, "max_body": max_body}
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    app.router.add_static("/static", HERE / "static")
    app.on_response_prepare.append(_headers)
    return app
