"""Gateway configuration: one YAML file per gateway (agent, uplink, site, devices and points).

Loaded with :func:`load_gateway_config`; every problem is reported with file, line and field
(:mod:`schemas.configfile`). Cross-checks against the site model run on load: each device feeds a
source of the site, each point a channel of that source, and no channel is fed twice.
JSON Schema: ``schemas/json/gateway.schema.json`` (``cems schema export``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

from schemas.configfile import load_config
from schemas.kafka import KafkaConnection
from schemas.quantities import status_word_flag
from schemas.site import Entity, Identifier

from .fields import Host, Strict, field_error
from .hj212.config import Hj212Device, Hj212Uplink
from .modbus.points import DataType, ModbusPoint, RegisterType
from .opcua.config import OpcUaDevice

__all__ = ["AgentSettings", "Device", "GatewayConfig", "KafkaSettings", "ModbusRtuDevice", "ModbusTcpDevice",
           "StatusWord", "fed_source", "gateway_json_schema", "load_gateway_config", "point_source", "status_point"]


class AgentSettings(Strict):
    id: Identifier = Field(description="Agent id, unique in the whole deployment (it keys deduplication).")
    key_file: Path = Field(description="File holding this agent's HMAC key (batch signatures).")
    outbox_dir: Path = Field(default=Path("/var/lib/cems/outbox"))
    outbox_max_bytes: int = Field(default=2 * 2**30, gt=0)
    batch_interval_s: float = Field(default=5.0, gt=0, le=3600, description="Readings are cut into a batch this often.")
    wire_version: Literal[1, 3] = Field(default=3, description=(
        "3: one agent batch per interval holding every source (docs/wire-format.md, version 3; the centre reads it "
        "since wire format 3). 1: one batch per source and interval, for a centre that does not read version 3 yet."))


class KafkaSettings(KafkaConnection):
    """The uplink: where to send, and as whom. The SASL password is best given as ``sasl_password_env``, the name of
    an environment variable read when the file loads, so that it is in neither the file nor a log."""

    topic: str = "cems.readings.v1"
    sasl_password_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the SASL password (instead of sasl_password in the file).")

    @model_validator(mode="before")
    @classmethod
    def _password_from_environment(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("sasl_password_env"):
            return data
        name = data["sasl_password_env"]
        if data.get("sasl_password") is not None:
            raise ValueError("give sasl_password or sasl_password_env, not both")
        value = os.environ.get(str(name))
        if not value:
            raise ValueError(f"sasl_password_env: environment variable {name} is not set")
        return {**data, "sasl_password": value}


class StatusWord(Strict):
    """An analyser status register whose bits mark its readings (calibration, maintenance, fault...)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    address: int = Field(ge=0, le=65535)
    register_type: Literal["holding", "input"] = Field(default="holding", alias="register")
    unit_id: int | None = Field(default=None, ge=0, le=255, description="Modbus unit; default: the first point's.")
    bits: dict[int, Literal["C", "M", "D", "T", "F"]] = Field(
        description="Bit number (0 = least significant, 15 the highest of the 16-bit register) -> HJ 212 flag "
                    "applied to every point of the device.")  # MODBUS-REG16

    @field_validator("bits")
    @classmethod
    def _bit_numbers(cls, bits: dict[int, str]) -> dict[int, str]:
        for b in bits:
            if not 0 <= b < 16:
                raise field_error("StatusWord", (b,), f"bit {b}: a Modbus register has bits 0..15", b)
        return bits

    def flag_of(self, word: int) -> int:
        """The flag a status word means: the most severe set bit (F, D, C, M, T)."""
        return status_word_flag(dict[int, str](self.bits), word)


class _ModbusDevice(Strict):
    """What Modbus TCP and RTU devices share: timing, read planning, the points and the status word."""

    id: Identifier
    timeout_s: float = Field(default=2.0, gt=0, le=60)
    poll_interval_s: float = Field(default=1.0, gt=0, le=3600)
    max_gap_registers: int = Field(default=8, ge=0, le=124,
                                   description="Unused registers a read may span to merge two blocks.")
    source: Identifier | None = Field(
        default=None, description="Site source (stack) these points feed; a point's own `source` overrides it.")
    status: StatusWord | None = None
    points: list[ModbusPoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_point_per_register(self) -> _ModbusDevice:
        """No register read for two points (or for a point and the status word): one of them has the wrong
        address, and its channel would record another instrument's value. Reported at the later entry's address."""
        spans: list[tuple[int, str, int, int, str, tuple[str | int, ...]]] = [
            (p.unit_id, p.register_type.value, p.wire_address, p.words, f"points[{j}] ({p.channel})",
             ("points", j, "address")) for j, p in enumerate(self.points)]
        if self.status is not None:
            st = self.status
            unit = self.points[0].unit_id if st.unit_id is None else st.unit_id
            spans.append((unit, st.register_type, st.address, 1, "the status word", ("status", "address")))
        for i, (unit, reg, start, words, _, where) in enumerate(spans):
            for other_unit, other_reg, other_start, other_words, other, _ in spans[:i]:
                if (unit, reg) == (other_unit, other_reg) and start < other_start + other_words \
                        and other_start < start + words:
                    regs = f"register {start} of unit {unit} is" if words == 1 else \
                        f"registers {start}..{start + words - 1} of unit {unit} are"
                    raise field_error(type(self).__name__, where, f"{reg} {regs} already read for {other}: one "
                                      f"register, one point", start)
        return self


class ModbusTcpDevice(_ModbusDevice):
    protocol: Literal["modbus_tcp"] = "modbus_tcp"
    host: Host = Field(description="The device's host name or IP address.")
    port: int = Field(default=502, ge=1, le=65535)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


class ModbusRtuDevice(_ModbusDevice):
    """A device on an RS-485/RS-232 line. Devices that name the same ``serial_port`` share one connection and
    take turns (one master per line); each point's ``unit_id`` addresses the device on the line.

    Line defaults follow *Modbus over Serial Line* V1.02 §2.5.1: 8 data bits, even parity, 1 stop bit
    (use 2 stop bits with no parity)."""

    protocol: Literal["modbus_rtu"] = "modbus_rtu"
    serial_port: str = Field(description="Device path, e.g. /dev/ttyUSB0 or /dev/ttyS1.")
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1

    @property
    def endpoint(self) -> str:
        return f"{self.serial_port} {self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


def _protocol(value: Any) -> str | None:
    """Discriminator of a device entry; ``modbus_tcp`` when the file does not say (older files)."""
    if isinstance(value, dict):
        return value.get("protocol", "modbus_tcp")
    return getattr(value, "protocol", None)


_DEVICE_MODELS: dict[str, type[Strict]] = {"modbus_tcp": ModbusTcpDevice, "modbus_rtu": ModbusRtuDevice,
                                           "opcua": OpcUaDevice, "hj212": Hj212Device}


def _validate_device(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate a device entry as the model its ``protocol`` names. pydantic's discriminated union would do the same
    but report ``devices[0].modbus_tcp.points[1].low``, a location no line of the file has, so ``cems edge check``
    pointed at the device; validated here, an error is at the field (``devices[0].points[1].low``) and its line."""
    if not isinstance(value, dict):
        return handler(value)
    protocol = _protocol(value)
    model = _DEVICE_MODELS.get(protocol) if isinstance(protocol, str) else None
    if model is None:
        raise field_error("Device", ("protocol",), f"unknown protocol {protocol!r} (known: "
                          f"{', '.join(_DEVICE_MODELS)})", protocol)
    return model.model_validate(value)


Device = Annotated[
    Annotated[ModbusTcpDevice, Tag("modbus_tcp")] | Annotated[ModbusRtuDevice, Tag("modbus_rtu")]
    | Annotated[OpcUaDevice, Tag("opcua")] | Annotated[Hj212Device, Tag("hj212")],
    Discriminator(_protocol),  # the JSON Schema's oneOf with its discriminator
    WrapValidator(_validate_device),
]


class GatewayConfig(Strict):
    agent: AgentSettings
    kafka: KafkaSettings
    site: Entity
    devices: list[Device] = Field(min_length=1)
    hj212_uplink: Hj212Uplink | None = Field(default=None, description=(
        "Act as a datalogger for an environmental platform: upload the sources' data in HJ 212 (issue 16)."))

    def site_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Devices against the site: each point feeds a channel of a known source, no channel twice.
        Returned as (location, message) so the loader can point at the offending line."""
        sources = {s.id: s for s in self.site.sources}
        known = f"(known: {sorted(sources)})"
        problems: list[tuple[tuple[str | int, ...], str]] = []
        seen: set[str] = set()
        fed: dict[tuple[str, str], str] = {}  # (source, channel) -> the device feeding it
        for i, d in enumerate(self.devices):
            if d.id in seen:
                problems.append((("devices", i, "id"), f"device id {d.id!r} appears twice"))
            seen.add(d.id)
            if d.source is not None and d.source not in sources:
                problems.append((("devices", i, "source"), f"source {d.source!r} is not in the site {known}"))
                continue
            for j, p in enumerate(d.points):
                src = point_source(d, p)
                if src is None:
                    problems.append((("devices", i, "points", j),
                                     "no source: give the device a `source` or the point its own"))
                    continue
                if src not in sources:
                    problems.append((("devices", i, "points", j, "source"),
                                     f"source {src!r} is not in the site {known}"))
                    continue
                where = ("devices", i, "points", j, "channel")
                if p.channel not in {c.id for c in sources[src].channels}:
                    problems.append((where, f"channel {p.channel!r} is not a channel of source {src!r} "
                                            f"(known: {sorted(c.id for c in sources[src].channels)})"))
                elif (src, p.channel) in fed:
                    problems.append((where, f"channel {src}/{p.channel} is already fed by device "
                                            f"{fed[(src, p.channel)]!r}"))
                fed.setdefault((src, p.channel), d.id)
        problems += self._hj212_problems(fed)
        lines: dict[str, tuple[int, int, str, int]] = {}  # serial port -> its line settings
        for i, d in enumerate(self.devices):
            if d.protocol == "modbus_rtu":
                line = (d.baudrate, d.bytesize, d.parity, d.stopbits)
                if lines.setdefault(d.serial_port, line) != line:
                    problems.append((("devices", i, "baudrate"), f"devices on {d.serial_port} must share one "
                                                                 f"line setting; another device uses "
                                                                 f"{lines[d.serial_port]}"))
        return problems


    def _hj212_problems(self, fed: dict[tuple[str, str], str]) -> list[tuple[tuple[str | int, ...], str]]:
        """HJ 212 (issue 16): each datalogger's MN is a source's ``hj212.mn`` in the site, listed once, and the
        source's channels are not also polled; the uplink reports sources of the site."""
        by_mn = {s.hj212.mn: s for s in self.site.sources if s.hj212 is not None}
        problems: list[tuple[tuple[str | int, ...], str]] = []
        seen: dict[str, str] = {}  # MN -> the device receiving it
        for i, d in enumerate(self.devices):
            if d.protocol != "hj212":
                continue
            for j, logger in enumerate(d.dataloggers):
                where = ("devices", i, "dataloggers", j, "mn")
                src = by_mn.get(logger.mn)
                if src is None:
                    problems.append((where, f"MN {logger.mn!r} is no source's hj212.mn in the site (known: "
                                            f"{sorted(by_mn)})"))
                elif logger.mn in seen:
                    problems.append((where, f"MN {logger.mn!r} is already received by device {seen[logger.mn]!r}"))
                else:
                    polled = sorted(c for s, c in fed if s == src.id)
                    if polled:
                        problems.append((where, f"source {src.id!r} is fed by MN {logger.mn} and also polled "
                                                f"({polled}): one feed per source"))
                seen.setdefault(logger.mn, d.id)
        sources = {s.id for s in self.site.sources}
        for j, s in enumerate(self.hj212_uplink.sources if self.hj212_uplink else ()):
            if s.source not in sources:
                problems.append((("hj212_uplink", "sources", j, "source"), f"source {s.source!r} is not in the site"))
        return problems


def point_source(device, point) -> str | None:
    """The source a point feeds: its own, else its device's."""
    return point.source or device.source


def fed_source(device, point) -> str:
    """The source a point of a loaded gateway file feeds (``site_problems`` made sure it has one)."""
    src = point_source(device, point)
    if src is None:
        raise ValueError(f"device {device.id}: point {point.channel} feeds no source (load the file with "
                         f"load_gateway_config)")
    return src


def status_point(device: ModbusTcpDevice | ModbusRtuDevice) -> ModbusPoint | None:
    """The status word as one more point to read (uint16), planned together with the others."""
    if device.status is None:
        return None
    st = device.status
    unit = device.points[0].unit_id if st.unit_id is None else st.unit_id
    return ModbusPoint(channel="__status__", register=RegisterType(st.register_type), address=st.address,
                       data_type=DataType.uint16, unit_id=unit)


def gateway_json_schema() -> dict:
    """The gateway file's JSON Schema (``cems schema show gateway``; the ``cems.schemas`` entry point ``gateway``)."""
    doc = GatewayConfig.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "CEMS gateway (agent, Kafka, site, devices and points)",
            **{k: v for k, v in doc.items() if k != "title"}}


def load_gateway_config(path: str | Path) -> GatewayConfig:
    """Load and cross-check a gateway file; raises :class:`~schemas.errors.ConfigError` naming file, line, field."""
    return load_config(path, GatewayConfig, checks=GatewayConfig.site_problems)
