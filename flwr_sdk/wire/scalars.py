"""``flwr.proto.Scalar`` ⇄ Python values (identical in every Flower line).

A Scalar is a oneof; Python ``bool`` is checked before ``int`` (bool is an int subclass),
and integers above 2^63 - 1 travel in the ``uint64`` member, others in zig-zag ``sint64``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import betterproto2

from flwr_sdk.common.legacy_types import Scalar
from flwr_sdk.constants import INT64_MAX, INT64_MIN, UINT64_MAX


class ScalarMessage(Protocol):
    """What every line's generated ``Scalar`` class looks like."""

    double: float | None
    uint64: int | None
    sint64: int | None
    bool: bool | None
    string: str | None
    bytes: bytes | None


def scalar_fields(value: Scalar, *, key: str) -> dict[str, Any]:
    """The oneof member and value that carry ``value`` (keyword arguments for Scalar)."""
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        if value > INT64_MAX:
            if value > UINT64_MAX:
                raise ValueError(f"value of {key!r} does not fit in 64 bits: {value}")
            return {"uint64": value}
        if value < INT64_MIN:
            raise ValueError(f"value of {key!r} does not fit in 64 bits: {value}")
        return {"sint64": value}
    if isinstance(value, float):
        return {"double": value}
    if isinstance(value, str):
        return {"string": value}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": bytes(value)}
    raise TypeError(
        f"value of {key!r} must be bool, bytes, float, int or str, got {type(value).__name__}"
    )


def scalar_value(message: betterproto2.Message, *, key: str) -> Scalar:
    """The Python value a Scalar message carries; ValueError if it carries none."""
    member, value = betterproto2.which_one_of(message, "scalar")
    if not member:
        raise ValueError(f"value of {key!r} is an empty Scalar")
    if not isinstance(value, (bool, bytes, float, int, str)):
        raise ValueError(f"value of {key!r} has an unexpected type {type(value).__name__}")
    return value


def config_to_wire(config: Mapping[str, Scalar], scalar_type: type[Any]) -> dict[str, Any]:
    """A config dict as a ``map<string, Scalar>`` of ``scalar_type`` messages."""
    return {key: scalar_type(**scalar_fields(value, key=key)) for key, value in config.items()}


def config_from_wire(config: Mapping[str, betterproto2.Message]) -> dict[str, Scalar]:
    """A ``map<string, Scalar>`` as a plain dict."""
    return {key: scalar_value(value, key=key) for key, value in config.items()}
