"""HJ 212 (2005, 2017, 2025) codec: the wire contract between CEMS dataloggers and environmental platforms.

Pure functions and small state machines, no sockets: :class:`FrameSplitter` turns a TCP byte stream into frames,
:func:`parse_frame` checks and parses one frame, :class:`Reassembler` joins split messages, and :mod:`.build`
writes frames. Support per edition, sources and what is unconfirmed: docs/hj212.md.
"""

from .build import (
                    build_data_upload,
                    build_frame,
                    build_heartbeat,
                    build_response,
                    format_qn,
                    format_time,
                    make_flag,
)
from .crc import crc16, crc16_hex
from .datarea import (
                    CHINA_TZ,
                    DEFAULT_FLAGS,
                    FLAGS_2005,
                    FLAGS_2017,
                    LEGACY_CODES,
                    DataArea,
                    DataRecord,
                    FlagTable,
                    Version,
                    parse_data_area,
)
from .errors import REASONS, Hj212Error
from .frame import Frame, Message, Reassembler, parse_frame
from .readings import Converted, SourceMap, message_columns, period_of_upload
from .stream import FrameSplitter

__all__ = [
                    "CHINA_TZ",
                    "DEFAULT_FLAGS",
                    "FLAGS_2005",
                    "FLAGS_2017",
                    "LEGACY_CODES",
                    "REASONS",
                    "Converted",
                    "DataArea",
                    "DataRecord",
                    "FlagTable",
                    "Frame",
                    "FrameSplitter",
                    "Hj212Error",
                    "Message",
                    "Reassembler",
                    "SourceMap",
                    "Version",
                    "build_data_upload",
                    "build_frame",
                    "build_heartbeat",
                    "build_response",
                    "crc16",
                    "crc16_hex",
                    "format_qn",
                    "format_time",
                    "make_flag",
                    "message_columns",
                    "parse_data_area",
                    "parse_frame",
                    "period_of_upload",
]
