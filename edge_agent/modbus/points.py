"""What to read from a Modbus device: one :class:`ModbusPoint` per measured value.

Addresses are the 0-based protocol addresses on the wire. Device manuals often print 1-based
"register numbers" (40001 = holding register 0); Telegraf's and PLC4X's issue trackers are full of
that off-by-one (docs/sources.md MODBUS-ADDR0), so the configuration says which it uses
(``address_base``) and the model always stores the wire address.

Byte and word order use the four usual names for a 32-bit value with bytes A B C D, most
significant first (as Telegraf and PLC4X name them): ``ABCD`` big-endian, ``CDAB`` word-swapped,
``BADC`` byte-swapped within each register, ``DCBA`` little-endian. The same two choices (word
order, byte order within a register) extend to 64-bit values; 16-bit values only use the byte order.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..fields import FiniteFloat, Scale, field_error

__all__ = ["WORDS", "ByteOrder", "DataType", "ModbusPoint", "RegisterType"]


class RegisterType(StrEnum):
    holding = "holding"  # function 3, 16-bit words
    input = "input"  # function 4, 16-bit words
    coil = "coil"  # function 1, bits
    discrete = "discrete"  # function 2, bits

    @property
    def is_bits(self) -> bool:
        return self in (RegisterType.coil, RegisterType.discrete)


class DataType(StrEnum):
    bool = "bool"
    int16 = "int16"
    uint16 = "uint16"
    int32 = "int32"
    uint32 = "uint32"
    float32 = "float32"
    float64 = "float64"


#: Registers (16-bit words) per data type; a bool takes one bit.
WORDS = {
    DataType.bool: 1,
    DataType.int16: 1,
    DataType.uint16: 1,
    DataType.int32: 2,
    DataType.uint32: 2,
    DataType.float32: 2,
    DataType.float64: 4,
}


class ByteOrder(StrEnum):
    ABCD = "ABCD"  # big-endian words, big-endian bytes (Modbus default)
    CDAB = "CDAB"  # little-endian word order, big-endian bytes in each register
    BADC = "BADC"  # big-endian word order, bytes swapped in each register
    DCBA = "DCBA"  # little-endian throughout

    @property
    def words_swapped(self) -> bool:
        return self in (ByteOrder.CDAB, ByteOrder.DCBA)

    @property
    def bytes_swapped(self) -> bool:
        return self in (ByteOrder.BADC, ByteOrder.DCBA)


class ModbusPoint(BaseModel):
    """One value read from a device and the channel it feeds."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    channel: str = Field(description="Site-model channel id this point feeds.")
    source: str | None = Field(default=None, description="Site source of the channel, when not the device's "
                                                         "(a datalogger serving several stacks).")
    unit_id: int = Field(default=1, ge=0, le=255, description="Modbus unit (slave/device) id.")
    register_type: RegisterType = Field(default=RegisterType.holding, alias="register")
    address: int = Field(ge=0, le=65535, description="0-based protocol address.")
    data_type: DataType = DataType.float32
    byte_order: ByteOrder = ByteOrder.ABCD
    scale: Scale = Field(default=1.0, description="value = raw * scale + offset (never 0).")
    offset: FiniteFloat = 0.0
    low: FiniteFloat | None = Field(default=None, description="Below this the reading is flagged T (out of range).")
    high: FiniteFloat | None = Field(default=None, description="Above this the reading is flagged T (out of range).")
    address_base: Literal[0, 1] = Field(
        default=0, description="1 if `address` was copied from a manual that counts registers from 1."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModbusPoint:
        if self.register_type.is_bits != (self.data_type == DataType.bool):
            holds = "bits" if self.register_type.is_bits else "16-bit words"
            raise field_error("ModbusPoint", ("data_type",), f"{self.register_type} registers hold {holds}; "
                              f"data_type {self.data_type} does not fit", self.data_type.value)
        if self.low is not None and self.high is not None and self.low > self.high:
            raise field_error("ModbusPoint", ("high",), f"high {self.high:g} is below low {self.low:g}", self.high)
        if self.address < self.address_base:
            raise field_error("ModbusPoint", ("address",), f"address {self.address} is below the base "
                              f"{self.address_base} it is counted from", self.address)
        if self.wire_address + self.words > 65536:
            raise field_error("ModbusPoint", ("address",), f"address {self.address} + {self.words} registers runs "
                              f"past 65535", self.address)
        return self

    @property
    def words(self) -> int:
        return WORDS[self.data_type]

    @property
    def wire_address(self) -> int:
        return self.address - self.address_base
