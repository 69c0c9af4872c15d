"""The one exception the HJ 212 codec raises on purpose.

Every refusal carries a short stable ``reason`` (fit for a metric label or a dead-letter record) and a message that
names what is wrong and where (the field, or the byte offset in the frame). Anything else escaping the codec is a bug.
"""

from __future__ import annotations

from ..errors import CemsError

__all__ = ["REASONS", "Hj212Error"]

#: Every ``reason`` the codec uses, with what it means. Tests check that each one can be raised.
REASONS: dict[str, str] = {
    "header": "the frame does not start with '##'",
    "length": "the 4-digit length field is not digits, or does not match the data segment",
    "crc": "the CRC is not 4 hex digits, or does not match the data segment (processing stops, HJ212-CRC)",
    "trailer": "the frame does not end with <CR><LF>",
    "oversize": "the frame or data segment is longer than the limit",
    "encoding": "the data segment is not UTF-8 text, or holds control characters",
    "field": "a header or data-area field is missing, duplicated, out of order or malformed",
    "flag": "the Flag field is not 0-255, or its packet bit disagrees with PNUM/PNO",
    "version": "the Flag version bits name no known HJ 212 edition",
    "data_flag": "a data flag letter (xxxxxx-Flag) is not one the edition defines",
    "split": "a split packet (PNUM/PNO) is inconsistent with the other packets of its message",
    "encrypted": "the data area is SM4-encrypted (HJ 212-2025) and cannot be read without its key",
}


class Hj212Error(CemsError, ValueError):
    """A byte string that is not a valid HJ 212 frame (or split message), and why.

    ``reason`` is one of :data:`REASONS`; ``detail`` says exactly what is wrong and where.
    """

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:  # a typo here would hide a refusal under a new label
            raise AssertionError(f"unknown Hj212Error reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
