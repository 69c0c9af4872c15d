"""Shared fixtures. Integration tests talk to the real services started by deploy/local/services.sh."""

from __future__ import annotations

import os
import socket
import urllib.request
from dataclasses import dataclass

import pytest

KAFKA_BOOTSTRAP = os.environ.get("CEMS_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
INFLUX_URL = os.environ.get("CEMS_INFLUX_URL", "http://127.0.0.1:18086")
INFLUX_ORG = os.environ.get("CEMS_INFLUX_ORG", "cems")
INFLUX_TOKEN = os.environ.get("CEMS_INFLUX_TOKEN", "cems-local-operator-token")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _require(service: str, reachable: bool, where: str) -> None:
    if reachable:
        return
    msg = f"{service} is not reachable at {where}; start it with: deploy/local/services.sh up"
    if IN_CI:
        pytest.fail(f"CI=true and {msg}", pytrace=False)  # in CI a missing service is a failure, never a skip
    pytest.skip(msg)


def _tcp_open(hostport: str) -> bool:
    host, port = hostport.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def _influx_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:  # noqa: S310 - loopback URL
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    _require("Kafka", _tcp_open(KAFKA_BOOTSTRAP), KAFKA_BOOTSTRAP)
    return KAFKA_BOOTSTRAP


@dataclass(frozen=True)
class InfluxSettings:
    url: str
    org: str
    token: str


@pytest.fixture(scope="session")
def influx() -> InfluxSettings:
    _require("InfluxDB", _influx_healthy(INFLUX_URL), INFLUX_URL)
    return InfluxSettings(INFLUX_URL, INFLUX_ORG, INFLUX_TOKEN)
