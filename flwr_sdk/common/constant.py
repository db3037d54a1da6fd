"""Constants of Flower's ``flwr.common`` that client code uses."""

from __future__ import annotations

from typing import ClassVar

from flwr_sdk.common.message import MessageType
from flwr_sdk.constants import DEFAULT_MAX_MESSAGE_LENGTH

__all__ = ["DEFAULT_TTL", "GRPC_MAX_MESSAGE_LENGTH", "MessageType", "MessageTypeLegacy"]

DEFAULT_TTL = 3600
"""Default time-to-live of a message, in seconds (Flower's ``DEFAULT_TTL``)."""

GRPC_MAX_MESSAGE_LENGTH = DEFAULT_MAX_MESSAGE_LENGTH
"""Default largest gRPC message, in bytes: 512 MiB (``start_client``'s default)."""


class MessageTypeLegacy:
    """The ``message_type`` strings of the two legacy-only instructions."""

    GET_PROPERTIES: ClassVar[str] = "get_properties"
    GET_PARAMETERS: ClassVar[str] = "get_parameters"
