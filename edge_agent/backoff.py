"""Retry delays of the edge agent: exponential backoff, 1 s doubling up to 60 s, back to 1 s after a success.

One rule for every link the agent keeps trying: a device that does not answer (``agent.py``), a Kafka broker that is
down (the uplink's drain, ``agent.py``) and an HJ 212 platform that is unreachable (``hj212/uplink.py``). Doubling
keeps a dead peer's log and the network quiet; the 60-s cap bounds how long a peer that came back waits to be
noticed. No jitter: each agent has one connection per peer, so there is no herd of its own to spread.
"""

from __future__ import annotations

__all__ = ["Backoff"]


class Backoff:
    """``next()`` is the delay before the next attempt (1, 2, 4 ... 60, 60 s); ``reset()`` after a success."""

    def __init__(self, first_s: float = 1.0, max_s: float = 60.0) -> None:
        if not 0 < first_s <= max_s:
            raise ValueError(f"backoff needs 0 < first_s <= max_s, got {first_s} and {max_s}")
        self.first_s, self.max_s = first_s, max_s
        self._delay = first_s

    def next(self) -> float:
        """The delay to wait now; the one after it is twice as long, up to ``max_s``."""
        delay = self._delay
        self._delay = min(delay * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._delay = self.first_s
