"""Constants every layer shares: one place for each (layer 0, imports nothing).

Names and numbers that more than one module needs live here, so that the copies
cannot drift: the transport names ``start_client`` and the reference server accept,
the default message-size limit, and the integer ranges of protobuf's 64-bit types.
"""

from __future__ import annotations

__all__ = [
    "AUTH_TRANSPORTS",
    "DEFAULT_MAX_MESSAGE_LENGTH",
    "DEFAULT_TRANSPORT",
    "FLEET_TRANSPORTS",
    "INT64_MAX",
    "INT64_MIN",
    "TRANSPORTS",
    "UINT64_MAX",
]

TRANSPORTS: tuple[str, ...] = ("grpc-bidi", "grpc-rere", "rest")
"""Transport names, as ``start_client(transport=...)`` and the CLI spell them."""

DEFAULT_TRANSPORT = "grpc-bidi"
"""What ``transport=None`` means (Flower 1.12's default)."""

FLEET_TRANSPORTS: tuple[str, ...] = ("grpc-rere", "rest")
"""Transports that speak a Fleet API (whose wire line differs from release to release)."""

AUTH_TRANSPORTS: tuple[str, ...] = ("grpc-rere",)
"""Transports that can carry node authentication."""

DEFAULT_MAX_MESSAGE_LENGTH = 536_870_912
"""512 MiB, the default of Flower's ``grpc_max_message_length``."""

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
