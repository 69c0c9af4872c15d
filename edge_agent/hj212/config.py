"""Gateway configuration of HJ 212: the receiver device (``protocol: hj212``) and the uplink (``hj212_uplink``).

Passwords never sit in the gateway file: each comes from a file (``password_file``) or an environment variable
(``password_env``), read when the agent starts, and they are never logged. Imports nothing heavy: the file loads on
any machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from schemas.hj212.stream import MAX_FRAME_BYTES
from schemas.site import Identifier

from ..fields import Host, Strict, field_error

__all__ = ["Hj212Device", "Hj212Secret", "Hj212Uplink", "UplinkSource"]


class Hj212Secret(Strict):
    """Where a password comes from: exactly one of a file (its first line) or an environment variable."""

    password_file: Path | None = Field(default=None, description="File whose first line is the password.")
    password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                     description="Environment variable holding the password.")

    @model_validator(mode="after")
    def _one_source(self) -> Hj212Secret:
        if (self.password_file is None) == (self.password_env is None):
            raise ValueError("give exactly one of password_file or password_env (never the password itself)")
        return self

    def password(self) -> str:
        """The password now; ``ValueError`` names what is missing (never the value)."""
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ValueError(f"environment variable {self.password_env} is not set")
            return value
        path = self.password_file
        if path is None:  # pragma: no cover - _one_source makes one of the two set
            raise ValueError("no password_file and no password_env")
        try:
            return path.read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError) as exc:
            raise ValueError(f"cannot read password_file {self.password_file}: {exc}") from None


class Hj212Datalogger(Hj212Secret):
    mn: str = Field(description="The datalogger's MN; the site file's source with this hj212.mn receives its data.")


class Hj212Device(Strict):
    """The agent as an upper platform: dataloggers (数采仪) add the gateway as one more upstream address."""

    protocol: Literal["hj212"] = "hj212"
    id: Identifier
    listen: Host = Field(default="0.0.0.0", description="Address to listen on (0.0.0.0: every IPv4 interface).")
    port: int = Field(ge=0, le=65535, description="TCP port the dataloggers send to (0: any free port, for tests).")
    dataloggers: list[Hj212Datalogger] = Field(min_length=1)
    strict: bool = Field(default=False, description="Hold frames to HJ 212-2017/2025 (refuse what fielded "
                                                     "dataloggers send otherwise, see docs/hj212.md).")
    max_connections: int = Field(default=64, ge=1, le=10_000)
    idle_timeout_s: float = Field(default=900.0, gt=0, description="Close a connection silent this long.")
    max_frame_bytes: int = Field(default=MAX_FRAME_BYTES, ge=12, le=MAX_FRAME_BYTES)

    @property
    def endpoint(self) -> str:
        return f"{self.listen}:{self.port}"

    @property
    def points(self) -> list:  # the device layer's interface: an HJ 212 receiver polls no points
        return []

    @property
    def source(self) -> None:  # sources come from the site file, by MN
        return None


#: What the uplink can send: real-time samples (2011), minute, hour and day data (2051, 2061, 2031).
UplinkData = Literal["realtime", "minute", "hour", "day"]
UPLINK_DATA: tuple[UplinkData, ...] = ("realtime", "minute", "hour", "day")


class UplinkSource(Hj212Secret):
    source: Identifier = Field(description="The site source this MN reports.")
    mn: str = Field(pattern=r"^[0-9A-Za-z_.-]{1,24}$", description="The MN the platform knows this source by.")


class Hj212Uplink(Strict):
    """The agent as a datalogger: it uploads its sources' data to an environmental platform in HJ 212."""

    host: Host = Field(description="The platform's host name or IP address.")
    port: int = Field(ge=1, le=65535)
    version: Literal["2017", "2025"] = "2017"
    st: str = Field(default="31", pattern=r"^[0-9A-Z]{2}$", description="System code (31: flue-gas source).")
    sources: list[UplinkSource] = Field(min_length=1)
    queue_dir: Path = Field(default=Path("/var/lib/cems/hj212-uplink"),
                            description="Durable queue of frames not yet acknowledged by the platform.")
    queue_max_bytes: int = Field(default=2**30, gt=0)
    send: list[UplinkData] = Field(default_factory=lambda: list(UPLINK_DATA))
    rtd_interval_s: int = Field(default=30, ge=30, le=3600, description="RtdInterval (HJ 212-2017 Table 4: "
                                                                        "30-3600 s); the platform may set it (1062).")
    overtime_s: float = Field(default=10.0, gt=0, le=99, description="Wait for an answer this long (OverTime; "
                                                                     "HJ 212-2017 Table 1: 10 s over 4G/GPRS).")
    recount: int = Field(default=3, ge=0, le=99, description="Re-sends before the link is judged down (ReCount).")
    lateness_s: float = Field(default=30.0, ge=0, le=3600,
                              description="A minute is closed and sent this long after its end.")
    heartbeat_s: float = Field(default=0.0, ge=0, description="Send a heartbeat (9015) this often; 0: never.")

    @model_validator(mode="after")
    def _unique(self) -> Hj212Uplink:
        seen: set[str] = set()
        for j, s in enumerate(self.sources):
            if s.source in seen:
                raise field_error("Hj212Uplink", ("sources", j, "source"), f"source {s.source!r} is listed twice",
                                  s.source)
            seen.add(s.source)
        return self
