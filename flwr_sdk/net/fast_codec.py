"""The generated fast protobuf codecs behind one small API, and as a grpclib codec.

Each wire line's generated ``flwr_sdk_proto.<line>.fastcodec`` encodes the tensor-bearing
messages (Array, records, TaskIns/TaskRes, Message, the legacy ServerMessage /
ClientMessage, their Fleet envelopes, ...) in one size pass and one write pass, and decodes
them with ``Array.data`` / ``Parameters.tensors`` as memoryviews of the received buffer.
Its bytes equal google protobuf's. This module dispatches by message class over every
line and falls back to betterproto2 (``bytes(msg)`` / ``cls.parse``) for the rest:

* :func:`pre_encode`: encode a request that is sent unchanged many times (a session's
  heartbeat and poll) once; every encoder here then reuses its bytes;
* :func:`encode_message` / :func:`encode_message_chunks` / :func:`decode_message`: for
  transports that handle bodies themselves (REST streams the chunks as ~1 MiB pieces with
  an explicit ``Content-Length``);
* :class:`FastProtoCodec`: a grpclib ``CodecBase`` for ``Channel(codec=...)`` and
  ``Server(handlers, codec=...)`` (or wrapped in ``SizeLimitedCodec``); with
  ``chunked=True`` (every endpoint flwr-sdk creates) large messages are encoded as
  :class:`~flwr_sdk.net.chunks.EncodedChunks` that the tuned streams write frame by
  frame, so a message holding tensors is never materialised as a whole.

Buffers and ownership:

* Encoding returns a writable ``memoryview`` (format ``B``) over a fresh buffer owned by
  nobody else; ``len()`` is its size in bytes, slicing it is free and ``bytes + view``
  works. Chunked encoding references large ``bytes`` values (and the segments of
  ``NpyPayload`` tensors) instead of copying them: they must not change until sent.
* Decoding keeps memoryviews of ``data`` inside the returned message. On tuned endpoints
  with this codec, large bodies arrive as a writable memoryview of one buffer allocated
  for that message alone (:class:`~flwr_sdk.net.limits.SizeLimitedStream`); otherwise
  grpclib hands ``codec.decode`` a fresh (read-only) ``bytes``. Either way the views stay
  valid for as long as the message lives. Callers passing a ``bytearray`` or writable
  ``memoryview`` must not mutate it while decoded messages are in use. A ``bytes`` field
  then holds a ``memoryview`` at runtime (betterproto2 does not check field types);
  ``flwr_sdk.common.records.Array`` and ``flwr_sdk.common._npy.load_npy`` accept
  memoryviews and build numpy arrays on them without copying.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Protocol, TypeVar, cast

import betterproto2
from flwr_sdk_proto.v1_12 import fastcodec as fast_v1_12
from flwr_sdk_proto.v1_15 import fastcodec as fast_v1_15
from flwr_sdk_proto.v1_42 import fastcodec as fast_v1_42
from grpclib.encoding.base import CodecBase

from flwr_sdk.errors import ProtocolError
from flwr_sdk.net.chunks import EncodedChunks

__all__ = [
    "DECODE_ERRORS",
    "DEFAULT_CHUNK_SIZE",
    "FAST_CODECS",
    "FastProtoCodec",
    "check_wire_format",
    "decode_message",
    "encode_message",
    "encode_message_chunks",
    "fast_codec_for",
    "pre_encode",
]

M = TypeVar("M", bound=betterproto2.Message)

FAST_CODECS: tuple[ModuleType, ...] = (fast_v1_12, fast_v1_15, fast_v1_42)
"""The generated fast-codec modules, one per wire line."""

DECODE_ERRORS: tuple[type[ValueError], ...] = (
    fast_v1_12.DecodeError,
    fast_v1_15.DecodeError,
    fast_v1_42.DecodeError,
)
"""What the fast decoders raise on malformed input (all ``ValueError`` subclasses)."""

DEFAULT_CHUNK_SIZE = 1 << 20
"""Piece size of streamed REST bodies (1 MiB: httpx streams these without quadratic cost)."""


class _FastCodecModule(Protocol):
    """The part of a generated ``fastcodec`` module this module uses."""

    MESSAGE_TYPES: frozenset[type[betterproto2.Message]]

    def encode(self, msg: betterproto2.Message, *, deterministic: bool = False) -> memoryview:
        """Serialize a covered message."""

    def encode_chunks(
        self, msg: betterproto2.Message, *, deterministic: bool = False
    ) -> list[bytes | bytearray | memoryview]:
        """Serialize a covered message as consecutive buffers (large values referenced)."""

    def decode(self, cls: type[Any], data: bytes | bytearray | memoryview) -> Any:
        """Parse a covered message."""


def _registry(modules: tuple[ModuleType, ...]) -> dict[type, _FastCodecModule]:
    registry: dict[type, _FastCodecModule] = {}
    for module in modules:
        codec = cast(_FastCodecModule, module)
        for cls in codec.MESSAGE_TYPES:
            registry[cls] = codec
    return registry


_REGISTRY = _registry(FAST_CODECS)


def fast_codec_for(cls: type) -> ModuleType | None:
    """The generated fast-codec module covering ``cls`` exactly, or ``None``."""
    codec = _REGISTRY.get(cls)
    return cast(ModuleType, codec) if codec is not None else None


_ENCODED = "_flwr_sdk_encoded"
"""The attribute under which :func:`pre_encode` keeps a message's bytes."""


def pre_encode(message: M) -> M:
    """Encode ``message`` now and keep its bytes on it; return the same object.

    Every later (non-deterministic) encode of this object by this module, and by
    :class:`FastProtoCodec`, returns those bytes instead of encoding again: for requests
    a session sends unchanged many times (a heartbeat is encoded by betterproto2, which
    costs more than the rest of the call's client side). The bytes are exactly the normal
    encoding. ``message`` must not be changed afterwards (its bytes would be stale).
    """
    setattr(message, _ENCODED, bytes(encode_message(message)))
    return message


def _pre_encoded(message: object) -> bytes | None:
    """The bytes :func:`pre_encode` kept on ``message``, or None."""
    data: bytes | None = getattr(message, _ENCODED, None)
    return data


def encode_message(
    message: betterproto2.Message, *, deterministic: bool = False
) -> bytes | memoryview:
    """Serialize ``message``: fast codec when it covers the class, else betterproto2.

    Fast-encoded results are writable ``memoryview`` objects (see the module docs);
    betterproto2's are ``bytes``. Both hold protobuf's exact bytes. ``deterministic``
    orders map entries as upb's deterministic mode does (fast codec only). A message
    given to :func:`pre_encode` returns its kept bytes (unless ``deterministic``).
    """
    kept = None if deterministic else _pre_encoded(message)
    if kept is not None:
        return kept
    codec = _REGISTRY.get(type(message))
    if codec is None:
        return bytes(message)
    return codec.encode(message, deterministic=deterministic)


def encode_message_chunks(
    message: betterproto2.Message, *, deterministic: bool = False
) -> EncodedChunks:
    """Serialize ``message`` as :class:`EncodedChunks` without materialising large values.

    ``bytes`` values of 64 KiB or more (including the segments of
    :class:`~flwr_sdk.common._npy.NpyPayload` tensors) are referenced, not copied; the rest is
    encoded into one small buffer. ``bytes(result)`` equals :func:`encode_message`'s
    bytes. Messages the fast codecs do not cover, and messages given to
    :func:`pre_encode` (unless ``deterministic``), are one ``bytes`` piece.
    """
    kept = None if deterministic else _pre_encoded(message)
    if kept is not None:
        return EncodedChunks((kept,))
    codec = _REGISTRY.get(type(message))
    if codec is None:
        return EncodedChunks((bytes(message),))
    return EncodedChunks(codec.encode_chunks(message, deterministic=deterministic))


def _varint_end(view: memoryview, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    result = 0
    for shift in range(0, 70, 7):
        if pos >= len(view):
            raise ValueError("truncated varint")
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
    raise ValueError("varint longer than 10 bytes")


def check_wire_format(data: bytes | bytearray | memoryview) -> None:
    """Raise ``ValueError`` unless ``data`` is a well-formed sequence of protobuf fields.

    Checks the framing only (tags, varints, lengths within the data; no groups), not
    whether the fields fit the message type.
    """
    view = memoryview(data).cast("B")
    pos, end = 0, len(view)
    while pos < end:
        tag, pos = _varint_end(view, pos)
        field_number, wire_type = tag >> 3, tag & 7
        if field_number == 0:
            raise ValueError("field number 0")
        if wire_type == 0:
            _, pos = _varint_end(view, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 2:
            length, pos = _varint_end(view, pos)
            pos += length
        elif wire_type == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if pos > end:
            raise ValueError("field runs past the end of the message")


def decode_message(cls: type[Any], data: bytes | bytearray | memoryview) -> Any:
    """Parse ``data`` as ``cls``: fast codec when it covers ``cls``, else ``cls.parse``.

    With the fast codec, tensor bytes in the result are memoryviews of ``data``. Other
    classes are checked with :func:`check_wire_format` first, then parsed by betterproto2.

    Raises:
        ProtocolError: ``data`` is not a valid encoding of ``cls`` (the fast codec's
            ``DecodeError``, the wire-format check's ``ValueError`` or whatever
            betterproto2 raised is chained as the cause).

    """
    codec = _REGISTRY.get(cls)
    if codec is None:
        try:
            check_wire_format(data)
        except ValueError as exc:
            raise ProtocolError(f"malformed {cls.__name__}: {exc}") from exc
        try:
            return cls.parse(bytes(data) if not isinstance(data, bytes) else data)
        except Exception as exc:  # betterproto2 raises KeyError, EOFError, ... on bad input
            raise ProtocolError(
                f"malformed {cls.__name__}: a field's wire type or content does not match "
                "its declaration"
            ) from exc
    try:
        return codec.decode(cls, data)
    except DECODE_ERRORS as exc:
        raise ProtocolError(f"malformed {cls.__name__}: {exc}") from exc


class FastProtoCodec(CodecBase):
    """grpclib codec (content subtype ``proto``) using the fast codecs where they apply.

    Messages of classes a generated fast codec covers are encoded and decoded by it;
    every other message class goes through betterproto2 like grpclib's ``ProtoCodec``
    would (``SerializeToString`` / ``FromString``, which betterproto2 provides).
    Malformed input for a covered class raises :class:`~flwr_sdk.errors.ProtocolError`.

    Args:
        chunked: encode messages that hold large ``bytes`` values as
            :class:`~flwr_sdk.net.chunks.EncodedChunks` (nothing materialised;
            see :func:`encode_message_chunks`). Only for streams that can send them:
            the tuned endpoints of :mod:`flwr_sdk.net.grpc_tuning`. Otherwise
            every message is one contiguous buffer.

    """

    __content_subtype__ = "proto"

    def __init__(self, *, chunked: bool = False) -> None:
        if not isinstance(chunked, bool):
            raise TypeError(f"chunked must be a bool, got {type(chunked).__name__}")
        self.chunked = chunked

    def covers(self, message_type: type) -> bool:
        """Whether ``message_type`` takes the fast path."""
        return message_type in _REGISTRY

    def encode(self, message: Any, message_type: Any) -> bytes:
        """Serialize ``message`` (must be an instance of ``message_type``).

        Returns a ``memoryview`` for fast-path messages: grpclib only takes its ``len``
        and appends it to the gRPC prefix (``bytes + memoryview`` is ``bytes``). A message
        given to :func:`pre_encode` returns its kept bytes.
        """
        if not isinstance(message, message_type):
            raise TypeError(f"Message must be of type {message_type!r}, not {type(message)!r}")
        kept = _pre_encoded(message)
        if kept is not None:
            return kept
        codec = _REGISTRY.get(type(message))
        if codec is None:
            return bytes(message)
        if self.chunked:
            pieces = codec.encode_chunks(message)
            if len(pieces) != 1:
                # grpclib only takes len() and prepends the prefix (EncodedChunks.__radd__);
                # the tuned stream's send_data writes the pieces frame by frame.
                return cast(bytes, EncodedChunks(pieces))
            return cast(bytes, pieces[0])
        # A bytes-like memoryview where grpclib's signature says bytes: see the docstring.
        return cast(bytes, codec.encode(message))

    def decode(self, data: bytes, message_type: Any) -> Any:
        """Parse ``data`` (``bytes``, or a read-only memoryview of a preallocated buffer)."""
        return decode_message(message_type, data)
