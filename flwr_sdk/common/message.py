"""Messages exchanged with the server: :class:`Metadata`, :class:`Error`, :class:`Message`.

Plain Python, no wire types. A :class:`Message` carries either content (a
:class:`~flwr_sdk.common.records.RecordSet`) or an :class:`Error`, never both. Replies are
built with :meth:`Message.create_reply` / :meth:`Message.create_error_reply`, which apply
the reply-metadata rules that Flower servers check.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import ClassVar

from flwr_sdk.common.records import RecordSet
from flwr_sdk.constants import INT64_MAX, INT64_MIN, UINT64_MAX

__all__ = ["Error", "ErrorCode", "Message", "MessageType", "Metadata"]


class MessageType:
    """The ``message_type`` strings Flower uses."""

    TRAIN: ClassVar[str] = "train"
    EVALUATE: ClassVar[str] = "evaluate"
    QUERY: ClassVar[str] = "query"
    GET_PARAMETERS: ClassVar[str] = "get_parameters"
    GET_PROPERTIES: ClassVar[str] = "get_properties"
    RECONNECT: ClassVar[str] = "reconnect"
    """Control message of the grpc-bidi transport only."""


class ErrorCode:
    """``Error.code`` values.

    Clients produce only ``LOAD_CLIENT_APP_EXCEPTION`` and ``CLIENT_APP_RAISED_EXCEPTION``.
    Code 3 is produced by the server: ``NODE_UNAVAILABLE`` in Flower 1.12,
    ``MESSAGE_UNAVAILABLE`` in Flower 1.15 (which also has
    ``REPLY_MESSAGE_UNAVAILABLE`` = 4).
    """

    UNKNOWN: ClassVar[int] = 0
    LOAD_CLIENT_APP_EXCEPTION: ClassVar[int] = 1
    CLIENT_APP_RAISED_EXCEPTION: ClassVar[int] = 2
    NODE_UNAVAILABLE: ClassVar[int] = 3
    MESSAGE_UNAVAILABLE: ClassVar[int] = 3
    REPLY_MESSAGE_UNAVAILABLE: ClassVar[int] = 4


def _check_uint64(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"Metadata.{name} must be int, got {type(value).__name__}")
    if not 0 <= value <= UINT64_MAX:
        raise ValueError(f"Metadata.{name} must be an unsigned 64-bit integer, got {value}")


def _check_type(name: str, value: object, kind: type) -> None:
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be {kind.__name__}, got {type(value).__name__}")


def _as_float(owner: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}.{name} must be float, got {type(value).__name__}")
    return float(value)


@dataclass
class Metadata:
    """Addressing and bookkeeping of a message.

    Ids are unsigned 64-bit integers; ``ttl`` and ``created_at`` are seconds (unix time
    for ``created_at``, which defaults to now).
    """

    run_id: int
    message_id: str
    src_node_id: int
    dst_node_id: int
    reply_to_message: str
    group_id: str
    ttl: float
    message_type: str
    created_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        """Validate field types and ranges."""
        for name in ("run_id", "src_node_id", "dst_node_id"):
            _check_uint64(name, getattr(self, name))
        for name in ("message_id", "reply_to_message", "group_id", "message_type"):
            _check_type(f"Metadata.{name}", getattr(self, name), str)
        self.ttl = _as_float("Metadata", "ttl", self.ttl)
        self.created_at = _as_float("Metadata", "created_at", self.created_at)


@dataclass
class Error:
    """Why a message carries no content.

    ``code`` is one of the :class:`ErrorCode` values, ``reason`` a human-readable text.
    """

    code: int
    reason: str = ""

    def __post_init__(self) -> None:
        """Validate field types (``code`` is a signed 64-bit integer on the wire)."""
        if not isinstance(self.code, int) or isinstance(self.code, bool):
            raise TypeError(f"Error.code must be int, got {type(self.code).__name__}")
        if not INT64_MIN <= self.code <= INT64_MAX:
            raise ValueError(f"Error.code must be a signed 64-bit integer, got {self.code}")
        self.code = int(self.code)
        _check_type("Error.reason", self.reason, str)


class Message:
    """A message: :class:`Metadata` plus either content or an error (exactly one).

    Raises:
        ValueError: both or neither of ``content`` and ``error`` are given.
        TypeError: an argument has the wrong type.

    """

    __slots__ = ("_content", "_error", "_metadata")

    def __init__(
        self,
        metadata: Metadata,
        content: RecordSet | None = None,
        error: Error | None = None,
    ) -> None:
        """Create a message with ``content`` or ``error`` (exactly one)."""
        _check_type("metadata", metadata, Metadata)
        if (content is None) == (error is None):
            raise ValueError("a Message needs exactly one of content and error")
        if content is not None and not isinstance(content, RecordSet):
            raise TypeError(f"content must be RecordSet, got {type(content).__name__}")
        if error is not None and not isinstance(error, Error):
            raise TypeError(f"error must be Error, got {type(error).__name__}")
        self._metadata = metadata
        self._content = content
        self._error = error

    @property
    def metadata(self) -> Metadata:
        """The message's metadata."""
        return self._metadata

    @property
    def content(self) -> RecordSet:
        """The content. Raises ValueError for an error message (see :meth:`has_content`)."""
        if self._content is None:
            raise ValueError("this message carries an error, not content; check has_content()")
        return self._content

    @content.setter
    def content(self, value: RecordSet) -> None:
        if self._error is not None:
            raise ValueError("cannot set content on a message that carries an error")
        _check_type("content", value, RecordSet)
        self._content = value

    @property
    def error(self) -> Error:
        """The error. Raises ValueError for a content message (see :meth:`has_error`)."""
        if self._error is None:
            raise ValueError("this message carries content, not an error; check has_error()")
        return self._error

    @error.setter
    def error(self, value: Error) -> None:
        if self._content is not None:
            raise ValueError("cannot set an error on a message that carries content")
        _check_type("error", value, Error)
        self._error = value

    def has_content(self) -> bool:
        """Return True if the message carries content."""
        return self._content is not None

    def has_error(self) -> bool:
        """Return True if the message carries an error."""
        return self._error is not None

    def _reply_metadata(self, ttl: float | None) -> Metadata:
        incoming = self._metadata
        # The server and Flower's own client require created_at > incoming created_at;
        # with a clock behind the server's, step just past the incoming timestamp.
        created_at = max(time.time(), math.nextafter(incoming.created_at, math.inf))
        if ttl is None:
            ttl = incoming.ttl - (created_at - incoming.created_at)
        else:
            ttl = _as_float("create_reply", "ttl", ttl)
            if not ttl > 0:
                raise ValueError(f"ttl must be positive, got {ttl}")
        return Metadata(
            run_id=incoming.run_id,
            message_id="",
            src_node_id=incoming.dst_node_id,
            dst_node_id=incoming.src_node_id,
            reply_to_message=incoming.message_id,
            group_id=incoming.group_id,
            ttl=ttl,
            message_type=incoming.message_type,
            created_at=created_at,
        )

    def create_reply(self, content: RecordSet, ttl: float | None = None) -> Message:
        """Build the reply carrying ``content``.

        Reply metadata: same ``run_id``, ``group_id`` and ``message_type``;
        ``message_id=""``; source and destination swapped; ``reply_to_message`` = this
        message's id; ``created_at`` = now (always later than this message's); ``ttl`` =
        this message's ttl minus the time elapsed since it was created, unless ``ttl``
        is given.
        """
        return Message(self._reply_metadata(ttl), content=content)

    def create_error_reply(self, error: Error, ttl: float | None = None) -> Message:
        """Build the reply carrying ``error`` (metadata as in :meth:`create_reply`)."""
        return Message(self._reply_metadata(ttl), error=error)

    def __eq__(self, other: object) -> bool:
        """Equal when metadata, content and error are equal."""
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self._metadata == other._metadata
            and self._content == other._content
            and self._error == other._error
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        """Show metadata and content or error."""
        body = f"content={self._content!r}" if self._error is None else f"error={self._error!r}"
        return f"Message(metadata={self._metadata!r}, {body})"
