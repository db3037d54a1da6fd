"""Rebuilding a pulled message from its objects (Flower 1.42 line), one object at a time.

A pulled ``Message`` carries metadata and an empty content; its ``ObjectTree`` names the
objects to pull (format: :mod:`flwr_sdk.wire.v1_42_objects`). A
:class:`MessageAssembler` is driven by the transport::

    assembler = MessageAssembler(pulled.messages_list[0], pulled.message_object_trees[0],
                                 max_message_length=limit)
    for object_id in assembler.fetch_order():        # or a bounded window of them
        assembler.add(object_id, pull_object(object_id))
    message = assembler.message()

Objects may be added in any order (e.g. as concurrent pulls complete). Every object is
checked when added: its SHA-256 must be its id (else :class:`ObjectIntegrityError`), its
head well-formed and its type and children those the tree gives it, its body readable
(else :class:`MalformedMessageError` naming the object). No Message is produced unless
every object passed.

Arrays: the Array object gives the number of chunk positions ``n``; every chunk but the
last has :data:`~flwr_sdk.wire.v1_42_objects.CHUNK_SIZE` bytes, so the exact size is known
once the last chunk is in. The size is checked against ``max_message_length`` (and a lower
bound already when the Array object arrives), then ONE buffer is allocated per array and
each chunk is copied into its place(s) as it arrives; chunks that arrive before that are
held until then (:meth:`MessageAssembler.fetch_order` lists each array's last chunk first,
so few are). A single-chunk array's data is a view of the pulled object, not a copy.
``max_message_length`` also bounds the sum of all objects' sizes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr_sdk_proto.v1_42 import fastcodec
from flwr_sdk_proto.v1_42.flwr import proto as pb

from flwr_sdk.common.message import Error, Message
from flwr_sdk.common.records import (
    Array,
    ConfigsRecord,
    MetricsRecord,
    ParametersRecord,
    RecordSet,
)
from flwr_sdk.errors import MalformedMessageError, MessageTooLargeError
from flwr_sdk.wire.records import value_from_wire
from flwr_sdk.wire.v1_42_objects import (
    ARRAY,
    ARRAY_CHUNK,
    ARRAY_RECORD,
    CHUNK_SIZE,
    CONFIG_RECORD,
    MESSAGE,
    METRIC_RECORD,
    RECORD_DICT,
    Buffer,
    ParsedObject,
    is_object_id,
    metadata_from_wire,
    parse_object,
)

__all__ = ["MessageAssembler", "decode_message"]

# Object types allowed at each depth of a message's tree.
_LEVEL_TYPES: tuple[frozenset[str], ...] = (
    frozenset({MESSAGE}),
    frozenset({RECORD_DICT}),
    frozenset({ARRAY_RECORD, CONFIG_RECORD, METRIC_RECORD}),
    frozenset({ARRAY}),
    frozenset({ARRAY_CHUNK}),
)
_RECORD_DECODERS: dict[str, Callable[[memoryview], pb.MetricRecord | pb.ConfigRecord]] = {
    METRIC_RECORD: fastcodec.decode_MetricRecord,
    CONFIG_RECORD: fastcodec.decode_ConfigRecord,
}
_ARRAY_KEYS = frozenset({"dtype", "shape", "stype", "arraychunk_ids"})


def _malformed(object_id: str, reason: str) -> MalformedMessageError:
    return MalformedMessageError(f"object {object_id}: {reason}", what="object", field=object_id)


def _too_large(what: str, size: int, limit: int) -> MessageTooLargeError:
    return MessageTooLargeError(
        f"{what} of {size} bytes exceeds the message size limit of {limit} bytes",
        size=size,
        limit=limit,
    )


@dataclass
class _ArrayState:
    """An Array object read, and the buffer its chunks are copied into."""

    dtype: str
    shape: list[int]
    stype: str
    positions: list[str]  # chunk id per position
    data: bytes | memoryview | None = None  # set when complete
    buffer: memoryview | None = None  # uninitialised until every chunk is in place
    pending: set[int] = field(default_factory=set)  # positions not filled yet


class MessageAssembler:
    """Rebuilds one pulled message from its objects; see the module docs.

    Raises (from the constructor):
        MalformedMessageError: the tree is malformed (an id that is not 64 hex digits,
            deeper than a message can be, a root that is not the message's id).

    """

    def __init__(
        self, wire_message: pb.Message, tree: pb.ObjectTree, *, max_message_length: int
    ) -> None:
        """Prepare to receive the objects of ``tree`` for the pulled ``wire_message``."""
        self._limit = max_message_length
        wire_id = wire_message.metadata.message_id if wire_message.metadata else ""
        if tree.object_id != wire_id:
            raise MalformedMessageError(
                f"object tree root {tree.object_id[:80]!r} is not the message id {wire_id[:80]!r}",
                what="PullMessages response",
                field="message_object_trees",
            )
        self.message_id = tree.object_id
        # id -> every (depth, tree node) where it occurs
        self._nodes: dict[str, list[tuple[int, pb.ObjectTree]]] = {}
        self._order: list[str] = []
        self._chunk_users: dict[str, set[str]] = {}
        self._walk(tree)
        self._objects: dict[str, ParsedObject] = {}
        self._arrays: dict[str, _ArrayState] = {}
        self._held: dict[str, memoryview] = {}  # chunk bodies waiting for their arrays
        self._received: set[str] = set()
        self._total = 0

    def _walk(self, tree: pb.ObjectTree) -> None:
        stack: list[tuple[int, pb.ObjectTree, str]] = [(0, tree, "")]
        while stack:
            depth, node, parent = stack.pop()
            object_id = node.object_id
            if not is_object_id(object_id):
                raise MalformedMessageError(
                    f"object tree names {object_id[:80]!r}, not a 64-hex object id",
                    what="ObjectTree",
                    field="object_id",
                )
            if depth >= len(_LEVEL_TYPES) or (depth == len(_LEVEL_TYPES) - 1 and node.children):
                raise MalformedMessageError(
                    f"object tree is deeper than a message ({object_id} at depth {depth})",
                    what="ObjectTree",
                    field="children",
                )
            if object_id not in self._nodes:
                self._order.append(object_id)
            self._nodes.setdefault(object_id, []).append((depth, node))
            if depth == len(_LEVEL_TYPES) - 1:
                self._chunk_users.setdefault(object_id, set()).add(parent)
            children = list(node.children)
            if depth == len(_LEVEL_TYPES) - 2 and len(children) > 1:
                children = [children[-1], *children[:-1]]  # last chunk first: sizes the buffer
            stack.extend((depth + 1, c, object_id) for c in reversed(children))

    # ------------------------------------------------------------------ driving

    def fetch_order(self) -> tuple[str, ...]:
        """Every object id once, in a good order to pull them.

        Parents come before children (an Array before its chunks) and each array's last
        chunk comes first among its chunks, so chunks can go straight into place.
        """
        return tuple(self._order)

    def missing(self) -> tuple[str, ...]:
        """The ids not added yet, in :meth:`fetch_order`."""
        return tuple(i for i in self._order if i not in self._received)

    @property
    def done(self) -> bool:
        """Whether every object has been added."""
        return len(self._received) == len(self._order)

    def add(self, object_id: str, content: Buffer) -> None:
        """Check the object ``object_id`` and take it in (adding it again does nothing).

        ``content`` may be a view of a buffer the caller owns; it must not change
        afterwards (the body of a single-chunk array is kept as a view).

        Raises:
            ValueError: ``object_id`` is not in this message's tree (a caller error).
            ObjectIntegrityError: ``content`` does not hash to ``object_id``.
            MalformedMessageError: the object is malformed or not what the tree says.
            MessageTooLargeError: the message (or one array) exceeds
                ``max_message_length``.

        """
        nodes = self._nodes.get(object_id)
        if nodes is None:
            raise ValueError(f"{object_id!r} is not an object of message {self.message_id}")
        if object_id in self._received:
            return
        parsed = parse_object(object_id, content)
        for depth, node in nodes:
            if parsed.type not in _LEVEL_TYPES[depth]:
                raise _malformed(
                    object_id,
                    f"is a {parsed.type}, the tree puts it where a "
                    f"{' or '.join(sorted(_LEVEL_TYPES[depth]))} belongs",
                )
            if tuple(c.object_id for c in node.children) != parsed.children:
                raise _malformed(object_id, f"{parsed.type} children differ from the tree's")
        if parsed.type == ARRAY_CHUNK:
            self._add_chunk(object_id, parsed.body)
        else:
            self._count(len(parsed.body), f"message (at object {object_id})")
            if parsed.type == ARRAY:
                self._add_array(parsed)
            else:
                _check_body(parsed)
                self._objects[object_id] = parsed
        self._received.add(object_id)

    def message(self) -> Message:
        """The message, once every object is in.

        Raises:
            RuntimeError: objects are still missing (see :meth:`missing`).
            MalformedMessageError: the message does not fit our model (see the message).

        """
        if not self.done:
            raise RuntimeError(f"{len(self.missing())} object(s) of the message are missing")
        root = self._objects[self.message_id]
        try:
            body = fastcodec.decode_Message(root.body)
        except Exception as exc:
            raise _malformed(
                root.object_id, f"Message body is not a protobuf Message: {exc}"
            ) from exc
        metadata = metadata_from_wire(body.metadata, message_id=self.message_id)
        if body.error is not None:
            if root.children:
                raise _malformed(root.object_id, "Message has both an error and content")
            return Message(metadata, error=Error(code=body.error.code, reason=body.error.reason))
        if not root.children:
            raise _malformed(root.object_id, "Message has neither content nor an error")
        return Message(metadata, content=self._record_set(root.children[0]))

    # ---------------------------------------------------------------- internals

    def _count(self, size: int, what: str) -> None:
        self._total += size
        if self._total > self._limit:
            raise _too_large(what, self._total, self._limit)

    def _add_array(self, parsed: ParsedObject) -> None:
        spec = _json_body(parsed)
        if set(spec) != _ARRAY_KEYS:
            raise _malformed(parsed.object_id, f"Array body has keys {sorted(spec)}")
        dtype, shape, stype = spec["dtype"], spec["shape"], spec["stype"]
        indices = spec["arraychunk_ids"]
        if not (isinstance(dtype, str) and isinstance(stype, str)):
            raise _malformed(parsed.object_id, "Array dtype/stype are not strings")
        if not _int_list(shape) or not _int_list(indices):
            raise _malformed(parsed.object_id, "Array shape/arraychunk_ids are not int lists")
        children = parsed.children
        if any(not 0 <= i < len(children) for i in indices) or set(indices) != set(
            range(len(children))
        ):
            raise _malformed(parsed.object_id, "Array arraychunk_ids do not index its chunks")
        positions = [children[i] for i in indices]
        if len(positions) > 1 and (len(positions) - 1) * CHUNK_SIZE + 1 > self._limit:
            minimum = (len(positions) - 1) * CHUNK_SIZE + 1
            raise _too_large(f"array {parsed.object_id} (at least)", minimum, self._limit)
        state = _ArrayState(dtype, list(shape), stype, positions)
        state.pending = set(range(len(positions)))
        if not positions:
            state.data = b""
        self._arrays[parsed.object_id] = state
        self._fill(parsed.object_id)

    def _add_chunk(self, chunk_id: str, body: memoryview) -> None:
        if len(body) > CHUNK_SIZE or not body:
            raise _malformed(chunk_id, f"ArrayChunk of {len(body)} bytes (1 to {CHUNK_SIZE})")
        self._held[chunk_id] = body
        for array_id in self._chunk_users[chunk_id]:
            if array_id in self._arrays:
                self._fill(array_id)
        self._release(chunk_id)

    def _fill(self, array_id: str) -> None:
        state = self._arrays[array_id]
        if state.data is not None:
            return
        positions = state.positions
        if len(positions) == 1 and positions[0] in self._held:
            state.data = self._held[positions[0]]
            self._count(len(state.data), f"array {array_id}")
            state.pending.clear()
        elif len(positions) > 1 and state.buffer is None and positions[-1] in self._held:
            size = (len(positions) - 1) * CHUNK_SIZE + len(self._held[positions[-1]])
            if size > self._limit:
                raise _too_large(f"array {array_id}", size, self._limit)
            self._count(size, f"array {array_id}")
            # Checked before allocating; left uninitialised (numpy.empty): every byte is
            # written by a chunk before the array is complete, so zeroing it first would
            # only add a pass over the memory.
            state.buffer = np.empty(size, dtype=np.uint8).data
        if state.buffer is not None:
            for pos in sorted(state.pending):
                chunk = self._held.get(positions[pos])
                if chunk is None:
                    continue
                last = pos == len(positions) - 1
                if not last and len(chunk) != CHUNK_SIZE:
                    raise _malformed(
                        positions[pos],
                        f"chunk {pos} of array {array_id} has {len(chunk)} bytes, "
                        f"every chunk but the last has {CHUNK_SIZE}",
                    )
                start = pos * CHUNK_SIZE
                state.buffer[start : start + len(chunk)] = chunk
                state.pending.discard(pos)
            if not state.pending:
                state.data = state.buffer
        for chunk_id in set(positions):
            if chunk_id in self._held:
                self._release(chunk_id)

    def _release(self, chunk_id: str) -> None:
        """Drop a held chunk once every array that uses it has it in place."""
        for array_id in self._chunk_users[chunk_id]:
            state = self._arrays.get(array_id)
            if state is None or state.data is None:
                return
        self._held.pop(chunk_id, None)

    def _record_set(self, record_dict_id: str) -> RecordSet:
        parsed = self._objects[record_dict_id]
        parameters: dict[str, ParametersRecord] = {}
        metrics: dict[str, MetricsRecord] = {}
        configs: dict[str, ConfigsRecord] = {}
        for name, child_id in _json_body(parsed).items():
            child = self._objects[child_id]
            try:
                if child.type == ARRAY_RECORD:
                    arrays = {k: self._array(a) for k, a in _json_body(child).items()}
                    parameters[name] = ParametersRecord(arrays, keep_input=True)
                elif child.type == METRIC_RECORD:
                    metrics[name] = MetricsRecord(_items(child), keep_input=True)
                else:
                    configs[name] = ConfigsRecord(_items(child), keep_input=True)
            except (TypeError, ValueError) as exc:
                raise _malformed(child_id, f"record {name!r}: {exc}") from exc
        return RecordSet(
            parameters_records=parameters, metrics_records=metrics, configs_records=configs
        )

    def _array(self, array_id: str) -> Array:
        state = self._arrays[array_id]
        if state.data is None:  # pragma: no cover - done implies every chunk placed
            raise _malformed(array_id, "Array data incomplete")
        return Array(dtype=state.dtype, shape=state.shape, stype=state.stype, data=state.data)


def _int_list(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _json_body(parsed: ParsedObject) -> dict[str, Any]:
    try:
        value = json.loads(bytes(parsed.body), object_pairs_hook=_no_duplicates)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, duplicates
        raise _malformed(
            parsed.object_id, f"{parsed.type} body is not a JSON object: {exc}"
        ) from exc
    if not isinstance(value, dict):
        raise _malformed(parsed.object_id, f"{parsed.type} body is not a JSON object")
    result: dict[str, Any] = value
    return result


def _check_body(parsed: ParsedObject) -> None:
    """Read a body once when it arrives, so a malformed one is refused at once."""
    if parsed.type in (RECORD_DICT, ARRAY_RECORD):
        names = _json_body(parsed)
        values = list(names.values())
        if not all(isinstance(v, str) for v in values) or set(values) != set(parsed.children):
            raise _malformed(
                parsed.object_id, f"{parsed.type} body does not map names to its children"
            )
    elif parsed.type in _RECORD_DECODERS:
        _items(parsed)


def _items(parsed: ParsedObject) -> dict[str, Any]:
    """The items of a MetricRecord / ConfigRecord object (strict protobuf decoding)."""
    decode = _RECORD_DECODERS[parsed.type]
    try:
        record = decode(parsed.body)
        items = {item.key: _item_value(item.value, item.key) for item in record.items}
    except Exception as exc:
        raise _malformed(parsed.object_id, f"{parsed.type} body is unreadable: {exc}") from exc
    if len(items) != len(record.items):
        raise _malformed(parsed.object_id, f"{parsed.type} has a key twice")
    return items


def _item_value(value: pb.MetricRecordValue | pb.ConfigRecordValue | None, key: str) -> Any:
    if value is None:
        raise ValueError(f"record value {key!r} is missing")
    return value_from_wire(value, key)


def decode_message(
    wire_message: pb.Message,
    tree: pb.ObjectTree,
    objects: Mapping[str, Buffer],
    *,
    max_message_length: int,
) -> Message:
    """Rebuild a pulled message from all its objects at once (see :class:`MessageAssembler`).

    Raises:
        MalformedMessageError: an object is missing from ``objects``, or as
            :meth:`MessageAssembler.add` / :meth:`MessageAssembler.message` raise.
        ObjectIntegrityError: an object does not hash to its id.
        MessageTooLargeError: the message exceeds ``max_message_length``.

    """
    assembler = MessageAssembler(wire_message, tree, max_message_length=max_message_length)
    for object_id in assembler.fetch_order():
        content = objects.get(object_id)
        if content is None:
            raise _malformed(object_id, "missing (named by the object tree, not supplied)")
        assembler.add(object_id, content)
    return assembler.message()
