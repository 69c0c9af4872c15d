"""The receiving side of one HJ 212 connection, as a pure state machine (no sockets, no clock of its own).

Both receivers, the gateway's (``edge_agent/hj212/receiver.py``) and the centre's (``ingest/hj212_server.py``), are
an upper platform to the dataloggers that connect to them. They share this core: bytes in (``feed``), events out,
which each shell carries out its own way (write a reply; store an upload, then write its acknowledgement; count or
dead-letter a refusal). Keeping the protocol here means the two cannot answer differently.

Per frame, in order (docs/hj212.md, "Receivers"):

1. :class:`~.stream.FrameSplitter` cuts the stream (bounded memory), :func:`~.frame.parse_frame` checks it. A
   refused frame (CRC, length...) is reported with the codec's reason and never answered: HJ212-CRC ends
   processing there, and the datalogger re-sends what is not acknowledged.
2. The MN must be registered (``unknown_mn``) and the password must match (``bad_password``, compared in constant
   time). Neither is answered either: a datalogger that is not ours keeps its data.
3. Data uploads (2011, 2051, 2061, 2031) are reassembled (PNUM/PNO), converted (:mod:`.readings`) and returned as
   :class:`Upload` with their data answer (9014, when the Flag asks for one, HJ212-ANS), which the shell sends only
   once the data are stored (HJ212-ACK-STORED): an acknowledged upload is never lost. A packet that is not the last
   of its message is answered at once (the datalogger sends the next one only then). A message whose content was
   already stored (a retransmission: same MN, CN and data area, whatever its QN) is acknowledged again but not stored
   twice.
4. A heartbeat (9015) asking for an answer gets a notification answer (9013; HJ212-9015-ANS [U]: which answer
   HJ 212-2025 wants is not confirmed); a time calibration request (1013) gets the platform's time (1012,
   ``SystemTime``); other frames asking for an answer get a notification answer (9013); answers (9011-9014) are never
   answered.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import NamedTuple

from ..batch import TS_MAX_NS, TS_MIN_NS
from .build import build_frame, build_response, format_qn, format_time, make_flag
from .commands import DATA_UPLOADS
from .crc import crc16_hex
from .datarea import CHINA_TZ, DEFAULT_FLAGS, FlagTable, Version
from .errors import Hj212Error
from .frame import MAX_SEGMENT_FORMAT, Frame, Message, Reassembler, parse_frame
from .readings import Converted, SourceMap, message_columns
from .stream import MAX_FRAME_BYTES, FrameSplitter

__all__ = ["REFUSALS", "Dedup", "ReceiverSession", "Refused", "Registration", "Reply", "Seen", "Upload"]

#: Why a receiver refuses a frame (metric label, dead-letter reason). Codec refusals keep the codec's own reason
#: (``crc``, ``length``...; :data:`~.errors.REASONS`), reported as ``crc`` or ``undecodable`` by the centre.
REFUSALS = {
    "unknown_mn": "the MN is not registered in any site file (or the frame has none)",
    "bad_password": "the password (PW) is not the one registered for the MN",
    "bad_time": "a record's DataTime is outside the years a reading batch holds (2000-2199)",
}


@dataclass(frozen=True)
class Registration:
    """What a receiver knows of one datalogger: its source, its password and the site's time zone."""

    source: SourceMap
    password: str
    tz: tzinfo = CHINA_TZ

    @property
    def mn(self) -> str:
        return self.source.mn


class Reply(NamedTuple):
    """Send these bytes now."""

    raw: bytes
    frame: Frame | None  # what it answers (None: a command of our own)


class Upload(NamedTuple):
    """A whole data upload of a registered datalogger: store ``converted`` (unless ``duplicate``), then send
    ``ack`` (None: the datalogger asked for none). ``digest`` identifies its content (:class:`Dedup`)."""

    registration: Registration
    message: Message
    converted: Converted
    ack: bytes | None
    duplicate: bool
    digest: bytes = b""


class Refused(NamedTuple):
    """A frame or message not accepted: ``reason`` (a codec reason or one of :data:`REFUSALS`), what is wrong,
    the bytes as received, and the MN when one could be read."""

    reason: str
    detail: str
    raw: bytes
    mn: str | None


class Seen(NamedTuple):
    """Any other valid frame of a registered datalogger (answers, heartbeats, notifications): for logs and probes."""

    registration: Registration
    frame: Frame


Event = Reply | Upload | Refused | Seen


class Dedup:
    """Contents of the uploads already stored, per MN: the newest ``per_mn`` of each, so that a retransmission is
    acknowledged without being stored twice. Shared by all connections of a receiver (a datalogger re-sends on a
    new connection after a reconnect). Bounded: ``per_mn`` digests per MN, ``max_mns`` MNs (least recent evicted)."""

    def __init__(self, per_mn: int = 4096, max_mns: int = 100_000) -> None:
        self.per_mn, self.max_mns = per_mn, max_mns
        self._seen: OrderedDict[str, OrderedDict[bytes, None]] = OrderedDict()

    @staticmethod
    def digest(message: Message) -> bytes:
        f = message.frame
        h = hashlib.blake2b(f"{f.cn};{f.st}".encode(), digest_size=16)
        for p in message.parts:
            h.update(p.cp.encode())
            h.update(b"&&")
        return h.digest()

    def seen(self, mn: str, digest: bytes) -> bool:
        d = self._seen.get(mn)
        return d is not None and digest in d

    def add(self, mn: str, digest: bytes) -> None:
        d = self._seen.get(mn)
        if d is None:
            if len(self._seen) >= self.max_mns:
                self._seen.popitem(last=False)
            d = self._seen[mn] = OrderedDict()
        else:
            self._seen.move_to_end(mn)
        d[digest] = None
        if len(d) > self.per_mn:
            d.popitem(last=False)


def _peek_mn(raw: bytes) -> str | None:
    """The MN field as written, before the frame is checked (to pick the site's time zone for parsing)."""
    at = raw.find(b"MN=")
    if at < 0:
        return None
    end = raw.find(b";", at)
    return raw[at + 3:end].strip().decode("ascii", "replace") if end > 0 else None


#: The 9013/9014 answers' data segment after ``QN=<qn>`` (``;ST=91;CN=...;PW=...;MN=...;Flag=...;CP=&&&&``), per
#: (CN, PW, MN, edition), as :func:`~.build.build_response` wrote it the first time: an answer is then its QN, that
#: text, the length and the CRC (about 1.5 µs less than building it field by field).
_ANSWER_RESTS: dict[tuple[str, str, str, Version], bytes] = {}


class ReceiverSession:
    """One connection's protocol state: feed bytes, get events. ``lookup(mn)`` returns the registration or None."""

    def __init__(self, lookup: Callable[[str], Registration | None], *, dedup: Dedup | None = None,
                 strict: bool = False, flags: FlagTable = DEFAULT_FLAGS, max_frame_bytes: int = MAX_FRAME_BYTES,
                 max_messages: int = 64, max_packets: int = 64, split_timeout_s: float = 600.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.lookup, self.dedup = lookup, dedup if dedup is not None else Dedup()
        self.strict, self.flags, self.clock = strict, flags, clock
        self.splitter = FrameSplitter(max_frame_bytes)
        self.joiner = Reassembler(max_messages=max_messages, max_packets=max_packets, timeout_s=split_timeout_s)
        self._max_segment = min(MAX_SEGMENT_FORMAT, max_frame_bytes - 12)
        self.mns: set[str] = set()  # registered MNs seen on this connection
        self.frames = 0

    def feed(self, data: bytes, now_s: float) -> list[Event]:
        """Bytes as received (any cut); the events they complete, in order."""
        events: list[Event] = []
        for raw in self.splitter.feed(data):
            self.frames += 1
            self._frame(raw, now_s, events)
        if self.joiner.pending:
            for mn, _st, cn, qn in self.joiner.expire(now_s):
                events.append(Refused("split", f"MN={mn} CN={cn} QN={qn}: packets missing after "
                                               f"{self.joiner.timeout_s:g} s; message dropped", b"", mn))
        return events

    def _frame(self, raw: bytes, now_s: float, events: list[Event]) -> None:
        peeked = _peek_mn(raw)
        reg = self.lookup(peeked) if peeked else None
        tz = reg.tz if reg is not None else CHINA_TZ
        try:
            frame = parse_frame(raw, strict=self.strict, tz=tz, flags=self.flags, max_segment_bytes=self._max_segment)
        except Hj212Error as exc:
            events.append(Refused(exc.reason, exc.detail, raw, peeked))
            return
        if frame.mn != peeked or reg is None:
            reg = self.lookup(frame.mn) if frame.mn else None
            if reg is None:
                events.append(Refused("unknown_mn", f"MN={frame.mn!r} is not registered", raw, frame.mn))
                return
            if reg.tz is not tz:  # parsed in another zone than the site's: read it again in the right one
                frame = parse_frame(raw, strict=self.strict, tz=reg.tz, flags=self.flags,
                                    max_segment_bytes=self._max_segment)
        if frame.pw is None or not hmac.compare_digest(frame.pw.encode(), reg.password.encode()):
            events.append(Refused("bad_password", f"MN={frame.mn}: PW does not match the registered password",
                                  raw, frame.mn))
            return
        self.mns.add(reg.mn)
        self._dispatch(reg, frame, raw, now_s, events)

    def _dispatch(self, reg: Registration, frame: Frame, raw: bytes, now_s: float, events: list[Event]) -> None:
        """What an authenticated frame calls for: storing an upload, answering, or only noting it."""
        cn = frame.cn
        if cn in DATA_UPLOADS:
            self._upload(reg, frame, raw, now_s, events)
        elif cn[0] == "9":  # answers and the heartbeat
            events.append(Seen(reg, frame))
            if cn == "9015" and frame.ack_requested:
                events.append(Reply(self._answer("9013", frame), frame))
        else:
            events.append(Seen(reg, frame))
            if cn == "1013":  # the site asks for the time: set it (HJ212-T9, 1012 SystemTime)
                events.append(Reply(self._set_time(reg, frame), frame))
            elif frame.ack_requested:
                events.append(Reply(self._answer("9013", frame), frame))

    def _upload(self, reg: Registration, frame: Frame, raw: bytes, now_s: float, events: list[Event]) -> None:
        try:
            message = self.joiner.push(frame, now_s)
        except Hj212Error as exc:
            events.append(Refused(exc.reason, exc.detail, raw, frame.mn))
            return
        ack = self._answer("9014", frame) if frame.ack_requested else None
        if message is None:  # a packet of a split message: answered now, the datalogger sends the next one then
            if ack is not None:
                events.append(Reply(ack, frame))
            return
        digest = Dedup.digest(message)
        duplicate = self.dedup.seen(reg.mn, digest)
        converted = message_columns(message, reg.source)
        if converted.ts_list and not (min(converted.ts_list) >= TS_MIN_NS and max(converted.ts_list) < TS_MAX_NS):
            events.append(Refused("bad_time", f"MN={frame.mn} CN={frame.cn} QN={frame.qn}: DataTime outside "
                                              f"2000-2199", b"".join(p.raw for p in message.parts), frame.mn))
            return
        events.append(Upload(reg, message, converted, ack, duplicate, digest))

    def stored(self, upload: Upload) -> None:
        """The shell stored ``upload`` (durably): later retransmissions of it are duplicates."""
        self.dedup.add(upload.registration.mn, upload.digest or Dedup.digest(upload.message))

    @staticmethod
    def _answer(cn: str, frame: Frame) -> bytes:
        version = frame.version if frame.version in (Version.HJ212_2017, Version.HJ212_2025) else Version.HJ212_2017
        qn, pw, mn = frame.qn or format_qn(datetime.now(UTC)), frame.pw or "", frame.mn or ""
        rest = _ANSWER_RESTS.get((cn, pw, mn, version))
        if rest is None:
            answer = build_response(cn, qn=qn, pw=pw, mn=mn, version=version)
            if len(_ANSWER_RESTS) >= 65_536:
                _ANSWER_RESTS.clear()
            _ANSWER_RESTS[(cn, pw, mn, version)] = answer[6 + 3 + len(qn.encode()):-6]
            return answer
        segment = b"QN=%s%s" % (qn.encode(), rest)
        if len(segment) > MAX_SEGMENT_FORMAT:  # build_response says what is wrong
            return build_response(cn, qn=qn, pw=pw, mn=mn, version=version)
        return b"##%04d%s%s\r\n" % (len(segment), segment, crc16_hex(segment).encode("ascii"))

    def _set_time(self, reg: Registration, frame: Frame) -> bytes:
        now = self.clock()
        version = frame.version if frame.version in (Version.HJ212_2017, Version.HJ212_2025) else Version.HJ212_2017
        pol = frame.data.params.get("PolId")
        cp = (f"PolId={pol};" if isinstance(pol, str) else "") + f"SystemTime={format_time(now, reg.tz)}"
        return build_frame(st=frame.st, cn="1012", pw=frame.pw or "", mn=frame.mn or "", qn=format_qn(now, reg.tz),
                           flag=make_flag(version, ack=True), cp=cp)
