"""Gateway file rules that need no device: protocol selection, OPC UA security and node ids, sources per point."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from edge_agent.config import GatewayConfig, ModbusTcpDevice, load_gateway_config
from edge_agent.opcua.config import OpcUaDevice, OpcUaSecurity
from schemas.errors import ConfigError
from tests.integration.test_edge_cli import EXAMPLE


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_has_one_device_of_each_protocol():
    cfg = GatewayConfig.model_validate(example())
    assert [d.protocol for d in cfg.devices] == ["modbus_tcp", "modbus_rtu", "opcua"]
    rtu = cfg.devices[1]
    assert (rtu.baudrate, rtu.bytesize, rtu.parity, rtu.stopbits) == (9600, 8, "E", 1)
    assert [p.wire_address for p in rtu.points] == [0, 2]  # manual's 30001/30003 counted from 1


def test_device_without_protocol_is_modbus_tcp():
    doc = example()
    del doc["devices"][0]["protocol"]
    assert isinstance(GatewayConfig.model_validate(doc).devices[0], ModbusTcpDevice)


@pytest.mark.parametrize(("security", "message"), [
    ({"policy": "Basic256Sha256", "mode": "None"}, "needs mode Sign or SignAndEncrypt"),
    ({"policy": "Basic256Sha256", "mode": "Sign"}, "needs the client certificate and private_key"),
    ({"policy": "None", "mode": "SignAndEncrypt"}, "needs a security policy"),
    ({"username": "op"}, "username and password go together"),
])
def test_opcua_security_rules(security, message):
    with pytest.raises(ValidationError, match=message):
        OpcUaSecurity.model_validate(security)


def test_opcua_node_ids_and_endpoint_are_checked():
    base = {"id": "dcs", "endpoint": "opc.tcp://10.0.0.5:4840/", "source": "s"}
    with pytest.raises(ValidationError, match="is not an OPC UA node id"):
        OpcUaDevice.model_validate(base | {"points": [{"channel": "co2", "node_id": "stack0.co2"}]})
    with pytest.raises(ValidationError, match="read the same node"):
        OpcUaDevice.model_validate(base | {"points": [{"channel": "a", "node_id": "ns=2;i=5"},
                                                      {"channel": "b", "node_id": "ns=2;i=5"}]})
    with pytest.raises(ValidationError, match=r"opc\.tcp://"):
        OpcUaDevice.model_validate(base | {"endpoint": "http://10.0.0.5",
                                           "points": [{"channel": "a", "node_id": "i=5"}]})
    dev = OpcUaDevice.model_validate(base | {"points": [{"channel": "a", "node_id": "nsu=urn:x;s=a.b"}]})
    assert dev.stale_after == 3.0 and dev.mode == "subscribe"


def test_points_may_feed_several_sources_and_must_name_one(tmp_path):
    doc = example()
    doc["site"]["sources"].append({"id": "kiln2-stack", "name": "Kiln 2", "duct_area_m2": 10.0,
                                   "channels": [{"id": "co2", "quantity": "a05001", "unit": "%", "basis": "dry"},
                                                {"id": "q", "quantity": "a00000", "unit": "m3/h",
                                                 "basis": "standard_dry"}]})
    doc["devices"][0]["points"].append({"channel": "co2", "source": "kiln2-stack", "address": 20})
    assert GatewayConfig.model_validate(doc).site_problems() == []
    del doc["devices"][0]["source"]  # now the first six points feed no source
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigError, match=r"devices\[0\].points\[0\]: no source"):
        load_gateway_config(path)


def _refusal(tmp_path, edit) -> tuple[str, list[str]]:
    """The error of loading the example with ``edit`` applied, and the file's lines (block style: one field a line)."""
    doc = example()
    edit(doc)
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path)
    return str(info.value).replace(str(path), "gw.yaml"), path.read_text().splitlines()


def _line(lines: list[str], text: str, after: str | None = None) -> int:
    """1-based number of the first line holding ``text`` (after the first holding ``after``)."""
    start = 0 if after is None else next(i for i, t in enumerate(lines) if after in t)
    return 1 + next(i for i, t in enumerate(lines) if i >= start and text in t)


def test_an_error_inside_a_device_names_the_field_and_its_line(tmp_path):
    """Not the device's line, and not pydantic's union member (devices[0].modbus_tcp.points[1].high)."""
    def edit(doc):
        doc["devices"][0]["points"][1]["high"] = "twenty-one"
        doc["devices"][2]["points"][0]["low"] = "zero"  # the OPC UA device

    err, lines = _refusal(tmp_path, edit)
    assert err.splitlines() == [
        f"gw.yaml:{_line(lines, 'high: twenty-one')}: devices[0].points[1].high: "
        "Input should be a valid number, unable to parse string as a number",
        f"gw.yaml:{_line(lines, 'low: zero')}: devices[2].points[0].low: "
        "Input should be a valid number, unable to parse string as a number"]


@pytest.mark.parametrize(("device", "point"), [(0, 1), (2, 0)])  # Modbus TCP, OPC UA
def test_low_above_high_is_refused(tmp_path, device, point):
    def edit(doc):
        doc["devices"][device]["points"][point] |= {"low": 25.0, "high": 21.0}

    err, lines = _refusal(tmp_path, edit)
    assert err == f"gw.yaml:{_line(lines, 'high: 21.0')}: devices[{device}].points[{point}].high: " \
                  "high 21 is below low 25"


def test_low_equal_to_high_is_accepted():
    doc = example()
    doc["devices"][0]["points"][1] |= {"low": 21.0, "high": 21.0}  # the boundary: a range of one value
    assert GatewayConfig.model_validate(doc).devices[0].points[1].low == 21.0


def test_status_bits_are_those_of_a_register(tmp_path):
    def edit(doc):
        doc["devices"][0]["status"]["bits"] = {0: "C", 15: "M", 99: "D"}

    err, lines = _refusal(tmp_path, edit)
    assert err == f"gw.yaml:{_line(lines, '99: D')}: devices[0].status.bits[99]: bit 99: a Modbus register has " \
                  "bits 0..15"
    doc = example()
    doc["devices"][0]["status"]["bits"] = {0: "C", 15: "M"}  # 15: the last bit of a 16-bit register
    assert GatewayConfig.model_validate(doc).devices[0].status.bits[15] == "M"
    doc["devices"][0]["status"]["bits"] = {16: "M"}
    with pytest.raises(ValidationError, match=r"bit 16: a Modbus register has bits 0\.\.15"):
        GatewayConfig.model_validate(doc)


@pytest.mark.parametrize(("device", "point"), [(0, 3), (2, 0)])  # Modbus TCP, OPC UA
@pytest.mark.parametrize("scale", [0, 0.0, -0.0])
def test_a_scale_of_zero_is_refused(tmp_path, device, point, scale):
    def edit(doc):
        doc["devices"][device]["points"][point]["scale"] = scale

    err, lines = _refusal(tmp_path, edit)
    at = _line(lines, "scale:", after=f"channel: {example()['devices'][device]['points'][point]['channel']}")
    assert err == f"gw.yaml:{at}: devices[{device}].points[{point}].scale: " \
                  "scale 0 would turn every reading into the offset"


def test_scales_and_limits_must_be_finite(tmp_path):
    def edit(doc):
        doc["devices"][0]["points"][3]["scale"] = float("nan")
        doc["devices"][0]["points"][0]["high"] = float("inf")

    err, _ = _refusal(tmp_path, edit)
    assert "devices[0].points[0].high: Input should be a finite number" in err
    assert "devices[0].points[3].scale: Input should be a finite number" in err


def test_two_points_on_one_register_are_refused(tmp_path):
    def edit(doc):
        doc["devices"][0]["points"][2]["address"] = 3  # moisture (float32 at 3..4) over o2 (float32 at 2..3)

    err, lines = _refusal(tmp_path, edit)
    assert err == f"gw.yaml:{_line(lines, 'address: 3')}: devices[0].points[2].address: holding registers 3..4 of " \
                  "unit 1 are already read for points[1] (o2): one register, one point"

    def status_on_a_point(doc):
        doc["devices"][0]["status"]["address"] = 8  # velocity's register

    err, lines = _refusal(tmp_path, status_on_a_point)
    assert err == f"gw.yaml:{_line(lines, 'address: 8', after='status:')}: devices[0].status.address: holding " \
                  "register 8 of unit 1 is already read for points[5] (velocity): one register, one point"


def test_registers_side_by_side_or_elsewhere_are_not_an_overlap():
    doc = example()
    points = doc["devices"][0]["points"]
    points[1]["address"] = 2  # o2 at 2..3 next to co2 at 0..1 (the example already): adjacent is fine
    points.append({"channel": "moisture", "address": 4, "register": "input", "data_type": "uint16",
                   "source": "kiln1-stack"})  # input register 4 is not holding register 4
    del points[2]
    points.append({"channel": "co2", "address": 0, "unit_id": 2, "source": "kiln1-stack"})  # another unit
    del points[0]
    GatewayConfig.model_validate(doc)  # the schema accepts these; only the site check may object


@pytest.mark.parametrize("host", ["not a host!!", "-gw", "gw-.example", "a..b", "999.1.1.1", "", "x" * 64])
def test_a_bad_host_is_refused(tmp_path, host):
    def edit(doc):
        doc["devices"][0]["host"] = host

    err, _ = _refusal(tmp_path, edit)
    assert f"devices[0].host: {host!r} is not a host name or an IP address" in err


@pytest.mark.parametrize("host", ["192.0.2.10", "::1", "fe80::1", "gw-1.plant.example", "localhost", "analyser_rack",
                                  "kafka-1.example.internal.", "x" * 63])
def test_good_hosts_are_accepted(host):
    doc = example()
    doc["devices"][0]["host"] = host
    assert GatewayConfig.model_validate(doc).devices[0].host == host


def test_other_hosts_are_checked_too(tmp_path):
    def edit(doc):
        doc["devices"][2]["endpoint"] = "opc.tcp://not a host!!:4840/"

    err, _ = _refusal(tmp_path, edit)
    assert "devices[2].endpoint: 'opc.tcp://not a host!!:4840/': 'not a host!!' is not a host name" in err

    def port(doc):
        doc["devices"][2]["endpoint"] = "opc.tcp://192.0.2.20:70000/"

    err, _ = _refusal(tmp_path, port)
    assert "devices[2].endpoint: 'opc.tcp://192.0.2.20:70000/': Port out of range 0-65535" in err


def test_an_unknown_protocol_names_the_known_ones(tmp_path):
    def edit(doc):
        doc["devices"][1]["protocol"] = "modbus_ascii"

    err, lines = _refusal(tmp_path, edit)
    assert err == f"gw.yaml:{_line(lines, 'protocol: modbus_ascii')}: devices[1].protocol: unknown protocol " \
                  "'modbus_ascii' (known: modbus_tcp, modbus_rtu, opcua, hj212)"


@given(st.text(max_size=80))
def test_check_host_accepts_or_names_the_problem(text):
    from edge_agent.fields import check_host

    try:
        assert check_host(text) == text
    except ValueError as exc:
        assert "is not a host name or an IP address" in str(exc)


@given(st.ip_addresses())
def test_every_ip_address_is_a_host(ip):
    from edge_agent.fields import check_host

    assert check_host(str(ip)) == str(ip)


def test_the_kafka_sasl_password_comes_from_the_environment_not_the_file(monkeypatch):
    from edge_agent.config import KafkaSettings

    sasl = {"bootstrap_servers": "broker:9094", "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "gw-1", "sasl_password_env": "CEMS_TEST_GW_KAFKA_PW"}
    monkeypatch.setenv("CEMS_TEST_GW_KAFKA_PW", "s3cret")
    k = KafkaSettings.model_validate(sasl)
    assert k.sasl_password is not None and k.sasl_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(k) and "s3cret" not in str(k.model_dump())  # a SecretStr: masked wherever printed
    with pytest.raises(ValidationError, match="give sasl_password or sasl_password_env, not both"):
        KafkaSettings.model_validate(sasl | {"sasl_password": "inline"})
    monkeypatch.delenv("CEMS_TEST_GW_KAFKA_PW")
    with pytest.raises(ValidationError, match="environment variable CEMS_TEST_GW_KAFKA_PW is not set"):
        KafkaSettings.model_validate(sasl)
    with pytest.raises(ValidationError, match="sasl_password_env"):
        KafkaSettings.model_validate(sasl | {"sasl_password_env": "not a name"})
