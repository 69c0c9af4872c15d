"""Worker settings from a file, the environment over it, or the environment alone; errors name their origin."""

from __future__ import annotations

import pytest

from schemas.errors import ConfigError
from streams.config import load_worker_config

FILE = """\
kafka:
  bootstrap_servers: 10.0.0.5:9093
  security_protocol: SASL_SSL
  sasl_mechanism: SCRAM-SHA-256
  sasl_username: cems-worker
sites: [/etc/cems/sites]
keys_dir: /etc/cems/agent-keys
influx: {url: "http://influx:8086", org: cems, bucket: cems, token: placeholder}
"""


def test_environment_overrides_the_file_and_carries_the_secrets(tmp_path, monkeypatch):
    path = tmp_path / "worker.yaml"
    path.write_text(FILE)
    monkeypatch.setenv("CEMS_STREAM__KAFKA__SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("CEMS_STREAM__INFLUX__TOKEN", "tok-123")
    monkeypatch.setenv("CEMS_STREAM__CHUNK", "500")
    monkeypatch.setenv("CEMS_STREAM__PROCESSING__ALLOWED_LATENESS_S", "900")
    cfg = load_worker_config(path)
    assert cfg.kafka.sasl_password.get_secret_value() == "s3cret"
    # the rest of the section stays
    assert cfg.influx.token.get_secret_value() == "tok-123" and cfg.influx.org == "cems"
    assert (cfg.chunk, cfg.processing.allowed_lateness_s, cfg.kafka.sasl_username) == (500, 900.0, "cems-worker")


def test_the_environment_alone_is_a_config(monkeypatch):
    monkeypatch.setenv("CEMS_STREAM__KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    monkeypatch.setenv("CEMS_STREAM__SITES", "[/etc/cems/sites, /etc/cems/more.yaml]")  # lists as YAML
    monkeypatch.setenv("CEMS_STREAM__KEYS_DIR", "/etc/cems/agent-keys")
    monkeypatch.setenv("CEMS_STREAM__TOPICS__READINGS", "plant.readings")
    cfg = load_worker_config(None)
    assert [str(p) for p in cfg.sites] == ["/etc/cems/sites", "/etc/cems/more.yaml"]
    assert cfg.topics.readings == "plant.readings" and cfg.topics.hourly == "cems.hourly.v1"


def test_a_bad_setting_names_the_variable_or_the_line(tmp_path, monkeypatch):
    path = tmp_path / "worker.yaml"
    path.write_text(FILE + "chunk: 0\n")
    monkeypatch.setenv("CEMS_STREAM__SNAPSHOT_INTERVAL_S", "soon")
    with pytest.raises(ConfigError) as err:
        load_worker_config(path)
    text = str(err.value)
    assert "environment CEMS_STREAM__SNAPSHOT_INTERVAL_S: snapshot_interval_s:" in text
    assert f"{path}:9: chunk:" in text
