"""Refuse malformed protobuf bytes before decoding them.

betterproto2 decodes leniently: some malformed input (e.g. a truncated varint tag)
silently becomes a default message. A server must instead answer "bad request", as
Flower's protobuf runtime does. :func:`check_wire_format` (the net layer's framing check,
re-exported here) raises :class:`ValueError` on malformed tags, varints and lengths;
:class:`StrictProtoCodec` applies it to every gRPC request the server receives.
:class:`StrictFastProtoCodec` (what the reference server uses) decodes the tensor-bearing
messages with the generated fast codec, which refuses malformed input itself, and checks
every other message like :class:`StrictProtoCodec`.
"""

from __future__ import annotations

from typing import Any

from grpclib.encoding.proto import ProtoCodec

from flwr_sdk.net.fast_codec import (
    FastProtoCodec,
    check_wire_format,
    decode_message,
    fast_codec_for,
)

__all__ = ["StrictFastProtoCodec", "StrictProtoCodec", "check_wire_format", "strict_decode"]


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
