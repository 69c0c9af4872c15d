"""The QA state of the monitors as a pure kernel: which hours of which analyser are out of control (失控), and why.

A QA test (a daily zero or span check, a comparison test / RATA, a linearity check) is an *event* of one analyser
(a channel row) at one instant, passed or failed under a QA policy (:mod:`streams.kernels.qa` judges it). The state
of an analyser in an hour is set by the last event of each kind at or before that hour:

* the last one **failed**: the analyser is out of control, from the hour of the failed test until the hour of the
  next passing test of the same kind (that hour is in control again) [HJ75-OOC-PERIOD, P75-B-OOC];
* the last one **passed** but its validity ran out (``due_ns``, the time the next test of that kind was due, plus
  the policy's grace period): the test is *overdue*; where the policy says so (:class:`Due`), the analyser is out of
  control until a test of that kind passes [P75-B-2.1.5, P75-B-2.2.4, P75-B-2.3.3; China: P-QA-OVERDUE-CN];
* no event of that kind yet: nothing is known, nothing is gated. QA is tracked from an analyser's first record on.

Hours are UTC clock hours (``hour0_ns`` on an hour boundary): an event at 08:40 belongs to the hour 08:00-09:00,
which is out of control if the event failed, and in control if it passed (``P-QA-HOURS``). Several events of one kind
in one hour: the last one counts (a failed check corrected and passed within the hour opens no period).

Which hours of a *source* follow (:func:`source_state`): the hourly CO2 mass is concentration x flow, so an analyser
out of control makes the part it feeds invalid (``affects_conc``, ``affects_flow`` per channel: CO2 the
concentration, flow or velocity the flow, moisture both where the dry basis needs it). O2 feeds neither part of the
CO2 mass; its state is reported, not gated [P-QA-PARTS].

Everything is numpy over (channel, kind, hour) at once: no loop over events or hours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .aggregate import HOUR_NS

__all__ = ["KINDS", "NEVER", "REASONS", "SCHEDULES", "ChannelState", "Due", "Schedule", "channel_state",
           "get_schedule", "source_state", "step_factor"]

#: Kinds of QA event, in the order of their reason codes.
KINDS = ("zero_drift", "span_drift", "comparison", "linearity")
Kind = Literal["zero_drift", "span_drift", "comparison", "linearity"]
#: Reason code of an out-of-control hour: 0 in control (or unknown); a failed test of kind k is 1 + k, an overdue one
#: 1 + len(KINDS) + k. A lower code wins where several apply (a failure is reported before an overdue test).
REASONS: Mapping[int, str] = MappingProxyType(
    {0: "in_control"} | {1 + k: f"{kind}_failed" for k, kind in enumerate(KINDS)}
    | {1 + len(KINDS) + k: f"{kind}_overdue" for k, kind in enumerate(KINDS)})
#: ``due_ns`` of a test that never expires.
NEVER = np.iinfo(np.int64).max
_NONE = np.uint8(255)


@dataclass(frozen=True)
class Due:
    """When the next test of one kind is due after a passing one, and what an overdue test does.

    The deadline is ``hours`` clock hours after the test, or the end of the ``months``-th calendar month after it,
    or the end of the ``quarters``-th calendar quarter after the test's quarter (local calendar of the entity);
    ``quarters_if_ra_at_most`` = (RA limit [%], quarters) lengthens it for a comparison test whose relative accuracy
    is at most the limit (Part 75: annual instead of semiannual RATA). ``grace_h`` clock hours are added.
    ``invalidates``: an overdue test puts the analyser out of control; otherwise it is only reported.
    """

    hours: float | None = None
    months: int | None = None
    quarters: int | None = None
    quarters_if_ra_at_most: tuple[float, int] | None = None
    grace_h: float = 0.0
    invalidates: bool = False
    source: str = ""
    confidence: Literal["P", "S", "U"] = "U"


@dataclass(frozen=True)
class Schedule:
    """A regime's test frequencies per kind of test (:data:`KINDS`); a kind it does not schedule is absent."""

    name: str
    due: Mapping[str, Due]

    def invalidates(self) -> NDArray[np.bool_]:
        """Per kind (:data:`KINDS` order): an overdue test of that kind invalidates the data."""
        return np.array([self.due[k].invalidates if k in self.due else False for k in KINDS])


def _cn() -> Schedule:
    drift = Due(hours=24.0, invalidates=True, source="HJ75-CAL-24H, P-QA-OVERDUE-CN", confidence="U")
    return Schedule("cn-hj75", MappingProxyType({
        "zero_drift": drift, "span_drift": drift,
        # Periodic verification against the reference method: every 6 months for analysers that calibrate
        # themselves (3 without). Overdue is reported (an alert), not gated: no text read says it invalidates.
        "comparison": Due(months=6, invalidates=False, source="HJ75-PERIODIC", confidence="U")}))


def _us() -> Schedule:
    daily = Due(hours=26.0, invalidates=True, source="P75-B-2.1.5", confidence="U")
    return Schedule("us-part75", MappingProxyType({
        "zero_drift": daily, "span_drift": daily,
        "linearity": Due(quarters=1, grace_h=168.0, invalidates=True, source="P75-B-2.2.4", confidence="U"),
        "comparison": Due(quarters=2, quarters_if_ra_at_most=(7.5, 4), grace_h=720.0, invalidates=True,
                          source="P75-B-2.3.1, P75-B-2.3.3", confidence="U")}))


def _eu() -> Schedule:
    # QAL3 frequency is set per AMS by the operator; the AST is annual and, overdue, is reported, not gated.
    return Schedule("eu-en14181", MappingProxyType({
        "comparison": Due(months=12, invalidates=False, source="EN14181", confidence="S")}))


SCHEDULES: Mapping[str, Schedule] = MappingProxyType({s.name: s for s in (_cn(), _eu(), _us())})


def get_schedule(name: str = "cn-hj75") -> Schedule:
    """The QA test schedule of the named QA policy (``cn-hj75`` default, ``us-part75``, ``eu-en14181``).

    Parameters
    ----------
    name : str
        QA policy name (:data:`streams.kernels.qa.POLICIES`).

    Returns
    -------
    Schedule
        Test frequencies, grace periods and whether an overdue test invalidates data.

    References
    ----------
    docs/sources.md: HJ75-CAL-24H, HJ75-PERIODIC, P-QA-OVERDUE-CN, P75-B-2.1.5, P75-B-2.2.4, P75-B-2.3.1,
    P75-B-2.3.3, EN14181.
    """
    try:
        return SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown QA schedule {name!r}; known: {', '.join(SCHEDULES)}") from None


@dataclass(frozen=True)
class ChannelState:
    """Per channel and hour: ``reason`` (:data:`REASONS` code, 0 in control) and ``out_of_control`` (reason > 0)."""

    reason: NDArray[np.uint8]

    @property
    def out_of_control(self) -> NDArray[np.bool_]:
        return np.asarray(self.reason > 0)


def channel_state(channel: ArrayLike, kind: ArrayLike, time_ns: ArrayLike, passed: ArrayLike, due_ns: ArrayLike,
                  invalidates: ArrayLike, n_channels: int, hour0_ns: int, n_hours: int) -> ChannelState:
    """Out-of-control hours of many analysers from their QA events, vectorised over channels, kinds and hours.

    Parameters
    ----------
    channel : array_like of int, shape (events,)
        Row (0 .. n_channels - 1) of the analyser each event is about.
    kind : array_like of int, shape (events,)
        Index into :data:`KINDS`.
    time_ns : array_like of int, shape (events,)
        When the test was completed [ns since the epoch, UTC].
    passed : array_like of bool, shape (events,)
        The policy's verdict.
    due_ns : array_like of int, shape (events,)
        When the next test of the kind is due after a passing one, grace period included [ns, UTC];
        :data:`NEVER` where it never is. Ignored for failed tests.
    invalidates : array_like of bool, shape (len(KINDS),)
        Per kind: an overdue test puts the analyser out of control (:meth:`Schedule.invalidates`).
    n_channels : int
        Channel rows [1].
    hour0_ns : int
        Start of the first hour of the grid [ns, UTC], on an hour boundary.
    n_hours : int
        Hours of the grid [1].

    Returns
    -------
    ChannelState
        ``reason`` of shape (n_channels, n_hours).

    References
    ----------
    docs/sources.md: HJ75-OOC-PERIOD, P75-B-OOC, P75-B-2.1.5, P75-B-2.2.4, P75-B-2.3.3, P-QA-HOURS,
    P-QA-OVERDUE-CN.
    """
    if hour0_ns % HOUR_NS:
        raise ValueError(f"hour0_ns {hour0_ns} is not on an hour boundary")
    ch, kd = np.asarray(channel, np.int64), np.asarray(kind, np.int64)
    t, ok, due = np.asarray(time_ns, np.int64), np.asarray(passed, bool), np.asarray(due_ns, np.int64)
    inval = np.asarray(invalidates, bool)
    if not (ch.shape == kd.shape == t.shape == ok.shape == due.shape):
        raise ValueError("channel, kind, time_ns, passed and due_ns must have one entry per event")
    if ch.size and (ch.min() < 0 or ch.max() >= n_channels or kd.min() < 0 or kd.max() >= len(KINDS)):
        raise ValueError(f"an event names a channel outside 0..{n_channels - 1} or a kind outside 0..{len(KINDS) - 1}")
    n_series = n_channels * len(KINDS)
    hours = hour0_ns + np.arange(n_hours, dtype=np.int64) * HOUR_NS
    if not ch.size or not n_hours:
        return ChannelState(np.zeros((n_channels, n_hours), np.uint8))
    ev_hour = t // HOUR_NS * HOUR_NS
    base = min(int(ev_hour.min()), hour0_ns)
    span = (max(int(ev_hour.max()), int(hours[-1])) - base) // HOUR_NS + 1
    series = ch * len(KINDS) + kd
    order = np.lexsort((t, series))  # by series, then time: the last event of an hour is the latest
    key = series[order] * span + (ev_hour[order] - base) // HOUR_NS
    q_series = np.repeat(np.arange(n_series, dtype=np.int64), n_hours)
    q_key = q_series * span + np.tile((hours - base) // HOUR_NS, n_series)
    j = np.searchsorted(key, q_key, side="right") - 1  # last event at or before each hour, in sorted order
    known = j >= 0
    e = order[np.maximum(j, 0)]
    known &= series[e] == q_series  # the event found belongs to this (channel, kind)
    q_kind = q_series % len(KINDS)
    failed = known & ~ok[e]
    overdue = known & ok[e] & (np.tile(hours, n_series) >= due[e]) & inval[q_kind]
    code = np.where(failed, 1 + q_kind, np.where(overdue, 1 + len(KINDS) + q_kind, _NONE)).astype(np.uint8)
    code = code.reshape(n_channels, len(KINDS), n_hours).min(axis=1)
    return ChannelState(np.where(code == _NONE, 0, code).astype(np.uint8))


def source_state(reason: ArrayLike, source_of_channel: ArrayLike, affects_conc: ArrayLike, affects_flow: ArrayLike,
                 n_sources: int) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.uint8]]:
    """Which parts of each source's hourly CO2 mass are invalid because an analyser feeding them is out of control.

    Parameters
    ----------
    reason : array_like of uint8, shape (channels, hours)
        :attr:`ChannelState.reason`.
    source_of_channel : array_like of int, shape (channels,)
        Source row of each channel.
    affects_conc, affects_flow : array_like of bool, shape (channels,)
        The channel feeds the standard dry CO2 concentration / the standard dry flow.
    n_sources : int
        Source rows [1].

    Returns
    -------
    conc_out, flow_out : ndarray of bool, shape (n_sources, hours)
        The concentration / the flow of the hour is out of control.
    reason : ndarray of uint8, shape (n_sources, hours)
        The lowest reason code among the channels that make the hour out of control (0: in control).

    References
    ----------
    docs/sources.md: P-QA-PARTS.
    """
    r = np.asarray(reason, np.uint8)
    src = np.asarray(source_of_channel, np.int64)
    conc_ch, flow_ch = np.asarray(affects_conc, bool), np.asarray(affects_flow, bool)
    n_hours = r.shape[1] if r.ndim == 2 else 0
    conc = np.zeros((n_sources, n_hours), bool)
    flow = np.zeros((n_sources, n_hours), bool)
    np.logical_or.at(conc, src[conc_ch], r[conc_ch] > 0)
    np.logical_or.at(flow, src[flow_ch], r[flow_ch] > 0)
    code = np.full((n_sources, n_hours), _NONE, np.uint8)
    gating = conc_ch | flow_ch
    np.minimum.at(code, src[gating], np.where(r[gating] > 0, r[gating], _NONE).astype(np.uint8))
    return conc, flow, np.where(code == _NONE, 0, code).astype(np.uint8)


def step_factor(source: ArrayLike, from_ns: ArrayLike, factor: ArrayLike, n_sources: int, hour0_ns: int,
                n_hours: int) -> NDArray[np.float64]:
    """Per source and hour, the factor of the latest adjustment in force: a step function of time.

    A passed comparison test or traverse can change a figure from a stated date (a new Kv scales the flow computed
    from velocity, a bias adjustment factor multiplies the flow). Hours starting before the date keep their figures
    (1.0); an hour starting at or after it takes the factor of the latest adjustment whose date it has reached.

    Parameters
    ----------
    source : array_like of int, shape (adjustments,)
        Source row of each adjustment.
    from_ns : array_like of int, shape (adjustments,)
        When each takes effect [ns, UTC].
    factor : array_like of float, shape (adjustments,)
        The factor it applies from then on [1], relative to the site file's configuration.
    n_sources : int
        Source rows [1].
    hour0_ns : int
        Start of the first hour [ns, UTC], on an hour boundary.
    n_hours : int
        Hours [1].

    Returns
    -------
    ndarray of float, shape (n_sources, n_hours)
        The factor in force [1].

    References
    ----------
    docs/sources.md: P75-A-7.6 (a BAF applies until the next test), HJ75-KV, P-QA-APPLY-FROM.
    """
    src, t, f = np.asarray(source, np.int64), np.asarray(from_ns, np.int64), np.asarray(factor, np.float64)
    out = np.ones((n_sources, n_hours))
    if not src.size or not n_hours:
        return out
    base = min(int(t.min()) // HOUR_NS * HOUR_NS, hour0_ns)
    first = -((base - t) // HOUR_NS)  # the first hour starting at or after each date, in hours from base
    span = max(int(first.max()), (hour0_ns - base) // HOUR_NS + n_hours) + 1
    order = np.lexsort((t, src))
    key = src[order] * span + first[order]
    q_src = np.repeat(np.arange(n_sources, dtype=np.int64), n_hours)
    q_hour = (hour0_ns - base) // HOUR_NS + np.arange(n_hours, dtype=np.int64)
    j = np.searchsorted(key, q_src * span + np.tile(q_hour, n_sources), side="right") - 1
    e = order[np.maximum(j, 0)]
    known = (j >= 0) & (src[e] == q_src)
    return np.where(known, f[e], 1.0).reshape(n_sources, n_hours)
