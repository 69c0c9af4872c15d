"""TCP stream splitting: bytes in, whole frames out.

TCP keeps no message boundaries: one ``recv`` may hold half a frame, several frames ("sticky" packets), or noise
between them. :class:`FrameSplitter` finds each ``##``, reads the 4-digit length, and cuts the frame where that
length puts the ``<CR><LF>`` (HJ212-FRAME). Where the length field miscounts, the frame ends at the next
``<CR><LF>`` (which never occurs inside a data segment: HJ 212 text has no control characters); a frame a
datalogger sent without trailer ends where the next ``##`` begins. The splitter only cuts; :func:`parse_frame`
judges each piece, so a cut piece that is no valid frame is refused there with its reason.

Memory is bounded: a candidate frame that grows past ``max_frame_bytes`` without an end is dropped, and bytes
outside frames are discarded at once, so no byte stream can make the buffer grow without bound. Pure: no sockets,
no clock; the receiver and uplink built on it own the I/O.
"""

from __future__ import annotations

__all__ = ["MAX_FRAME_BYTES", "FrameSplitter"]

#: ``##`` + 4 + the largest length a 4-digit field can declare + CRC + ``<CR><LF>``.
MAX_FRAME_BYTES = 2 + 4 + 9999 + 4 + 2


class FrameSplitter:
    """Split a byte stream into HJ 212 frames (trailer included). Counters tell what was thrown away."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 12:
            raise ValueError("max_frame_bytes must hold at least an empty frame (12 bytes)")
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._scanned = 0  # bytes of the current candidate already searched for an end
        self.garbage_bytes = 0  # bytes outside any frame
        self.dropped_frames = 0  # candidates that began with '##' but never ended within the limit
        self.frames = 0

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial frame (a new connection must not continue the old one's bytes)."""
        self._buf.clear()
        self._scanned = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the frames completed by them, in order (often none, or several)."""
        buf = self._buf
        if not buf and type(data) is bytes and self._whole(data):  # one whole frame, as a datalogger sends it
            self.frames += 1
            return [data]
        buf += data
        out: list[bytes] = []
        while True:
            start = buf.find(b"##")
            if start < 0:
                keep = 1 if buf.endswith(b"#") else 0
                self._discard(len(buf) - keep)
                return out
            if start:
                self._discard(start)
            end = self._frame_end(buf)
            if end is None:
                if len(buf) > self.max_frame_bytes:
                    self._drop(2)  # no end within the limit: skip this '##' and look for the next one
                    continue
                return out
            if end < 0:  # a '##' that starts no frame (no length digits, or cut short by the next '##')
                self._drop(-end)
                continue
            if end > self.max_frame_bytes:
                self._drop(end)
                continue
            out.append(bytes(buf[:end]))
            del buf[:end]
            self._scanned = 0
            self.frames += 1

    def _whole(self, data: bytes) -> bool:
        """Whether ``data`` is exactly one frame whose length field puts its ``<CR><LF>`` at the end (what the
        general loop would cut as the only frame, leaving nothing)."""
        n = len(data)
        if n > self.max_frame_bytes or data[:2] != b"##" or data[-2:] != b"\r\n":
            return False
        digits = data[2:6]
        return len(digits) == 4 and digits.isdigit() and int(digits) + 12 == n

    def _frame_end(self, buf: bytearray) -> int | None:
        """Where the frame starting at 0 ends: > 0 cut there; < 0 drop that many bytes; None: wait for more."""
        if len(buf) < 6:
            return None
        digits = buf[2:6]
        if not digits.isdigit():
            return -1 if buf[1:3] == b"##" else -2  # '###0087...': the frame may start one byte later
        crc_end = 6 + int(digits) + 4
        tail = buf[crc_end:crc_end + 2]
        if tail == b"\r\n":
            return crc_end + 2
        if tail[:1] == b"\n":
            return crc_end + 1
        if tail == b"##":
            return crc_end  # sent without trailer; the next frame follows
        if len(buf) < crc_end + 2 and len(buf) <= self.max_frame_bytes and buf.find(b"\r\n", 6) < 0 \
                and buf.find(b"##", 2) < 0:
            return None  # the declared length may still be reached
        # The length field does not delimit the frame: end at the first CRLF, unless a new '##' comes first.
        scan_from = max(6, self._scanned - 1)
        crlf = buf.find(b"\r\n", scan_from)
        nxt = buf.find(b"##", 2)
        if crlf >= 0 and (nxt < 0 or crlf < nxt):
            return crlf + 2
        if nxt >= 0:
            return -nxt
        self._scanned = len(buf)
        return None

    def _discard(self, n: int) -> None:
        if n:
            del self._buf[:n]
            self.garbage_bytes += n
            self._scanned = 0

    def _drop(self, n: int) -> None:
        self.dropped_frames += 1
        self.garbage_bytes += n
        del self._buf[:n]
        self._scanned = 0
