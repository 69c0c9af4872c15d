"""The gateway as a datalogger: answers to the commands a platform sends (pure; the uplink client sends them).

HJ 212-2017 (HJ212-ANS; codes HJ212-T9, HJ212-T6, HJ212-T7): a request is answered with a request answer (9011,
``QnRtn``), then, where it asks for data, the data upload with the request's QN, then an execution result (9012,
``ExeRtn``); a notification (2012, 2022) with a notification answer (9013). What the gateway does:

=========  ==========================================================  =================================
CN         meaning                                                     answer
=========  ==========================================================  =================================
1000       set OverTime / ReCount                                      QnRtn 1, ExeRtn 1 (3 if out of range)
1011       get the site time                                           QnRtn 1, 1011 SystemTime, ExeRtn 1
1012       set the site time                                           QnRtn 1, ExeRtn 3: the gateway's clock follows
                                                                       NTP and its readings' times are not moved
1061/1062  get / set RtdInterval (30-3600 s)                           QnRtn 1, [1061 RtdInterval], ExeRtn 1 (3)
1063/1064  get / set MinInterval                                       QnRtn 1, [1063 MinInterval], ExeRtn 1 for 1
                                                                       minute, 3 otherwise (minutes only)
1072       set the site password (``NewPW``)                            QnRtn 1, ExeRtn 1; kept in the state file
2011       start real-time data                                        QnRtn 1; 2011 uploads follow
2012       stop real-time data (notification)                          9013
2021       equipment running state                                     QnRtn 1, ExeRtn 100 (no data)
2022       stop equipment state (notification)                         9013
2031-2061  history request (BeginTime/EndTime)                         QnRtn 1, ExeRtn 100: the gateway keeps no history
                                                                       beyond its queue of unacknowledged data
3011-3024  control commands (calibrate, sample, blow back...)          QnRtn 2 (refused), ExeRtn 3: the gateway has no
                                                                       sampler or analyser to drive
other      unknown command                                             QnRtn 8 (CN error)
=========  ==========================================================  =================================

A command with another MN is answered QnRtn 4, with a wrong password QnRtn 3 (HJ212-T7). The refusals (1012, 1064,
history, control) are the project's choices, docs/sources.md HJ212-SITE-CMDS.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from schemas.hj212 import Frame, Version, build_frame, build_response, format_time, make_flag

__all__ = ["SiteState", "answer"]

#: ExeRtn (HJ212-T6) and QnRtn (HJ212-T7) values used here.
EXE_OK, EXE_CONDITION, EXE_NO_DATA = 1, 3, 100
QN_READY, QN_REFUSED, QN_PW, QN_MN, QN_CN = 1, 2, 3, 4, 8

_HISTORY = frozenset({"2031", "2041", "2051", "2061"})


@dataclass(frozen=True)
class SiteState:
    """What a platform may set on the gateway-as-datalogger; persisted by the uplink across restarts."""

    password: str
    overtime_s: float
    recount: int
    rtd_interval_s: int
    min_interval_min: int = 1
    realtime: bool = True


def _set_link(p: Mapping[str, object], state: SiteState) -> SiteState | None:
    """1000: OverTime and ReCount, each 1..99."""
    over, count = p.get("OverTime"), p.get("ReCount")
    if isinstance(over, int) and 0 < over <= 99 and isinstance(count, int) and 0 < count <= 99:
        return replace(state, overtime_s=float(over), recount=count)
    return None


def _set_rtd_interval(p: Mapping[str, object], state: SiteState) -> SiteState | None:
    """1062: RtdInterval, 30..3600 s (HJ212-T4)."""
    v = p.get("RtdInterval")
    return replace(state, rtd_interval_s=v) if isinstance(v, int) and 30 <= v <= 3600 else None


def _set_password(p: Mapping[str, object], state: SiteState) -> SiteState | None:
    """1072: NewPW, 1..64 printable characters without the frame's separators ; and =."""
    new_pw = p.get("NewPW")
    if isinstance(new_pw, str) and 0 < len(new_pw) <= 64 and new_pw.isprintable() and ";" not in new_pw \
            and "=" not in new_pw:
        return replace(state, password=new_pw)
    return None


_SETTINGS: dict[str, Callable[[Mapping[str, object], SiteState], SiteState | None]] = {
    "1000": _set_link, "1062": _set_rtd_interval, "1072": _set_password}

_QUERIES: dict[str, Callable[[SiteState], str]] = {"1061": lambda s: f"RtdInterval={s.rtd_interval_s}",
                                                   "1063": lambda s: f"MinInterval={s.min_interval_min}"}


def answer(frame: Frame, state: SiteState, *, mn: str, version: Version, now: Callable[[], datetime], tz
           ) -> tuple[list[bytes], SiteState]:
    """The frames that answer one command from the platform, in order, and the state after it."""
    cn, qn = frame.cn, frame.qn or ""

    def resp(code: str, result: int | None = None) -> bytes:
        return build_response(code, qn=qn, pw=state.password, mn=mn, result=result, version=version)

    def upload(cp: str) -> bytes:  # the data part of a request's answer: same QN, no answer asked
        return build_frame(st=frame.st, cn=cn, pw=state.password, mn=mn, qn=qn, flag=make_flag(version, ack=False),
                           cp=cp)

    if frame.mn != mn:
        return [resp("9011", QN_MN)], state
    if frame.pw is None or not hmac.compare_digest(frame.pw.encode(), state.password.encode()):
        return [resp("9011", QN_PW)], state
    p = frame.data.params
    pol = f"PolId={p['PolId']};" if isinstance(p.get("PolId"), str) else ""
    ready = resp("9011", QN_READY)
    if cn in _SETTINGS:  # 1000, 1062, 1072: set a value, or refuse one out of range
        new = _SETTINGS[cn](p, state)
        return [ready, resp("9012", EXE_CONDITION if new is None else EXE_OK)], state if new is None else new
    if cn == "1011":
        return [ready, upload(f"{pol}SystemTime={format_time(now(), tz)}"), resp("9012", EXE_OK)], state
    if cn == "1012":
        return [ready, resp("9012", EXE_CONDITION)], state
    if cn in _QUERIES:  # 1061, 1063: the value asked for
        return [ready, upload(_QUERIES[cn](state)), resp("9012", EXE_OK)], state
    if cn == "1064":
        # the gateway reports 1-minute data; another interval (of HJ212_MIN_INTERVALS) is refused, not resampled
        return [ready, resp("9012", EXE_OK if p.get("MinInterval") == 1 else EXE_CONDITION)], state
    if cn == "2011":
        return [ready], replace(state, realtime=True)
    if cn == "2012":
        return [resp("9013")], replace(state, realtime=False)
    if cn == "2022":
        return [resp("9013")], state
    if cn == "2021" or cn in _HISTORY:  # no run-state data to report, no history beyond the queue
        return [ready, resp("9012", EXE_NO_DATA)], state
    if cn.startswith("3"):
        return [resp("9011", QN_REFUSED), resp("9012", EXE_CONDITION)], state
    return [resp("9011", QN_CN)], state
