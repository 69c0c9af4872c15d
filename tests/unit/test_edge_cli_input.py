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
    (["--seconds", "0"], "Invalid value for '--seconds': 0 is not in the range x>=1"),
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
