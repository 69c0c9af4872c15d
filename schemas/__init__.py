"""Contracts every other package imports: the reading-batch wire format, the site model, the HJ 212
vocabulary and the exception types. Imports nothing from the rest of the project."""

from .batch import SCHEMA_VERSION, ChannelSpec, ReadingBatch, decode_batch, encode_batch
from .errors import (
    BatchDecodeError,
    BatchError,
    CemsError,
    ConfigError,
    UnsupportedSchemaVersion,
)
from .quantities import QUANTITIES, UNITS, Flag

__all__ = [
    "QUANTITIES",
    "SCHEMA_VERSION",
    "UNITS",
    "BatchDecodeError",
    "BatchError",
    "CemsError",
    "ChannelSpec",
    "ConfigError",
    "Flag",
    "ReadingBatch",
    "UnsupportedSchemaVersion",
    "decode_batch",
    "encode_batch",
]
