"""The edge agent's one retry rule (edge_agent/backoff.py): 1 s doubling to 60 s, back to 1 s after a success."""

from __future__ import annotations

import pytest

from edge_agent.backoff import Backoff


def test_delays_double_up_to_the_cap_and_reset():
    retry = Backoff()
    # 1, 2, 4, 8, 16, 32, then 64 is capped to 60, and stays there
    assert [retry.next() for _ in range(8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    retry.reset()
    assert retry.next() == 1.0


def test_other_bounds_and_refusals():
    retry = Backoff(0.5, 3.0)
    assert [retry.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]  # 4.0 capped to 3.0
    for first, cap in ((0.0, 60.0), (-1.0, 60.0), (61.0, 60.0)):
        with pytest.raises(ValueError, match="0 < first_s <= max_s"):
            Backoff(first, cap)
