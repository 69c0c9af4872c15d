"""Gateway file rules that need no device: protocol selection, OPC UA security and node ids, sources per point."""

from __future__ import annotations

import pytest
import yaml
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
    with pytest.raises(ValidationError, match="opc.tcp://"):
        OpcUaDevice.model_validate(base | {"endpoint": "http://10.0.0.5", "points": [{"channel": "a", "node_id": "i=5"}]})
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
