"""The console's month page shows a source's QA: the quarter's capture rate and availability, and per channel the
tests, out-of-control periods and next due dates the archive keeps (streams/core/qa.py: qa_figures)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from aiohttp.test_utils import TestClient, TestServer

from streams.archive.store import Archive
from streams.console.app import make_app
from streams.console.auth import Auth
from streams.console.policy import User
from streams.console.store import Store
from streams.core.figures import hourly_figures, month_figures
from streams.core.qa import QaState, qa_figures
from tests.unit.test_qa_gate import FEB, HOUR_NS, daily, month, registry

NOW = datetime(2026, 3, 13, tzinfo=UTC)
PASSWORD = "correct horse battery"


async def test_the_month_page_shows_the_qa_of_each_source(tmp_path):
    reg = registry()
    entity = reg.entities["plant"]
    qa = QaState(daily(fail={10}, skip={11}), reg)
    rec, hours = month(qa)
    figures = qa_figures(qa, entity, "2026-02", [rec], hours)
    archive = Archive(tmp_path / "archive.sqlite")
    archive.register("plant", "Asia/Shanghai", "2026-02", "320000", "320500", at=NOW)
    archive.put("plant", None, "2026-02", month_figures([rec], None, []), "cems", at=NOW)
    archive.put("plant", "k1", "2026-02", month_figures([rec]) | figures["sources"]["k1"], "cems", at=NOW)
    archive.put_hourly("plant", "k1", "2026-02", hourly_figures(hours, rec, FEB, FEB + 672 * HOUR_NS), at=NOW)
    store = Store(tmp_path / "console.sqlite")
    store.add_user(User("plant", "plant", "plant"), Auth.hash_password(PASSWORD))
    app = make_app(archive, store, b"s" * 32, clock=lambda: NOW, secure_cookies=False)
    async with TestClient(TestServer(app)) as client:
        page = await (await client.get("/login")).text()
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        r = await client.post("/login", data={"csrf": token, "username": "plant", "password": PASSWORD},
                              allow_redirects=False)
        assert r.status == 303
        page = await (await client.get("/entities/plant/2026-02?lang=en")).text()
    assert "Quality assurance of the monitors · 2026-Q1" in page
    # capture rate 624 / 672 = 92.9 %; the CO2 concentration available 92.9 %, the flow 100 %; 48 h out of control
    assert "capture rate 92.9 %" in page and "flow 100.0 %" in page and "out of control 48 h" in page
    # 26 passing span checks of the 27 made (days 1-28 but 11), one failed; the period of days 10-11
    assert "span_drift: 26 ✓ 1 ✗" in page
    assert "02-10T00:00 – 02-12T00:00 (48 h, span_drift_failed)" in page
