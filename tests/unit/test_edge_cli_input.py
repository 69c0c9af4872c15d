"""Bad command lines at the edge are usage errors before any work starts: ``cems edge simulate`` generates no series,
opens no port and announces nothing it does not serve; no traceback."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from streams.cli import main


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def simulate(*args: str, monkeypatch=None):
    if monkeypatch is not None:  # the series must not even be generated
        import edge_agent.simulator.modbus_server as mb

        def refuse(*_a, **_k):
            raise AssertionError("work started")

        monkeypatch.setattr(mb, "ModbusSimulator", refuse)
    return CliRunner().invoke(main, ["edge", "simulate", *args])


@pytest.mark.parametrize(("args", "message"), [
    (["--stacks", "0"], "Invalid value for '--stacks': 0 is not in the range 1<=x<=255"),
    (["--stacks", "256"], "Invalid value for '--stacks': 256 is not in the range 1<=x<=255"),
    (["--seconds", "0"], "Invalid value for '--seconds': 0 is not in the range 1<=x<=2678400"),
    (["--modbus-port", "70000"], "Invalid value for '--modbus-port': 70000 is not in the range 0<=x<=65535"),
    (["--opcua-port", "-1"], "Invalid value for '--opcua-port': -1 is not in the range 0<=x<=65535"),
    (["--modbus-port", "4840"], "--modbus-port and --opcua-port are both 4840: one port, one server"),
    (["--modbus-port", "0", "--opcua-port", "0"], "nothing to serve"),
    (["--host", "not a host!!"], "Invalid value for '--host': 'not a host!!' is not a host name or an IP address"),
    (["--gateway-out", "/nonexistent-folder/gw.yaml"],
     "Invalid value for '--gateway-out': folder '/nonexistent-folder' does not exist"),
    (["--fault", "meltdown:0:10:5"], "unknown fault kind 'meltdown' (known: calibration, comm_loss, stuck, drift, "
                                     "bias, out_of_range, stopped, instrument_stopped)"),
    (["--fault", "bias:0:10"], "expected KIND:STACK:START_S:DURATION_S[:CHANNEL[:AMOUNT]]"),
    (["--fault", "bias:0:ten:5"], "STACK, START_S and DURATION_S are whole numbers >= 0"),
    (["--fault", "bias:0:10:0"], "a fault lasts at least 1 s"),
    (["--fault", "bias:0:10:5:nox"], "unknown channel 'nox'"),
    (["--fault", "bias:0:10:5:co2:lots"], "AMOUNT 'lots' is not a number"),
    (["--fault", "bias:0:10:5:co2:nan"], "AMOUNT must be finite"),
    (["--fault", "bias:2:10:5"], "bias on stack 2: the stacks are 0..1 (--stacks 2)"),  # stacks 0 and 1
    (["--seconds", "60", "--fault", "stuck:0:60:5"], "stuck starts at 60 s, after the series ends (--seconds 60)"),
    (["--hj212-to", "platform"], "'platform': expected HOST:PORT with a port 1..65535"),
    (["--hj212-to", "platform.example:0"], "expected HOST:PORT with a port 1..65535"),
    (["--hj212-to", "bad host!:5000"], "'bad host!' is not a host name or an IP address"),
    (["--seconds", "2678401"], "'--seconds': 2678401 is not in the range 1<=x<=2678400"),  # 31 days + 1 s
    (["--seconds", "99999999999999999999"], "is not in the range 1<=x<=2678400"),
    (["--stacks", "3", "--seconds", "2000001"],  # 3 x 2,000,001 = 6,000,003 > 6,000,000
     "--stacks 3 x --seconds 2000001 = 6,000,003 stack-seconds, more than the 6,000,000 the simulator holds"),
    (["--seed", "-1"], "'--seed': -1 is not in the range x>=0"),
    (["--gateway-out", ""], "Invalid value for '--gateway-out': '.' is a folder, not a file"),
    (["--gateway-out", "/tmp"], "Invalid value for '--gateway-out': File '/tmp' is a directory"),
])
def test_bad_simulate_arguments_are_usage_errors(args, message, monkeypatch):
    res = simulate(*args, monkeypatch=monkeypatch)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output and "Modbus TCP on" not in res.output


def test_the_last_second_of_the_series_may_start_a_fault(monkeypatch):
    """Boundary: a fault at second 59 of a 60-s series is inside it; the run gets past the checks (and stops at the
    first piece of work, the refused simulator)."""
    res = simulate("--seconds", "60", "--fault", "stuck:0:59:5", "--opcua-port", "0", "--modbus-port",
                   str(free_port()), monkeypatch=monkeypatch)
    assert isinstance(res.exception, AssertionError) and str(res.exception) == "work started"


def test_a_port_in_use_is_a_usage_error_before_any_work(monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = simulate("--modbus-port", str(port), "--opcua-port", "0", monkeypatch=monkeypatch)
    assert res.exit_code == 2, res.output
    assert f"cannot serve Modbus TCP on 127.0.0.1:{port}: Address already in use" in res.output


def test_a_host_that_is_not_this_machine_is_a_usage_error(monkeypatch):
    res = simulate("--host", "192.0.2.1", "--opcua-port", "0", monkeypatch=monkeypatch)  # TEST-NET-1: not ours
    assert res.exit_code == 2, res.output
    assert "cannot serve Modbus TCP on 192.0.2.1:5020: Cannot assign requested address" in res.output


def test_a_missing_extra_is_named_before_any_work(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pymodbus", None)  # as if the edge extra were not installed
    res = simulate("--opcua-port", "0", monkeypatch=monkeypatch)
    assert res.exit_code == 1, res.output
    assert "the Modbus simulator needs the 'edge' extra" in res.output and "Traceback" not in res.output


@given(st.text(alphabet=st.sampled_from("0123456789:.-+abceinrsu_ xyz[]"), max_size=40) | st.text(max_size=40))
def test_fault_and_host_port_parsers_accept_or_refuse_cleanly(text):
    """Whatever is typed, the parameter types give a value or click's usage error, never another exception."""
    import contextlib

    import click

    from edge_agent.cli import FaultSpec, HostPort

    for kind in (FaultSpec(), HostPort()):
        with contextlib.suppress(click.BadParameter):
            kind.convert(text, None, None)


def test_the_stack_seconds_budget_boundary(monkeypatch):
    """3 stacks x 2,000,000 s = 6,000,000 stack-seconds: exactly the budget, so the run gets past the checks (to the
    refused simulator)."""
    res = simulate("--stacks", "3", "--seconds", "2000000", "--opcua-port", "0", "--modbus-port", str(free_port()),
                   monkeypatch=monkeypatch)
    assert isinstance(res.exception, AssertionError) and str(res.exception) == "work started"


def test_a_server_that_fails_to_bind_is_one_line(monkeypatch):
    """The port taken between the check and the bind (the check bypassed here): exit 1 with the server's reason, no
    traceback (pymodbus raises RuntimeError, asyncua OSError and logs its own traceback, silenced)."""
    import edge_agent.cli as cli

    monkeypatch.setattr(cli, "_check_listen", lambda *_a, **_k: None)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for args in (["--modbus-port", port, "--opcua-port", "0"], ["--modbus-port", "0", "--opcua-port", port]):
            res = simulate("--seconds", "5", *args)
            assert res.exit_code == 1, res.output
            assert "Error: simulator stopped: " in res.output and "Traceback" not in res.output, res.output


def gateway(tmp_path):
    """The example gateway file with a key file that exists."""
    from tests.fixtures import REPO

    key = tmp_path / "agent.key"
    key.write_bytes(b"k" * 32)
    text = (REPO / "deploy/examples/gateway-cement.yaml").read_text()
    path = tmp_path / "gw.yaml"
    path.write_text(text.replace("/etc/cems/agent.key", str(key)))
    return path


@pytest.mark.parametrize(("args", "message"), [
    (["--metrics-port", "70000"], "'--metrics-port': 70000 is not in the range 0<=x<=65535"),
    (["--metrics-address", "bad host"], "'--metrics-address': 'bad host' is not a host name or an IP address"),
    (["--log-level", "LOUD"], "'--log-level': 'LOUD' is not one of 'debug', 'info', 'warning', 'error', 'critical'"),
])
def test_bad_run_arguments_are_usage_errors(tmp_path, args, message):
    res = CliRunner().invoke(main, ["edge", "run", str(gateway(tmp_path)), *args])
    assert res.exit_code == 2 and message in res.output, res.output


def test_run_refuses_a_taken_metrics_port_before_starting(tmp_path, monkeypatch):
    import asyncio

    monkeypatch.setattr(asyncio, "run", lambda *_a, **_k: pytest.fail("the agent started"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = CliRunner().invoke(main, ["edge", "run", str(gateway(tmp_path)), "--metrics-port", str(port)])
    assert res.exit_code == 2, res.output
    assert f"cannot serve metrics on 127.0.0.1:{port}: Address already in use" in res.output


@pytest.mark.parametrize(("value", "message"), [("-1", "-1.0 is not in the range 0<=x<=86400"),
                                                ("inf", "inf is not in the range"),
                                                ("nan", "nan is not a number of seconds")])
def test_probe_listen_seconds(tmp_path, value, message):
    res = CliRunner().invoke(main, ["edge", "probe", str(gateway(tmp_path)), "cems-kiln1", "--listen", value])
    assert res.exit_code == 2 and message in res.output, res.output


def test_a_real_process_refuses_and_announces_nothing():
    """The same refusals from `cems edge simulate` as a process: exit 2 before any server is announced (the CliRunner
    rows above, where a server must bind: a port 70000, a host that is not this machine's, a port taken)."""
    import os
    import subprocess

    from tests.fixtures import REPO, cems_command

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = str(busy.getsockname()[1])
        for args in (["--modbus-port", "70000"], ["--host", "192.0.2.1"], ["--modbus-port", taken],
                     ["--opcua-port", taken, "--modbus-port", "0"]):
            proc = subprocess.run(cems_command("edge", "simulate", *args), cwd=REPO, capture_output=True, text=True,
                                  timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
            assert proc.returncode == 2 and proc.stdout == "", (args, proc.stdout, proc.stderr)
            assert "Error: " in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
