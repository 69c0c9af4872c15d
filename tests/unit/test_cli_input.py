"""Bad command lines of the central ``cems`` commands (issue 15): a usage error (exit 2) naming the option and what is
wrong before any work starts, or one line saying what failed (exit 1), never a traceback. Each test is a row of
docs/bad-input.md, "CLI arguments"."""

from __future__ import annotations

import importlib
import socket
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from streams.cli import main
from tests.fixtures import REPO, batch_bytes, free_port

WORKER_EXAMPLE = REPO / "deploy" / "examples" / "worker.yaml"
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
DEMO = importlib.import_module("streams.cli.demo")  # the module: streams.cli.demo is also the command's name
DEMO_REPORT = REPO / "deploy" / "demo" / "reports" / "demo-cement-2026-02.csv"


class WorkStarted(Exception):
    """Raised by the stand-in of the first piece of real work: the command got past its checks."""


def refuse(*_args, **_kwargs):
    raise WorkStarted


def cems(*args: str, **kwargs):
    return CliRunner().invoke(main, list(args), **kwargs)


def usage_error(res, message: str) -> None:
    assert res.exit_code == 2, res.output
    assert message in res.output, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)


@pytest.fixture
def no_central_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.upper().startswith(("CEMS_STREAM__", "CEMS_HJ212__")):
            monkeypatch.delenv(name)


@contextmanager
def listening():
    """A TCP port that accepts connections (a stand-in broker: the reachability check passes) or is taken."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def worker_config(tmp_path: Path, bootstrap: str, **edits: str) -> Path:
    """The example worker file with another broker (and top-level settings replaced)."""
    text = WORKER_EXAMPLE.read_text().replace("127.0.0.1:19092", bootstrap)
    text = text.replace("deploy/examples/site-cement.yaml", str(REPO / "deploy/examples/site-cement.yaml"))
    for key, value in edits.items():
        text = "\n".join(f"{key}: {value}" if line.startswith(f"{key}:") else line for line in text.splitlines())
    path = tmp_path / "worker.yaml"
    path.write_text(text)
    return path


# --- months ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("month", "message"), [
    ("2026-13", "Invalid value for '--month': '2026-13' is not a month YYYY-MM (MM 01..12)"),
    ("2026-00", "'2026-00' is not a month YYYY-MM (MM 01..12)"),
    ("garbage", "Invalid value for '--month': 'garbage' is not a month YYYY-MM (MM 01..12)"),
    ("2026-2", "'2026-2' is not a month YYYY-MM"),
    ("", "'' is not a month YYYY-MM"),
    ("2000-01", "Invalid value for '--month': 2000-01 is outside 2000-02..2199-11"),
    ("2199-12", "2199-12 is outside 2000-02..2199-11"),
])
@pytest.mark.parametrize("command", [["demo", "--no-serve"], ["reconcile"]])
def test_a_bad_month_is_a_usage_error(command, month, message, monkeypatch):
    monkeypatch.setattr(DEMO, "run_demo_plants", refuse)
    usage_error(cems(*command, "--month", month), message)


def test_the_first_and_last_months_fit_the_wire_formats_timestamps_in_every_time_zone():
    """Boundaries of FIRST_MONTH..LAST_MONTH against a batch's [2000-01-01, 2200-01-01) UTC: 2000-02 in UTC+14 starts
    2000-02-01T00:00+14 = 2000-01-31T10:00Z (inside; 2000-01 would start 1999-12-31T10:00Z, outside); 2199-11 in
    UTC-12 ends 2199-12-01T00:00-12 = 2199-12-01T12:00Z, a month before the end (2199-12 would end
    2200-01-01T12:00Z, outside)."""
    from schemas.batch import TS_MAX_NS, TS_MIN_NS
    from streams.cli.checks import FIRST_MONTH, LAST_MONTH, Month
    from streams.core.monthly import month_range

    east, west = ZoneInfo("Etc/GMT-14"), ZoneInfo("Etc/GMT+12")  # POSIX signs: GMT-14 is UTC+14
    assert month_range(FIRST_MONTH, east)[0] == datetime(2000, 1, 31, 10, tzinfo=ZoneInfo("UTC")).timestamp() * 1e9
    assert month_range(FIRST_MONTH, east)[0] >= TS_MIN_NS > month_range("2000-01", east)[0]
    assert month_range(LAST_MONTH, west)[1] == datetime(2199, 12, 1, 12, tzinfo=ZoneInfo("UTC")).timestamp() * 1e9
    assert month_range(LAST_MONTH, west)[1] < TS_MAX_NS < month_range("2199-12", west)[1]
    assert Month().convert("2000-02", None, None) == "2000-02" and Month().convert("2199-11", None, None) == "2199-11"


# --- cems demo -------------------------------------------------------------------------------------------------------


def test_demo_reports_are_validated_before_simulating(tmp_path, monkeypatch):
    monkeypatch.setattr(DEMO, "run_demo_plants", refuse)  # 15 s of simulation must not start
    bad = tmp_path / "bad.csv"
    bad.write_text(DEMO_REPORT.read_text().replace(",9410,", ",lots,"))
    res = cems("demo", "--no-serve", "--out", str(tmp_path / "out"), "--reports", str(bad))
    usage_error(res, "Invalid value for --reports: 1 problem(s), nothing simulated:")
    assert f"{bad}:2: fuel.consumption [raw_coal] (demo-cement/*/2026-02): value 'lots' is not a number" in res.output


@pytest.mark.parametrize(("content", "message"), [
    (b"\xff\xfe\x00not text", "not UTF-8"),
    (b"", "r.csv:1: (header): empty file"),
    (b"a,b\n1,2\n", "missing columns"),
])
def test_demo_reports_that_are_not_reports(tmp_path, monkeypatch, content, message):
    monkeypatch.setattr(DEMO, "run_demo_plants", refuse)
    path = tmp_path / "r.csv"
    path.write_bytes(content)
    usage_error(cems("demo", "--no-serve", "--out", str(tmp_path / "o"), "--reports", str(path)), message)


def test_demo_reports_for_another_month_are_said_to_be_unused(tmp_path, monkeypatch):
    monkeypatch.setattr(DEMO, "run_demo_plants", refuse)
    res = cems("demo", "--no-serve", "--month", "2026-03", "--out", str(tmp_path), "--reports", str(DEMO_REPORT))
    assert isinstance(res.exception, WorkStarted)  # valid: the simulation would start
    assert (f"note: {DEMO_REPORT}: the report of demo-cement for 2026-02: not used (the demo simulates "
            f"demo-aluminium, demo-cement, demo-steel in 2026-03)") in res.output


def test_demo_without_its_sample_reports_asks_for_them(tmp_path, monkeypatch):
    # an installed copy has no deploy/demo/reports: the demo must not reconcile silently against no report
    monkeypatch.setattr(DEMO, "run_demo_plants", refuse)
    monkeypatch.setattr(DEMO, "DEMO_REPORTS", tmp_path / "absent")
    usage_error(cems("demo", "--no-serve", "--out", str(tmp_path / "o")), "are not in this installation; give the "
                                                                          "self-reported files with --reports FILE")


def test_demo_refuses_a_folder_as_reports_and_an_out_it_cannot_make(tmp_path, monkeypatch):
    monkeypatch.setattr(DEMO, "run_demo_plants", refuse)
    usage_error(cems("demo", "--no-serve", "--reports", str(tmp_path)), "is a directory")
    usage_error(cems("demo", "--no-serve", "--out", "/dev/null/demo"), "Invalid value for --out: cannot create "
                                                                      "'/dev/null/demo': Not a directory")


def test_demo_checks_its_port_before_simulating(tmp_path, monkeypatch):
    monkeypatch.setattr(DEMO, "run_demo_plants", refuse)
    with listening() as port:
        res = cems("demo", "--out", str(tmp_path), "--port", str(port))
    usage_error(res, f"Invalid value for '--port': the review console: cannot serve on 127.0.0.1:{port}: Address "
                     f"already in use")
    usage_error(cems("demo", "--port", "70000"), "70000 is not in the range 1<=x<=65535")


# --- central settings and the broker -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["alerts", "list"], ["reconcile"], ["alerts", "follow"], ["stream", "worker"],
                                     ["accounting", "serve"], ["alerts", "ack", "some-id", "--by", "me"]])
def test_no_config_names_each_missing_setting_and_its_variable(command, no_central_env):
    usage_error(cems(*command), "no central settings: give a config file as CONFIG (like deploy/examples/worker.yaml), "
                                "or set kafka.bootstrap_servers (CEMS_STREAM__KAFKA__BOOTSTRAP_SERVERS), sites "
                                "(CEMS_STREAM__SITES), keys_dir (CEMS_STREAM__KEYS_DIR)")


def test_accounting_import_names_its_config_option(no_central_env):
    usage_error(cems("accounting", "import", str(DEMO_REPORT)), "give a config file as -c/--config")


def test_a_setting_the_environment_gives_is_not_called_missing(no_central_env, monkeypatch):
    monkeypatch.setenv("CEMS_STREAM__SITES", "[site.yaml]")
    monkeypatch.setenv("CEMS_STREAM__KAFKA__SECURITY_PROTOCOL", "PLAINTEXT")  # a section given in part
    res = cems("alerts", "list")
    usage_error(res, "or set keys_dir (CEMS_STREAM__KEYS_DIR)")
    assert "SITES" not in res.output and "KAFKA" not in res.output


def test_hj212_without_config_names_its_variables(no_central_env):
    for command in ("check", "serve"):
        usage_error(cems("hj212", command), "no receiver settings: give a config file as CONFIG (like "
                                            "deploy/examples/hj212-server.yaml), or set kafka.bootstrap_servers "
                                            "(CEMS_HJ212__KAFKA__BOOTSTRAP_SERVERS), sites (CEMS_HJ212__SITES), "
                                            "keys_dir (CEMS_HJ212__KEYS_DIR), passwords_dir "
                                            "(CEMS_HJ212__PASSWORDS_DIR)")


@pytest.mark.parametrize("command", [["alerts", "list"], ["reconcile"], ["stream", "topics"], ["stream", "worker"],
                                     ["alerts", "ack", "some-id", "--by", "me"]])
def test_an_unreachable_broker_is_one_line_within_seconds(command, tmp_path, no_central_env):
    port = free_port()  # nothing listens: refused at once
    config = worker_config(tmp_path, f"127.0.0.1:{port}")
    args = [*command[:2], str(config), *command[2:]] if command[0] == "alerts" else [*command, str(config)]
    started = time.monotonic()
    res = cems(*args)
    assert time.monotonic() - started < 5
    assert res.exit_code == 1, res.output
    assert (f"Error: Kafka at 127.0.0.1:{port} is not reachable (127.0.0.1:{port}: Connection refused); check "
            f"kafka.bootstrap_servers in {config} or CEMS_STREAM__KAFKA__BOOTSTRAP_SERVERS") in res.output
    assert "Traceback" not in res.output


def test_a_recompute_without_influxdb_is_a_usage_error_before_the_broker(tmp_path, no_central_env):
    # the audit reads minutes from InfluxDB; the config names none (and no broker answers: the usage error comes first)
    config = worker_config(tmp_path, f"127.0.0.1:{free_port()}")
    lines = config.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("influx:"))
    config.write_text("\n".join(lines[:at] + lines[at + 5:]))  # the example's influx section (5 lines) left out
    usage_error(cems("reconcile", str(config), "--recompute"),
                "--recompute reads the minutes from InfluxDB: the settings have no influx section")


def test_broker_addresses_that_do_not_resolve_or_parse():
    import click

    from streams.cli.checks import kafka_reachable

    with pytest.raises(click.ClickException) as exc:
        kafka_reachable("no-such-broker.invalid:9092, broker:port", "kafka.bootstrap_servers")
    assert exc.value.message.startswith("Kafka at no-such-broker.invalid:9092, broker:port is not reachable "
                                        "(no-such-broker.invalid:9092: host name does not resolve (")
    assert "'broker:port' is not HOST:PORT" in exc.value.message
    with listening() as port:  # one address that answers is enough
        kafka_reachable(f"no-such-broker.invalid:1,127.0.0.1:{port}", "x")


def test_a_kafka_error_after_the_check_is_one_line(tmp_path, no_central_env, monkeypatch):
    from kafka.errors import KafkaTimeoutError

    import streams.runtime.reconciler as reconciler

    def gone(_cfg):
        raise KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:9")

    monkeypatch.setattr(reconciler, "read_alerts", gone)
    with listening() as port:
        res = cems("alerts", "list", str(worker_config(tmp_path, f"127.0.0.1:{port}")))
    assert res.exit_code == 1, res.output
    assert "Error: Kafka: KafkaTimeoutError: Unable to bootstrap from 127.0.0.1:9" in res.output
    assert "Traceback" not in res.output


def test_a_worker_datadir_without_its_folder(tmp_path, no_central_env):
    with listening() as port:
        res = cems("stream", "worker", str(worker_config(tmp_path, f"127.0.0.1:{port}",
                                                         datadir=str(tmp_path / "no" / "worker"))))
    assert res.exit_code == 1, res.output
    assert f"datadir {tmp_path}/no/worker: its folder {tmp_path}/no does not exist" in res.output


# --- numbers, ports and hosts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["stream", "topics", "C", "--partitions", "0"], "'--partitions': 0 is not in the range 1<=x<=2147483647"),
    (["stream", "topics", "C", "--replication", "40000"], "'--replication': 40000 is not in the range 1<=x<=32767"),
    (["stream", "topics", "C", "--readings-retention-days", "-1"], "-1.0 is not in the range 0<=x<=36525"),
    (["stream", "topics", "C", "--readings-retention-days", "1e400"], "inf is not in the range 0<=x<=36525"),
    (["reconcile", "C", "--every", "0"], "'--every': 0.0 is not in the range 1.0<=x<=2678400.0"),
    (["reconcile", "C", "--every", "inf"], "'--every': inf is not in the range"),
    (["reconcile", "C", "--every", "nan"], "'--every': 'nan' is not a number of seconds"),
    (["alerts", "follow", "C", "--interval", "nan"], "'--interval': 'nan' is not a number of seconds"),
    (["alerts", "follow", "C", "--interval", "-5"], "'--interval': -5.0 is not in the range"),
    (["stream", "worker", "C", "--log-level", "LOUD"], "'--log-level': 'LOUD' is not one of 'debug', 'info'"),
    (["hj212", "serve", "C", "--log-level", "LOUD"], "'--log-level': 'LOUD' is not one of"),
    (["accounting", "serve", "C", "--port", "0"], "'--port': 0 is not in the range 1<=x<=65535"),
    (["accounting", "serve", "C", "--port", "99999999999999999999"], "is not in the range 1<=x<=65535"),
    (["accounting", "serve", "C", "--host", "no-such-host.invalid"],
     "Invalid value for '--host' / '--port': the accounting intake: 'no-such-host.invalid' does not resolve"),
    (["accounting", "serve", "C", "--host", "192.0.2.1"],  # TEST-NET-1: not this machine's
     "the accounting intake: cannot serve on 192.0.2.1:8480: Cannot assign requested address"),
    (["console", "serve", "--store", "S", "--port", "70000"], "70000 is not in the range 1<=x<=65535"),
    (["console", "serve", "--store", "S", "--host", "192.0.2.1"],
     "the console: cannot serve on 192.0.2.1:8481: Cannot assign requested address"),
])
def test_out_of_range_numbers_and_hosts_are_usage_errors(args, message, tmp_path, no_central_env):
    store = tmp_path / "archive.sqlite"
    store.write_bytes(b"")  # exists; never opened: the usage error comes first
    args = [str(worker_config(tmp_path, "127.0.0.1:1")) if a == "C" else str(store) if a == "S" else a
            for a in args]
    usage_error(cems(*args), message)


def test_a_taken_port_is_a_usage_error_before_serving(tmp_path, no_central_env):
    store = tmp_path / "archive.sqlite"
    store.write_bytes(b"")
    with listening() as port:
        usage_error(cems("console", "serve", "--store", str(store), "--port", str(port)),
                    f"the console: cannot serve on 127.0.0.1:{port}: Address already in use")
        usage_error(cems("accounting", "serve", str(worker_config(tmp_path, "127.0.0.1:1")), "--port", str(port)),
                    f"the accounting intake: cannot serve on 127.0.0.1:{port}: Address already in use")


@pytest.mark.parametrize("content", [b"not a database at all", b"\xff\xfe\x00\x80" * 50])
def test_console_files_that_are_not_databases(tmp_path, content):
    path = tmp_path / "x.sqlite"
    path.write_bytes(content)
    res = cems("console", "serve", "--store", str(path), "--port", str(free_port()))
    refusal = f"Error: {path}: not a readable SQLite archive (file is not a database)"
    assert res.exit_code == 1 and refusal in res.output, res.output
    res = cems("console", "user", "list", "--accounts", str(path))
    assert res.exit_code == 1 and f"{path}: not a console accounts file (file is not a database)" in res.output


# --- files -----------------------------------------------------------------------------------------------------------


def test_batch_inspect_csv_prints_plain_numbers(tmp_path):
    path = tmp_path / "b.bin"
    path.write_bytes(batch_bytes(0, n=2))  # two CO2 readings of 12 %, from 2026-01-01T00:00:00Z
    res = cems("batch", "inspect", "--csv", str(path))
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == ["time_utc,channel,value,flag", "2026-01-01T00:00:00.000,co2,12.0,N",
                                       "2026-01-01T00:00:01.000,co2,12.0,N"]


def test_batch_inspect_reads_an_agent_batch_source_by_source(tmp_path):
    """A gateway's default message (wire version 3: one per agent and interval), e.g. a dead letter, described per
    source: the summary names the agent, seq and each section; the CSV has a source column."""
    from schemas import ReadingBatch
    from schemas.agent_batch import AgentBatch

    def section(source_id: str, value: float) -> ReadingBatch:
        return ReadingBatch.from_columns(agent_id="gw-1", source_id=source_id, seq=7,
                                         channels=[("co2", "a05001", "%")], ts_ns=[T0], channel=[0], value=[value],
                                         flag=[0])

    path = tmp_path / "agent.batch"
    path.write_bytes(AgentBatch.from_sections(agent_id="gw-1", seq=7,
                                              sections=[section("kiln1", 12.5), section("kiln2", 9.0)]).encode())
    res = cems("batch", "inspect", "--csv", str(path))
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == ["time_utc,source,channel,value,flag", "2026-01-01T00:00:00.000,kiln1,co2,12.5,N",
                                       "2026-01-01T00:00:00.000,kiln2,co2,9.0,N"]
    res = cems("batch", "inspect", str(path))
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == "schema v3  agent gw-1  seq 7  sources 2  readings 2"
    assert lines[1] == "source kiln1  period_s 0  readings 1" and "source kiln2  period_s 0  readings 1" in lines


def test_schema_export_to_a_file(tmp_path):
    res = cems("schema", "export", "--out", "/dev/null")
    assert res.exit_code == 1 and "Error: cannot write /dev/null: File exists" in res.output, res.output
