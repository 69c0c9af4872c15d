"""The review workflow as pure state machines: every (state, action, role) is either in the table or refused."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.console.review import (
    ALERT_ACTIONS,
    ALERT_STATES,
    REVIEW_ACTIONS,
    ROLES,
    STATES,
    ReasonRequired,
    TransitionError,
    actions_for,
    alert_state,
    alert_step,
    month_state,
    step,
)

# The work plan's order, written out by hand: (state, action, role) -> next state, reason needed.
EXPECTED = {
    ("open", "submit", "plant"): ("municipal_review", False),
    ("returned", "submit", "plant"): ("municipal_review", True),
    ("accepted", "submit", "plant"): ("municipal_review", True),
    ("municipal_review", "accept", "municipal"): ("provincial_review", False),
    ("municipal_review", "escalate", "municipal"): ("provincial_review", True),
    ("municipal_review", "return", "municipal"): ("returned", True),
    ("provincial_review", "accept", "provincial"): ("national_review", False),
    ("provincial_review", "escalate", "provincial"): ("national_review", True),
    ("provincial_review", "return", "provincial"): ("returned", True),
    ("national_review", "accept", "national"): ("accepted", False),
    ("national_review", "return", "national"): ("returned", True),
}


@pytest.mark.parametrize("state,action,role", list(itertools.product(STATES, REVIEW_ACTIONS, ROLES)))
def test_every_state_action_role_is_allowed_exactly_as_the_table_says(state, action, role):
    want = EXPECTED.get((state, action, role))
    if want is None:
        with pytest.raises(TransitionError) as exc:
            step(state, action, role, reason="because")
        assert not isinstance(exc.value, ReasonRequired)
        return
    to, needs_reason = want
    assert step(state, action, role, reason="because").to == to
    if needs_reason:
        with pytest.raises(ReasonRequired):
            step(state, action, role, reason="  ")
    else:
        assert step(state, action, role).to == to


def test_refusals_say_why():
    with pytest.raises(TransitionError, match="'accept' in state 'provincial_review' is for the provincial role, not 'municipal'"):
        step("provincial_review", "accept", "municipal")
    with pytest.raises(TransitionError, match="'escalate' is not possible in state 'national_review'"):
        step("national_review", "escalate", "national", "no one above")
    with pytest.raises(TransitionError, match="'submit' is not possible in state 'municipal_review'"):
        step("municipal_review", "submit", "plant", "a correction during review")
    with pytest.raises(TransitionError, match="unknown review action"):
        step("open", "approve", "municipal")


def test_the_full_path_with_one_return_replays_to_accepted():
    history = [("submit", "plant"), ("accept", "municipal"), ("return", "provincial"), ("submit", "plant"),
               ("accept", "municipal"), ("escalate", "provincial"), ("accept", "national")]
    assert month_state(history) == "accepted"
    assert month_state(history[:3]) == "returned"
    with pytest.raises(TransitionError):  # an out-of-order history cannot be replayed
        month_state([("submit", "plant"), ("accept", "national")])


def test_what_each_role_may_do():
    assert actions_for("municipal_review", "municipal") == ["accept", "escalate", "return"]
    assert actions_for("national_review", "national") == ["accept", "return"]
    assert actions_for("municipal_review", "provincial") == []
    assert actions_for("open", "plant") == ["submit"]
    assert all(actions_for(s, "admin") == [] for s in STATES)  # administrators take no review action


@given(st.lists(st.tuples(st.sampled_from(REVIEW_ACTIONS), st.sampled_from(ROLES)), max_size=30))
def test_any_sequence_of_actions_stays_in_the_known_states(actions):
    """Applying arbitrary actions, keeping the allowed ones, never leaves STATES and never skips a level."""
    state = "open"
    for action, role in actions:
        try:
            t = step(state, action, role, reason="r")
        except TransitionError:
            continue
        assert t.to in STATES
        if state.endswith("_review") and t.to.endswith("_review"):  # up by exactly one level
            order = ["municipal_review", "provincial_review", "national_review"]
            assert order.index(t.to) == order.index(state) + 1
        state = t.to


@pytest.mark.parametrize("state,action", list(itertools.product(ALERT_STATES, ALERT_ACTIONS)))
def test_alert_actions(state, action):
    allowed = {("open", "acknowledge"): "acknowledged", ("open", "dismiss"): "dismissed",
               ("acknowledged", "dismiss"): "dismissed", ("open", "finding"): "finding",
               ("acknowledged", "finding"): "finding"}
    if (state, action) in allowed:
        assert alert_step(state, action, "municipal", "seen").to == allowed[(state, action)]
    else:
        with pytest.raises(TransitionError):
            alert_step(state, action, "municipal", "seen")


def test_alert_actions_need_a_reviewer_and_a_reason_to_dismiss_or_find():
    with pytest.raises(TransitionError, match="for reviewers"):
        alert_step("open", "acknowledge", "plant")
    with pytest.raises(ReasonRequired):
        alert_step("open", "dismiss", "provincial", "")
    with pytest.raises(ReasonRequired):
        alert_step("open", "finding", "provincial", " ")
    assert alert_state(["acknowledge", "finding"]) == "finding"


def test_verify_finds_a_removed_last_action_given_the_published_head(tmp_path):
    """Cutting the newest record off the end leaves a valid shorter chain; a head published earlier catches it."""
    from streams.archive.store import Archive

    a = Archive(tmp_path / "a.sqlite")
    a.append("review", "e1", "2026-02", {"action": "submit", "by": "p", "role": "plant", "reason": ""})
    last = a.append("review", "e1", "2026-02", {"action": "accept", "by": "m", "role": "municipal", "reason": ""})
    assert a.verify(head=last.hash) == []
    a.db.execute("DELETE FROM records WHERE seq=?", (last.seq,))
    assert a.verify() == []
    assert a.verify(head=last.hash) == [f"head {last.hash} is not in the chain (versions or records were cut off "
                                        f"its end)"]


def test_verify_finds_an_altered_or_missing_evidence_file(tmp_path):
    from streams.archive.store import Archive

    a = Archive(tmp_path / "a.sqlite")
    sha = a.put_blob(b"%PDF-1.4 lab report")
    assert a.put_blob(b"%PDF-1.4 lab report") == sha  # stored once
    rec = a.append("evidence", "e1", "2026-02", {"sha256": sha, "name": "lab.pdf"})
    assert a.verify() == []
    a.db.execute("UPDATE blobs SET data=? WHERE sha256=?", (b"%PDF-1.4 other", sha))
    assert a.verify() == [f"seq {rec.seq} (evidence e1/2026-02): evidence file {sha} does not match its sha256 (altered)"]
    a.db.execute("DELETE FROM blobs")
    assert a.verify() == [f"seq {rec.seq} (evidence e1/2026-02): evidence file {sha} is missing"]
