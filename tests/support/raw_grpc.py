"""A grpclib codec that leaves messages as the bytes they are, for channel-level tests.

The tests and benchmarks of the tuned grpclib connections (``flwr_sdk.net``) exchange raw
bytes: what is measured or checked is the connection, not a protobuf codec.
"""

from __future__ import annotations

from typing import Any

from grpclib.encoding.base import CodecBase

__all__ = ["RawBytesCodec"]


class RawBytesCodec(CodecBase):
    """Messages are bytes on the wire as they are (content subtype ``proto``)."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        """The message's bytes."""
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        """The bytes as received."""
        return data
