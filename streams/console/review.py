"""The monthly review as pure state machines: who may do what, in which state, and what it leads to. No I/O.

**A plant-month** (one entity's local month) starts ``open``: the plant deposits its accounting report and evidence
files. Submitting freezes them as version 0 and sends the month to the municipal reviewer. The work plan's
national-provincial-municipal technical review then goes up one level at a time (docs/console.md):

============================  ==========  ===========  ====================  ===============
state                         action      who          next state            reason needed
============================  ==========  ===========  ====================  ===============
open                          submit      plant        municipal_review      no (version 0)
returned, accepted            submit      plant        municipal_review      yes (correction)
municipal_review              accept      municipal    provincial_review     no
municipal_review              escalate    municipal    provincial_review     yes
municipal_review              return      municipal    returned              yes
provincial_review             accept      provincial   national_review       no
provincial_review             escalate    provincial   national_review       yes
provincial_review             return      provincial   returned              yes
national_review               accept      national     accepted              no
national_review               return      national     returned              yes
============================  ==========  ===========  ====================  ===============

*Accept* says this level's check passed and hands the month to the next level; *escalate* also hands it up, but
with a question this level could not settle, which the next level sees flagged; *return* sends it back to the
plant with a reason, and the plant's correction (a new version, with its own reason) starts again at the
municipal level. The national level has no one to escalate to. A month under review cannot be corrected until
a reviewer returns it (the reviewer would otherwise be looking at a moving version). Administrators manage
accounts and take no review action (separation of duties).

**An alert** of the month is ``open`` until a reviewer acknowledges it (seen, being looked at), dismisses it with
a reason (explained, no consequence) or turns it into a finding on the month's review (with a reason).
Dismissed and finding are final; a later revision of the alert is a new alert state only through the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ALERT_ACTIONS",
    "ALERT_STATES",
    "LEVELS",
    "REVIEWER_ROLES",
    "REVIEW_ACTIONS",
    "ROLES",
    "STATES",
    "AlertTransition",
    "ReasonRequired",
    "Transition",
    "TransitionError",
    "actions_for",
    "alert_actions_for",
    "alert_state",
    "alert_step",
    "month_state",
    "step",
]

ROLES = ("plant", "municipal", "provincial", "national", "admin")
LEVELS = ("municipal", "provincial", "national")  # review order
REVIEWER_ROLES = LEVELS
STATES = ("open", "municipal_review", "provincial_review", "national_review", "returned", "accepted")
REVIEW_ACTIONS = ("submit", "accept", "escalate", "return")
ALERT_STATES = ("open", "acknowledged", "dismissed", "finding")
ALERT_ACTIONS = ("acknowledge", "dismiss", "finding")


class TransitionError(ValueError):
    """An action refused in the current state or for the role (the message says which and why)."""


class ReasonRequired(TransitionError):
    """The action is allowed but needs a reason, and none was given."""


@dataclass(frozen=True)
class Transition:
    state: str
    action: str
    role: str
    to: str
    needs_reason: bool


def _table() -> dict[tuple[str, str, str], Transition]:
    rows = [Transition("open", "submit", "plant", "municipal_review", False),
            Transition("returned", "submit", "plant", "municipal_review", True),
            Transition("accepted", "submit", "plant", "municipal_review", True)]
    for level, up in zip(LEVELS, (*LEVELS[1:], None), strict=True):
        here = f"{level}_review"
        rows.append(Transition(here, "accept", level, f"{up}_review" if up else "accepted", False))
        if up:
            rows.append(Transition(here, "escalate", level, f"{up}_review", True))
        rows.append(Transition(here, "return", level, "returned", True))
    return {(t.state, t.action, t.role): t for t in rows}


#: Every allowed (state, action, role); anything else is refused.
TRANSITIONS = _table()


def step(state: str, action: str, role: str, reason: str = "") -> Transition:
    """The transition ``action`` by ``role`` makes from ``state``, or :class:`TransitionError` saying why not."""
    if state not in STATES:
        raise TransitionError(f"unknown review state {state!r}")
    if action not in REVIEW_ACTIONS:
        raise TransitionError(f"unknown review action {action!r}; one of {', '.join(REVIEW_ACTIONS)}")
    t = TRANSITIONS.get((state, action, role))
    if t is None:
        who = [r for (s, a, r) in TRANSITIONS if s == state and a == action]
        if who:
            raise TransitionError(f"{action!r} in state {state!r} is for the {who[0]} role, not {role!r}")
        raise TransitionError(f"{action!r} is not possible in state {state!r}"
                              + (f" (possible: {', '.join(sorted({a for (s, a, _) in TRANSITIONS if s == state}))})"
                                 if any(s == state for (s, _, _) in TRANSITIONS) else ""))
    if t.needs_reason and not reason.strip():
        raise ReasonRequired(f"{action!r} in state {state!r} needs a reason")
    return t


def actions_for(state: str, role: str) -> list[str]:
    """What ``role`` may do in ``state`` (for the pages: the buttons to show)."""
    return [a for a in REVIEW_ACTIONS if (state, a, role) in TRANSITIONS]


def month_state(actions: list[tuple[str, str]]) -> str:
    """The state after the month's review actions (``(action, role)``, oldest first), replayed through
    :func:`step`; an out-of-order history raises :class:`TransitionError` (it cannot have been written here)."""
    state = "open"
    for action, role in actions:
        state = step(state, action, role, reason="(replayed)").to
    return state


@dataclass(frozen=True)
class AlertTransition:
    state: str
    action: str
    to: str
    needs_reason: bool


ALERT_TRANSITIONS = {(t.state, t.action): t for t in (
    AlertTransition("open", "acknowledge", "acknowledged", False),
    AlertTransition("open", "dismiss", "dismissed", True),
    AlertTransition("acknowledged", "dismiss", "dismissed", True),
    AlertTransition("open", "finding", "finding", True),
    AlertTransition("acknowledged", "finding", "finding", True))}


def alert_step(state: str, action: str, role: str, reason: str = "") -> AlertTransition:
    """An alert action by ``role`` (reviewers only) from ``state``, or :class:`TransitionError`."""
    if role not in REVIEWER_ROLES:
        raise TransitionError(f"alert actions are for reviewers, not the {role!r} role")
    if action not in ALERT_ACTIONS:
        raise TransitionError(f"unknown alert action {action!r}; one of {', '.join(ALERT_ACTIONS)}")
    t = ALERT_TRANSITIONS.get((state, action))
    if t is None:
        raise TransitionError(f"{action!r} is not possible on an alert that is {state!r}")
    if t.needs_reason and not reason.strip():
        raise ReasonRequired(f"{action!r} needs a reason")
    return t


def alert_actions_for(state: str, role: str) -> list[str]:
    return [a for a in ALERT_ACTIONS if role in REVIEWER_ROLES and (state, a) in ALERT_TRANSITIONS]


def alert_state(actions: list[str]) -> str:
    """The state after an alert's actions, oldest first."""
    state = "open"
    for action in actions:
        state = ALERT_TRANSITIONS[(state, action)].to if (state, action) in ALERT_TRANSITIONS else _bad(state, action)
    return state


def _bad(state: str, action: str) -> str:
    raise TransitionError(f"{action!r} is not possible on an alert that is {state!r}")
