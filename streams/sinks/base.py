"""What every sink of the stream worker's outputs is held to: it is told what a chunk produced, writes it when asked,
and says, by the kind of error it raises, whether retrying later may help (the caller owns the retries and the pace:
``streams/core/backoff.py``). The worker acknowledges its input only after the sink's write of it returned.
"""

from __future__ import annotations

__all__ = ["SinkError", "SinkRejected"]


class SinkError(Exception):
    """A write (or delete) did not reach InfluxDB. Nothing written since the last successful flush is safe."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True, attempts: int = 1):
        super().__init__(message)
        self.status = status  # HTTP status, None when no response came (connection refused, timeout)
        self.retryable = retryable  # True: the server or network failed, retrying later may succeed
        self.attempts = attempts


class SinkRejected(SinkError):
    """The data (or the request) was refused: an HTTP 4xx other than 429, or a value line protocol cannot carry."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1):
        super().__init__(message, status=status, retryable=False, attempts=attempts)


# ---------------------------------------------------------------------------------------------------------------
# Line protocol encoding (pure functions, no client needed)
