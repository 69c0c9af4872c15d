"""Validity rules as named, configurable policies. China (HJ 75/76/212) is the default.

Sources (ids in ``docs/sources.md``):

* minute: HJ 212-2017 App. D Eq. (23): mean of valid instantaneous values sampled at most every 5 s,
  valid with n >= 12 [P]; HJ 76-2017 App. B: one data set at least every 5 s [S].
* hour: China HJ 212 App. D Eq. (24), HJ 75/76: k >= 45 valid minutes [P/S]. EU MRR 2018/2066 Art. 44:
  pro rata from the remaining points if >= 80 % of the maximum possible points exist, counted at the channel's
  real sampling interval [MRR-44, P]. US 40 CFR 75.10(d): at least one valid point in each 15-minute quadrant in
  which the unit operated; in an hour with QA tests or maintenance, two valid points 15 minutes apart [P75-10d, P].
* day: HJ 212 App. D Eq. (25), HJ 76 App. B: m >= 20 valid hours [P/S].
* month: HJ 76-2017 App. B: >= 25 valid days, >= 23 in February [S].
* flags: HJ 212-2017 App. C notes: an aggregate is flagged N when more than 75 % of its parts are
  normal, otherwise D [P]. The EU and US rules define no flag; the same rule is used.

A minute is valid with at least 12 valid instantaneous values (HJ 212 App. D Eq. 23, ``docs/sources.md``
HJ212-D23); "sampled at most every 5 s" is a requirement on the acquisition, not a pattern each minute must
show, so 1-Hz data with a dropout or 5-s data jittered around the slot edges still give valid minutes. The
stricter reading, each of the twelve 5-s slots holding a valid value, is the opt-in policy
``cn-hj75-slots``. Whether the *source* runs is never read from these flags: F means the instrument
stopped (HJ 212-2017 Table 8), and operation is judged from process evidence (:mod:`.emissions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from schemas.quantities import Flag

from .standardise import REFERENCE_CONDITIONS, ReferenceConditions

__all__ = ["POLICIES", "DayRule", "HourRule", "MinuteRule", "MonthRule", "ValidityPolicy", "get_policy"]


@dataclass(frozen=True)
class MinuteRule:
    """Samples -> minute."""

    min_valid_samples: int
    slot_s: int = 5  # width of the spacing slots [s]; 60 must be a multiple
    min_valid_slots: int = 0  # opt-in: slots that must each hold a valid sample (12 = one in every 5 s)


@dataclass(frozen=True)
class HourRule:
    """Minutes -> hour.

    ``pro_rata_points`` (MRR Art. 44 [MRR-44]) counts the points possible at the channel's real sampling interval:
    ``sample_interval_s`` when configured, else derived from the hour's own data as the readings (of any flag) per
    minute that holds readings, times 60 [P-EU-POINTS]. A minute without any reading is a missing minute, so an
    analyser out of operation for part of the hour loses those points; an interval longer than a minute cannot be
    told from a gap this way and must be configured. ``operating_quadrants`` (§75.10(d) [P75-10d]) also applies the
    QA-hour exception when ``qa_two_points``: an hour holding calibration (C) or maintenance (M) readings, in which
    the source ran in more than one quadrant, is valid with two valid points at least 15 minutes apart.
    """

    method: Literal["min_valid_minutes", "pro_rata_points", "operating_quadrants"]
    min_valid_minutes: int = 45  # method "min_valid_minutes"
    min_point_fraction: float = 0.8  # method "pro_rata_points": share of the possible points
    sample_interval_s: float | None = None  # method "pro_rata_points": the channel's sampling interval; None: derived
    qa_two_points: bool = True  # method "operating_quadrants": the §75.10(d) QA-hour exception


@dataclass(frozen=True)
class DayRule:
    min_valid_hours: int = 20


@dataclass(frozen=True)
class MonthRule:
    min_valid_days: int = 25
    min_valid_days_february: int = 23


@dataclass(frozen=True)
class ValidityPolicy:
    name: str
    minute: MinuteRule
    hour: HourRule
    day: DayRule | None
    month: MonthRule | None
    reference: ReferenceConditions
    normal_share: float = 0.75  # aggregate flagged N when strictly more than this share of parts is N
    non_normal_flag: Flag = Flag.D
    instrument_stopped_share: float = 0.5  # an instrument is stopped in a period when more than this share of its
    #                                        readings is F (for the indicators; never decides the source's operation)
    source: str = field(default="", compare=False)


POLICIES: dict[str, ValidityPolicy] = {
    p.name: p
    for p in (
        ValidityPolicy(
            "cn-hj75",
            MinuteRule(min_valid_samples=12),
            HourRule("min_valid_minutes", min_valid_minutes=45),
            DayRule(20),
            MonthRule(25, 23),
            REFERENCE_CONDITIONS["hj212"],
            source="HJ 212-2017 App. C, D; HJ 75-2017; HJ 76-2017 App. B",
        ),
        ValidityPolicy(
            "cn-hj75-slots",
            MinuteRule(min_valid_samples=12, slot_s=5, min_valid_slots=12),
            HourRule("min_valid_minutes", min_valid_minutes=45),
            DayRule(20),
            MonthRule(25, 23),
            REFERENCE_CONDITIONS["hj212"],
            source="cn-hj75 with one valid value in each 5-s slot of a minute (project option)",
        ),
        ValidityPolicy(
            "eu-mrr",
            MinuteRule(min_valid_samples=1),
            HourRule("pro_rata_points", min_point_fraction=0.8),
            None,
            None,
            REFERENCE_CONDITIONS["eu-mrr"],
            source="Regulation (EU) 2018/2066 Art. 44, 45",
        ),
        ValidityPolicy(
            "us-part75",
            MinuteRule(min_valid_samples=1),
            HourRule("operating_quadrants"),
            None,
            None,
            REFERENCE_CONDITIONS["us-part98"],
            source="40 CFR 75.10(d)",
        ),
    )
}


def get_policy(name: str) -> ValidityPolicy:
    """The validity policy of a regime by name.

    Parameters
    ----------
    name : str
        A key of :data:`POLICIES` (``cn-hj75``, the default, ``cn-hj75-slots``, ``eu-mrr``, ``us-part75``).

    Returns
    -------
    ValidityPolicy
        The minute, hour, day and month rules of that regime.

    Raises
    ------
    KeyError
        An unknown name, listing the known ones.

    References
    ----------
    docs/sources.md: HJ212-D23, HJ212-D24, HJ212-D25, HJ76-B (China); MRR-44 (EU); P75-10d (US).
    """
    try:
        return POLICIES[name]
    except KeyError:
        raise KeyError(f"unknown validity policy {name!r}; known: {sorted(POLICIES)}") from None
