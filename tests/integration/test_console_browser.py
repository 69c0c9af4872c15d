"""The console in a real browser (Debian's headless Chromium through playwright) against the real server that
``./cems demo`` opens on the archive the pipeline just produced (the session's ``cems demo --no-serve``, on a copy,
served as ``cems demo`` serves it: ``serve_demo_console`` in tests/fixtures.py): login, regional isolation through
pages, API and direct URLs, a plant's deposit and submission, the review up three levels with one return, an alert
made a finding, a CSRF attempt from another origin, the charts drawn, and the chain checked by ``cems archive
verify``. Screenshots go to test-artifacts/console/."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.fixtures import free_port

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "test-artifacts" / "console"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
CEMENT = "/entities/demo-cement/2026-02"


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_run):
    """The pipeline's month (the session's demo run), then the console on a copy of its archive with printed
    accounts, as `cems demo` serves it."""
    if not Path(CHROMIUM).exists():
        msg = f"{CHROMIUM} is missing (deploy/local/run-tests.sh installs Debian's chromium)"
        pytest.fail(msg) if os.environ.get("CI", "").lower() == "true" else pytest.skip(msg)
    assert demo_run.returncode == 0, demo_run.stdout[-3000:] + demo_run.stderr[-3000:]
    out = tmp_path_factory.mktemp("demo")
    for f in demo_run.out.glob("archive.sqlite*"):  # the tests review, submit and tamper: never the shared archive
        shutil.copy2(f, out / f.name)
    port = free_port()
    serve = f"from tests.fixtures import serve_demo_console as s; s({str(out)!r}, {port}, {demo_run.started!r})"
    proc = subprocess.Popen([sys.executable, "-c", serve], cwd=out, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    passwords, log = {}, []
    for line in proc.stdout:
        log.append(line)
        m = re.match(r"\s+(\S+)\s+(plant|municipal|provincial|national|admin)\s+\S+\s+(\S+)$", line)
        if m:
            passwords[m.group(1)] = m.group(3)
        if "console on http://127.0.0.1" in line:
            break
    else:
        pytest.fail("the demo ended without serving the console:\n" + "".join(log[-40:]))
    assert {"plant-cement", "muni-320500", "muni-320100", "prov-320000", "national", "admin"} <= passwords.keys()
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # keep the pipe drained
    yield {"url": f"http://127.0.0.1:{port}", "passwords": passwords, "out": out, "log": "".join(log)}
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)  # a fresh temporary user-data-dir
        yield b
        b.close()


def login(browser, server, username):
    page = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US").new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    page.goto(server["url"] + "/")
    assert page.url.endswith("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", server["passwords"][username])
    page.click("#login-form button[type=submit]")
    page.wait_for_load_state()
    assert username in page.inner_text("#who")
    return page


def shot(page, name):
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_login_refuses_a_wrong_password_and_lets_the_right_one_in(browser, server):
    page = browser.new_page()
    page.goto(server["url"] + "/login")
    page.fill("input[name=username]", "muni-320500")
    page.fill("input[name=password]", "not the password")
    page.click("#login-form button[type=submit]")
    assert "wrong user name or password" in page.inner_text("#login-error")
    shot(page, "01-login-refused")
    page.close()
    page = login(browser, server, "muni-320500")
    assert page.url == server["url"] + "/"
    page.wait_for_selector("#chart-deadlines[data-rendered='1'] canvas")
    shot(page, "02-overview-municipal")
    assert page.errors == []


def test_a_municipal_reviewer_cannot_reach_another_municipality(browser, server):
    page = login(browser, server, "muni-320500")  # Suzhou: demo-cement; demo-steel is in Nanjing (320100)
    page.goto(server["url"] + "/entities")
    assert "demo-cement" in page.inner_text("#entity-list") and "demo-steel" not in page.content()
    page.goto(server["url"] + "/alerts")
    assert "demo-cement" in page.inner_text("#alert-queue") and "demo-steel" not in page.content()
    for url in ("/entities/demo-steel", "/entities/demo-steel/2026-02", "/entities/demo-aluminium/2026-02",
                "/alerts?municipality=320100"):
        r = page.goto(server["url"] + url)
        assert "demo-steel" not in page.content() and "demo-aluminium" not in page.content(), url
        if url.startswith("/entities"):
            assert r.status == 404, url
    shot(page, "03-other-municipality-404")
    api = page.request  # the same session cookie
    assert [e["entity_id"] for e in api.get(server["url"] + "/api/v1/entities").json()] == ["demo-cement"]
    assert {a["entity_id"] for a in api.get(server["url"] + "/api/v1/alerts").json()} == {"demo-cement"}
    for url in ("/api/v1/entities/demo-steel/months", "/api/v1/entities/demo-steel/months/2026-02",
                "/api/v1/entities/demo-steel/months/2026-02/evidence/" + "0" * 64):
        r = api.get(server["url"] + url)
        assert r.status == 404 and "demo-steel" not in r.text(), url
    assert api.get(server["url"] + "/api/v1/alerts?entity=demo-steel").json() == []
    other = api.get(server["url"] + "/api/v1/overview").json()
    assert [r["region"] for r in other["regions"]] == ["320500"]


def _review(browser, server, user, action, reason="", name=""):
    page = login(browser, server, user)
    page.goto(server["url"] + CEMENT)
    if reason:
        page.fill("#review-form input[name=reason]", reason)
    page.click(f"#review-{action}")
    page.wait_for_load_state()
    if name:
        shot(page, name)
    state = page.get_attribute("#review-state", "data-state")
    page.context.close()
    return state


def test_plant_submits_the_review_goes_up_three_levels_with_a_return_and_a_finding(browser, server, tmp_path):
    page = login(browser, server, "plant-cement")
    assert page.url.endswith("/entities/demo-cement")
    page.goto(server["url"] + CEMENT)
    assert "days left" in page.inner_text("#countdown")  # the demo's clock: 12 days after the month's end
    page.select_option("#deposit-form select[name=category]", "accounting_report")
    page.set_input_files("#deposit-form input[type=file]", str(REPO / "deploy/demo/reports/demo-cement-2026-02.csv"))
    page.click("#deposit-form button")
    page.wait_for_load_state()
    assert "deposited demo-cement-2026-02.csv" in page.content()
    assert "cement.clinker_output" in page.inner_text("#parameters")
    (tmp_path / "coal-lab-report.pdf").write_bytes(PDF)
    (tmp_path / "fake.pdf").write_bytes(b"MZ\x90\x00 not a pdf")
    for f, category in ((tmp_path / "fake.pdf", "lab_report"), (tmp_path / "coal-lab-report.pdf", "lab_report")):
        page.select_option("#deposit-form select[name=category]", category)
        page.set_input_files("#deposit-form input[type=file]", str(f))
        page.click("#deposit-form button")
        page.wait_for_load_state()
    assert "coal-lab-report.pdf" in page.inner_text("#evidence") and "fake.pdf" not in page.inner_text("#evidence")
    page.click("#submit-form button")
    page.wait_for_load_state()
    assert page.get_attribute("#review-state", "data-state") == "municipal_review"
    shot(page, "04-plant-submitted")
    page.context.close()

    page = login(browser, server, "muni-320500")
    page.goto(server["url"] + CEMENT)
    alert = page.locator(".alert[data-alert*='production_metered_vs_reported']")
    alert.locator("input[name=reason]").fill("clinker 82,200 t reported, 73,427 t weighed: ask for the weighbridge")
    alert.locator("button[value=finding]").click()
    page.wait_for_load_state()
    assert page.get_attribute(".alert[data-alert*='production_metered_vs_reported'] .alert-state", "data-state") == "finding"
    assert "finding" in page.inner_text("#history")
    shot(page, "05-alert-made-finding")
    page.context.close()

    assert _review(browser, server, "muni-320500", "accept") == "provincial_review"
    assert _review(browser, server, "prov-320000", "return", "clinker figure disagrees with the weighbridge",
                   "06-returned-by-province") == "returned"

    page = login(browser, server, "plant-cement")
    page.goto(server["url"] + CEMENT)
    page.click("#submit-form button")  # a correction without a reason is refused
    page.wait_for_load_state()
    assert "needs a reason" in page.content()
    page.fill("#submit-form input[name=reason]", "weighbridge tickets of February attached")
    page.click("#submit-form button")
    page.wait_for_load_state()
    assert page.get_attribute("#review-state", "data-state") == "municipal_review"
    page.context.close()

    assert _review(browser, server, "muni-320500", "accept") == "provincial_review"
    assert _review(browser, server, "prov-320000", "escalate", "national check of the clinker factor") == "national_review"
    assert _review(browser, server, "national", "accept", name="07-accepted-nationally") == "accepted"

    archive = server["out"] / "archive.sqlite"
    cems = Path(sys.executable).parent / "cems"
    verify = subprocess.run([str(cems), "archive", "verify", "--store", str(archive)], capture_output=True, text=True)
    assert verify.returncode == 0 and "intact" in verify.stdout
    db = sqlite3.connect(archive)
    reviews = db.execute("SELECT seq, data FROM records WHERE kind='review' ORDER BY seq").fetchall()
    assert [re.search(r'"action":"(\w+)"', d).group(1) for _, d in reviews] == [
        "submit", "accept", "return", "submit", "accept", "escalate", "accept"]
    seq, data = reviews[2]
    db.execute("UPDATE records SET data=? WHERE seq=?", (data.replace("disagrees", "agrees"), seq))
    db.commit()
    verify = subprocess.run([str(cems), "archive", "verify", "--store", str(archive)], capture_output=True, text=True)
    assert verify.returncode == 1 and f"seq {seq} (review demo-cement/2026-02): content does not match" in verify.stderr
    db.execute("UPDATE records SET data=? WHERE seq=?", (data, seq))
    db.commit()
    db.close()


def test_a_csrf_attempt_from_another_origin_is_refused(browser, server):
    page = login(browser, server, "muni-320100")  # Nanjing: demo-steel, in municipal review? no: open
    target = server["url"] + "/api/v1/entities/demo-steel/months/2026-02/review"
    attack = (f'<form id="f" method="post" action="{target}"><input name="action" value="accept"></form>'
              '<script>document.getElementById("f").submit()</script>').encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(attack)

        def log_message(self, *args):
            pass

    evil = http.server.HTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        with page.expect_response(target) as answer:
            page.goto(f"http://127.0.0.1:{evil.server_port}/")
        assert answer.value.status == 403 and "CSRF" in answer.value.text()
    finally:
        evil.shutdown()
    # and from the console's own page, without the token: refused too
    page.goto(server["url"] + "/entities/demo-steel/2026-02")
    status = page.evaluate("""url => fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                 body: JSON.stringify({action: 'accept'})}).then(r => r.status)""",
                           target)
    assert status == 403
    shot(page, "08-after-csrf-attempt")
    assert page.get_attribute("#review-state", "data-state") == "open"


def test_the_charts_are_drawn(browser, server):
    page = login(browser, server, "prov-320000")
    page.goto(server["url"] + CEMENT)
    for chart in ("#chart-comparison", "#chart-hourly-1", "#chart-heatmap-1"):
        page.wait_for_selector(f"{chart}[data-rendered='1'] canvas")
        painted = page.evaluate("""sel => { const c = document.querySelector(sel + ' canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && (d[i] < 240 || d[i + 1] < 240 || d[i + 2] < 240)) n++;
            return n; }""", chart)
        assert painted > 2000, (chart, painted)  # bars, a month of hours, 672 heatmap cells: not a blank canvas
    assert int(page.get_attribute("#chart-hourly-1", "data-markers")) >= 1  # the month's alert is marked
    shot(page, "09-month-charts")
    page.goto(server["url"] + CEMENT + "?lang=zh")
    assert "CEMS 审核平台" in page.title() and "小时 CO2 排放" in page.content()
    page.wait_for_selector("#chart-heatmap-1[data-rendered='1'] canvas")
    shot(page, "10-month-zh")
    page.goto(server["url"] + "/alerts?lang=en")
    page.wait_for_selector("#chart-queue[data-rendered='1'] canvas")
    shot(page, "11-alert-queue-provincial")
    assert page.errors == []
