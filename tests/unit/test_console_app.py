"""The console's routes under the policy: regional isolation on every route, authentication, CSRF, rate limits,
uploads, the review going up three levels with a return, an alert made a finding, all in the archive's chain."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.archive.store import Archive, StoreError
from streams.console.app import ROUTES, make_app
from streams.console.auth import Auth, Limits, RateLimiter, load_secret
from streams.console.openapi import OPENAPI
from streams.console.policy import User
from streams.console.service import BadRequest, Console, sniff
from streams.console.store import Store

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 13, tzinfo=UTC)  # 12 days after February (Asia/Shanghai) ended
PASSWORD = "correct horse battery"
ENTITIES = {"ent-sz": ("320000", "320500"), "ent-nj": ("320000", "320100"), "ent-bt": ("150000", "150200")}
USERS = [User("plant-sz", "plant", "ent-sz"), User("plant-nj", "plant", "ent-nj"),
         User("muni-sz", "municipal", province="320000", municipality="320500"),
         User("muni-nj", "municipal", province="320000", municipality="320100"),
         User("prov-js", "provincial", province="320000"), User("prov-nm", "provincial", province="150000"),
         User("national", "national"), User("admin", "admin")]
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _alert(entity: str, province: str, municipality: str) -> dict:
    return {"id": f"{province}/{municipality}/{entity}/-/2026-02/measured_vs_calculated",
            "rule": "measured_vs_calculated",
            "severity": "critical", "deviation": 0.2, "source_id": None, "period": "2026-02", "measured": 1200.0,
            "expected": 1000.0, "allowed": 0.085, "unit": "t CO2", "explanation": "CEMS 20 % above calculated",
            "evidence": []}


@pytest.fixture(scope="module")
def hashed():
    return Auth.hash_password(PASSWORD)  # argon2 once for every account (it is slow on purpose)


@pytest.fixture
def world(tmp_path, hashed):
    archive = Archive(tmp_path / "archive.sqlite")
    for entity, (province, municipality) in ENTITIES.items():
        archive.register(entity, "Asia/Shanghai", "2026-02", province, municipality, at=NOW)
        archive.put(entity, None, "2026-02", {"co2_t": 1200.0, "measured_co2_t": 1200.0, "substituted_co2_t": 0.0,
                                              "calculated_co2_t": 1000.0, "deviation": 0.2, "hours_in_month": 672,
                                              "measured_hours": 672, "substituted_hours": 0, "missing_hours": 0,
                                              "alerts": [_alert(entity, province, municipality)]}, "report", at=NOW)
        archive.append("hourly", entity, "2026-02", {"source_id": f"{entity}-stack", "start": "2026-01-31T16:00:00Z",
                                                     "timezone": "Asia/Shanghai", "co2_kg": [1.0] * 672,
                                                     "status": "V" * 670 + "SP"}, at=NOW)
    store = Store(tmp_path / "console.sqlite")
    for u in USERS:
        store.add_user(u, hashed)
    return archive, store


@pytest.fixture
async def client(world):
    archive, store = world
    app = make_app(archive, store, b"s" * 32, clock=lambda: NOW, secure_cookies=False,
                   limits=Limits(login_failures_per_account=3, login_failures_per_address=6))
    async with TestClient(TestServer(app)) as c:
        yield c


async def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in; return the session's CSRF token (read from a page, as a browser would)."""
    client.session.cookie_jar.clear()
    page = await (await client.get("/login")).text()
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    r = await client.post("/login", data={"csrf": token, "username": username, "password": password},
                          allow_redirects=False)
    assert r.status == 303, await r.text()
    page = await (await client.get("/entities")).text()
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def _paths(entity: str) -> list[tuple[str, str]]:
    return [(method, _url(path, entity)) for method, path, _ in ROUTES if "{entity}" in path]


def _url(path: str, entity: str) -> str:
    return (path.replace("{month:\\d{4}-\\d{2}}", "2026-02").replace("{entity}", entity)
            .replace("{sha256}", "0" * 64))


async def test_a_municipal_reviewer_gets_404_for_another_municipality_on_every_route(client, world):
    csrf = await login(client, "muni-sz")
    routes = _paths("ent-nj")
    assert len(routes) == 9  # every route with an entity in it (pages, API, evidence, the three actions)
    for method, path in routes:
        r = await client.request(method, path, headers={"X-CSRF-Token": csrf},
                                 data={"action": "accept", "category": "other"} if method == "POST" else None)
        assert r.status == 404, (method, path, r.status)
        assert "ent-nj" not in await r.text()
    for method, path in _paths("ent-sz"):  # its own entity answers (GETs), so the 404s above are the policy's
        if method == "GET" and "sha256" not in path and "evidence" not in path:
            assert (await client.get(path)).status == 200, path
    # the lists and counts leave the other municipality out
    assert [e["entity_id"] for e in await (await client.get("/api/v1/entities")).json()] == ["ent-sz"]
    assert {a["entity_id"] for a in await (await client.get("/api/v1/alerts")).json()} == {"ent-sz"}
    ov = await (await client.get("/api/v1/overview")).json()
    assert [(r["region"], r["entities"]) for r in ov["regions"]] == [("320500", 1)]
    for page in ("/", "/alerts", "/entities", "/alerts?municipality=320100"):
        assert "ent-nj" not in await (await client.get(page)).text(), page
    other = _alert("ent-nj", "320000", "320100")["id"]
    r = await client.post("/api/v1/alerts/action", json={"alert_id": other, "action": "acknowledge"},
                          headers={"X-CSRF-Token": csrf})
    assert r.status == 404


@pytest.mark.parametrize("username,sees", [
    ("plant-sz", {"ent-sz"}), ("muni-nj", {"ent-nj"}), ("prov-js", {"ent-sz", "ent-nj"}), ("prov-nm", {"ent-bt"}),
    ("national", set(ENTITIES)), ("admin", set(ENTITIES))])
async def test_each_role_sees_exactly_its_region(client, username, sees):
    await login(client, username)
    assert {e["entity_id"] for e in await (await client.get("/api/v1/entities")).json()} == sees
    for entity in ENTITIES:
        want = 200 if entity in sees else 404
        assert (await client.get(f"/api/v1/entities/{entity}/months/2026-02")).status == want
        assert (await client.get(f"/entities/{entity}/2026-02")).status == want


async def test_nothing_but_login_and_static_without_a_session(client):
    for method, path, _ in ROUTES:
        if path in ("/login", "/api/v1/openapi.json"):
            continue
        url = _url(path, "ent-sz")
        r = await client.request(method, url, allow_redirects=False)
        if path.startswith("/api/"):
            assert r.status == 401, (method, path)
        else:
            assert r.status in (303, 403), (method, path)  # pages go to the login; a POST fails the CSRF check first
    assert (await client.get("/static/vendor/echarts/echarts.min.js")).status == 200


async def test_csrf_is_required_on_every_state_change(client):
    csrf = await login(client, "plant-sz")
    url = "/api/v1/entities/ent-sz/months/2026-02/submit"
    assert (await client.post(url, json={})).status == 403  # no token
    assert (await client.post(url, json={}, headers={"X-CSRF-Token": "0" * 64})).status == 403  # wrong token
    r = await client.post(url, json={}, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert r.status == 403  # right token from a foreign page
    r = await client.post("/api/v1/entities/ent-sz/months/2026-02/evidence", data={"csrf": "x", "category": "other"})
    assert r.status == 403
    r = await client.post("/logout", allow_redirects=False)  # even logging out
    assert r.status == 403
    assert (await client.post(url, json={}, headers={"X-CSRF-Token": csrf})).status == 400  # passes CSRF: no report


async def test_login_attempts_are_rate_limited_per_account(client):
    client.session.cookie_jar.clear()
    page = await (await client.get("/login")).text()
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    statuses = []
    for password in ["wrong password 1", "wrong password 2", "wrong password 3", PASSWORD]:
        r = await client.post("/login", data={"csrf": token, "username": "muni-sz", "password": password},
                              allow_redirects=False)
        statuses.append(r.status)
    assert statuses == [401, 401, 401, 429]  # the limit is 3 here: the right password is refused too, for now
    r = await client.post("/login", data={"csrf": "forged", "username": "muni-nj", "password": PASSWORD})
    assert r.status == 403  # the login form carries its own CSRF token


def test_rate_limiter_window_and_sessions_expire():
    t = [0.0]
    lim = RateLimiter(2, 60.0, clock=lambda: t[0])
    lim.fail("a"), lim.fail("a")
    assert lim.blocked("a") and not lim.blocked("b")
    t[0] = 60.0  # the window has moved past both failures
    assert not lim.blocked("a")


def test_sessions_end_when_idle_or_old_or_disabled(tmp_path, hashed):
    store = Store(tmp_path / "c.sqlite")
    store.add_user(User("u1", "national"), hashed)
    now = [1000.0]
    auth = Auth(store, b"k" * 32, Limits(session_idle_s=60, session_max_s=300), clock=lambda: now[0])
    _, token = auth.login("u1", PASSWORD, "127.0.0.1")
    now[0] += 59
    assert auth.session_user(token).username == "u1"  # used: the idle clock restarts
    now[0] += 59
    assert auth.session_user(token) is not None
    now[0] += 61
    assert auth.session_user(token) is None  # idle 61 s > 60 s
    _, token = auth.login("u1", PASSWORD, "127.0.0.1")
    for _ in range(6):
        now[0] += 50
        assert auth.session_user(token) is not None  # 50, 100 ... 300 s after login: still (300 s is the limit)
    now[0] += 1
    assert auth.session_user(token) is None  # 301 s after login, however busy
    _, token = auth.login("u1", PASSWORD, "127.0.0.1")
    api = auth.new_api_token("u1", "platform")
    store.set_disabled("u1")
    assert auth.session_user(token) is None and auth.bearer_user(api) is None
    assert store.db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0
    assert all(len(r[0]) == 64 for r in store.db.execute("SELECT id_hash FROM sessions"))
    assert PASSWORD not in (tmp_path / "c.sqlite").read_bytes().decode("latin-1")
    assert store.user("u1")[1].startswith("$argon2id$")


def test_the_secret_file_is_made_0600_and_a_readable_one_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("CEMS_CONSOLE_SECRET", raising=False)
    key = load_secret(tmp_path)
    assert len(key) == 32 and stat.S_IMODE(os.stat(tmp_path / "console.key").st_mode) == 0o600
    assert load_secret(tmp_path) == key
    os.chmod(tmp_path / "console.key", 0o644)
    with pytest.raises(ValueError, match="readable by others"):
        load_secret(tmp_path)
    monkeypatch.setenv("CEMS_CONSOLE_SECRET", "short")
    with pytest.raises(ValueError, match="at least 32"):
        load_secret(tmp_path)


def test_evidence_types_are_checked_by_content():
    assert sniff("lab.pdf", PDF) == "application/pdf"
    assert sniff("ticket.PNG", PNG) == "image/png"
    assert sniff("report.csv", b"a,b\n1,2\n") == "text/csv"
    for name, data, why in [("lab.pdf", PNG, "not application/pdf"), ("x.exe", b"MZ\x90\x00", "type not allowed"),
                            ("report.csv", b"a,b\x00\n", "not text/csv"), ("noext", PDF, "type not allowed"),
                            ("sheet.xlsx", b"PK\x03\x04junk", "not application/vnd"), ("empty.pdf", b"", "empty")]:
        with pytest.raises(BadRequest, match=why):
            sniff(name, data)


@given(st.text(max_size=40), st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_sniff_takes_any_name_and_bytes_without_crashing(name, data):
    with contextlib.suppress(BadRequest):
        assert sniff(name, data) in {"application/pdf", "image/png", "image/jpeg", "text/csv", "application/json",
                                     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


async def test_upload_limits(client):
    csrf = await login(client, "plant-sz")
    url = "/api/v1/entities/ent-sz/months/2026-02/evidence"
    import io

    def form(name, data, category="lab_report"):
        from aiohttp import FormData

        f = FormData()
        f.add_field("category", category)
        f.add_field("file", io.BytesIO(data), filename=name)
        return f

    r = await client.post(url, data=form("a.exe", b"MZ\x90\x00"), headers={"X-CSRF-Token": csrf})
    assert r.status == 400 and "type not allowed" in (await r.json())["error"]
    r = await client.post(url, data=form("lab.pdf", PNG), headers={"X-CSRF-Token": csrf})
    assert r.status == 400 and "checked by its bytes" in (await r.json())["error"]
    r = await client.post(url, data=form("lab.pdf", PDF, "selfie"), headers={"X-CSRF-Token": csrf})
    assert r.status == 400 and "category" in (await r.json())["error"]
    # 10 MiB + 1 byte: over the file limit, inside the body limit (11 MiB)
    r = await client.post(url, data=form("big.pdf", b"%PDF-" + b"0" * (10 * 2**20 - 4)), headers={"X-CSRF-Token": csrf})
    assert r.status == 400 and "10,485,760 allowed" in (await r.json())["error"]
    r = await client.post(url, data=form("huge.pdf", b"%PDF-" + b"0" * (12 * 2**20)), headers={"X-CSRF-Token": csrf})
    assert r.status == 413
    r = await client.post(url, data=form("lab.pdf", PDF), headers={"X-CSRF-Token": csrf})
    assert r.status == 200 and (await r.json())["data"]["sha256"] == __import__("hashlib").sha256(PDF).hexdigest()


def _report(entity: str) -> bytes:
    return (REPO / "deploy/demo/reports/demo-cement-2026-02.csv").read_text().replace("demo-cement", entity).encode()


async def _post(client, url, csrf, **body):
    r = await client.post(url, json=body, headers={"X-CSRF-Token": csrf})
    return r.status, await r.json()


async def test_three_levels_with_one_return_and_a_finding_all_in_the_chain(client, world):
    archive, _ = world
    base = "/api/v1/entities/ent-sz/months/2026-02"
    from aiohttp import FormData

    csrf = await login(client, "plant-sz")
    for name, data, category in [("ent-sz-2026-02.csv", _report("ent-sz"), "accounting_report"),
                                 ("lab.pdf", PDF, "lab_report")]:
        f = FormData()
        f.add_field("category", category)
        f.add_field("file", data, filename=name)
        r = await client.post(base + "/evidence", data=f, headers={"X-CSRF-Token": csrf})
        assert r.status == 200, await r.text()
    month = await (await client.get(base)).json()
    assert ("cement.clinker_output", 82200.0, "measured") in {(p["parameter"], p["value"], p["basis"])
                                                                for p in month["parameters"]}
    # February ends 2026-03-01T00:00+08:00 = 2026-02-28T16:00Z; + 40 days = 2026-04-09T16:00Z; from
    # 2026-03-13T00:00Z that is 27 days 16 h = 27 x 86,400 + 16 x 3,600 = 2,390,400 s
    assert month["summary"]["seconds_left"] == 2_390_400
    assert await _post(client, base + "/submit", csrf) == (200, (await _post_state(client, base)))
    status, body = await _post(client, base + "/review", csrf, action="accept")
    assert status == 403  # a plant does not review

    csrf = await login(client, "muni-sz")
    assert (await _post(client, base + "/review", csrf, action="return"))[0] == 400  # needs a reason
    assert (await _post(client, base + "/review", csrf, action="accept"))[1]["state"] == "provincial_review"
    assert (await _post(client, base + "/review", csrf, action="accept"))[0] == 409  # not its level any more
    alert = month["alerts"][0]["id"]
    status, rec = await _post(client, "/api/v1/alerts/action", csrf, alert_id=alert, action="finding",
                              reason="CEMS 20 % above the report: ask for the coal lab reports")
    assert status == 200 and rec["data"]["to"] == "finding"
    assert (await _post(client, "/api/v1/alerts/action", csrf, alert_id=alert, action="dismiss", reason="x"))[0] == 409

    csrf = await login(client, "prov-js")
    assert (await _post(client, base + "/review", csrf, action="return",
                        reason="carbon content of raw coal has no lab report"))[1]["state"] == "returned"

    csrf = await login(client, "plant-sz")
    assert (await _post(client, base + "/submit", csrf))[0] == 400  # a correction needs a reason
    assert (await _post(client, base + "/submit", csrf, reason="lab report of the coal added"))[1]["versions"] == 2

    for user, action, reason, state in [("muni-sz", "accept", "", "provincial_review"),
                                        ("prov-js", "escalate", "national check of the coal factor", "national_review"),
                                        ("national", "accept", "", "accepted")]:
        csrf = await login(client, user)
        status, body = await _post(client, base + "/review", csrf, action=action, reason=reason)
        assert (status, body["state"]) == (200, state), body

    reviews = [(r.data["by"], r.data["action"], r.data["from"], r.data["to"], r.data["reason"])
               for r in archive.records("review", "ent-sz", "2026-02")]
    assert reviews == [
        ("plant-sz", "submit", "open", "municipal_review", ""),
        ("muni-sz", "accept", "municipal_review", "provincial_review", ""),
        ("prov-js", "return", "provincial_review", "returned", "carbon content of raw coal has no lab report"),
        ("plant-sz", "submit", "returned", "municipal_review", "lab report of the coal added"),
        ("muni-sz", "accept", "municipal_review", "provincial_review", ""),
        ("prov-js", "escalate", "provincial_review", "national_review", "national check of the coal factor"),
        ("national", "accept", "national_review", "accepted", "")]
    assert all(r.at == "2026-03-13T00:00:00Z" for r in archive.records("review"))
    assert [r.data["version"] for r in archive.records("submission")] == [0, 1]
    assert archive.verify() == []
    history = (await (await client.get(base)).json())["history"]
    assert [h["kind"] for h in history].count("alert_action") == 1  # the finding sits in the review history

    # tampering: an altered review action, then a removed one, are found by verify
    seq = archive.records("review", "ent-sz", "2026-02")[2].seq
    row = archive.db.execute("SELECT data FROM records WHERE seq=?", (seq,)).fetchone()[0]
    archive.db.execute("UPDATE records SET data=? WHERE seq=?", (row.replace("no lab report", "fine"), seq))
    assert archive.verify() == [f"seq {seq} (review ent-sz/2026-02): content does not match its hash (altered)"]
    archive.db.execute("UPDATE records SET data=? WHERE seq=?", (row, seq))
    assert archive.verify() == []
    archive.db.execute("DELETE FROM records WHERE seq=?", (seq,))
    assert archive.verify() == [f"seq {seq + 1} (submission ent-sz/2026-02): prev_hash does not match the entry "
                                f"before it (a version or record was removed or inserted)"]


async def _post_state(client, base):
    return (await (await client.get(base)).json())["summary"] | {"state": "municipal_review", "versions": 1,
                                                                 "submitted_at": "2026-03-13T00:00:00Z",
                                                                 "seconds_left": None, "deadline_status": "in_time"}


async def test_a_bearer_token_pulls_the_api_without_csrf_and_within_its_region(client, world):
    _, store = world
    token = Auth(store, b"").new_api_token("prov-js", "provincial platform")
    h = {"Authorization": f"Bearer {token}"}
    entities = await (await client.get("/api/v1/entities", headers=h)).json()
    assert {e["entity_id"] for e in entities} == {"ent-sz", "ent-nj"}
    assert (await client.get("/api/v1/entities/ent-bt/months/2026-02", headers=h)).status == 404
    r = await client.post("/api/v1/entities/ent-sz/months/2026-02/review", json={"action": "accept"}, headers=h)
    assert r.status == 409  # no CSRF needed with a bearer token; the month is not in provincial review
    assert (await client.get("/api/v1/me", headers={"Authorization": "Bearer nope"})).status == 401


def test_the_openapi_describes_every_api_route():
    api = {p.replace("{month:\\d{4}-\\d{2}}", "{month}") for m, p, _ in ROUTES if p.startswith("/api/")}
    assert api == set(OPENAPI["paths"])
    json.dumps(OPENAPI)


async def test_pages_carry_the_security_headers(client):
    r = await client.get("/login")
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


NASTY = ["%2e%2e", "..%2f", "ent-sz'--", "ent-sz%00", "ent-nj/../ent-sz", "x" * 3000, "实体", "%ff%fe", "ent-sz;DROP",
         "<script>", "ent-sz%2F..%2Fent-nj", " "]


async def test_hostile_path_and_body_values_never_give_a_500(client):
    """A fuzz of hostile entities, months and alert ids on every route: answers are 400/404/409, never a 500 or
    another region's data."""
    csrf = await login(client, "muni-sz")
    for value in NASTY:
        for month in ("2026-02", value):
            for method, path, _ in ROUTES:
                if "{entity}" not in path:
                    continue
                url = (path.replace("{month:\\d{4}-\\d{2}}", month).replace("{entity}", value)
                       .replace("{sha256}", value))
                r = await client.request(method, url, headers={"X-CSRF-Token": csrf},
                                         json={"action": value, "reason": value} if method == "POST" else None)
                # the client resolves dot segments itself ("ent-nj/../ent-sz" is sent as "ent-sz"): another route
                normalised = "ent-nj" not in r.url.path and value not in r.url.path
                assert r.status in (400, 404, 405) or normalised, (method, url[:80], r.status)
                assert "320100" not in await r.text()  # nothing of Nanjing's entity (errors may echo the input)
        r = await client.post("/api/v1/alerts/action", json={"alert_id": value, "action": "finding", "reason": value},
                              headers={"X-CSRF-Token": csrf})
        assert r.status == 404
        r = await client.get("/api/v1/alerts", params={"severity": value, "month": value, "municipality": value})
        assert r.status in (200, 400, 404) and "320100" not in await r.text()
    r = await client.post("/api/v1/alerts/action", data=b"{not json", headers={"X-CSRF-Token": csrf,
                                                                             "Content-Type": "application/json"})
    assert r.status == 400


@pytest.mark.parametrize(("failure", "status"), [(StoreError("row 7 does not decode"), 503),
                                                  (sqlite3.OperationalError("database is locked"), 503),
                                                  (KeyError("a bug"), 500)])
async def test_a_failing_store_or_a_bug_gets_the_consoles_own_answer_never_a_traceback(client, monkeypatch, caplog,
                                                                                       failure, status):
    """What is not the request's fault: a damaged or locked store is 503 (try again), an unforeseen error 500, both
    as the console's error page (or JSON on the API), logged on the server with what failed, nothing of it leaked."""
    await login(client, "muni-sz")

    def broken(*args, **kwargs):
        raise failure

    monkeypatch.setattr(Console, "entities", broken)
    page = await client.get("/entities")
    assert page.status == status
    text = await page.text()
    assert "Traceback" not in text and "a bug" not in text and "row 7" not in text
    assert "<html" in text.lower()  # the console's page, with its navigation, not aiohttp's bare text
    api = await client.get("/api/v1/entities")
    assert api.status == status
    assert set(await api.json()) == {"error"}
    assert any(r.levelname == "ERROR" and "/entities" in r.getMessage() for r in caplog.records)
