"""A grpclib codec that leaves messages as the bytes they are, for channel-level tests.

The tests of the tuned grpclib connections (``flwr_sdk.net``) and of the servers' answers
to hand-made request bodies exchange raw bytes: what is checked is the connection or the
server, not a protobuf codec. (``bench/grpclib_tuning.py`` has its own: ``bench/`` does
not import ``tests/``.)
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
