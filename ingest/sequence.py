"""Per-agent batch sequence numbers: which batches are new, which are repeats, and which are missing.

An agent numbers its batches 0, 1, 2... without gaps (``edge_agent/outbox.py``) and delivers them at
least once, so the centre sees repeats (a retried send, a replay after a worker restart) and, when
something went wrong on the way, holes. :class:`SeqTracker` keeps, per agent, the highest number
below which everything has arrived (``contiguous``) plus the few numbers seen above it, which is all it
takes to answer "seen before?" exactly and to list the holes. Its state is small, plain and
serialisable, so it is saved with the aggregation state it guards: a batch counts at most once.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

__all__ = ["SeqTracker"]


@dataclass
class SeqTracker:
    """Seen sequence numbers of one agent as ``contiguous`` plus disjoint half-open runs above it.

    Runs rather than single numbers: behind a hole that never fills (a batch lost for good) every later
    batch would otherwise add an entry; as runs, the state stays one pair per hole. :attr:`missing` is kept
    up to date by :meth:`add` (asked several times per message, it must not walk the runs); change the
    state only through :meth:`add` (or build a new tracker, e.g. :meth:`from_dict`)."""

    contiguous: int = 0  # every seq < contiguous has been seen
    runs: list[list[int]] = field(default_factory=list)  # sorted [start, end) runs, all above contiguous
    _missing: int = field(default=0, init=False, repr=False, compare=False)  # derived: see missing

    def __post_init__(self) -> None:
        self._missing = sum(start - end for (_, end), (start, _) in zip([[0, self.contiguous]] + self.runs, self.runs, strict=False))

    def seen(self, seq: int) -> bool:
        if seq < self.contiguous:
            return True
        if not self.runs:
            return False
        i = bisect_right(self.runs, [seq, float("inf")]) - 1
        return i >= 0 and self.runs[i][0] <= seq < self.runs[i][1]

    def add(self, seq: int) -> bool:
        """Record ``seq``; False if it was seen before (a duplicate: do not count it again)."""
        runs = self.runs
        if not runs:  # no hole: the usual case, in order or a repeat
            if seq == self.contiguous:
                self.contiguous = seq + 1
                return True
            if seq < self.contiguous:
                return False
        elif self.seen(seq):
            return False
        top = runs[-1][1] if runs else self.contiguous  # highest seen + 1
        self._missing += seq - top if seq >= top else -1  # skipped ahead: a hole of seq - top; else one filled
        i = bisect_right(runs, [seq, float("inf")])  # runs[:i] start at or before seq
        if i > 0 and runs[i - 1][1] == seq:  # extends the run before it
            runs[i - 1][1] = seq + 1
            i -= 1
        else:
            runs.insert(i, [seq, seq + 1])
        if i + 1 < len(runs) and runs[i + 1][0] == runs[i][1]:  # joins the run after it
            runs[i][1] = runs.pop(i + 1)[1]
        if runs and runs[0][0] == self.contiguous:  # the hole at the bottom closed
            self.contiguous = runs.pop(0)[1]
        return True

    def holes(self, limit: int = 100) -> list[tuple[int, int]]:
        """Missing ranges ``(first, last)`` below the highest seq seen, oldest first (at most ``limit``)."""
        out, expected = [], self.contiguous
        for start, end in self.runs[:limit]:
            out.append((expected, start - 1))
            expected = end
        return out

    @property
    def missing(self) -> int:
        """How many batches are missing below the highest seq seen (O(1): maintained by :meth:`add`)."""
        return self._missing

    @property
    def highest(self) -> int:
        """Highest sequence number seen (-1: none)."""
        return self.runs[-1][1] - 1 if self.runs else self.contiguous - 1

    def to_dict(self) -> dict:
        return {"contiguous": self.contiguous, "runs": [list(r) for r in self.runs]}

    @classmethod
    def from_dict(cls, d: dict) -> SeqTracker:
        return cls(int(d["contiguous"]), [[int(a), int(b)] for a, b in d["runs"]])
