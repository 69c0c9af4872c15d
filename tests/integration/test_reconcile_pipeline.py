"""Reconciliation through the real broker and InfluxDB: a report posted to the HTTP intake, a closed CEMS month on
the monthly topic, a month of minute means (analysers and meter totalisers) in InfluxDB and as the stream's hour
partials on the indicators topic, a forged batch in the dead letters; the reconciler raises exactly the injected
alerts once from the partials, the audit from InfluxDB (--recompute) finds the same, `cems alerts` routes, lists and
acknowledges them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge_agent.simulator.sector_month import simulate_month
from schemas.batch import ChannelSpec, ReadingBatch
from schemas.kafka import KafkaConnection
from schemas.quantities import Flag
from schemas.records import MonthlyRecord
from streams.config import InfluxSettings, ReconcileSettings, Topics, WorkerConfig
from streams.core.findings import day_records, is_meter
from streams.kernels.indicators import Grid, hour_partials
from streams.runtime.kafka_io import send_all
from streams.runtime.reconciler import Reconciler, read_alerts
from streams.runtime.topics import create_topics
from streams.sinks.influx import InfluxSink
from streams.sinks.line_protocol import MinuteRows
from tests.fixtures import cems_command, free_port

pytestmark = [pytest.mark.integration]
REPO = Path(__file__).resolve().parents[2]


def config(tmp_path: Path, bootstrap: str, influx: dict, sm) -> WorkerConfig:
    source = sm.entity["sources"][0]["id"]
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(sm.entity, sort_keys=False))
    (tmp_path / "keys").mkdir()
    tag = uuid.uuid4().hex[:8]
    return WorkerConfig(
        kafka=KafkaConnection(bootstrap_servers=bootstrap), app_id=f"cems-test-{tag}",
        topics=Topics.prefixed(f"t.{tag}"),
        sites=[tmp_path / "site.yaml"], keys_dir=tmp_path / "keys", datadir=tmp_path / "faust",
        influx=InfluxSettings(**influx),
        reconcile=ReconcileSettings(meters={f"{source}/fuel_total": "fuel:raw_coal",
                                            f"{source}/product_total": "product"},
                                    co2max={source: "coal"}, intake_token="intake-test-token"))


def write_minutes(cfg: WorkerConfig, sm) -> MinuteRows:
    entity, src = sm.entity, sm.entity["sources"][0]
    n = sm.minutes["co2"].size
    start = sm.start_ns + np.arange(n, dtype=np.int64) * 60 * 10**9
    parts = []
    for ch in src["channels"]:
        x = sm.minutes[ch["id"]]
        flag = np.where(sm.calibrating, Flag.C, np.where(sm.operating, Flag.N, Flag.F)).astype(np.uint8)
        if ch["id"].endswith("_total"):
            flag = np.full(n, Flag.N, np.uint8)  # meters keep counting
        valid = np.isfinite(x) & (flag == Flag.N)
        sample_flags = np.zeros((n, 8), np.int64)
        sample_flags[np.arange(n), flag] = 12
        parts.append(MinuteRows(
            entity_id=np.full(n, entity["id"], object), source_id=np.full(n, src["id"], object),
            channel_id=np.full(n, ch["id"], object), quantity=np.full(n, ch["quantity"], object),
            unit=np.full(n, ch["unit"], object), start_ns=start, mean=np.where(valid, x, np.nan), valid=valid,
            label=flag, n=np.full(n, 12)))
    with InfluxSink(cfg.influx.url, cfg.influx.token.get_secret_value(), cfg.influx.org, cfg.influx.bucket) as sink:
        sink.write_minutes(MinuteRows.concat(parts))
        sink.flush()
    return MinuteRows.concat(parts)


def publish_partials(cfg: WorkerConfig, sm, rows: MinuteRows) -> None:
    """The stream's day records of the same minutes (what IndicatorStream publishes as the hours close)."""
    src = sm.entity["sources"][0]
    channels = [c["id"] for c in src["channels"]]
    n = sm.minutes["co2"].size
    mean = np.where(rows.valid, rows.mean, np.nan).reshape(len(channels), n)
    grid = Grid(mean, sm.start_ns, 60 * 10**9, rows.label.reshape(len(channels), n))
    meters = [c["id"] for c in src["channels"] if is_meter(c["quantity"])]
    days = day_records(sm.entity["id"], src["id"], channels, hour_partials(grid), meters)
    send_all(cfg.kafka, cfg.topics.indicators, [(d.key.encode(), d.to_bytes(), []) for d in days])


def closed_month(sm) -> MonthlyRecord:
    e, s = sm.entity, sm.entity["sources"][0]["id"]
    return MonthlyRecord(
        entity_id=e["id"], source_id=s, month=sm.month, timezone="Asia/Shanghai", month_start_ns=sm.start_ns,
        status="closed", revision=0, reason="closed", policy="cn-hj75", substitution="hj75-2017",
        co2_t=sm.measured_co2_t, measured_co2_t=sm.measured_co2_t, substituted_co2_t=0.0, hours_in_month=672,
        hours=672, operating_hours=650, measured_hours=650, substituted_hours=0, missing_hours=0, valid_days=27,
        valid=True, completeness=1.0)


def forged_batch(sm) -> tuple[bytes, list]:
    source = sm.entity["sources"][0]["id"]
    batch = ReadingBatch.from_columns(agent_id="gw-x", source_id=source, seq=7,
                                      channels=(ChannelSpec("co2", "a05001", "%"),),
                                      ts_ns=[sm.start_ns + 86_400 * 10**9], channel=[0], value=[9.9], flag=[0])
    return batch.encode(), [("cems-agent", b"gw-x"), ("cems-seq", b"7"), ("cems-sig", b"0" * 32),
                            ("cems-dlq-reason", b"bad_signature")]


def post(port: int, body: bytes, token: str = "intake-test-token") -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/accounting", data=body, method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def cems(cfg_file: Path, *args: str) -> str:
    out = subprocess.run(cems_command(*args[:2], str(cfg_file), *args[2:]), cwd=REPO,
                         capture_output=True, text=True, timeout=120, env=os.environ | {"PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_reconciler_raises_the_injected_alerts_once_and_reviewers_see_their_region(tmp_path, kafka_bootstrap,
                                                                                    influx, bucket):
    influx_settings = {"url": influx.url, "org": influx.org, "bucket": bucket, "token": influx.token}
    tag = uuid.uuid4().hex[:6]
    sm = simulate_month("power", 2, ("fuel_underreport", "stuck_channel"), entity_id=f"sim-power-{tag}")
    cfg = config(tmp_path, kafka_bootstrap, influx_settings, sm)
    create_topics(cfg, partitions=1, readings_retention_days=None)
    publish_partials(cfg, sm, write_minutes(cfg, sm))
    m = closed_month(sm)
    send_all(cfg.kafka, cfg.topics.monthly, [(m.key.encode(), m.to_json(), [])])
    value, headers = forged_batch(sm)
    send_all(cfg.kafka, cfg.topics.dead_letter, [(b"gw-x", value, headers)])

    # the report through the HTTP intake: a bad one is refused whole, the good one published
    from aiohttp import web

    from ingest.accounting_http import make_app
    from streams.runtime.reconciler import publish_reports

    port = free_port()

    async def serve_and_post():
        runner = web.AppRunner(make_app(lambda reports: publish_reports(cfg, reports), token="intake-test-token"))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            bad = json.loads(json.dumps(sm.report))
            bad["fuels"][0]["fuel"] = "unobtainium"
            results = [await asyncio.to_thread(post, port, json.dumps([sm.report, bad]).encode()),
                       await asyncio.to_thread(post, port, json.dumps(sm.report).encode(), "wrong"),
                       await asyncio.to_thread(post, port, json.dumps(sm.report).encode())]
        finally:
            await runner.cleanup()
        return results

    (bad_status, bad_body), (auth_status, _), (ok_status, ok_body) = asyncio.run(serve_and_post())
    assert bad_status == 422 and "unobtainium" in json.dumps(bad_body["problems"])
    assert auth_status == 401
    assert ok_status == 201 and ok_body["accepted"] == [f"{sm.entity['id']}/-/2026-02"]

    published = Reconciler(cfg).run()
    assert sorted(a.rule for a in published) == ["bad_signature", "flatline", "fuel_metered_vs_reported"]
    fuel = next(a for a in published if a.rule == "fuel_metered_vs_reported")
    assert fuel.expected == pytest.approx(sm.metered["fuel:raw_coal"], rel=1e-6)  # the totaliser's difference
    assert Reconciler(cfg).run() == []  # a rerun (or a restarted reconciler) repeats nothing
    # the audit from the minutes in InfluxDB: the same alerts, so nothing to publish and no mismatch
    assert Reconciler(cfg).run(recompute=True) == []
    assert len(read_alerts(cfg)) == 3

    # the monthly archive pulls the month: CEMS figures, calculated CO2, the alerts; once
    from streams.archive.store import Archive
    from streams.runtime.archive_sync import sync_archive

    archive = Archive(tmp_path / "archive.sqlite")
    entries = sync_archive(cfg, archive)
    assert sorted(e.source_id for e in entries) == ["-", sm.entity["sources"][0]["id"]]  # the total and the stack
    (entry,) = [e for e in entries if e.source_id == "-"]
    assert entry.figures["co2_t"] == pytest.approx(sm.measured_co2_t)
    rules = sorted(a["rule"] for a in entry.figures["alerts"])
    assert rules == ["bad_signature", "flatline", "fuel_metered_vs_reported"]
    assert sync_archive(cfg, archive) == [] and archive.verify() == []

    cfg_file = tmp_path / "central.yaml"
    cfg_file.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json()) | {
        "influx": influx_settings, "reconcile": {"intake_token": "intake-test-token"}}))
    mine = cems(cfg_file, "alerts", "list", "--province", "320000", "--json").splitlines()
    assert {json.loads(line)["rule"] for line in mine} == {"bad_signature", "flatline", "fuel_metered_vs_reported"}
    assert cems(cfg_file, "alerts", "list", "--province", "110000", "--json") == ""  # another province sees none
    cems(cfg_file, "alerts", "ack", fuel.id, "--by", "js-reviewer", "--note", "asked for the weighbridge log")
    listed = cems(cfg_file, "alerts", "list", "--status", "acknowledged", "--json")
    acked = [json.loads(line) for line in listed.splitlines()]
    assert [(a["id"], a["ack"]["by"]) for a in acked] == [(fuel.id, "js-reviewer")]
