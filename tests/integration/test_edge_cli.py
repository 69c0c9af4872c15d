"""``cems edge check`` and ``cems edge probe`` on a gateway file, probe against a real pymodbus TCP server."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from edge_agent.modbus.decode import encode_value
from edge_agent.modbus.points import ByteOrder, DataType
from streams.cli import main
from tests.fixtures import wait_until
from tests.integration.test_modbus_tcp import free_port

pytestmark = pytest.mark.integration
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "gateway-cement.yaml"
CEMS = "from streams.cli import main; main()"  # `python -c CEMS ARGS...`: the cems command of this checkout


def gateway_file(tmp_path, port=502, edit=None) -> Path:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["devices"][0]["host"], doc["devices"][0]["port"] = "127.0.0.1", port
    doc["agent"]["key_file"] = str(tmp_path / "agent.key")
    (tmp_path / "agent.key").write_bytes(b"k" * 32)
    if edit:
        edit(doc)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_check_example_and_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["edge", "check", str(gateway_file(tmp_path))])
    assert res.exit_code == 0, res.output
    assert "6 points + status word, 2 request(s) every 1 s" in res.output
    assert "unit 1 holding  address 0..8 (9 registers): co2, o2, moisture, temp, pstatic, velocity" in res.output
    assert "device coal-feeder: modbus_rtu /dev/ttyUSB0 9600 8E1 -> source kiln1-stack, 2 points, 1 request(s)" \
        in res.output
    assert "unit 7 input    address 0..3 (4 registers): coal_rate, coal_total" in res.output
    assert "device dcs-weigher: opcua opc.tcp://192.0.2.20:4840/ -> source kiln1-stack, 2 points, subscribe every " \
           "1 s, security Basic256Sha256 SignAndEncrypt" in res.output

    def wrong_channel(doc):
        doc["devices"][0]["points"][1]["channel"] = "nox"

    path = gateway_file(tmp_path, edit=wrong_channel)
    res = runner.invoke(main, ["edge", "check", str(path)])
    assert res.exit_code == 1
    line = 1 + next(i for i, text in enumerate(path.read_text().splitlines()) if "channel: nox" in text)
    assert f"{path}:{line}: devices[0].points[1].channel: channel 'nox' is not a channel of source 'kiln1-stack'" \
        in res.output

    def sasl_without_password(doc):
        del doc["kafka"]["sasl_password_env"]  # the example names a variable; without it, no password

    res = runner.invoke(main, ["edge", "check", str(gateway_file(tmp_path, edit=sasl_without_password))])
    assert res.exit_code == 1 and "kafka: SASL_SSL needs sasl_mechanism, sasl_username and sasl_password" in res.output


class ServerThread:
    """A pymodbus TCP server with its own event loop, so a synchronous CLI can talk to it."""

    def __init__(self, holding: list[int]) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(holding,), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self, holding):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve(holding))

    async def _serve(self, holding):
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType as SimType
        from pymodbus.simulator import SimData, SimDevice

        device = SimDevice(1, simdata=(
            [SimData(0, count=8, values=False, datatype=SimType.BITS)],
            [SimData(0, count=8, values=False, datatype=SimType.BITS)],
            [SimData(0, values=holding, datatype=SimType.REGISTERS)],
            [SimData(0, values=[0] * 8, datatype=SimType.REGISTERS)],
        ))
        self.server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
        self.loop.call_later(0.3, self.ready.set)
        await self.server.serve_forever()

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(10)
        self.thread.join(10)


def test_probe_prints_raw_registers_decoded_values_and_status(tmp_path):
    regs = [0] * 48
    regs[0:2] = encode_value(18.5, DataType.float32, ByteOrder.ABCD)   # co2 %
    regs[2:4] = encode_value(7.25, DataType.float32, ByteOrder.ABCD)   # o2 %
    regs[4:6] = encode_value(9.5, DataType.float32, ByteOrder.CDAB)    # moisture %, word-swapped device
    regs[6] = 964                                                      # temp 96.4 °C (scale 0.1)
    regs[7] = 65536 - 431                                              # pstatic -431 Pa -> -0.431 kPa
    regs[8] = 1465                                                     # velocity 14.65 m/s (scale 0.01)
    regs[40] = 0b001                                                   # status bit 0: calibration
    server = ServerThread(regs)
    try:
        res = CliRunner().invoke(main, ["edge", "probe", str(gateway_file(tmp_path, server.port)), "cems-kiln1"])
    finally:
        server.stop()
    assert res.exit_code == 0, res.output
    lines = [text.strip() for text in res.output.splitlines()]
    assert "co2          holding 0 float32 ABCD: raw [0x4194 0x0000] -> 18.5 (flag N)" in lines
    assert "moisture     holding 4 float32 CDAB: raw [0x0000 0x4118] -> 9.5 (flag N)" in lines
    assert "temp         holding 6 int16 ABCD: raw [0x03C4] -> 96.4 (flag N)" in lines
    assert "pstatic      holding 7 int16 ABCD: raw [0xFE51] -> -0.431 (flag N)" in lines
    assert "velocity     holding 8 uint16 ABCD: raw [0x05B9] -> 14.65 (flag N)" in lines
    assert "status word 40: 0x0001 -> readings flagged C" in lines


def test_probe_unreachable_device(tmp_path):
    res = CliRunner().invoke(main, ["edge", "probe", str(gateway_file(tmp_path, free_port())), "cems-kiln1", "co2"])
    assert res.exit_code == 1 and "cannot connect to 127.0.0.1" in res.output


def test_run_logs_json_events_for_an_unreachable_device_and_broker(tmp_path):
    """`cems edge run --log-format json`: one JSON object per line, with the device and event as fields."""
    import json
    import os
    import signal
    import subprocess
    import sys

    def edit(doc):
        doc["agent"] |= {"outbox_dir": str(tmp_path / "outbox"), "batch_interval_s": 0.5}
        doc["kafka"] = {"bootstrap_servers": f"127.0.0.1:{free_port()}"}  # nobody listens
        doc["devices"] = doc["devices"][:1]  # the Modbus TCP analyser rack only
        doc["devices"][0] |= {"poll_interval_s": 0.2, "timeout_s": 0.2}

    path = gateway_file(tmp_path, port=free_port(), edit=edit)
    repo = EXAMPLE.parents[2]
    proc = subprocess.Popen([sys.executable, "-c", CEMS, "edge", "run", str(path), "--metrics-port", "0",
                             "--log-format", "json"], cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)},
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()

    def events_logged() -> set:
        return {json.loads(line).get("event") for line in list(lines) if line.startswith("{")}

    # SIGTERM once both have been logged (the agent runs, its handler is in place), however slow its start is
    assert wait_until(lambda: {"unreachable", "broker_unreachable"} <= events_logged(), 60), "".join(lines)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)  # the last drain gives up on the broker after 10 s
    reader.join(timeout=10)
    err = "".join(lines)
    assert proc.returncode == 0, err
    docs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert len(docs) == len([ln for ln in err.splitlines() if ln.strip()]), err  # nothing but JSON lines
    events = {(d.get("event"), d.get("device")) for d in docs}
    assert ("unreachable", "cems-kiln1") in events and ("broker_unreachable", None) in events
    assert all({"ts", "level", "logger", "msg"} <= d.keys() for d in docs)


def test_simulate_announces_only_what_listens(tmp_path):
    """`cems edge simulate` says it serves once its servers accept connections, and they do (issue 14: it used to
    announce Modbus and then fail on a missing pymodbus)."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    modbus, opcua = free_port(), free_port()
    gateway = tmp_path / "gw.yaml"
    repo = EXAMPLE.parents[2]
    proc = subprocess.Popen([sys.executable, "-c", CEMS, "edge", "simulate", "--seconds", "5",
                             "--modbus-port", str(modbus), "--opcua-port", str(opcua), "--gateway-out", str(gateway)],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(repo)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            # Ctrl-C as at a terminal: a shell's background job (a CI runner's, `cmd &`) starts with
                            # SIGINT ignored, which the child inherits, and Python then never raises KeyboardInterrupt
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        assert lines[0].startswith(f"Modbus TCP on 127.0.0.1:{modbus} ")
        socket.create_connection(("127.0.0.1", modbus), timeout=5).close()  # it says so: it listens
        assert lines[1] == f"OPC UA on opc.tcp://127.0.0.1:{opcua}/ (no security)"
        socket.create_connection(("127.0.0.1", opcua), timeout=5).close()
        assert lines[2].startswith(f"wrote {gateway}")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)  # about 2 s
        finally:
            proc.kill()  # never left behind
    assert "Traceback" not in err, err
    res = CliRunner().invoke(main, ["edge", "check", str(gateway)])
    assert res.exit_code == 0 and "2 device(s)" in res.output, res.output
