"""Gateway configuration: one YAML file per gateway (agent, uplink, site, devices and points).

Loaded with :func:`load_gateway_config`; every problem is reported with file, line and field
(:mod:`schemas.configfile`). Cross-checks against the site model run on load: each device feeds a
source of the site, each point a channel of that source, and no channel is fed twice. JSON Schema: ``schemas/json/gateway.schema.json`` (``cems schema export``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from schemas.configfile import load_config
from schemas.quantities import Flag
from schemas.site import Entity, Identifier

from .modbus.points import ModbusPoint

__all__ = ["AgentSettings", "GatewayConfig", "KafkaSettings", "ModbusTcpDevice", "StatusWord", "load_gateway_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentSettings(_Strict):
    id: Identifier = Field(description="Agent id, unique in the whole deployment (it keys deduplication).")
    key_file: Path = Field(description="File holding this agent's HMAC key (batch signatures).")
    outbox_dir: Path = Field(default=Path("/var/lib/cems/outbox"))
    outbox_max_bytes: int = Field(default=2 * 2**30, gt=0)
    batch_interval_s: float = Field(default=5.0, gt=0, le=3600, description="Readings are cut into a batch this often.")


class KafkaSettings(_Strict):
    bootstrap_servers: str = Field(description="host:port[,host:port...]")
    topic: str = "cems.readings.v1"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (self.sasl_mechanism and self.sasl_username
                                                              and self.sasl_password):
            raise ValueError(f"{self.security_protocol} needs sasl_mechanism, sasl_username and sasl_password")
        return self

    def producer_config(self) -> dict:
        """Keyword arguments for kafka-python's KafkaProducer (secrets unwrapped only here)."""
        cfg = {"bootstrap_servers": self.bootstrap_servers, "security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            cfg |= {"sasl_mechanism": self.sasl_mechanism, "sasl_plain_username": self.sasl_username,
                    "sasl_plain_password": self.sasl_password.get_secret_value()}
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name):
                cfg[name] = str(getattr(self, name))
        return cfg


class StatusWord(_Strict):
    """An analyser status register whose bits mark its readings (calibration, maintenance, fault...)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    address: int = Field(ge=0, le=65535)
    register_type: Literal["holding", "input"] = Field(default="holding", alias="register")
    bits: dict[int, Literal["C", "M", "D", "T", "F"]] = Field(
        description="Bit number (0 = least significant) -> HJ 212 flag applied to every point of the device.")

    def flag_of(self, word: int) -> int:
        """The flag a status word means: the first set bit in HJ 212 order of severity (F, D, C, M, T)."""
        for letter in ("F", "D", "C", "M", "T"):
            if any(word >> bit & 1 for bit, f in self.bits.items() if f == letter):
                return Flag[letter].value
        return Flag.N.value


class ModbusTcpDevice(_Strict):
    id: Identifier
    protocol: Literal["modbus_tcp"] = "modbus_tcp"
    host: str
    port: int = Field(default=502, ge=1, le=65535)
    timeout_s: float = Field(default=2.0, gt=0, le=60)
    poll_interval_s: float = Field(default=1.0, gt=0, le=3600)
    max_gap_registers: int = Field(default=8, ge=0, le=124)
    source: Identifier = Field(description="Site source (stack) whose channels these points feed.")
    status: StatusWord | None = None
    points: list[ModbusPoint] = Field(min_length=1)


class GatewayConfig(_Strict):
    agent: AgentSettings
    kafka: KafkaSettings
    site: Entity
    devices: list[ModbusTcpDevice] = Field(min_length=1)  # a discriminated union once OPC UA lands

    def site_problems(self) -> list[tuple[tuple, str]]:
        """Devices against the site: each feeds a known source, each point a channel of it, no channel
        twice. Returned as (location, message) so the loader can point at the offending line."""
        sources = {s.id: s for s in self.site.sources}
        problems, seen, fed = [], set(), {}
        for i, d in enumerate(self.devices):
            if d.id in seen:
                problems.append((("devices", i, "id"), f"device id {d.id!r} appears twice"))
            seen.add(d.id)
            if d.source not in sources:
                problems.append((("devices", i, "source"),
                                 f"source {d.source!r} is not in the site (known: {sorted(sources)})"))
                continue
            channels = {c.id for c in sources[d.source].channels}
            for j, p in enumerate(d.points):
                where = ("devices", i, "points", j, "channel")
                if p.channel not in channels:
                    problems.append((where, f"channel {p.channel!r} is not a channel of source {d.source!r} "
                                            f"(known: {sorted(channels)})"))
                elif (d.source, p.channel) in fed:
                    problems.append((where, f"channel {d.source}/{p.channel} is already fed by device "
                                            f"{fed[(d.source, p.channel)]!r}"))
                fed.setdefault((d.source, p.channel), d.id)
        return problems


def status_point(device: ModbusTcpDevice) -> ModbusPoint | None:
    """The status word as one more point to read (uint16), planned together with the others."""
    if device.status is None:
        return None
    return ModbusPoint(channel="__status__", register=device.status.register_type, address=device.status.address,
                       data_type="uint16")


def load_gateway_config(path: str | Path) -> GatewayConfig:
    """Load and cross-check a gateway file; raises :class:`~schemas.errors.ConfigError` naming file, line, field."""
    return load_config(path, GatewayConfig, checks=GatewayConfig.site_problems)
