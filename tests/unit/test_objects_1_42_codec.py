"""The 1.42 object codec on its own: the worked example byte for byte, round trips, refusals.

The worked example is flower-1.42.md §5.6 (ids computed by flwr 1.42.0's helpers); the
comparison with flwr itself for random messages is tests/interop/test_objects_1_42.py
(this file's name differs: pytest imports test modules by their basename).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random

import numpy as np
import pytest
from flwr_sdk_proto.v1_42.flwr import proto as pb

from flwr_sdk.common._npy import NpyPayload
from flwr_sdk.common.message import Error, Message, Metadata
from flwr_sdk.common.records import (
    Array,
    ConfigsRecord,
    MetricsRecord,
    ParametersRecord,
    RecordSet,
)
from flwr_sdk.errors import (
    MalformedMessageError,
    MessageTooLargeError,
    ObjectIntegrityError,
    ReplyRuleError,
)
from flwr_sdk.wire.v1_42_objects import CHUNK_SIZE, encode_message, parse_object
from flwr_sdk.wire.v1_42_objects_decode import MessageAssembler, decode_message

LIMIT = 2**31

# flower-1.42.md §5.6
EXAMPLE_IDS = {
    "ArrayChunk": "98cf989024fca817c43ef779fbd3be783fb93ad32cc470e064f82efb506377d6",
    "Array": "c6eb924741274b78d8d2f566698064fffeaa0189b313a730d2e40ad2bdb1c9c2",
    "ArrayRecord": "9cc27e52b16e582ac34013441ac0e361efdbf601d640bcc535be992da2c17612",
    "MetricRecord": "96c2ac36736e008f8212ce140702a568bfac2e6386b4eae55adbc9f05d992cd4",
    "ConfigRecord": "e462b206b5efa37155f2804b29229af48cb63d451db4d66d7ccd6cb49e30da13",
    "RecordDict": "7dbe2db476665c8963c39a2413898cef2f444f025350279ef3140250a2c34d06",
    "Message": "2d7e729120a1d0799835b04787bd173e272b6faaa9f889bf81b328e3e4a46d8e",
}
EXAMPLE_SIZES = {
    "ArrayChunk": 152,
    "Array": 157,
    "ArrayRecord": 153,
    "MetricRecord": 36,
    "ConfigRecord": 29,
    "RecordDict": 445,
    "Message": 179,
}
MESSAGE_BODY_HEX = (
    "0a 64 08 2a 18 07 20 01 2a 40" + " 61 62" * 32 + " 32 01 31 39 00 00 00 00 00 20 ac 40"
    " 42 05 74 72 61 69 6e 49 00 00 00 40 29 86 da 41"
)


def metadata(**changes: object) -> Metadata:
    fields: dict[str, object] = {
        "run_id": 42,
        "message_id": "",
        "src_node_id": 7,
        "dst_node_id": 1,
        "reply_to_message": "ab" * 32,
        "group_id": "1",
        "ttl": 3600.0,
        "message_type": "train",
        "created_at": 1780000000.0,
    }
    fields.update(changes)
    return Metadata(**fields)  # type: ignore[arg-type]


def example_message() -> Message:
    data = NpyPayload(np.array([1.0, 2.0], dtype=np.float32))
    content = RecordSet(
        parameters_records={
            "arrays": ParametersRecord(
                {"w": Array("float32", [2], "numpy.ndarray", data)}, keep_input=True
            )
        },
        metrics_records={"metrics": MetricsRecord({"loss": 0.5})},
        configs_records={"config": ConfigsRecord({"tag": "x"})},
    )
    return Message(metadata(), content=content)


def all_objects(encoded) -> dict[str, bytes]:
    return {i: encoded.object_bytes(i) for i in encoded.object_ids()}


def with_id(message: Message, message_id: str) -> Message:
    message.metadata.message_id = message_id
    return message


def test_worked_example_byte_for_byte():
    encoded = encode_message(example_message())
    assert encoded.message_id == EXAMPLE_IDS["Message"]
    objects = all_objects(encoded)
    kinds = {parse_object(i, b).type: i for i, b in objects.items()}
    assert kinds == EXAMPLE_IDS
    for kind, object_id in EXAMPLE_IDS.items():
        content = objects[object_id]
        assert len(content) == EXAMPLE_SIZES[kind] == encoded.object_size(object_id)
        assert hashlib.sha256(content).hexdigest() == object_id
    chunk = objects[EXAMPLE_IDS["ArrayChunk"]]
    assert chunk.startswith(b"ArrayChunk  136\x00\x93NUMPY\x01\x00v\x00")
    assert chunk.endswith(bytes.fromhex("00 00 80 3f 00 00 00 40"))
    assert objects[EXAMPLE_IDS["Array"]] == (
        f"Array {EXAMPLE_IDS['ArrayChunk']} 83\x00".encode()
        + b'{"dtype": "float32", "shape": [2], "stype": "numpy.ndarray", "arraychunk_ids": [0]}'
    )
    assert objects[EXAMPLE_IDS["MetricRecord"]] == b"MetricRecord  19\x00" + bytes.fromhex(
        "0a 11 0a 04 6c 6f 73 73 12 09 09 00 00 00 00 00 00 e0 3f"
    )
    assert objects[EXAMPLE_IDS["ConfigRecord"]] == b"ConfigRecord  12\x00" + bytes.fromhex(
        "0a 0a 0a 03 74 61 67 12 03 2a 01 78"
    )
    record_dict = objects[EXAMPLE_IDS["RecordDict"]].split(b"\x00", 1)[1]
    assert json.loads(record_dict) == {
        "arrays": EXAMPLE_IDS["ArrayRecord"],
        "metrics": EXAMPLE_IDS["MetricRecord"],
        "config": EXAMPLE_IDS["ConfigRecord"],
    }
    assert objects[EXAMPLE_IDS["Message"]] == (
        f"Message {EXAMPLE_IDS['RecordDict']} 102\x00".encode() + bytes.fromhex(MESSAGE_BODY_HEX)
    )
    tree = encoded.tree
    assert tree.object_id == EXAMPLE_IDS["Message"]
    (rd,) = tree.children
    assert [c.object_id for c in rd.children] == [
        EXAMPLE_IDS["ArrayRecord"],
        EXAMPLE_IDS["MetricRecord"],
        EXAMPLE_IDS["ConfigRecord"],
    ]
    assert rd.children[0].children[0].children[0].object_id == EXAMPLE_IDS["ArrayChunk"]
    # Post-order: children before parents, root last.
    order = encoded.object_ids()
    assert order[0] == EXAMPLE_IDS["ArrayChunk"] and order[-1] == EXAMPLE_IDS["Message"]
    # What PushMessages carries: metadata with the id, an empty RecordDict as content.
    wire = encoded.wire_message
    assert wire.metadata.message_id == EXAMPLE_IDS["Message"]
    assert wire.content == pb.RecordDict() and wire.error is None


def test_segments_hold_views_of_the_tensor_memory():
    array = np.arange(CHUNK_SIZE // 4 + 10, dtype=np.float32)
    payload = NpyPayload(array)
    message = Message(
        metadata(),
        content=RecordSet(
            parameters_records={
                "p": ParametersRecord({"a": Array("float32", [1], "numpy.ndarray", payload)})
            }
        ),
    )
    encoded = encode_message(message)
    chunk_ids = encoded.tree.children[0].children[0].children[0].children
    first = encoded.object_content(chunk_ids[0].object_id)
    views = [s for s in first.byte_segments() if isinstance(s, memoryview)]
    assert views and any(np.shares_memory(np.asarray(v), array) for v in views)
    assert len(first) == len(bytes(first)) == encoded.object_size(chunk_ids[0].object_id)
    # The same data as plain bytes gives the same objects.
    plain = Message(
        metadata(),
        content=RecordSet(
            parameters_records={
                "p": ParametersRecord({"a": Array("float32", [1], "numpy.ndarray", bytes(payload))})
            }
        ),
    )
    assert encode_message(plain).message_id == encoded.message_id


def test_multi_chunk_array_with_identical_chunks_round_trips():
    data = bytes(2 * CHUNK_SIZE) + b"tail"
    content = RecordSet(
        parameters_records={"p": ParametersRecord({"z": Array("u8", [7], "raw", data)})}
    )
    encoded = encode_message(Message(metadata(), content=content))
    array_node = encoded.tree.children[0].children[0].children[0]
    assert len(array_node.children) == 2  # the two zero chunks are one object
    array_object = encoded.object_bytes(array_node.object_id)
    assert json.loads(array_object.split(b"\x00", 1)[1])["arraychunk_ids"] == [0, 0, 1]
    decoded = decode_message(
        encoded.wire_message, encoded.tree, all_objects(encoded), max_message_length=LIMIT
    )
    assert decoded == with_id(Message(metadata(), content=content), encoded.message_id)
    got = decoded.content.parameters_records["p"]["z"].data
    assert isinstance(got, memoryview) and not got.readonly and len(got) == len(data)


def test_assembler_accepts_objects_in_any_order():
    arrays = {
        "big": Array.from_numpy(np.arange(CHUNK_SIZE // 2 + 3, dtype=np.int16)),
        "one": Array.from_numpy(np.array([3, 4])),
        "empty": Array("", [], "numpy.ndarray", b""),
    }
    content = RecordSet(
        parameters_records={"a": ParametersRecord(arrays, keep_input=True)},
        metrics_records={"m": MetricsRecord({"n": 3, "l": [1.5, 2.5]}), "e": MetricsRecord()},
        configs_records={"c": ConfigsRecord({"b": True, "s": ["x"], "u": 2**64 - 1})},
    )
    expected = Message(metadata(), content=content)
    encoded = encode_message(expected)
    objects = all_objects(encoded)
    with_id(expected, encoded.message_id)
    rng = random.Random(5)
    for _ in range(4):
        assembler = MessageAssembler(encoded.wire_message, encoded.tree, max_message_length=LIMIT)
        ids = list(assembler.fetch_order())
        assert sorted(ids) == sorted(objects)
        rng.shuffle(ids)
        for object_id in ids:
            assert not assembler.done
            assembler.add(object_id, objects[object_id])
            assembler.add(object_id, objects[object_id])  # again: ignored
        assert assembler.done and assembler.missing() == ()
        assert assembler.message() == expected


def test_fetch_order_puts_parents_first_and_the_last_chunk_first():
    content = RecordSet(
        parameters_records={
            "p": ParametersRecord(
                {"a": Array("u8", [1], "raw", bytes(range(256)) * (CHUNK_SIZE // 128))}
            )
        }
    )
    encoded = encode_message(Message(metadata(), content=content))
    assembler = MessageAssembler(encoded.wire_message, encoded.tree, max_message_length=LIMIT)
    order = assembler.fetch_order()
    array_node = encoded.tree.children[0].children[0].children[0]
    chunks = [c.object_id for c in array_node.children]
    assert order[0] == encoded.message_id
    assert order.index(array_node.object_id) < min(order.index(c) for c in chunks)
    assert order[order.index(array_node.object_id) + 1] == chunks[-1]


def test_error_reply_is_one_message_object():
    message = Message(metadata(), error=Error(code=2, reason="boom"))
    encoded = encode_message(message, dst_task_id=1)
    assert len(encoded) == 1 and encoded.tree.children == []
    (only,) = all_objects(encoded).values()
    assert only.startswith(b"Message  ")
    assert encoded.wire_message.error == pb.Error(code=2, reason="boom")
    assert encoded.wire_message.content is None
    assert encoded.wire_message.metadata.dst_task_id == 1
    assert encoded.wire_message.metadata.src_task_id is None
    decoded = decode_message(
        encoded.wire_message, encoded.tree, all_objects(encoded), max_message_length=LIMIT
    )
    assert decoded == with_id(message, encoded.message_id)


def test_empty_record_set_has_an_empty_record_dict():
    encoded = encode_message(Message(metadata(), content=RecordSet()))
    record_dict = encoded.object_bytes(encoded.tree.children[0].object_id)
    assert record_dict == b"RecordDict  2\x00{}"
    decoded = decode_message(
        encoded.wire_message, encoded.tree, all_objects(encoded), max_message_length=LIMIT
    )
    assert decoded.content == RecordSet()


def test_a_name_used_by_two_kinds_of_record_is_refused():
    content = RecordSet(
        metrics_records={"x": MetricsRecord({"a": 1})}, configs_records={"x": ConfigsRecord()}
    )
    with pytest.raises(ReplyRuleError, match="two kinds of record") as refused:
        encode_message(Message(metadata(), content=content))
    assert refused.value.rules == ("record_names",)


# ------------------------------------------------------------------------ refusals


def object_with_head(head: bytes, body: bytes) -> tuple[str, bytes]:
    content = head + b"\x00" + body
    return hashlib.sha256(content).hexdigest(), content


def assemble(encoded, objects, limit: int = LIMIT) -> Message:
    assembler = MessageAssembler(encoded.wire_message, encoded.tree, max_message_length=limit)
    for object_id in assembler.fetch_order():
        assembler.add(object_id, objects[object_id])
    return assembler.message()


@pytest.fixture
def example():
    encoded = encode_message(example_message())
    return encoded, all_objects(encoded)


@pytest.mark.parametrize("kind", sorted(EXAMPLE_IDS))
def test_a_flipped_byte_is_refused(example, kind):
    encoded, objects = example
    object_id = EXAMPLE_IDS[kind]
    for position in (0, len(objects[object_id]) // 2, len(objects[object_id]) - 1):
        tampered = bytearray(objects[object_id])
        tampered[position] ^= 0x01
        with pytest.raises(ObjectIntegrityError) as info:
            assemble(encoded, {**objects, object_id: bytes(tampered)})
        assert info.value.object_id == object_id


def test_truncated_and_swapped_objects_are_refused(example):
    encoded, objects = example
    chunk, array = EXAMPLE_IDS["ArrayChunk"], EXAMPLE_IDS["Array"]
    with pytest.raises(ObjectIntegrityError):
        assemble(encoded, {**objects, chunk: objects[chunk][:-1]})
    with pytest.raises(ObjectIntegrityError):  # right bytes under the wrong id
        assemble(encoded, {**objects, chunk: objects[array], array: objects[chunk]})


def test_a_missing_child_is_refused(example):
    encoded, objects = example
    del objects[EXAMPLE_IDS["MetricRecord"]]
    with pytest.raises(MalformedMessageError, match="missing"):
        decode_message(encoded.wire_message, encoded.tree, objects, max_message_length=LIMIT)
    assembler = MessageAssembler(encoded.wire_message, encoded.tree, max_message_length=LIMIT)
    for object_id in objects:
        assembler.add(object_id, objects[object_id])
    assert assembler.missing() == (EXAMPLE_IDS["MetricRecord"],)
    with pytest.raises(RuntimeError, match="missing"):
        assembler.message()


def test_an_object_not_in_the_tree_is_a_caller_error(example):
    encoded, _ = example
    assembler = MessageAssembler(encoded.wire_message, encoded.tree, max_message_length=LIMIT)
    with pytest.raises(ValueError, match="not an object"):
        assembler.add("0" * 64, b"x")


def hand_built(array_body: bytes, chunks: list[bytes]):
    """A message with one Array built by hand: (wire message, tree, objects, array id)."""
    objects: dict[str, bytes] = {}

    def put(kind: str, children: list[pb.ObjectTree], body: bytes) -> pb.ObjectTree:
        ids = ",".join(c.object_id for c in children)
        object_id, content = object_with_head(f"{kind} {ids} {len(body)}".encode(), body)
        objects[object_id] = content
        return pb.ObjectTree(object_id=object_id, children=children)

    chunk_nodes: dict[str, pb.ObjectTree] = {}
    for chunk in chunks:
        node = put("ArrayChunk", [], chunk)
        chunk_nodes.setdefault(node.object_id, node)
    array = put("Array", list(chunk_nodes.values()), array_body)
    record = put("ArrayRecord", [array], json.dumps({"w": array.object_id}).encode())
    record_dict = put("RecordDict", [record], json.dumps({"p": record.object_id}).encode())
    md = pb.Metadata(run_id=1, src_node_id=1, dst_node_id=2, message_type="train", ttl=60.0)
    root = put("Message", [record_dict], bytes(pb.Message(metadata=md)))
    md.message_id = root.object_id
    wire = pb.Message(metadata=md, content=pb.RecordDict())
    return wire, root, objects, array.object_id


def array_json(ids: list[int], **changes: object) -> bytes:
    spec: dict[str, object] = {"dtype": "u8", "shape": [1], "stype": "raw", "arraychunk_ids": ids}
    spec.update(changes)
    return json.dumps(spec).encode()


def test_hand_built_message_decodes():
    wire, tree, objects, _ = hand_built(array_json([0, 0, 1]), [b"a" * CHUNK_SIZE, b"end"])
    message = decode_message(wire, tree, objects, max_message_length=LIMIT)
    data = message.content.parameters_records["p"]["w"].data
    assert data == b"a" * (2 * CHUNK_SIZE) + b"end"
    assert message.metadata.message_id == tree.object_id


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"dtype": "f", "shape": [1], "stype": "s"}', "keys"),
        (array_json([0], dtype=1), "strings"),
        (array_json([0], shape=[True]), "int lists"),
        (array_json([0], shape="1"), "int lists"),
        (array_json([1]), "index"),
        (array_json([]), "index"),
        (b"[1, 2]", "JSON object"),
        (b"{not json", "JSON object"),
        (b'{"dtype": "a", "dtype": "b", "shape": [], "stype": "", "arraychunk_ids": [0]}', "JSON"),
    ],
)
def test_malformed_array_json_is_refused(body, reason):
    wire, tree, objects, array_id = hand_built(body, [b"data"])
    assembler = MessageAssembler(wire, tree, max_message_length=LIMIT)
    with pytest.raises(MalformedMessageError, match=reason):
        assembler.add(array_id, objects[array_id])


def test_a_short_middle_chunk_is_refused():
    wire, tree, objects, _ = hand_built(array_json([0, 1]), [b"a" * 10, b"end"])
    with pytest.raises(MalformedMessageError, match="every chunk but the last"):
        decode_message(wire, tree, objects, max_message_length=LIMIT)


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"MetricRecord  99", "declares"),  # wrong declared length
        (b"MetricRecord 19", "is not '<type>"),
        (b"Bogus  19", "unknown object type"),
        (b"MetricRecord xyz 19", "not 64 hex"),
        (b"MetricRecord  1x", "declares"),
    ],
)
def test_malformed_heads_are_refused(head, reason):
    body = bytes.fromhex("0a 11 0a 04 6c 6f 73 73 12 09 09 00 00 00 00 00 00 e0 3f")
    object_id, content = object_with_head(head, body)
    with pytest.raises(MalformedMessageError, match=reason):
        parse_object(object_id, content)
    with pytest.raises(MalformedMessageError, match="no NUL"):
        parse_object(hashlib.sha256(b"abc").hexdigest(), b"abc")


def test_object_in_the_wrong_place_or_with_other_children_is_refused(example):
    encoded, objects = example
    # The tree lists fewer children than the RecordDict's head.
    encoded.tree.children[0].children.pop()
    with pytest.raises(MalformedMessageError, match="children differ"):
        assemble(encoded, objects)
    # A consistent tree and heads, but an ArrayChunk where a record belongs.
    chunk_id, chunk = object_with_head(b"ArrayChunk  3", b"abc")
    rd_body = json.dumps({"r": chunk_id}).encode()
    rd_id, rd = object_with_head(f"RecordDict {chunk_id} {len(rd_body)}".encode(), rd_body)
    md = pb.Metadata(run_id=1, message_type="train")
    body = bytes(pb.Message(metadata=md))
    root_id, root = object_with_head(f"Message {rd_id} {len(body)}".encode(), body)
    tree = pb.ObjectTree(
        object_id=root_id,
        children=[pb.ObjectTree(object_id=rd_id, children=[pb.ObjectTree(object_id=chunk_id)])],
    )
    wire = pb.Message(metadata=pb.Metadata(message_id=root_id))
    objects = {root_id: root, rd_id: rd, chunk_id: chunk}
    with pytest.raises(MalformedMessageError, match="tree puts it"):
        decode_message(wire, tree, objects, max_message_length=LIMIT)


def test_malformed_record_bodies_are_refused():
    for kind, body, reason in [
        ("MetricRecord", b"\xff\xff", "unreadable"),
        ("MetricRecord", bytes(pb.MetricRecord(items=[pb.MetricRecordItem(key="k")])), "missing"),
        (
            "ConfigRecord",
            bytes(
                pb.ConfigRecord(items=[pb.ConfigRecordItem(key="k", value=pb.ConfigRecordValue())])
            ),
            "empty",
        ),
    ]:
        object_id, content = object_with_head(f"{kind}  {len(body)}".encode(), body)
        encoded = encode_message(example_message())
        encoded.tree.children[0].children[1].object_id = object_id
        assembler = MessageAssembler(encoded.wire_message, encoded.tree, max_message_length=LIMIT)
        with pytest.raises(MalformedMessageError, match=reason):
            assembler.add(object_id, content)


def test_tree_root_must_be_the_message_id(example):
    encoded, _ = example
    wire = pb.Message(metadata=pb.Metadata(message_id="f" * 64), content=pb.RecordDict())
    with pytest.raises(MalformedMessageError, match="not the message id"):
        MessageAssembler(wire, encoded.tree, max_message_length=LIMIT)
    deep = encoded.tree
    node = deep
    for _ in range(5):
        node = node.children[0] if node.children else node
    node.children.append(pb.ObjectTree(object_id="e" * 64))
    with pytest.raises(MalformedMessageError, match="deeper"):
        MessageAssembler(encoded.wire_message, deep, max_message_length=LIMIT)


def big_message(size: int) -> tuple[Message, object]:
    content = RecordSet(
        parameters_records={"p": ParametersRecord({"a": Array("u8", [size], "raw", bytes(size))})}
    )
    message = Message(metadata(), content=content)
    return message, encode_message(message)


def test_an_array_bigger_than_the_limit_is_refused_before_allocation():
    size = 3 * CHUNK_SIZE + 5
    _, encoded = big_message(size)
    objects = all_objects(encoded)
    # Lower bound, when the Array object arrives: no chunk was needed to refuse it.
    assembler = MessageAssembler(
        encoded.wire_message, encoded.tree, max_message_length=2 * CHUNK_SIZE
    )
    order = assembler.fetch_order()
    array_id = encoded.tree.children[0].children[0].children[0].object_id
    for object_id in itertools.takewhile(lambda i: i != array_id, order):
        assembler.add(object_id, objects[object_id])
    with pytest.raises(MessageTooLargeError) as info:
        assembler.add(array_id, objects[array_id])
    assert info.value.limit == 2 * CHUNK_SIZE
    # Exact size, when the last chunk arrives: just over the limit.
    with pytest.raises(MessageTooLargeError) as info:
        assemble(encoded, objects, limit=size - 1)
    assert info.value.size >= size
    assert assemble(encoded, objects, limit=size + 10_000).content.parameters_records["p"][
        "a"
    ].data == bytes(size)
