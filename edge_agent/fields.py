"""Building blocks of the gateway file's models: strict models, host names, numbers that must be finite, and
errors raised at the field they are about (so ``cems edge check`` names that field's line, not its device's)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = ["FiniteFloat", "Host", "Strict", "check_host", "field_error"]


class Strict(BaseModel):
    """A section of the gateway file: unknown keys are errors (a typo must not be ignored), values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


#: A number that must be finite (``.nan`` and ``.inf`` are valid YAML floats, and no valid scale or limit).
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _nonzero_scale(v: float) -> float:
    if v == 0:
        raise ValueError("scale 0 would turn every reading into the offset")
    return v


#: The factor of ``value = raw * scale + offset`` (Modbus points, OPC UA points): finite and never 0.
Scale = Annotated[FiniteFloat, AfterValidator(_nonzero_scale)]

# A label of a host name: letters, digits and hyphens, 1 to 63 characters, no hyphen at either end (RFC1123-2.1);
# underscores are let through, as resolvers and container networks accept them in practice.
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def check_host(text: str) -> str:
    """``text`` if it is an IPv4 or IPv6 address or a syntactically valid host name (RFC1123-2.1: labels of 1-63
    letters, digits and hyphens, at most 253 characters, the last label not all digits); ``ValueError`` otherwise.
    Whether the name resolves is the network's business at run time."""
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    name = text.removesuffix(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise ValueError(f"{text!r} is not a host name or an IP address")
    return text


def _host(text: str) -> str:
    return check_host(text.strip())


#: A host name or IP address, checked (see :func:`check_host`).
Host = Annotated[str, AfterValidator(_host)]


def field_error(title: str, loc: Sequence[str | int], message: str, value: Any) -> ValidationError:
    """An error at ``loc`` below the model being validated, to raise from a model validator: pydantic prefixes the
    outer location, so a problem found across a device's points is reported at the point's own field."""
    return ValidationError.from_exception_data(title, [InitErrorDetails(
        type=PydanticCustomError("value_error", message), loc=tuple(loc), input=value)])
