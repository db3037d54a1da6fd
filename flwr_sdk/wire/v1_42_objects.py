"""The object form of a message on the Flower 1.42 line: format and encoding.

On this line a message's payload travels as content-addressed objects (PushObject /
PullObject). An object is ``head``, one NUL byte, then ``body``, where ``head`` is
``"<Type> <child ids> <body length>"`` (child ids comma-joined, unique, in order of first
occurrence; empty when there are none); its id is the lowercase hex SHA-256 of its bytes.
The types, their children and bodies:

* ``Message``: child = the content ``RecordDict`` (none for an error); body = protobuf
  ``Message{metadata, error?}`` with ``metadata.message_id = ""`` and ``content`` unset.
* ``RecordDict`` / ``ArrayRecord``: children = its records / Arrays; body = JSON
  ``{name: child id}``.
* ``Array``: children = its unique chunks; body = JSON ``{"dtype", "shape", "stype",
  "arraychunk_ids"}``, the last one an index into the children per chunk position.
* ``ArrayChunk``: no children; body = ``data[k * 5 MiB : (k + 1) * 5 MiB]``.
* ``ConfigRecord`` / ``MetricRecord``: no children; body = the protobuf record, items in
  order.

JSON is ``json.dumps`` with default settings. The message id is the id of the ``Message``
object; the ``ObjectTree`` mirrors the child lists. Our model maps onto 1.42's records as
RecordSet = RecordDict, ParametersRecord = ArrayRecord, MetricsRecord = MetricRecord and
ConfigsRecord = ConfigRecord; a RecordSet's records are written parameters first, then
metrics, then configs (a RecordSet keeps no order across kinds). Record values use the
same oneof members as the 1.15 line (:mod:`flwr_sdk.wire.records`).

:func:`encode_message` hashes every object once, incrementally over the head and views
of the tensor memory (no copy of tensor bytes), and keeps only recipes: an object's bytes
are produced when asked (:meth:`EncodedMessage.object_content` as segments for a
zero-copy writer, :meth:`EncodedMessage.object_bytes` joined). :func:`parse_object` is the
checked reader of one object (hash, head, body length) that the decoder
(:mod:`flwr_sdk.wire.v1_42_objects_decode`) and the reference server share.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from flwr_sdk_proto.v1_42 import fastcodec
from flwr_sdk_proto.v1_42.flwr import proto as pb

from flwr_sdk.common._npy import NpyPayload, as_byte_view
from flwr_sdk.common.message import Error, Message, Metadata
from flwr_sdk.common.records import (
    Array,
    ConfigsRecord,
    MetricsRecord,
    ParametersRecord,
    RecordSet,
)
from flwr_sdk.errors import MalformedMessageError, ObjectIntegrityError, ReplyRuleError
from flwr_sdk.wire.records import CONFIGS_TYPES, METRICS_TYPES, value_to_wire

__all__ = [
    "ARRAY",
    "ARRAY_CHUNK",
    "ARRAY_RECORD",
    "CHUNK_SIZE",
    "CONFIG_RECORD",
    "MESSAGE",
    "METRIC_RECORD",
    "OBJECT_TYPES",
    "RECORD_DICT",
    "EncodedMessage",
    "ObjectContent",
    "ParsedObject",
    "configs_record_body",
    "encode_message",
    "error_to_wire",
    "is_object_id",
    "metadata_from_wire",
    "metadata_to_wire",
    "metrics_record_body",
    "object_id_of",
    "parse_object",
]

MESSAGE: Final = "Message"
RECORD_DICT: Final = "RecordDict"
ARRAY_RECORD: Final = "ArrayRecord"
ARRAY: Final = "Array"
ARRAY_CHUNK: Final = "ArrayChunk"
CONFIG_RECORD: Final = "ConfigRecord"
METRIC_RECORD: Final = "MetricRecord"
OBJECT_TYPES: Final = frozenset(
    {MESSAGE, RECORD_DICT, ARRAY_RECORD, ARRAY, ARRAY_CHUNK, CONFIG_RECORD, METRIC_RECORD}
)
"""The seven object type names a head may carry."""

CHUNK_SIZE: Final = 5 * 1024 * 1024
"""Bytes of Array data per ``ArrayChunk`` (the last chunk may be shorter)."""

_NUL: Final = b"\x00"
_ID = re.compile(r"[0-9a-f]{64}")
# The NUL that ends a head is searched in windows growing from this size, so a large
# body is never copied to find it.
_HEAD_SCAN_START: Final = 4096

HASH_THREADS: Final = 2
"""Threads that hash the chunks of one large array at the same time (encoding)."""

Buffer = bytes | memoryview

_ENCODERS: dict[type, Any] = {
    pb.Message: fastcodec.encode_Message,
    pb.MetricRecord: fastcodec.encode_MetricRecord,
    pb.ConfigRecord: fastcodec.encode_ConfigRecord,
}


def is_object_id(value: str) -> bool:
    """Whether ``value`` is a well-formed object id (64 lowercase hex digits)."""
    return _ID.fullmatch(value) is not None


def object_id_of(content: Buffer) -> str:
    """The id of an object: lowercase hex SHA-256 of its bytes."""
    return hashlib.sha256(content).hexdigest()


# ------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class ParsedObject:
    """One object read by :func:`parse_object`: its type, child ids and body (a view)."""

    object_id: str
    type: str
    children: tuple[str, ...]
    body: memoryview


def parse_object(object_id: str, content: Buffer) -> ParsedObject:
    """Check that ``content`` is the object ``object_id`` names and split it.

    The body is a view of ``content`` (no copy).

    Raises:
        ObjectIntegrityError: ``sha256(content)`` is not ``object_id``.
        MalformedMessageError: the head is malformed (no NUL, not ASCII, not three
            space-separated parts, an unknown type, a child id that is not 64 hex digits
            or repeats, a length that is not the body's).

    """
    view = as_byte_view(content, "object content must be contiguous")
    actual = object_id_of(view)
    if actual != object_id:
        raise ObjectIntegrityError(
            f"object {object_id} refused: its bytes hash to {actual}", object_id=object_id
        )
    end = _find_nul(view)
    if end < 0:
        raise _malformed(object_id, "no NUL byte ends the head")
    try:
        head = bytes(view[:end]).decode("ascii")
    except UnicodeDecodeError:
        raise _malformed(object_id, "head is not ASCII") from None
    parts = head.split(" ")
    if len(parts) != 3:
        raise _malformed(object_id, f"head {head[:200]!r} is not '<type> <children> <length>'")
    kind, ids, length = parts
    if kind not in OBJECT_TYPES:
        raise _malformed(object_id, f"unknown object type {kind[:64]!r}")
    children = tuple(ids.split(",")) if ids else ()
    if not all(is_object_id(c) for c in children):
        raise _malformed(object_id, f"{kind} head lists a child id that is not 64 hex digits")
    if len(set(children)) != len(children):
        raise _malformed(object_id, f"{kind} head lists a child twice")
    body = view[end + 1 :]
    if not length.isdigit() or int(length) != len(body):
        raise _malformed(
            object_id, f"{kind} head declares {length[:32]!r} body bytes, has {len(body)}"
        )
    return ParsedObject(object_id, kind, children, body)


def _find_nul(view: memoryview) -> int:
    window = _HEAD_SCAN_START
    while True:
        found = bytes(view[:window]).find(_NUL)
        if found >= 0 or window >= len(view):
            return found
        window *= 4


def _malformed(object_id: str, reason: str) -> MalformedMessageError:
    return MalformedMessageError(f"object {object_id}: {reason}", what="object", field=object_id)


# ------------------------------------------------------------------------ writing


class ObjectContent:
    """The bytes of one object as segments (head, then views of the body), not joined.

    Implements the generated fast codecs' ``SegmentedBytes`` protocol (``len`` and
    :meth:`byte_segments`), so it can stand in ``PushObjectRequest.object_content``;
    ``bytes(content)`` joins the segments (one copy).
    """

    __slots__ = ("_length", "_segments")

    def __init__(self, segments: tuple[Buffer, ...]) -> None:
        self._segments = segments
        self._length = sum(len(s) for s in segments)

    def __len__(self) -> int:
        """Length of the object in bytes."""
        return self._length

    def byte_segments(self) -> tuple[Buffer, ...]:
        """The buffers whose concatenation is the object."""
        return self._segments

    def __bytes__(self) -> bytes:
        """The object as ``bytes`` (a copy)."""
        return b"".join(self._segments)


@dataclass(frozen=True)
class _Recipe:
    head: bytes  # head and the NUL
    body: tuple[Buffer, ...]


@dataclass
class EncodedMessage:
    """A message in object form: its id, object tree, wire ``Message`` and object recipes.

    ``wire_message`` is what ``PushMessages`` carries: the metadata with ``message_id``
    set, plus an empty ``RecordDict`` as content (or the error). Objects are produced on
    demand; an EncodedMessage holds views of the tensor memory of the message it was made
    from, so those tensors must not change until the objects have been sent.
    """

    message_id: str
    tree: pb.ObjectTree
    wire_message: pb.Message
    _recipes: dict[str, _Recipe] = field(repr=False)

    def object_ids(self) -> tuple[str, ...]:
        """Every object id once, children before parents (the natural upload order)."""
        return tuple(_post_order(self.tree))

    def __contains__(self, object_id: object) -> bool:
        """Whether ``object_id`` is one of this message's objects."""
        return object_id in self._recipes

    def __len__(self) -> int:
        """Number of distinct objects."""
        return len(self._recipes)

    def object_size(self, object_id: str) -> int:
        """Length in bytes of the object ``object_id`` (KeyError if not one of ours)."""
        recipe = self._recipes[object_id]
        return len(recipe.head) + sum(len(b) for b in recipe.body)

    def object_content(self, object_id: str) -> ObjectContent:
        """The object ``object_id`` as segments, no tensor bytes copied (KeyError if unknown)."""
        recipe = self._recipes[object_id]
        return ObjectContent((recipe.head, *recipe.body))

    def object_bytes(self, object_id: str) -> bytes:
        """The object ``object_id`` as ``bytes`` (KeyError if unknown)."""
        return bytes(self.object_content(object_id))

    def total_bytes(self) -> int:
        """Sum of the sizes of all distinct objects."""
        return sum(self.object_size(i) for i in self._recipes)


def _post_order(tree: pb.ObjectTree) -> Iterator[str]:
    seen: set[str] = set()
    stack: list[tuple[pb.ObjectTree, bool]] = [(tree, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            if node.object_id not in seen:
                seen.add(node.object_id)
                yield node.object_id
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.children))


class _Encoder:
    """Builds recipes and tree nodes; each object is hashed once."""

    def __init__(self) -> None:
        self.recipes: dict[str, _Recipe] = {}

    def add(
        self,
        kind: str,
        children: Sequence[pb.ObjectTree],
        body: tuple[Buffer, ...],
        object_id: str | None = None,
    ) -> pb.ObjectTree:
        """Record one object; ``object_id`` when the caller already hashed it."""
        unique: dict[str, pb.ObjectTree] = {}
        for child in children:
            unique.setdefault(child.object_id, child)
        head = _head(kind, unique, body)
        if object_id is None:
            object_id = _digest(head, body)
        self.recipes.setdefault(object_id, _Recipe(head, body))
        return pb.ObjectTree(object_id=object_id, children=list(unique.values()))

    def json(
        self, kind: str, children: Sequence[pb.ObjectTree], names: Iterable[str]
    ) -> pb.ObjectTree:
        body = json.dumps({n: c.object_id for n, c in zip(names, children, strict=True)})
        return self.add(kind, children, (body.encode("ascii"),))

    def array(self, array: Array) -> pb.ObjectTree:
        bodies = list(_chunks(array.data, CHUNK_SIZE))
        ids = _chunk_ids(bodies)
        chunks = [self.add(ARRAY_CHUNK, (), b, i) for b, i in zip(bodies, ids, strict=True)]
        index: dict[str, int] = {}
        for chunk in chunks:
            index.setdefault(chunk.object_id, len(index))
        body = json.dumps(
            {
                "dtype": array.dtype,
                "shape": list(array.shape),
                "stype": array.stype,
                "arraychunk_ids": [index[c.object_id] for c in chunks],
            }
        )
        return self.add(ARRAY, chunks, (body.encode("ascii"),))

    def record_set(self, content: RecordSet) -> pb.ObjectTree:
        names: list[str] = []
        records: list[pb.ObjectTree] = []
        for name, parameters in content.parameters_records.items():
            names.append(name)
            records.append(self.parameters(parameters))
        for name, metrics in content.metrics_records.items():
            names.append(name)
            records.append(self.add(METRIC_RECORD, (), (metrics_record_body(metrics),)))
        for name, configs in content.configs_records.items():
            names.append(name)
            records.append(self.add(CONFIG_RECORD, (), (configs_record_body(configs),)))
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ReplyRuleError(
                f"record name(s) {twice} used by two kinds of record: a Flower 1.42 "
                "RecordDict holds one record per name",
                rules=("record_names",),
            )
        return self.json(RECORD_DICT, records, names)

    def parameters(self, record: ParametersRecord) -> pb.ObjectTree:
        arrays = [self.array(a) for a in record.values()]
        return self.json(ARRAY_RECORD, arrays, record.keys())


def _head(kind: str, child_ids: Iterable[str], body: tuple[Buffer, ...]) -> bytes:
    """An object's head and its NUL: ``<kind> <child ids> <body length>``."""
    length = sum(len(b) for b in body)
    return f"{kind} {','.join(child_ids)} {length}".encode("ascii") + _NUL


def _digest(head: bytes, body: tuple[Buffer, ...]) -> str:
    """The object id of ``head`` + ``body`` (hashlib releases the GIL on large pieces)."""
    digest = hashlib.sha256(head)
    for part in body:
        digest.update(part)
    return digest.hexdigest()


def _chunk_id(body: tuple[Buffer, ...]) -> str:
    return _digest(_head(ARRAY_CHUNK, (), body), body)


_HASHERS: ThreadPoolExecutor | None = None


def _chunk_ids(bodies: Sequence[tuple[Buffer, ...]]) -> list[str]:
    """The ids of an array's chunks; a multi-chunk array is hashed on :data:`HASH_THREADS`.

    SHA-256 runs without the GIL on buffers this size, so the threads hash chunks at
    the same time: a large reply's ids take about 1 / HASH_THREADS of the time.
    """
    global _HASHERS
    if len(bodies) < 2:
        return [_chunk_id(b) for b in bodies]
    if _HASHERS is None:
        _HASHERS = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="flwr-sdk-sha256")
    return list(_HASHERS.map(_chunk_id, bodies))


def _chunks(data: bytes | memoryview | NpyPayload, size: int) -> Iterator[tuple[memoryview, ...]]:
    """``data`` cut into consecutive pieces of ``size`` bytes (views; the last may be short)."""
    segments = data.byte_segments() if isinstance(data, NpyPayload) else (data,)
    pieces: list[memoryview] = []
    room = size
    for segment in segments:
        view = as_byte_view(segment, "Array.data must be contiguous")
        pos = 0
        while pos < len(view):
            take = min(room, len(view) - pos)
            pieces.append(view[pos : pos + take])
            pos += take
            room -= take
            if room == 0:
                yield tuple(pieces)
                pieces, room = [], size
    if pieces:
        yield tuple(pieces)


def _encode(message: pb.Message | pb.MetricRecord | pb.ConfigRecord) -> bytes:
    """Deterministic protobuf bytes (field order by number, as Flower serializes)."""
    return bytes(_ENCODERS[type(message)](message, deterministic=True))


def metrics_record_body(record: MetricsRecord) -> bytes:
    """The body of a ``MetricRecord`` object: protobuf ``MetricRecord``, items in order."""
    items = [
        pb.MetricRecordItem(key=k, value=value_to_wire(v, METRICS_TYPES, pb.MetricRecordValue, pb))
        for k, v in record.items()
    ]
    return _encode(pb.MetricRecord(items=items))


def configs_record_body(record: ConfigsRecord) -> bytes:
    """The body of a ``ConfigRecord`` object: protobuf ``ConfigRecord``, items in order."""
    items = [
        pb.ConfigRecordItem(key=k, value=value_to_wire(v, CONFIGS_TYPES, pb.ConfigRecordValue, pb))
        for k, v in record.items()
    ]
    return _encode(pb.ConfigRecord(items=items))


def metadata_to_wire(
    metadata: Metadata,
    *,
    message_id: str,
    src_task_id: int | None = None,
    dst_task_id: int | None = None,
) -> pb.Metadata:
    """Our Metadata as the 1.42 ``Metadata`` (``reply_to_message`` → ``reply_to_message_id``).

    ``message_id`` replaces ``metadata.message_id``; the task ids are the optional fields
    10 and 11, present only when given.
    """
    return pb.Metadata(
        run_id=metadata.run_id,
        message_id=message_id,
        src_node_id=metadata.src_node_id,
        dst_node_id=metadata.dst_node_id,
        reply_to_message_id=metadata.reply_to_message,
        group_id=metadata.group_id,
        ttl=metadata.ttl,
        message_type=metadata.message_type,
        created_at=metadata.created_at,
        src_task_id=src_task_id,
        dst_task_id=dst_task_id,
    )


def metadata_from_wire(metadata: pb.Metadata | None, *, message_id: str) -> Metadata:
    """The 1.42 ``Metadata`` as ours, with ``message_id`` (the task ids are not kept).

    Raises:
        MalformedMessageError: the metadata is absent or holds values our model refuses.

    """
    if metadata is None:
        raise MalformedMessageError("message has no metadata", what="Message", field="metadata")
    try:
        return Metadata(
            run_id=metadata.run_id,
            message_id=message_id,
            src_node_id=metadata.src_node_id,
            dst_node_id=metadata.dst_node_id,
            reply_to_message=metadata.reply_to_message_id,
            group_id=metadata.group_id,
            ttl=metadata.ttl,
            message_type=metadata.message_type,
            created_at=metadata.created_at,
        )
    except (TypeError, ValueError) as exc:
        raise MalformedMessageError(
            f"message metadata: {exc}", what="Message", field="metadata"
        ) from exc


def error_to_wire(error: Error) -> pb.Error:
    """Our Error as the 1.42 ``Error``."""
    return pb.Error(code=error.code, reason=error.reason)


def encode_message(
    message: Message, *, src_task_id: int | None = None, dst_task_id: int | None = None
) -> EncodedMessage:
    """Put ``message`` in object form (its ``metadata.message_id`` is ignored).

    ``src_task_id`` / ``dst_task_id`` fill the optional metadata fields 10 and 11 (the
    line's reply rules say when). Every object is hashed here, once; bytes are produced
    later, on demand.

    Raises:
        ValueError: the same record name is used by two kinds of record, or a record
            value does not fit the wire (also TypeError, as on the other lines).

    """
    encoder = _Encoder()
    body_message = pb.Message(
        metadata=metadata_to_wire(
            message.metadata, message_id="", src_task_id=src_task_id, dst_task_id=dst_task_id
        )
    )
    children: list[pb.ObjectTree] = []
    if message.has_error():
        body_message.error = error_to_wire(message.error)
    else:
        children.append(encoder.record_set(message.content))
    tree = encoder.add(MESSAGE, children, (_encode(body_message),))
    wire = pb.Message(
        metadata=metadata_to_wire(
            message.metadata,
            message_id=tree.object_id,
            src_task_id=src_task_id,
            dst_task_id=dst_task_id,
        )
    )
    if message.has_error():
        wire.error = body_message.error
    else:
        wire.content = pb.RecordDict()
    return EncodedMessage(tree.object_id, tree, wire, encoder.recipes)
