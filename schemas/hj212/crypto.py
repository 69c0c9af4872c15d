"""HJ 212-2025 data-area encryption (SM4, ECB, no padding), read side only (HJ212-2025-SM4 [S]).

Between ``CP=&&`` and the closing ``&&`` an encrypted frame carries its SM4 ciphertext as ``{0xE4,0x3E,...}``
(whole 16-byte blocks) followed by the plaintext tail shorter than one block. The CRC is computed on the plaintext
data segment before encryption, so a frame is checked after decryption. SM4 comes from the ``cryptography``
package (the ``sm4`` extra); it is imported only when a key is given.
"""

from __future__ import annotations

from .._optional import needs_extra
from .errors import Hj212Error

__all__ = ["decrypt_segment", "is_encrypted"]

_OPEN = b"CP=&&{0x"


def is_encrypted(segment: bytes) -> bool:
    return _OPEN in segment


def _sm4_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    with needs_extra("sm4", "decrypting HJ 212-2025 frames"):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    d = Cipher(algorithms.SM4(key), modes.ECB()).decryptor()
    return d.update(data) + d.finalize()


def decrypt_segment(segment: bytes, key: bytes) -> bytes:
    """The plaintext data segment of an encrypted one (the ``{0x..}`` list decrypted, the tail kept as sent)."""
    if len(key) != 16:
        raise ValueError(f"an SM4 key is 16 bytes, not {len(key)}")
    start = segment.index(_OPEN) + 5
    close = segment.find(b"}", start)
    if close < 0 or not segment.endswith(b"&&") or close > len(segment) - 2:
        raise Hj212Error("encrypted", "encrypted data area has no closing '}' before '&&'")
    items = segment[start + 1:close].split(b",")
    try:
        cipher = bytes(int(x, 16) for x in items if x.strip()[:2].lower() == b"0x" and len(x.strip()) <= 4)
    except ValueError:
        cipher = b""
    if len(cipher) != len(items) or not cipher or len(cipher) % 16:
        raise Hj212Error("encrypted", f"encrypted data area is not a list of 0xHH bytes in whole 16-byte blocks "
                                      f"({len(items)} items)")
    return segment[:start] + _sm4_ecb_decrypt(key, cipher) + segment[close + 1:]
