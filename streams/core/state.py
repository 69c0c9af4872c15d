"""The codec of the processor's state segments: numpy arrays (and JSON metadata) in one ``.npz`` blob each.

Pure: what a segment holds is the processor's and the monthly rollup's business (``streams/core/processor.py``);
where segments are kept is the runtime's (``streams/runtime/state_store.py``: pieces under a manifest in the
compacted state topic).
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

__all__ = ["json_array", "npz_bytes"]


def npz_bytes(**arrays: Any) -> bytes:
    """Arrays in one uncompressed ``.npz`` blob (``np.load`` reads it back)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def json_array(obj: Any) -> np.ndarray:
    """JSON as a uint8 array, to travel inside an npz."""
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)
