"""What the agent needs from a device driver (Modbus TCP, Modbus RTU, OPC UA), whatever the protocol.

The agent owns the schedule, reconnect backoff, batching and metrics; a driver only connects and
turns one poll cycle into flagged readings. A driver never raises on device behaviour: timeouts,
exception responses, bad status codes and dropped connections come back as flagged readings
(HJ 212-2017 Table 8: B communication failure, D instrument fault, T out of range) and as counts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from schemas.quantities import Flag

__all__ = ["CycleReadings", "Driver"]


@dataclass
class CycleReadings:
    """Readings one poll cycle produced, as parallel columns.

    ``point`` indexes the device's configured points. A polled protocol yields one reading per point
    stamped with the cycle time; a subscription yields every change the server sent since the last
    cycle, each stamped with its source timestamp, so a point may appear several times or not at all.
    ``status`` is the analyser status word read in the same cycle (None when not configured or not read).
    """

    ts_ns: np.ndarray  # int64, ns since the Unix epoch (UTC)
    point: np.ndarray  # uint16
    value: np.ndarray  # float64
    flag: np.ndarray  # uint8, schemas.quantities.Flag
    requests: int = 0
    comm_errors: int = 0  # requests lost to timeouts, refused or dropped connections
    device_errors: int = 0  # exception responses, bad status codes
    status: int | None = None
    raw: dict = field(default_factory=dict)  # protocol-specific, for `cems edge probe`

    @classmethod
    def all_flagged(cls, ts_ns: int, n_points: int, flag: Flag = Flag.B, **counts) -> CycleReadings:
        """Every point once, no value, one flag: what a cycle without a connection records."""
        return cls(np.full(n_points, ts_ns, dtype=np.int64), np.arange(n_points, dtype=np.uint16),
                   np.full(n_points, np.nan), np.full(n_points, flag, dtype=np.uint8), **counts)


class Driver(ABC):
    """One device connection. Created once at start-up; ``connect`` is retried by the agent with backoff."""

    n_points: int

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @abstractmethod
    async def connect(self) -> bool:
        """Open the connection (and subscriptions); return False, never raise, when the device is unreachable."""

    @abstractmethod
    async def poll(self, now_ns: int) -> CycleReadings:
        """One cycle. On a broken connection return what was read (the rest flagged B) and make
        ``connected`` False so the agent reconnects."""

    @abstractmethod
    async def close(self) -> None: ...
