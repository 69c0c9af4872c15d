"""The data area (``CP=&&...&&``): typed records per factor, parameters, times, flags and 2005 code translation.

Syntax (HJ212-CP): ``key=value`` items; items of one factor are separated by ``,`` and groups by ``;``. A key
``xxxxxx-Field`` belongs to factor ``xxxxxx`` (``Rtd``, ``Min``, ``Avg``, ``Max``, ``Cou``, ``ZsRtd``... HJ212-T4);
a key without ``-`` is a parameter (``DataTime``, ``RtdInterval``, ``QN``, ``ExeRtn``...). A factor may be spread
over several groups (2005 dataloggers send ``01-Rtd=..,01-Flag=N;01-ZsRtd=..,01-Flag=N``): they make one record.
A second ``DataTime`` starts a new set of records (history answers).

Times in HJ 212 are the site's local time (China, UTC+8, by default); they are returned as UTC-aware datetimes.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from enum import IntEnum
from operator import itemgetter
from types import MappingProxyType
from typing import Any, NamedTuple

from ..quantities import Flag
from .errors import Hj212Error

__all__ = [
    "CHINA_TZ",
    "DEFAULT_FLAGS",
    "FLAGS_2005",
    "FLAGS_2017",
    "LEGACY_CODES",
    "DataArea",
    "DataRecord",
    "FlagTable",
    "Version",
    "parse_data_area",
    "parse_time",
]

#: China Standard Time. HJ 212 times are local to the site; a site elsewhere passes its own zone.
CHINA_TZ = timezone(timedelta(hours=8), "UTC+08:00")


class Version(IntEnum):
    """The edition the Flag version bits (bits 2-7) name (HJ212-FLAG; 2025: HJ212-2025-FLAG [S])."""

    HJ212_2005 = 0
    HJ212_2017 = 1
    HJ212_2025 = 2


#: HJ 212-2017 Table 8 letters (HJ212-T8), used for 2017 and 2025 frames (no 2025 table was read: HJ212-2025-T8 [U]).
FLAGS_2017: Mapping[str, Flag] = {f.name: f for f in Flag}
#: HJ/T 212-2005 letters (HJ212-2005-FLAG [S]). F meant "emission source stopped" there and "instrument stopped" in
#: 2017: both map to F, whose meaning downstream code settles with process evidence. P (power failure) has no 2017
#: letter; the instrument produces no valid measurement, so it maps to D (fault), a project choice (HJ212-P-FLAG).
FLAGS_2005: Mapping[str, Flag] = {**FLAGS_2017, "P": Flag.D}


@dataclass(frozen=True)
class FlagTable:
    """Which project :class:`~schemas.quantities.Flag` each HJ 212 letter means, per edition (a named policy)."""

    name: str
    current: Mapping[str, Flag]  # 2017 and 2025 frames
    legacy: Mapping[str, Flag]  # 2005 frames, and (lenient mode) 2005 letters met in newer frames

    def for_version(self, version: Version | None) -> Mapping[str, Flag]:
        return self.legacy if version is Version.HJ212_2005 else self.current


DEFAULT_FLAGS = FlagTable("hj212", current=FLAGS_2017, legacy=FLAGS_2005)

#: HJ/T 212-2005 factor code -> HJ 212-2017/2025 code: the "old code" columns of HJ 212-2017 Table B.2 (flue gas)
#: and Table B.1 (water) (HJ212-B2, HJ212-B1). Gas codes are two digits or S/B letters, water codes three digits or
#: B01, so one table serves both.
LEGACY_CODES: Mapping[str, str] = {
    # Flue gas (Table B.2), CEMS first.
    "B02": "a00000", "S02": "a01011", "S03": "a01012", "S08": "a01013", "S05": "a01014", "S06": "a01015",
    "S07": "a01016", "S04": "a01017", "30": "a05001", "S01": "a19001", "03": "a21002", "04": "a21005",
    "02": "a21026", "01": "a34013",
    "37": "a01010", "36": "a20016", "33": "a20025", "32": "a20043", "31": "a20057", "35": "a20063", "34": "a20091",
    "10": "a21001", "07": "a21017", "06": "a21018", "11": "a21022", "08": "a21024", "05": "a21028", "27": "a23001",
    "29": "a24046", "25": "a24087", "17": "a25003", "18": "a25005", "23": "a25010", "22": "a25023", "20": "a25044",
    "21": "a26001", "28": "a30001", "13": "a30022", "19": "a31001", "26": "a31002", "09": "a34038", "14": "a34039",
    "15": "a34040", "24": "a99049", "12": "a99051",
    # Water (Table B.1).
    "B01": "w00000", "001": "w01001", "002": "w01002", "003": "w01012", "010": "w01017", "011": "w01018",
    "015": "w01020", "550": "w02003", "570": "w03001", "571": "w03002", "520": "w19002", "039": "w20012",
    "037": "w20023", "040": "w20038", "038": "w20061", "041": "w20089", "036": "w20092", "020": "w20111",
    "021": "w20113", "022": "w20115", "023": "w20116", "024": "w20117", "026": "w20119", "027": "w20120",
    "028": "w20121", "029": "w20122", "030": "w20123", "031": "w20124", "032": "w20125", "033": "w20126",
    "034": "w20127", "035": "w20128", "065": "w21001", "060": "w21003", "062": "w21004", "063": "w21006",
    "064": "w21007", "101": "w21011", "070": "w21016", "072": "w21017", "071": "w21019", "090": "w21022",
    "080": "w22001", "110": "w23002", "540": "w25043", "350": "w33001", "351": "w33007", "061": "w99001",
}

#: Parameters with an integer value (HJ212-T4): intervals, timeouts, results, counts.
_INT_PARAMS = frozenset({"RtdInterval", "MinInterval", "OverTime", "ReCount", "ExeRtn", "QnRtn", "VaseNo", "CTime",
                         "HeartbeatTime"})
#: Parameters holding a YYYYMMDDhhmmss time.
_TIME_PARAMS = frozenset({"DataTime", "SystemTime", "BeginTime", "EndTime", "RestartTime"})

_STRICT_NUMBER = re.compile(r"-?\d+(?:\.\d+)?\Z")  # HJ 212 "N" data type: digits, optional sign and decimals


class DataRecord(NamedTuple):
    """One factor's values in one data area. Every value is optional: a frame carries only some of them.

    ``code`` is the 2017/2025 factor code; ``original_code`` the 2005 code it was translated from (else None).
    ``flag`` is the project's flag for ``flag_letter``; a letter no edition defines leaves ``flag`` None with
    ``flag_letter`` set (``unknown_flag``), which must never count as normal. ``extra`` keeps every other field
    as sent (``ValidNum``, ``SN``, ``RS``..., and in lenient mode a numeric field whose text is not a number).

    An immutable NamedTuple rather than a frozen dataclass: a frame holds 10-20 records and the codec must parse
    well over 10,000 frames/s per core; building a 17-field frozen dataclass costs about 2.5x a tuple.
    """

    code: str
    original_code: str | None = None
    data_time: datetime | None = None
    rtd: float | None = None
    min: float | None = None
    avg: float | None = None
    max: float | None = None
    cou: float | None = None
    zs_rtd: float | None = None
    zs_min: float | None = None
    zs_avg: float | None = None
    zs_max: float | None = None
    flag: Flag | None = None
    flag_letter: str | None = None
    eflag: str | None = None
    sample_time: datetime | None = None
    extra: Mapping[str, str] = MappingProxyType({})

    @property
    def unknown_flag(self) -> bool:
        return self.flag_letter is not None and self.flag is None


#: Data-area field -> DataRecord attribute, for the numeric fields (HJ212-T4).
_NUMERIC = {
    "Rtd": "rtd", "Min": "min", "Avg": "avg", "Max": "max", "Cou": "cou",
    "ZsRtd": "zs_rtd", "ZsMin": "zs_min", "ZsAvg": "zs_avg", "ZsMax": "zs_max",
}
_SLOT = {name: DataRecord._fields.index(attr) for name, attr in _NUMERIC.items()}  # field -> tuple position
_N_SLOTS = len(DataRecord._fields)
_FLAG, _LETTER, _EFLAG, _SAMPLE = (DataRecord._fields.index(k) for k in ("flag", "flag_letter", "eflag", "sample_time"))


@dataclass(frozen=True, slots=True)
class DataArea:
    """A parsed ``CP``: the first ``DataTime``, the records, the other parameters (typed where known)."""

    data_time: datetime | None
    records: tuple[DataRecord, ...]
    params: Mapping[str, object]


def parse_time(text: str, *, tz: tzinfo = CHINA_TZ, strict: bool = True, what: str = "time") -> datetime:
    """``YYYYMMDDhhmmss`` (lenient: also ``YYYYMMDDhhmmsszzz``, as some dataloggers send) local -> UTC datetime.

    Cached: every datalogger of a site sends the same minute's DataTime, and QNs share their first 14 digits
    (a refusal raises, so it is never cached)."""
    return _parse_time(text, tz, strict, what)


@functools.lru_cache(maxsize=4096)
def _parse_time(text: str, tz: tzinfo, strict: bool, what: str) -> datetime:
    n = len(text)
    if not (n == 14 or (n == 17 and not strict)) or not text.isdigit() or not text.isascii():
        raise Hj212Error("field", f"{what}: {text!r} is not a {'14' if strict else '14- or 17'}-digit local time")
    try:
        local = datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]),
                         int(text[12:14]), int(text[14:17]) * 1000 if n == 17 else 0, tzinfo=tz)
    except ValueError as exc:
        raise Hj212Error("field", f"{what}: {text!r} is not a valid date and time ({exc})") from None
    return local.astimezone(UTC)


class _Builder:
    """Accumulates one record's fields (a factor may span several ';' groups)."""

    __slots__ = ("code", "fields", "original")

    def __init__(self, code: str, original: str | None) -> None:
        self.code = code
        self.original = original
        self.fields: dict[str, str] = {}


def parse_data_area(
    cp: str,
    *,
    version: Version | None,
    strict: bool,
    tz: tzinfo = CHINA_TZ,
    flags: FlagTable = DEFAULT_FLAGS,
    notes: list[str] | None = None,
) -> DataArea:
    """Parse the text between ``CP=&&`` and ``&&`` into records and parameters.

    Strict mode follows HJ 212-2017/2025 to the letter (no spaces, N-type numbers, 14-digit times, Table 8 flags,
    no 2005 codes in a newer frame, no repeated field). Lenient mode accepts what fielded dataloggers send and
    writes each fix into ``notes``. Raises :class:`Hj212Error` (reason ``field`` or ``data_flag``) otherwise.

    References: docs/sources.md HJ212-CP, HJ212-T4, HJ212-T8, HJ212-B2, HJ212-2005-FLAG.
    """
    notes = [] if notes is None else notes
    if not cp:
        return DataArea(None, (), {})
    if " " not in cp:
        fast = _fast_area(cp, version, strict, tz, flags.for_version(version))
        if fast is not None:
            return fast
    return _general_area(cp, version=version, strict=strict, tz=tz, flags=flags, notes=notes)


def _general_area(cp: str, *, version: Version | None, strict: bool, tz: tzinfo, flags: FlagTable,
                  notes: list[str]) -> DataArea:
    """Every data area, every leniency and every refusal (the reference :func:`_fast_area` is held to)."""
    params: dict[str, object] = {}
    records: list[DataRecord] = []
    if not cp:
        return DataArea(None, (), params)
    letters = flags.for_version(version)
    plain = cp.isascii() and "_" not in cp  # then float() can only misread 'nan'/'inf', which isfinite catches
    first_time: datetime | None = None
    current_time: datetime | None = None
    builders: dict[str, _Builder] = {}
    codes: set[str] = set()
    for item, key, sep, value in _items(cp, strict):
        dash = key.find("-")
        if dash > 0 and sep:  # a factor field: the common case
            _add_field(builders, codes, key, dash, value, version, strict, notes)
            continue
        if not sep or not key:
            raise Hj212Error("field", f"CP: {item!r} is not key=value")
        if dash >= 0:
            raise Hj212Error("field", f"CP: {key!r} is not a factor-field key")
        if key != "DataTime":
            _put_param(params, key, value, strict, tz, notes)
            continue
        t = parse_time(value, tz=tz, strict=strict, what="DataTime")
        if first_time is None:
            first_time = t
            params["DataTime"] = t
        else:  # a new set of records begins
            records.extend(_finish(b, current_time, letters, flags, strict, plain, tz, notes)
                           for b in builders.values())
            builders, codes = {}, set()
        current_time = t
    records.extend(_finish(b, current_time, letters, flags, strict, plain, tz, notes) for b in builders.values())
    return DataArea(first_time, tuple(records), params)


def _items(cp: str, strict: bool) -> Iterator[tuple[str, str, str, str]]:
    """``(item, key, '=', value)`` of every item of a data area, in order (``sep`` empty for an item without '=';
    ``item`` as written, for messages). Lenient
    mode strips spaces and skips empty groups and empty items; strict mode refuses both."""
    spaced = " " in cp
    if spaced and strict:
        raise Hj212Error("field", f"CP holds spaces: {cp[:60]!r}")
    for group in cp.split(";"):
        if not group:
            if strict:
                raise Hj212Error("field", f"CP: empty group (';;' or a trailing ';') in {cp[:60]!r}")
            continue
        for item in group.split(","):
            key, sep, value = item.partition("=")
            if spaced:
                key, value = key.strip(), value.strip()
                if not key and not value:
                    continue
            yield item, key, sep, value


def _add_field(builders: dict[str, _Builder], codes: set[str], key: str, dash: int, value: str,
               version: Version | None, strict: bool, notes: list[str]) -> None:
    """A factor field into its record's builder; a field given twice is refused (lenient: unless equal)."""
    code = key[:dash]
    b = builders.get(code)
    if b is None:
        b = builders[code] = _new_builder(code, version, strict, codes, notes)
    old = b.fields.setdefault(key[dash + 1:], value)
    if old is not value and (strict or old != value):
        raise Hj212Error("field", f"CP: {key} given twice ({old!r}, {value!r})")


#: Factor-field key -> (factor code as sent, field, slot): the keys of a site repeat in every frame. ``slot`` is the
#: DataRecord position of a numeric field, else -1 Flag, -2 EFlag, -3 SampleTime, -4 any other (kept in extra).
_KEYS: dict[str, tuple[str, str, int]] = {}
_SPECIAL = {"Flag": -1, "EFlag": -2, "SampleTime": -3}  # field -> pseudo-slot (extra fields: -4)
#: Numbers float() reads as written, ASCII digits only (lenient mode), and the N type (strict mode, as
#: ``_STRICT_NUMBER``), each as a comma-separated list: one match checks every number of a data area.
_PLAIN_NUMBERS = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:,[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))*")
_N_NUMBERS = re.compile(r"-?\d+(?:\.\d+)?(?:,-?\d+(?:\.\d+)?)*")
_INF, _NINF = float("inf"), float("-inf")


def _fast_area(cp: str, version: Version | None, strict: bool, tz: tzinfo,
               letters: Mapping[str, Flag]) -> DataArea | None:
    """The common data area, about 2.5x faster than :func:`_general_area`, or None to let that one decide.

    Taken only when nothing needs a note or a refusal: every item ``key=value``, each field of a factor given once,
    known flag letters, one DataTime at most, no 2005 code in a newer frame, numbers that ``float`` reads as
    written (checked with one regular expression over all of them, then converted with one ``map``). Anything else
    returns None and the general parser reads the area from the start, so results and refusals are the same
    either way (``tests/unit/test_hj212_fastpath.py`` holds the two equal).
    """
    shaped = _shaped_area(cp, strict, tz, letters)
    if shaped is not None:
        return shaped
    recs: dict[str, list[Any]] = {}
    texts: list[str] = []
    slots: list[tuple[list[Any], int]] = []
    params: dict[str, object] = {}
    legacy_ok = version is Version.HJ212_2005
    keys = _KEYS
    for item in cp.replace(";", ",").split(","):
        key, sep, value = item.partition("=")
        info = keys.get(key)
        if info is None:  # a parameter, or a factor field not seen before
            info = _fast_key(key, sep, value, params, strict, tz)
            if info is None:
                return None
            if info is _PARAM:
                continue
        elif not sep:
            return None
        code, name, slot = info
        rec = recs.get(code) or _fast_record(recs, code, legacy_ok)
        if rec is None:
            return None
        if slot > 0:  # a number: checked with the others at the end
            if rec[slot] is not None:
                return None
            rec[slot] = 0.0  # taken; the value comes after the numbers are checked
            texts.append(value)
            slots.append((rec, slot))
        elif not _fast_field(rec, slot, name, value, letters, strict, tz):
            return None
    return _fast_finish(recs, texts, slots, params, strict)


def _fast_finish(recs: dict[str, list[Any]], texts: list[str], slots: list[tuple[list[Any], int]],
                 params: dict[str, object], strict: bool) -> DataArea | None:
    """The records of a fast-read area with their numbers, or None where the general parser must decide."""
    if len({r[0] for r in recs.values()}) != len(recs):  # one factor under its 2005 and its 2017 code
        return None
    if texts and not _fast_numbers(texts, slots, strict):
        return None
    data_time = params.get("DataTime")
    make = tuple.__new__  # a record from its fields, without NamedTuple's argument handling
    records = []
    for rec in recs.values():
        rec[2] = data_time
        records.append(make(DataRecord, rec))
    return DataArea(data_time if isinstance(data_time, datetime) else None, tuple(records), params)


#: What :func:`_fast_key` returns for a parameter it has stored.
_PARAM: tuple[str, str, int] = ("", "", 0)


def _fast_key(key: str, sep: str, value: str, params: dict[str, object], strict: bool,
              tz: tzinfo) -> tuple[str, str, int] | None:
    """A key the cache does not know: a parameter is stored (:data:`_PARAM`), a factor field is cached and its
    (code, field, slot) returned; None when the general parser must decide."""
    dash = key.find("-")
    if not sep or not key or dash == 0:
        return None
    if dash < 0:  # a parameter; a second DataTime starts a second set of records, which the general parser splits
        if key in params:
            return None
        try:
            if key == "DataTime":
                params["DataTime"] = parse_time(value, tz=tz, strict=strict, what="DataTime")
            else:
                _put_param(params, key, value, strict, tz, [])
        except Hj212Error:
            return None
        return _PARAM
    if len(_KEYS) > 65_536:
        _KEYS.clear()
    name = key[dash + 1:]
    info = _KEYS[key] = (key[:dash], name, _SLOT.get(name, _SPECIAL.get(name, -4)))
    return info


def _fast_record(recs: dict[str, list[Any]], code: str, legacy_ok: bool) -> list[Any] | None:
    """A new record's fields (code, 2005 code, ..., extra), kept in ``recs``; None for a 2005 code outside a 2005
    frame."""
    new = LEGACY_CODES.get(code)
    if new is not None and not legacy_ok:
        return None
    rec: list[Any] = [None] * _N_SLOTS
    rec[0], rec[1], rec[-1] = new or code, code if new else None, {}
    recs[code] = rec
    return rec


def _fast_field(rec: list[Any], slot: int, name: str, value: str, letters: Mapping[str, Flag], strict: bool,
                tz: tzinfo) -> bool:
    """A factor's flag, EFlag, SampleTime or other field into its record; False where the general parser must
    decide (an unknown letter, a field given twice, a time that does not read)."""
    if slot == -1:
        flag = letters.get(value)
        if flag is None or rec[_LETTER] is not None:
            return False
        rec[_LETTER], rec[_FLAG] = value, flag
    elif slot == -2:
        if rec[_EFLAG] is not None:
            return False
        rec[_EFLAG] = value
    elif slot == -3:
        if rec[_SAMPLE] is not None:
            return False
        try:
            rec[_SAMPLE] = parse_time(value, tz=tz, strict=strict, what=f"{rec[0]}-SampleTime")
        except Hj212Error:
            return False
    else:
        if name in rec[-1]:
            return False
        rec[-1][name] = value
    return True


def _fast_numbers(texts: list[str], slots: list[tuple[list[Any], int]], strict: bool) -> bool:
    """Every number of the area into its slot, checked with one regular expression and converted with one
    ``map``; False where one is not a plain (strict: N-type) number or overflows."""
    joined = ",".join(texts)
    if (_N_NUMBERS if strict else _PLAIN_NUMBERS).fullmatch(joined) is None:
        return False
    numbers = list(map(float, texts))
    if _INF in numbers or _NINF in numbers:  # 400 digits: the general parser says what to do
        return False
    for (rec, slot), number in zip(slots, numbers, strict=True):
        rec[slot] = number
    return True


def _new_builder(code: str, version: Version | None, strict: bool, codes: set[str], notes: list[str]) -> _Builder:
    new = LEGACY_CODES.get(code)
    if new is not None and version is not Version.HJ212_2005:
        if strict:
            raise Hj212Error("field", f"CP: {code!r} is a 2005 factor code in a {_edition(version)} frame")
        notes.append(f"2005 factor code {code} read as {new}")
    b = _Builder(code, None) if new is None else _Builder(new, code)
    if b.code in codes:
        raise Hj212Error("field", f"CP: factor {b.code} is given under two codes (2005 and 2017)")
    codes.add(b.code)
    return b


def _edition(version: Version | None) -> str:
    return "unknown-edition" if version is None else version.name.replace("HJ212_", "")


def _put_param(params: dict[str, object], key: str, value: str, strict: bool, tz: tzinfo, notes: list[str]) -> None:
    typed: object = value
    if key in _INT_PARAMS:
        if not value.isdigit() or not value.isascii():
            raise Hj212Error("field", f"CP: {key}={value!r} is not a whole number")
        typed = int(value)
    elif key in _TIME_PARAMS:
        typed = parse_time(value, tz=tz, strict=strict, what=key)
    old = params.get(key)
    if old is None:
        params[key] = typed
    elif isinstance(old, tuple):  # a repeated parameter (CTime=04,CTime=10...) keeps every value in order
        params[key] = (*old, typed)
    else:
        params[key] = (old, typed)


def _finish(b: _Builder, data_time: datetime | None, letters: Mapping[str, Flag], flags: FlagTable, strict: bool,
            plain: bool, tz: tzinfo, notes: list[str]) -> DataRecord:
    v: list[object] = [None] * _N_SLOTS
    v[0], v[1], v[2] = b.code, b.original, data_time
    extra: dict[str, str] = {}
    for name, text in b.fields.items():
        slot = _SLOT.get(name)
        if slot is not None:
            number = _number(b.code, name, text, strict, plain, notes)
            if number is not None:
                v[slot] = number
            elif text:  # not a number: kept as text
                extra[name] = text
        elif name == "Flag":
            v[_LETTER] = text
            v[_FLAG] = _data_flag(b.code, text, letters, flags, strict, notes)
        elif name == "EFlag":
            v[_EFLAG] = text
        elif name == "SampleTime":
            v[_SAMPLE] = parse_time(text, tz=tz, strict=strict, what=f"{b.code}-SampleTime")
        else:
            extra[name] = text
    v[-1] = extra
    return tuple.__new__(DataRecord, v)


def _number(code: str, name: str, text: str, strict: bool, plain: bool, notes: list[str]) -> float | None:
    """A numeric field's value; strict: an N-type number or a refusal; lenient: None (with a note) for an empty
    field or one that is not a number."""
    if strict:
        if _STRICT_NUMBER.match(text) is None:
            raise Hj212Error("field", f"{code}-{name}: {text!r} is not a number of the HJ 212 N type")
        return float(text)
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None and math.isfinite(number) and (plain or ("_" not in text and text.isascii())):
        return number  # float() alone also reads 'nan', '1_0' and non-ASCII digits
    if not text:
        notes.append(f"{code}-{name} is empty: kept as missing")
    else:
        notes.append(f"{code}-{name}={text!r} is not a number: kept as text in extra")
    return None


def _data_flag(code: str, text: str, letters: Mapping[str, Flag], flags: FlagTable, strict: bool,
               notes: list[str]) -> Flag | None:
    """The flag a data-flag letter means (HJ212-T8); lenient mode reads 2005 letters and marks unknown ones."""
    flag = letters.get(text)
    if flag is not None:
        return flag
    flag = flags.legacy.get(text) if not strict else None
    if flag is not None:
        notes.append(f"{code}-Flag={text} is a 2005 letter: read as {flag.name}")
    elif strict:
        raise Hj212Error("data_flag", f"{code}-Flag={text!r} is not an HJ 212 data flag (known: {''.join(letters)})")
    else:
        notes.append(f"{code}-Flag={text!r} is not an HJ 212 data flag: marked unknown")
    return flag


# --- data areas of a known shape --------------------------------------------------------------------------------
#
# A datalogger sends the same keys in the same order in every frame; only the values change. The shape of an area
# (its separators and its keys) is therefore looked up once per frame, and what the item loop of _fast_area would
# find out about it (which value is which record's number or flag, where the DataTime is) is worked out once per
# shape and kept: a frame of a known shape is then read with C-level operations (split, slicing, itemgetter,
# one regular expression over all its numbers, one map(float)).

#: bytes.translate's delete table that keeps only the three separators of a data area.
_ALL_BUT_SEPARATORS = bytes(b for b in range(256) if b not in b"=,;")
_NO_EXTRA: Mapping[str, str] = MappingProxyType({})
#: The characters of plain numbers and the comma that joins them (deleted: what is left is not a plain number).
_NUMBER_CHARS = b"0123456789.+-,"


class _Shape(NamedTuple):
    """How to read an area of one shape. ``values`` (every item's value, in order) are picked by position."""

    numbers: tuple[int, ...]  # value positions of the numeric fields, in order
    letters: tuple[int, ...]  # value positions of the Flag fields, in order
    time_at: int  # value position of DataTime, -1: none
    codes: tuple[str, ...]  # the records' factor codes, in order of first appearance
    records: tuple[Callable[[list[Any]], tuple[Any, ...]], ...]  # each picks a record's fields from the source:
    # [None, DataTime, no extra, *codes, *letters, *flags, *numbers]


_SHAPES: dict[tuple[bytes, tuple[str, ...]], _Shape | None] = {}


def _picker(positions: tuple[int, ...]) -> Callable[[list[Any]], tuple[Any, ...]]:
    """The items at ``positions`` as a tuple (``itemgetter`` returns a bare item for one position)."""
    if len(positions) == 1:
        (p,) = positions
        return lambda seq: (seq[p],)
    return itemgetter(*positions)


def _shape_of(seps: bytes, keys: tuple[str, ...]) -> _Shape | None:
    """The reading of a shape of only ``key=value`` items of numeric and Flag fields of current (2017) factor codes,
    each given once, and one DataTime at most; None for any other (the item loop reads those)."""
    n = len(keys)
    if len(seps) != 2 * n - 1 or seps[0::2] != b"=" * n or seps[1::2].strip(b",;") or len(set(keys)) != n:
        return None
    numbers: list[tuple[int, str, int]] = []  # (value position, code, slot)
    letters: list[tuple[int, str]] = []
    time_at = -1
    codes: dict[str, None] = {}
    for at, key in enumerate(keys):
        if key == "DataTime":
            time_at = at
            continue
        code, dash, name = key.partition("-")
        slot = _SLOT.get(name)
        if not code or not dash or code in LEGACY_CODES or (slot is None and name != "Flag"):
            return None
        codes.setdefault(code)
        if slot is None:
            letters.append((at, code))
        else:
            numbers.append((at, code, slot))
    first_letter = 3 + len(codes)
    first_flag = first_letter + len(letters)
    first_number = first_flag + len(letters)
    fields = {code: [3 + k, 0, 1, *([0] * (_N_SLOTS - 4)), 2] for k, code in enumerate(codes)}
    for k, (_, code) in enumerate(letters):
        fields[code][_LETTER] = first_letter + k
        fields[code][_FLAG] = first_flag + k
    for k, (_, code, slot) in enumerate(numbers):
        fields[code][slot] = first_number + k
    return _Shape(tuple(at for at, *_ in numbers), tuple(at for at, _ in letters), time_at, tuple(codes),
                  tuple(_picker(tuple(f)) for f in fields.values()))


def _shaped_area(cp: str, strict: bool, tz: tzinfo, letters: Mapping[str, Flag]) -> DataArea | None:
    """An area of a known shape (:func:`_shape_of`), or None for the item loop of :func:`_fast_area` to read."""
    seps = cp.encode().translate(None, _ALL_BUT_SEPARATORS)
    parts = cp.replace(";", "=").replace(",", "=").split("=")
    if len(parts) % 2:
        return None
    keys, values = tuple(parts[0::2]), parts[1::2]
    shape_key = (seps, keys)
    try:
        shape = _SHAPES[shape_key]
    except KeyError:
        if len(_SHAPES) > 4096:
            _SHAPES.clear()
        shape = _SHAPES[shape_key] = _shape_of(seps, keys)
    if shape is None:
        return None
    texts = [values[at] for at in shape.numbers]
    if texts:
        if strict:
            if _N_NUMBERS.fullmatch(",".join(texts)) is None:
                return None
            numbers = list(map(float, texts))
        else:  # over 0-9 . + - float() reads exactly the numbers _PLAIN_NUMBERS allows (4 µs less than the regex)
            if ",".join(texts).encode().translate(None, _NUMBER_CHARS):
                return None
            try:
                numbers = list(map(float, texts))
            except ValueError:
                return None
        if _INF in numbers or _NINF in numbers:
            return None
    else:
        numbers = []
    written = [values[at] for at in shape.letters]
    flags = list(map(letters.get, written))
    if None in flags:
        return None
    params: dict[str, object] = {}
    data_time = None
    if shape.time_at >= 0:
        try:
            data_time = params["DataTime"] = parse_time(values[shape.time_at], tz=tz, strict=strict, what="DataTime")
        except Hj212Error:
            return None
    source = [None, data_time, _NO_EXTRA, *shape.codes, *written, *flags, *numbers]
    make = tuple.__new__
    return DataArea(data_time, tuple([make(DataRecord, pick(source)) for pick in shape.records]), params)
