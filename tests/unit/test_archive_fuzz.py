"""Fuzzing the archive: hypothesis-made paths and query strings against a real aiohttp server on 127.0.0.1 over a
real archive (never a 500, never a hang, answers bounded in size), and ``cems archive verify`` over randomly
corrupted stores (every corruption detected, or the store's content proven unchanged; never a traceback)."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sqlite3
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.archive.api import make_app
from streams.archive.store import TABLES, Archive
from streams.cli import main
from tests.unit.test_archive_bad_input import filled

MAX_BODY = 1_000_000  # bytes: a full page of 1,000 deadline rows is about 175 kB
TIMEOUT_S = 10.0  # a request still unanswered then is a hang


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The API on a real socket, over a real archive whose e2 is due from 2000-01 (long deadline lists)."""
    path = tmp_path_factory.mktemp("archive") / "a.sqlite"
    a = filled(path)
    a.register("e2", "UTC", "2000-01")
    a.close()
    archive = Archive(path, read_only=True)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(archive))
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.SockSite(runner, sock).start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield sock.getsockname()[1]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    archive.close()


def get(port: int, target: bytes) -> tuple[int, bytes]:
    """(status, whole response) of ``GET target``, sent as raw bytes; fails on a hang or an oversized answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
            assert len(data) <= MAX_BODY + 4096, f"{target!r}: more than {MAX_BODY} bytes"
    return int(data.split(b" ", 2)[1]), data


NAMES = ["entity", "source", "month", "format", "limit", "cursor", "as_of", "head", "expect_head"]
VALUES = ["e1", "e2", "s1", "-", "2026-01", "2026-02", "2099-12", "2100-01", "1999-12", "9999-12", "2026-13",
          "json", "csv", "parquet", "xlsx", "0", "1", "1000", "1001", "-1", "999999999999999999", "1e3", "٣",
          "9999-12-31", "9990-01-01", "2099-12-31T23:59:59Z", "2100-01-01", "2026-03-01T00:00:00+14:00",
          "2026-03-01T00:00:00-23:59", "0" * 64, "f" * 64, "", " ", "\x00", "\ud800", "é", "🙂", "%", "&", "=",
          "'; DROP TABLE versions; --", "../../etc/passwd"]
text = st.text(st.characters(codec="utf-8"), max_size=20)
names = st.sampled_from(NAMES) | text
values = st.sampled_from(VALUES) | text


def encode(s: str) -> str:
    return quote(s.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def targets(draw) -> bytes:
    """A request target: a known endpoint or random segments, then a query of known and random parameters, some
    repeated; percent-encoded, or now and then printable ASCII as it comes."""
    if draw(st.booleans()):
        path = draw(st.sampled_from(["/v1/months", "/v1/months/e1/2026-02", "/v1/months/e2/2026-01",
                                     "/v1/deadlines", "/v1/verify", "/openapi.json"]))
    else:
        segments = st.sampled_from(["v1", "months", "deadlines", "e1", "2026-02", "..", ".", "%2F", "%00", "%ff", ""])
        path = "/" + "/".join(draw(st.lists(segments | text.map(encode), max_size=5)))
    pairs = draw(st.lists(st.tuples(names, values), max_size=5))
    query = "&".join(f"{encode(n)}={encode(v)}" for n, v in pairs)
    target = (path + ("?" + query if pairs else "")).encode()
    if draw(st.integers(0, 9)) == 0:  # unencoded printable ASCII (no space: that would end the target)
        target += draw(st.binary(max_size=20)).translate(bytes(33 + b % 94 for b in range(256)))
    return target


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=targets())
def test_the_api_never_answers_500_never_hangs_and_stays_bounded(server, target):
    status, response = get(server, target)
    assert status < 500, (target, response[:600])
    assert status in (200, 400, 404, 405), (target, response[:600])
    assert b"Traceback" not in response
    if status != 200 and b"application/json" in response.split(b"\r\n\r\n", 1)[0]:
        assert json.loads(response.split(b"\r\n\r\n", 1)[1])["error"]


def test_the_fuzzed_server_still_answers_the_largest_page_quickly(server):
    status, response = get(server, b"/v1/deadlines?as_of=2099-12-31T23:59:59Z&limit=1000")
    assert status == 200 and len(json.loads(response.split(b"\r\n\r\n", 1)[1])) == 1000


# -- cems archive verify over corrupted stores -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[bytes, str, object]:
    """A small archive's bytes, its head and its content."""
    path = tmp_path_factory.mktemp("pristine") / "a.sqlite"
    a = filled(path)
    head = a.head()
    a.close()
    return path.read_bytes(), head, content(path)


def content(path: Path) -> object:
    """What the archive holds, as values: every row of its tables, the JSON columns parsed (1e5 and 1E5 are the same
    figure), the text as stored bytes."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.text_factory = bytes
    try:
        out = {}
        for table in TABLES:
            rows = db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            json_column = {"versions": 7, "records": 5}.get(table)
            out[table] = [tuple(json.loads(v) if i == json_column else v for i, v in enumerate(r)) for r in rows]
        return out
    finally:
        db.close()


CELLS = st.one_of(st.none(), st.integers(-2**63, 2**63 - 1), st.floats(), st.text(max_size=80), st.binary(max_size=40))


@st.composite
def corruptions(draw):
    """(kind, how): bytes flipped, the file cut short, or a cell, row or table changed through SQLite."""
    kind = draw(st.sampled_from(["flip", "flip", "truncate", "cell", "cell", "delete", "drop", "duplicate"]))
    if kind == "flip":
        return kind, draw(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                                   min_size=1, max_size=4))
    if kind == "truncate":
        return kind, draw(st.floats(0, 1, exclude_max=True))
    if kind == "drop":
        return kind, draw(st.sampled_from(TABLES))
    return kind, (draw(st.sampled_from(TABLES)), draw(st.integers(0, 10)), draw(st.integers(0, 9)), draw(CELLS))


def corrupt(path: Path, kind: str, how) -> None:
    if kind == "flip":
        data = bytearray(path.read_bytes())
        for where, mask in how:
            data[int(where * len(data))] ^= mask
        path.write_bytes(bytes(data))
    elif kind == "truncate":
        path.write_bytes(path.read_bytes()[: int(how * path.stat().st_size)])
    else:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            if kind == "drop":
                db.execute(f"DROP TABLE {how}")
                return
            table, row, column, value = how
            columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
            rowids = [r[0] for r in db.execute(f"SELECT rowid FROM {table} ORDER BY rowid")]
            if not rowids:
                return
            rowid, name = rowids[row % len(rowids)], columns[column % len(columns)]
            if kind == "delete":
                db.execute(f"DELETE FROM {table} WHERE rowid=?", (rowid,))
            elif kind == "duplicate":  # a copy of a row at the end (new seq or, in entities and blobs, a new key)
                key = columns[0]
                others = ", ".join(columns[1:])
                db.execute(f"INSERT INTO {table} ({key}, {others}) SELECT {key} || 'x', {others} FROM {table} "
                           f"WHERE rowid=?" if table in ("entities", "blobs") else
                           f"INSERT INTO {table} ({others}) SELECT {others} FROM {table} WHERE rowid=?", (rowid,))
            else:
                db.execute(f"UPDATE {table} SET {name}=? WHERE rowid=?", (value, rowid))
        except sqlite3.Error:
            pass  # refused by a constraint (NOT NULL, UNIQUE...): the store is unchanged, which is checked below
        finally:
            db.close()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corruption=corruptions())
def test_verify_detects_every_corruption_or_the_store_is_unchanged(tmp_path, pristine, corruption):
    data, head, before = pristine
    path = tmp_path / f"c{random.getrandbits(64)}.sqlite"
    path.write_bytes(data)
    corrupt(path, *corruption)
    res = CliRunner().invoke(main, ["archive", "verify", "--store", str(path), "--expect-head", head])
    assert isinstance(res.exception, SystemExit) or res.exception is None, res.exception  # never a traceback
    assert res.exit_code in (0, 1), res.output
    if res.exit_code == 0:  # "intact": then the archive must hold exactly what it held
        assert content(path) == before, (corruption, res.output)
    else:
        assert "BROKEN: " in res.output or res.output.startswith("Error: "), res.output
        assert all(line.isprintable() for line in res.output.split("\n")), res.output  # no control characters
    path.unlink()
