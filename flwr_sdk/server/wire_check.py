"""Refuse malformed protobuf bytes before decoding them.

betterproto2 decodes leniently: some malformed input (e.g. a truncated varint tag)
silently becomes a default message. A server must instead answer "bad request", as
Flower's protobuf runtime does. :func:`check_wire_format` walks the top level of a
serialized message (tags, varints, fixed-width values, length-delimited fields) and
raises :class:`ValueError` on anything malformed; :class:`StrictProtoCodec` applies it to
every gRPC request the server receives. :class:`StrictFastProtoCodec` (what the reference
server uses) decodes the tensor-bearing messages with the generated fast codec, which
refuses malformed input itself, and checks every other message like
:class:`StrictProtoCodec`.
"""

from __future__ import annotations

from typing import Any

from grpclib.encoding.proto import ProtoCodec

from flwr_sdk.net.fast_codec import FastProtoCodec, decode_message, fast_codec_for

__all__ = ["StrictFastProtoCodec", "StrictProtoCodec", "check_wire_format", "strict_decode"]

_MAX_VARINT_BYTES = 10


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    for shift_index in range(_MAX_VARINT_BYTES):
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << (7 * shift_index)
        if not byte & 0x80:
            return result, pos
    raise ValueError("varint longer than 10 bytes")


def check_wire_format(data: bytes | memoryview) -> None:
    """Raise ValueError unless ``data`` is a well-formed sequence of protobuf fields."""
    view = memoryview(data)
    pos = 0
    end = len(view)
    while pos < end:
        tag, pos = _varint(view, pos)
        field_number, wire_type = tag >> 3, tag & 7
        if field_number == 0:
            raise ValueError("field number 0")
        if wire_type == 0:
            _, pos = _varint(view, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 2:
            length, pos = _varint(view, pos)
            pos += length
        elif wire_type == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if pos > end:
            raise ValueError("field runs past the end of the message")


def strict_decode(message_type: type[Any], data: bytes | memoryview) -> Any:
    """Decode ``data``, refusing malformed bytes of every message type.

    Types the generated fast codec covers are decoded by it (malformed input raises
    :class:`~flwr_sdk.errors.ProtocolError`); the others are checked with
    :func:`check_wire_format` (``ValueError``) first, then parsed by betterproto2.
    """
    if fast_codec_for(message_type) is None:
        check_wire_format(data)
    return decode_message(message_type, data)


class StrictProtoCodec(ProtoCodec):
    """grpclib's protobuf codec, refusing malformed bytes instead of guessing."""

    def decode(self, data: bytes, message_type: Any) -> Any:
        """Check the wire format, then decode."""
        check_wire_format(data)
        return super().decode(data, message_type)


class StrictFastProtoCodec(FastProtoCodec):
    """The fast codec (chunked sends), decoding with :func:`strict_decode`."""

    def __init__(self) -> None:
        super().__init__(chunked=True)

    def decode(self, data: bytes, message_type: Any) -> Any:
        """Decode with :func:`strict_decode`."""
        return strict_decode(message_type, data)
