"""Framing: ``##`` + 4-digit length + data segment + CRC16 + ``<CR><LF>`` (HJ212-FRAME), the header fields of the
data segment (HJ212-T3), the edition from the Flag version bits (HJ212-FLAG), and split-message reassembly.

:func:`parse_frame` checks, in order: the header ``##``, the trailer, the length field against the data segment,
the CRC (a mismatch stops processing there, as HJ212-CRC requires: nothing of the content is read), the text, the
header fields, then the data area. Strict mode holds a frame to HJ 212-2017/2025; lenient mode (the default) also
accepts what fielded dataloggers send (2005 frames without QN or Flag, odd spacing, lower-case CRC hex, a missing
trailer, a length field that miscounts when the CRC proves the segment whole) and lists each such fix in
``Frame.notes``. Either way the only exception is :class:`~schemas.hj212.errors.Hj212Error`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from itertools import chain

from .crc import crc16
from .crypto import decrypt_segment, is_encrypted
from .datarea import (
    CHINA_TZ,
    DEFAULT_FLAGS,
    DataArea,
    DataRecord,
    FlagTable,
    Version,
    parse_data_area,
    parse_time,
)
from .errors import Hj212Error

__all__ = ["MAX_SEGMENT_2017", "MAX_SEGMENT_FORMAT", "Frame", "Message", "Reassembler", "parse_frame"]

#: HJ 212-2017 Table 2: the data segment holds 0 <= n <= 1024 characters (HJ212-FRAME); 2025 splits above 1024.
MAX_SEGMENT_2017 = 1024
#: The most a 4-digit length field can declare.
MAX_SEGMENT_FORMAT = 9999

_HEADER_ORDER = ("QN", "ST", "CN", "PW", "MN", "Flag")
_HEX = frozenset(b"0123456789ABCDEFabcdef")
_HEX_UPPER = frozenset(b"0123456789ABCDEF")
_MN_CHARS = frozenset("0123456789ABCDEF")


@dataclass(frozen=True, slots=True)
class Frame:
    """One checked HJ 212 frame. ``cp`` is the data area as sent; ``data`` its parsed form.

    ``version`` is None only for an unknown edition in lenient mode; ``qn``, ``pw``, ``mn`` and ``flag`` are None
    only where a lenient frame lacks them (2005 dataloggers). ``resend`` is HJ 212-2025's ``RF=1`` (re-sent data).
    ``notes`` lists what lenient mode accepted that the standard does not allow (empty for a conforming frame).
    """

    qn: str | None
    st: str
    cn: str
    pw: str | None
    mn: str | None
    flag: int | None
    version: Version | None
    ack_requested: bool
    pnum: int | None
    pno: int | None
    resend: bool
    cp: str
    data: DataArea
    raw: bytes
    notes: tuple[str, ...] = ()

    @property
    def records(self) -> tuple[DataRecord, ...]:
        return self.data.records

    @property
    def data_time(self) -> datetime | None:
        return self.data.data_time

    @property
    def is_split(self) -> bool:
        return self.pnum is not None


def parse_frame(
    data: bytes | bytearray | memoryview | str,
    *,
    strict: bool = False,
    tz: tzinfo = CHINA_TZ,
    flags: FlagTable = DEFAULT_FLAGS,
    max_segment_bytes: int | None = None,
    sm4_key: bytes | None = None,
) -> Frame:
    """Check and parse one frame (bytes as received, trailer included).

    Parameters
    ----------
    data : bytes or str
        One frame, ``##`` to ``<CR><LF>``. A ``str`` is encoded as UTF-8 (HJ 212 text is UTF-8, HJ212-FRAME).
    strict : bool
        Hold the frame to HJ 212-2017/2025 (True), or accept what fielded dataloggers send (False, the default).
    tz : tzinfo
        The site's time zone: HJ 212 times are local (China Standard Time, UTC+8, by default). Times come back UTC.
    flags : FlagTable
        Which project flag each HJ 212 data-flag letter means, per edition.
    max_segment_bytes : int, optional
        Longest data segment accepted, in bytes: 1024 in strict mode (HJ 212-2017 Table 2), 9999 otherwise.
    sm4_key : bytes, optional
        The site's 16-byte SM4 key, to read HJ 212-2025 frames whose data area is encrypted; without it they are
        refused (reason ``encrypted``). The length field may count the plaintext (the standard's example) or the
        transmitted segment (some implementations): both are accepted.

    Returns
    -------
    Frame

    Raises
    ------
    Hj212Error
        With ``reason`` header, trailer, length, oversize, crc, encoding, field, flag, version, data_flag or
        encrypted, and a message naming the field or byte offset.

    References
    ----------
    docs/sources.md HJ212-FRAME, HJ212-CRC, HJ212-T3, HJ212-FLAG, HJ212-2025-FLAG, HJ212-2025-RF, HJ212-2025-SM4.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    notes: list[str] = []
    limit = max_segment_bytes if max_segment_bytes is not None else (MAX_SEGMENT_2017 if strict else
                                                                       MAX_SEGMENT_FORMAT)
    body = _unwrap(raw, strict, notes)
    segment, crc_field, declared, actual = _segment(body, raw, limit, strict, sm4_key, notes)
    _check_crc(segment, crc_field, declared, actual, strict, notes)
    return _parse_segment(_text(segment), raw, strict, tz, flags, notes)


def _unwrap(raw: bytes, strict: bool, notes: list[str]) -> bytes:
    """The frame between ``##`` and the ``<CR><LF>`` trailer (lenient: leading whitespace, a partial trailer)."""
    body = raw
    if not strict:
        stripped = body.lstrip(b" \t\r\n")
        if len(stripped) != len(body):
            notes.append("whitespace before '##' ignored")
            body = stripped
    if not body.startswith(b"##"):
        raise Hj212Error("header", f"frame starts with {bytes(raw[:8])!r}, not '##'")
    if body.endswith(b"\r\n"):
        return body[2:-2]
    if strict:
        raise Hj212Error("trailer", f"frame ends with {bytes(raw[-6:])!r}, not <CR><LF>")
    end = len(body.rstrip(b"\r\n"))
    notes.append("trailer <CR><LF> missing or partial")
    return body[2:end]


def _segment(body: bytes, raw: bytes, limit: int, strict: bool, sm4_key: bytes | None,
             notes: list[str]) -> tuple[bytes, bytes, int, int]:
    """(data segment, CRC field, declared length, actual length): the length field checked against the limit and
    the segment (decrypted first when SM4-encrypted and the key is given)."""
    length_field = body[:4]
    if len(length_field) < 4 or not length_field.isdigit():
        raise Hj212Error("length", f"bytes 2-5 are {bytes(length_field)!r}, not a 4-digit length")
    declared = int(length_field)
    if declared > limit:
        raise Hj212Error("oversize", f"length field declares {declared} bytes; the limit is {limit}")
    actual = len(body) - 8
    if actual < 0:
        raise Hj212Error("length", f"frame is {len(raw)} bytes: too short for a length field and a CRC")
    segment = body[4:-4]
    crc_field = body[-4:]
    if is_encrypted(segment):
        if sm4_key is None:
            raise Hj212Error("encrypted", "the data area is SM4-encrypted (HJ 212-2025); its CRC covers the "
                                          "plaintext, so the frame cannot be checked or read without the key")
        transmitted = actual
        segment = decrypt_segment(segment, sm4_key)
        actual = len(segment)
        notes.append("data area decrypted (SM4)")
        if declared == transmitted:  # implementations differ: the standard's example counts the plaintext
            declared = actual
    if actual != declared:
        if strict:
            raise Hj212Error("length", f"length field says {declared} bytes; the data segment holds {actual}")
        if actual > limit:
            raise Hj212Error("oversize", f"data segment holds {actual} bytes; the limit is {limit}")
        notes.append(f"length field says {declared} bytes; the data segment holds {actual} (the CRC decides)")
    return segment, crc_field, declared, actual


def _check_crc(segment: bytes, crc_field: bytes, declared: int, actual: int, strict: bool, notes: list[str]) -> None:
    """The CRC field against the segment's CRC: a mismatch ends processing here (HJ212-CRC)."""
    if not all(c in (_HEX_UPPER if strict else _HEX) for c in crc_field):
        raise Hj212Error("crc", f"CRC field {bytes(crc_field)!r} at byte {6 + actual} is not 4 "
                                f"{'upper-case ' if strict else ''}hex digits")
    given = int(crc_field, 16)
    computed = crc16(segment)
    if given != computed:
        extra = f" (the length field said {declared})" if actual != declared else ""
        raise Hj212Error("crc", f"CRC field says {bytes(crc_field).decode()}, the {actual}-byte data segment "
                                f"gives {computed:04X}{extra}: frame refused")
    if crc_field != crc_field.upper():
        notes.append("CRC written in lower-case hex")


#: Printable ASCII: a segment of these alone is its own text (what nearly every datalogger sends).
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))


def _text(segment: bytes) -> str:
    """The segment as text: UTF-8 without control characters."""
    if not segment.translate(None, _PRINTABLE_ASCII):  # one C pass, 7x faster than decode + str.isprintable
        return segment.decode("ascii")
    try:
        text = segment.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Hj212Error("encoding", f"data segment byte {6 + exc.start} is not UTF-8") from None
    if not text.isprintable():
        bad = next(i for i, ch in enumerate(text) if not ch.isprintable())
        raise Hj212Error("encoding", f"data segment character {bad} is a control character {text[bad]!r}")
    return text


def _parse_segment(text: str, raw: bytes, strict: bool, tz: tzinfo, flags: FlagTable, notes: list[str]) -> Frame:
    cp_at = text.find("CP=&&")
    if cp_at < 0:
        raise Hj212Error("field", "data segment has no 'CP=&&'")
    tail = text[cp_at + 5:]
    if not strict:
        tail = tail.rstrip()
    if not tail.endswith("&&"):
        raise Hj212Error("field", f"data area does not end with '&&' (ends {tail[-8:]!r})")
    cp = tail[:-2]
    head = text[:cp_at]
    known = _known_header(head, strict, tz)
    if known is not None:
        qn, (st, cn, pw, mn, flag, version, ack, pnum, pno, resend) = known
    else:
        qn, (st, cn, pw, mn, flag, version, ack, pnum, pno, resend) = _header(head, strict, tz, notes)
    area = parse_data_area(cp, version=version, strict=strict, tz=tz, flags=flags, notes=notes)
    return Frame(qn, st, cn, pw, mn, flag, version, ack, pnum, pno, resend, cp, area, raw, tuple(notes))


#: The header fields after QN (ST, CN, PW, MN, Flag, PNUM, PNO, RF), as parsed.
_Fields = tuple[str, str, str | None, str | None, int | None, Version | None, bool, int | None, int | None, bool]
#: Headers already read without a note, by their text after ``QN=<17 digits>;`` and the mode: a datalogger
#: repeats its header in every frame but for the QN, so its fields are read once (about 4 µs a frame).
_HEADERS: dict[tuple[str, bool], _Fields] = {}


def _header(head: str, strict: bool, tz: tzinfo, notes: list[str]) -> tuple[str | None, _Fields]:
    """(QN, the other fields) of the header text before ``CP=&&``, every check and note."""
    before = len(notes)
    header = _header_fields(head, strict, notes)
    st, cn = _system_and_command(header, strict)
    qn = _qn(header, strict, tz, notes)
    pw, mn = _password_and_mn(header, strict, notes)
    flag, version, ack, has_packets = _flag(header, strict, notes)
    pnum, pno = _packet_numbers(header, flag, has_packets, strict, notes)
    rf = header.get("RF")
    if rf is not None and (rf != "1" or (strict and version is not Version.HJ212_2025)):
        raise Hj212Error("field", f"RF={rf!r}: only RF=1, and only in HJ 212-2025 frames, marks re-sent data")
    fields = (st, cn, pw, mn, flag, version, ack, pnum, pno, rf is not None)
    if len(notes) == before and qn is not None and head.startswith(f"QN={qn};"):
        if len(_HEADERS) >= 65_536:
            _HEADERS.clear()
        _HEADERS[(head[21:], strict)] = fields
    return qn, fields


def _known_header(head: str, strict: bool, tz: tzinfo) -> tuple[str | None, _Fields] | None:
    """(QN, fields) of a header :func:`_header` read before but for its QN; None for any other. A QN of 17 ASCII
    digits at the start leaves every other field's reading (and order) as it was, and gives no note; its date is
    checked here as ``_qn`` checks it (a bad one raises the same error)."""
    if head[20:21] != ";" or not head.startswith("QN="):
        return None
    fields = _HEADERS.get((head[21:], strict))
    if fields is None:
        return None
    qn = head[3:20]
    if not (qn.isdigit() and qn.isascii()):
        return None
    parse_time(qn[:14], tz=tz, strict=True, what="QN")
    return qn, fields


def _system_and_command(header: dict[str, str], strict: bool) -> tuple[str, str]:
    st, cn = header.get("ST"), header.get("CN")
    if st is None or cn is None:
        raise Hj212Error("field", f"header lacks {'ST' if st is None else 'CN'}")
    if not (len(cn) == 4 and cn.isdigit() and cn.isascii()):
        raise Hj212Error("field", f"CN={cn!r} is not a 4-digit command code")
    if strict and not (len(st) == 2 and st.isalnum() and st.isascii()):
        raise Hj212Error("field", f"ST={st!r} is not a 2-character system code")
    return st, cn


def _qn(header: dict[str, str], strict: bool, tz: tzinfo, notes: list[str]) -> str | None:
    qn = header.get("QN")
    if qn is not None:
        parse_time(qn[:14], tz=tz, strict=True, what="QN")  # checks the date; a bad QN is refused in both modes
        if not (len(qn) == 17 and qn.isdigit()):
            if strict:
                raise Hj212Error("field", f"QN={qn!r} is not YYYYMMDDhhmmsszzz")
            notes.append(f"QN={qn!r} is not 17 digits")
    elif strict:
        raise Hj212Error("field", "header lacks QN")
    else:
        notes.append("no QN")
    return qn


def _password_and_mn(header: dict[str, str], strict: bool, notes: list[str]) -> tuple[str | None, str | None]:
    pw, mn = header.get("PW"), header.get("MN")
    if strict:
        if pw is None or len(pw) != 6:
            raise Hj212Error("field", f"PW={pw!r} is not a 6-character password")
        if mn is None or len(mn) != 24 or not set(mn) <= _MN_CHARS:
            raise Hj212Error("field", f"MN={mn!r} is not 24 upper-case hex characters (EPC-96)")
        return pw, mn
    if pw is None:
        notes.append("no PW")
    if mn is None:
        notes.append("no MN")
    elif len(mn) != 24 or not set(mn) <= _MN_CHARS:
        notes.append(f"MN={mn!r} is not 24 hex characters")
    return pw, mn


def _flag(header: dict[str, str], strict: bool, notes: list[str]) -> tuple[int | None, Version | None, bool, bool]:
    """(Flag, edition, acknowledgement wanted, packet numbers present) (HJ212-FLAG, HJ212-2025-FLAG)."""
    flag_text = header.get("Flag")
    if flag_text is None:
        if strict:
            raise Hj212Error("field", "header lacks Flag")
        notes.append("no Flag: read as an HJ/T 212-2005 frame")
        return None, Version.HJ212_2005, False, False
    if not (flag_text.isdigit() and flag_text.isascii() and len(flag_text) <= 3 and int(flag_text) <= 255):
        raise Hj212Error("flag", f"Flag={flag_text!r} is not a whole number 0-255")
    flag = int(flag_text)
    version: Version | None
    try:
        version = Version(flag >> 2)
    except ValueError:
        if strict:
            raise Hj212Error("version", f"Flag={flag} has version bits {flag >> 2:06b}: no known edition "
                                        f"(000000 2005, 000001 2017, 000010 2025)") from None
        notes.append(f"Flag={flag}: version bits {flag >> 2:06b} name no known edition")
        version = None
    return flag, version, bool(flag & 1), bool(flag & 2)


def _packet_numbers(header: dict[str, str], flag: int | None, has_packets: bool, strict: bool,
                    notes: list[str]) -> tuple[int | None, int | None]:
    pnum = _packet_number(header, "PNUM")
    pno = _packet_number(header, "PNO")
    if (pnum is None) != (pno is None):
        raise Hj212Error("field", "PNUM and PNO must come together")
    if pnum is not None and pno is not None and not 1 <= pno <= pnum:
        raise Hj212Error("field", f"PNO={pno} is outside 1..PNUM={pnum}")
    if flag is not None and has_packets != (pnum is not None):
        detail = (f"Flag={flag} has the packet bit set but the header has no PNUM/PNO" if has_packets else
                  f"header has PNUM/PNO but Flag={flag} lacks the packet bit")
        if strict:
            raise Hj212Error("flag", detail)
        notes.append(detail + ": PNUM/PNO presence decides")
    return pnum, pno


_HEADER_KEYS = (*_HEADER_ORDER, "PNUM", "PNO", "RF")


def _header_fields(head: str, strict: bool, notes: list[str]) -> dict[str, str]:
    if strict and head and not head.endswith(";"):
        raise Hj212Error("field", f"header does not end with ';' before CP (ends {head[-8:]!r})")
    fields = _key_values(head, strict)
    keys = list(fields)
    if strict:
        expected = [k for k in _HEADER_KEYS if k in fields]
        if keys != expected or len(keys) != len(set(keys) & set(_HEADER_KEYS)):
            raise Hj212Error("field", f"header fields are {keys}; HJ 212 wants QN;ST;CN;PW;MN;Flag[;PNUM;PNO][;RF]")
    else:
        unknown = [k for k in keys if k not in _HEADER_KEYS]
        if unknown:
            notes.append(f"unknown header fields {unknown} ignored")
        if " " in head:
            notes.append("spaces in the header ignored")
    return fields


def _key_values(head: str, strict: bool) -> dict[str, str]:
    """The header's ``key=value`` fields in order (lenient: spaces and empty fields dropped)."""
    fields: dict[str, str] = {}
    parts = head.split(";")
    if strict:
        parts.pop()  # the '' after the ';' that ends the header
    for part in parts:
        if not strict:
            part = part.strip()
        if not part:
            if strict:
                raise Hj212Error("field", "header holds an empty field (';;')")
            continue
        key, sep, value = part.partition("=")
        if not strict:
            key, value = key.strip(), value.strip()
        if not sep or not key:
            raise Hj212Error("field", f"header part {part!r} is not key=value")
        if key in fields:
            raise Hj212Error("field", f"header gives {key} twice")
        fields[key] = value
    return fields


def _packet_number(header: dict[str, str], key: str) -> int | None:
    text = header.get(key)
    if text is None:
        return None
    if not (text.isdigit() and text.isascii() and len(text) <= 4):
        raise Hj212Error("field", f"{key}={text!r} is not a whole number of at most 4 digits")
    return int(text)


# --- split messages --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A whole message: one frame, or every packet of a split one in PNO order. Each packet carries a complete
    data area (its own DataTime), so the message's records are the packets' records in order."""

    parts: tuple[Frame, ...]

    @property
    def frame(self) -> Frame:
        return self.parts[0]

    @property
    def records(self) -> tuple[DataRecord, ...]:
        if len(self.parts) == 1:
            return self.parts[0].records
        return tuple(chain.from_iterable(p.records for p in self.parts))


class Reassembler:
    """Collects the packets of split messages (PNUM/PNO, HJ212-T3) into :class:`Message` objects.

    A small pure state machine: :meth:`push` takes a parsed frame and the caller's clock, and returns the message
    once all its packets are in (any order); unsplit frames come straight back. Packets of one message share
    (MN, ST, CN, QN). An identical repeat of a packet is ignored (``duplicates``); a packet that contradicts one
    already held (other content under the same PNO, another PNUM) raises ``Hj212Error('split')`` and drops the
    message. Memory is bounded: at most ``max_messages`` incomplete messages (the oldest is evicted first) of at
    most ``max_packets`` packets each, and :meth:`expire` drops those older than ``timeout_s``.
    """

    def __init__(self, *, max_messages: int = 256, max_packets: int = 64, timeout_s: float = 600.0) -> None:
        if max_messages < 1 or max_packets < 1 or timeout_s <= 0:
            raise ValueError("max_messages and max_packets must be >= 1 and timeout_s > 0")
        self.max_messages = max_messages
        self.max_packets = max_packets
        self.timeout_s = timeout_s
        # (MN, ST, CN, QN) -> (first seen, packets by number); insertion order = age order
        self._pending: dict[tuple[str | None, str, str, str], tuple[float, dict[int, Frame]]] = {}
        self.duplicates = 0
        self.evicted = 0
        self.expired = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def push(self, frame: Frame, now_s: float) -> Message | None:
        if frame.pnum is None:
            return Message((frame,))
        key, pnum, pno = self._split_key(frame, frame.pnum)
        packets = self._packets(key, now_s)
        if packets:
            earlier = next(iter(packets.values())).pnum
            if pnum != earlier:
                del self._pending[key]
                raise Hj212Error("split", f"QN={frame.qn}: packet {pno} says PNUM={pnum}, "
                                          f"earlier packets said {earlier}; message dropped")
        held = packets.get(pno)
        if held is not None:
            if held.cp == frame.cp:
                self.duplicates += 1
                return None
            del self._pending[key]
            raise Hj212Error("split", f"QN={frame.qn}: two different packets numbered {pno}; message dropped")
        packets[pno] = frame
        if len(packets) < pnum:
            return None
        del self._pending[key]
        return Message(tuple(packets[i] for i in range(1, pnum + 1)))

    def _split_key(self, frame: Frame, pnum: int) -> tuple[tuple[str | None, str, str, str], int, int]:
        """(message key, PNUM, PNO) of a split packet, or the refusal of one that cannot be joined."""
        if pnum > self.max_packets:
            raise Hj212Error("split", f"PNUM={pnum} exceeds the limit of {self.max_packets} packets")
        if frame.qn is None:
            raise Hj212Error("split", "a split packet without QN cannot be matched to its message")
        if frame.pno is None:  # the parser never makes one (PNUM and PNO come together)
            raise Hj212Error("split", "a split packet without PNO cannot be placed in its message")
        return (frame.mn, frame.st, frame.cn, frame.qn), pnum, frame.pno

    def _packets(self, key: tuple[str | None, str, str, str], now_s: float) -> dict[int, Frame]:
        """The packets held for a message, a new message dropping the oldest when the table is full."""
        entry = self._pending.get(key)
        if entry is None:
            if len(self._pending) >= self.max_messages:
                del self._pending[next(iter(self._pending))]
                self.evicted += 1
            entry = self._pending[key] = (now_s, {})
        return entry[1]

    def expire(self, now_s: float) -> list[tuple[str | None, str, str, str]]:
        """Drop incomplete messages first seen more than ``timeout_s`` ago; return their (MN, ST, CN, QN)."""
        gone = [k for k, (t0, _) in self._pending.items() if now_s - t0 > self.timeout_s]
        for k in gone:
            del self._pending[k]
        self.expired += len(gone)
        return gone
