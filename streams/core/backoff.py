"""One retry pace for everything that waits for a service to come back (the InfluxDB sink's bounded retries, the
worker's unbounded ones for counted output): exponential backoff with a cap and jitter, or the server's own
``Retry-After`` when it sends one. Pure: the callers sleep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Delay before retry ``k`` (0-based): ``min(max_s, initial_s * factor**k)`` times a jitter drawn uniformly from
    ``[jitter_low, 1]`` (so many clients that failed together do not retry together), or ``retry_after_s`` capped
    at ``max_s``. Units: seconds."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter_low: float = 0.5

    def delay(self, attempt: int, retry_after_s: float | None = None, rng: random.Random | None = None) -> float:
        if retry_after_s is not None:
            return min(self.max_s, max(0.0, retry_after_s))
        base = min(self.max_s, self.initial_s * self.factor ** attempt)
        return base * (rng or random).uniform(self.jitter_low, 1.0)
