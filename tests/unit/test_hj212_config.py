"""HJ 212 configuration: the gateway's receiver device and uplink, the centre's receiver, their example files, and
the refusals that name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge_agent.config import GatewayConfig, load_gateway_config
from edge_agent.hj212.config import Hj212Secret
from ingest.hj212_server import Hj212ServerConfig
from schemas.configfile import load_config, parse_config
from schemas.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"


def test_the_example_files_load():
    cfg = load_gateway_config(EXAMPLES / "gateway-hj212.yaml")
    assert cfg.devices[0].protocol == "hj212" and cfg.hj212_uplink.sources[0].source == "kiln2-stack"
    server = load_config(EXAMPLES / "hj212-server.yaml", Hj212ServerConfig)
    assert server.max_frame_bytes == 4096 and server.topic == "cems.readings.v1"


def doc() -> dict:
    return yaml.safe_load((EXAMPLES / "gateway-hj212.yaml").read_text())


def problems(d: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(yaml.safe_dump(d), GatewayConfig, "gw.yaml", checks=GatewayConfig.site_problems)
    return str(exc.value)


def test_an_mn_no_source_has_is_refused_with_its_location():
    d = doc()
    d["devices"][0]["dataloggers"][0]["mn"] = "FFFF"
    assert "devices[0].dataloggers[0].mn: MN 'FFFF' is no source's hj212.mn" in problems(d)


def test_a_source_fed_by_hj212_and_polled_is_refused():
    d = doc()
    d["devices"].append({"id": "rack", "protocol": "modbus_tcp", "host": "192.0.2.1", "source": "kiln2-stack",
                         "points": [{"channel": "co2", "address": 0, "data_type": "float32"}]})
    assert "fed by MN 010000A8900016F000169DC0 and also polled (['co2'])" in problems(d)


def test_one_mn_one_device_and_an_uplink_of_known_sources():
    d = doc()
    d["devices"].append(dict(d["devices"][0], id="second", port=9213))
    d["hj212_uplink"]["sources"][0]["source"] = "nowhere"
    text = problems(d)
    assert "already received by device 'datalogger'" in text and "hj212_uplink.sources[0].source" in text


@pytest.mark.parametrize("secret", [{}, {"password_file": "/x", "password_env": "X"}])
def test_a_password_has_exactly_one_source_and_is_never_inline(secret):
    with pytest.raises(ValueError, match="exactly one of password_file or password_env"):
        Hj212Secret.model_validate(secret)
    d = doc()
    d["devices"][0]["dataloggers"][0] = {"mn": "010000A8900016F000169DC0", "password": "123456"}
    assert "Extra inputs are not permitted" in problems(d)


def test_passwords_are_read_from_a_file_or_the_environment(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("abc123\nsecond line ignored\n")
    assert Hj212Secret(password_file=tmp_path / "pw").password() == "abc123"
    monkeypatch.setenv("CEMS_T_PW", "xyz789")
    assert Hj212Secret(password_env="CEMS_T_PW").password() == "xyz789"
    with pytest.raises(ValueError, match="CEMS_T_NONE is not set"):
        Hj212Secret(password_env="CEMS_T_NONE").password()
