"""What to read from an OPC UA server: one :class:`OpcUaDevice` per endpoint, one :class:`OpcUaPoint` per value.

Node ids use the OPC UA string form (``ns=2;s=stack0.co2``, ``ns=2;i=5``). A namespace *index* is the
server's choice and may change when the server's configuration changes, so ``nsu=<namespace uri>;s=...``
is accepted too and resolved against the server's namespace array at every connect.

This module imports asyncua only to validate node ids, and only if it is installed, so a gateway file
loads on a machine without the ``opcua`` extra (the syntax is then checked by a regular expression).

Security follows OPC UA Part 2/4: ``Basic256Sha256`` with ``Sign`` or ``SignAndEncrypt`` needs the
client's application instance certificate and private key (PEM or DER, told apart by content). Pin the
server with ``server_certificate``: without it the client takes whatever certificate the server's
endpoint list presents (trust on first use, no protection against a man in the middle).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from schemas.quantities import status_word_flag
from schemas.site import Identifier

from ..fields import FiniteFloat, Scale, Strict, check_host, field_error

__all__ = ["OpcUaDevice", "OpcUaPoint", "OpcUaSecurity", "OpcUaStatus", "validate_node_id"]

_NODE_ID = re.compile(r"^(?:(?:ns=\d+|nsu=[^;]+|srv=\d+);)*(?:i=\d+|s=.+|g=[0-9A-Fa-f-]{36}|b=.+)$")


def validate_node_id(text: str) -> str:
    """Check the OPC UA string form of a node id; return it stripped. ``ValueError`` names the problem."""
    text = text.strip()
    try:
        from asyncua import ua
    except ImportError:  # pragma: no cover - only without the extra
        if not _NODE_ID.match(text):
            raise ValueError(f"{text!r} is not an OPC UA node id (expected e.g. 'ns=2;s=stack0.co2' or 'ns=2;i=5')") \
                from None
        return text
    try:
        ua.NodeId.from_string(text)
    except Exception as exc:  # UaStringParsingError, ValueError from int()/UUID()
        raise ValueError(f"{text!r} is not an OPC UA node id (expected e.g. 'ns=2;s=stack0.co2' or 'ns=2;i=5'): "
                         f"{exc}") from None
    if text.startswith("srv=") or ";srv=" in text:
        raise ValueError(f"{text!r}: node ids on another server (srv=) cannot be read")
    return text


class OpcUaPoint(Strict):
    """One variable read from the server and the channel it feeds."""

    channel: str = Field(description="Site-model channel id this point feeds.")
    source: str | None = Field(default=None, description="Site source of the channel, when not the device's "
                                                         "(a server publishing several stacks).")
    node_id: str = Field(description="Variable node id, e.g. 'ns=2;s=stack0.co2', 'ns=2;i=5' or "
                                     "'nsu=urn:cems:simulator;s=stack0.co2'.")
    scale: Scale = Field(default=1.0, description="value = raw * scale + offset (raw in the server's units; "
                                                        "never 0).")
    offset: FiniteFloat = Field(default=0.0, description="Added after scaling, in the channel's unit.")
    low: FiniteFloat | None = Field(default=None, description="Below this (after scaling) the reading is flagged T.")
    high: FiniteFloat | None = Field(default=None, description="Above this (after scaling) the reading is flagged T.")

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, v: str) -> str:
        return validate_node_id(v)

    @model_validator(mode="after")
    def _range(self) -> OpcUaPoint:
        if self.low is not None and self.high is not None and self.low > self.high:
            raise field_error("OpcUaPoint", ("high",), f"high {self.high:g} is below low {self.low:g}", self.high)
        return self


class OpcUaStatus(Strict):
    """An analyser status word (an unsigned integer variable) whose bits flag the device's readings."""

    node_id: str = Field(description="Node id of the status word variable (read as an unsigned integer).")
    bits: dict[int, Literal["C", "M", "D", "T", "F"]] = Field(
        description="Bit number (0 = least significant) -> HJ 212 flag applied to every normal reading of the device.")

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, v: str) -> str:
        return validate_node_id(v)

    @field_validator("bits")
    @classmethod
    def _bit_numbers(cls, bits: dict[int, str]) -> dict[int, str]:
        for b in bits:  # at the bit's own key, as the Modbus status word does
            if not 0 <= b < 32:
                raise field_error("OpcUaStatus", (b,), f"bit {b}: a status word (UInt32) has bits 0..31", b)
        return bits

    def flag_of(self, word: int) -> int:
        """The flag a status word means: the most severe set bit (F, D, C, M, T)."""
        return status_word_flag(dict[int, str](self.bits), word)


class OpcUaSecurity(Strict):
    """Secure channel and user identity. ``policy: None`` sends everything in clear (isolated networks only)."""

    policy: Literal["None", "Basic256Sha256"] = Field(default="None", description="OPC UA security policy.")
    mode: Literal["None", "Sign", "SignAndEncrypt"] = Field(
        default="None", description="Message security mode; Basic256Sha256 needs Sign or SignAndEncrypt.")
    certificate: Path | None = Field(default=None, description="Client application instance certificate (PEM or DER).")
    private_key: Path | None = Field(default=None, description="Client private key (PEM or DER).")
    private_key_password: SecretStr | None = Field(default=None, description="Password of an encrypted private key.")
    server_certificate: Path | None = Field(
        default=None, description="Expected server certificate (PEM or DER); the connection fails on any other.")
    application_uri: str | None = Field(
        default=None, description="Client application URI; default: the URI in the client certificate's "
                                  "subjectAltName (servers reject a mismatch).")
    username: str | None = Field(default=None, description="User name for a UserName identity token.")
    password: SecretStr | None = Field(default=None, description="Password for the UserName identity token.")

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaSecurity:
        if self.policy == "None":
            if self.mode != "None":
                raise ValueError(f"mode {self.mode} needs a security policy (policy: Basic256Sha256)")
        else:
            if self.mode == "None":
                raise ValueError(f"policy {self.policy} needs mode Sign or SignAndEncrypt")
            if self.certificate is None or self.private_key is None:
                raise ValueError(f"policy {self.policy} needs the client certificate and private_key")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self

    @property
    def secured(self) -> bool:
        return self.policy != "None"


class OpcUaDevice(Strict):
    """One OPC UA server endpoint (an analyser rack, a DCS gateway, a PLC) and the points read from it.

    ``subscribe`` (the default) creates one subscription: the server pushes every new sample with its
    source timestamp, so nothing sampled between two cycles is lost. ``poll`` issues one Read of all
    points per cycle, like Modbus. In both modes a reading is stamped with the value's source timestamp
    (else the server timestamp, else the cycle time).
    """

    id: Identifier = Field(description="Device id, unique in the gateway file.")
    protocol: Literal["opcua"] = Field(default="opcua", description="Selects this device type in a gateway file.")
    endpoint: str = Field(description="Server endpoint URL, opc.tcp://host:port[/path].")
    source: Identifier | None = Field(
        default=None, description="Site source (stack) these points feed; a point's own `source` overrides it.")
    security: OpcUaSecurity = Field(default_factory=OpcUaSecurity, description="Secure channel and user identity.")
    mode: Literal["subscribe", "poll"] = Field(default="subscribe", description="Subscription or cyclic Read.")
    poll_interval_s: float = Field(
        default=1.0, gt=0, le=3600, description="Cycle period; also the subscription's publishing interval.")
    sampling_interval_s: float | None = Field(
        default=None, gt=0, le=3600, description="Server-side sampling interval of subscribed points "
                                                 "(default: poll_interval_s).")
    timeout_s: float = Field(default=4.0, gt=0, le=60, description="Timeout of each OPC UA service call.")
    stale_after_s: float | None = Field(
        default=None, gt=0, le=86_400, description="Subscribed point without a new sample for this long: one B "
                                                   "reading per cycle until one arrives (default 3 x poll_interval_s).")
    status: OpcUaStatus | None = Field(default=None,
                                       description="Analyser status word flagging this device's readings.")
    points: list[OpcUaPoint] = Field(min_length=1, description="Variables read from this server.")

    @field_validator("endpoint")
    @classmethod
    def _opc_tcp(cls, v: str) -> str:
        if not re.match(r"^opc\.tcp://[^/:]+(:\d+)?(/.*)?$", v):
            raise ValueError(f"{v!r} is not an opc.tcp://host[:port][/path] endpoint")
        url = urlsplit(v)
        try:
            check_host(url.hostname or "")
            port = url.port
        except ValueError as exc:
            raise ValueError(f"{v!r}: {exc}") from None
        if port == 0:
            raise ValueError(f"{v!r}: port 0 cannot be connected to")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> OpcUaDevice:
        seen: dict[str, int] = {}
        for i, p in enumerate(self.points):
            if p.node_id in seen:
                raise field_error("OpcUaDevice", ("points", i, "node_id"),
                                  f"points {seen[p.node_id]} and {i} read the same node {p.node_id!r}", p.node_id)
            seen[p.node_id] = i
        return self

    @property
    def stale_after(self) -> float:
        """Seconds without a new sample after which a subscribed point reads B."""
        return self.stale_after_s if self.stale_after_s is not None else 3.0 * self.poll_interval_s

    @property
    def sampling_interval(self) -> float:
        return self.sampling_interval_s if self.sampling_interval_s is not None else self.poll_interval_s
