"""The 1.42 object path's copy-free pieces, in memory (no server needed).

* an upload's ``PushObjectRequest`` body, encoded by the 1.42 fast codec, references the
  tensor memory of the reply (its ArrayChunk bytes are never joined before sending);
* the chunks of a pulled multi-chunk array land in one buffer per array, whatever order
  they arrive in, and that buffer is not one of the received bodies (those can be freed);
* a pulled chunk whose bytes do not hash to its id is refused before it is placed.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr_sdk_proto.v1_42.flwr import proto as pb

from flwr_sdk.common._npy import NpyPayload
from flwr_sdk.common.message import Message, Metadata
from flwr_sdk.common.records import Array, ParametersRecord, RecordSet
from flwr_sdk.errors import ObjectIntegrityError
from flwr_sdk.net.fast_codec import encode_message_chunks
from flwr_sdk.wire.v1_42_objects import CHUNK_SIZE, encode_message
from flwr_sdk.wire.v1_42_objects_decode import MessageAssembler


def _message(array: np.ndarray) -> Message:
    metadata = Metadata(
        run_id=1,
        message_id="",
        src_node_id=1,
        dst_node_id=2,
        reply_to_message="",
        group_id="1",
        ttl=600.0,
        message_type="train",
        created_at=1780000000.0,
    )
    record = ParametersRecord(
        {"w": Array("float32", list(array.shape), "numpy.ndarray", NpyPayload(array))},
        keep_input=True,
    )
    return Message(metadata, content=RecordSet(parameters_records={"p": record}))


@pytest.fixture(scope="module")
def array() -> np.ndarray:
    # Three chunks, the last one short (but above the codec's 64 KiB by-reference size).
    return np.arange((2 * CHUNK_SIZE + 100_000) // 4, dtype=np.float32)


def _chunk_ids(tree: pb.ObjectTree) -> list[str]:
    array_node = tree.children[0].children[0].children[0]
    return [c.object_id for c in array_node.children]


def test_upload_body_references_the_tensor_memory(array: np.ndarray) -> None:
    encoded = encode_message(_message(array))
    for object_id in _chunk_ids(encoded.tree):
        request = pb.PushObjectRequest(
            node=pb.Node(node_id=2),
            run_id=1,
            object_id=object_id,
            object_content=encoded.object_content(object_id),  # type: ignore[arg-type]
            session_id="s",
        )
        body = encode_message_chunks(request)
        big = [p for p in body.pieces if p.nbytes >= 64 * 1024]
        assert big, "the chunk's bytes were copied into the body"
        assert all(np.shares_memory(np.asarray(p), array) for p in big)
        plain = bytes(
            pb.PushObjectRequest(
                node=pb.Node(node_id=2),
                run_id=1,
                object_id=object_id,
                object_content=bytes(encoded.object_content(object_id)),
                session_id="s",
            )
        )
        assert bytes(body) == plain


def _pulled(array: np.ndarray) -> tuple[MessageAssembler, dict[str, bytes], list[str]]:
    encoded = encode_message(_message(array))
    wire = pb.Message(metadata=pb.Metadata(message_id=encoded.message_id))
    assembler = MessageAssembler(wire, encoded.tree, max_message_length=1 << 30)
    contents = {i: bytes(encoded.object_content(i)) for i in assembler.fetch_order()}
    return assembler, contents, _chunk_ids(encoded.tree)


def test_pulled_chunks_land_in_one_buffer_per_array(array: np.ndarray) -> None:
    assembler, contents, chunks = _pulled(array)
    bodies = {i: memoryview(bytearray(c)) for i, c in contents.items()}
    others = [i for i in assembler.fetch_order() if i not in chunks]
    for object_id in [*others, chunks[1], chunks[0], chunks[2]]:  # chunks out of order
        assembler.add(object_id, bodies[object_id])
    data = assembler.message().content.parameters_records["p"]["w"].data
    assert isinstance(data, memoryview) and data.contiguous
    assert bytes(data[-array.nbytes :]) == array.tobytes()
    received = np.frombuffer(data, dtype=np.uint8)
    for chunk_id in chunks:
        assert not np.shares_memory(received, np.asarray(bodies[chunk_id]))


def test_tampered_chunk_is_refused(array: np.ndarray) -> None:
    assembler, contents, chunks = _pulled(array)
    for object_id in assembler.fetch_order():
        if object_id == chunks[1]:
            break
        assembler.add(object_id, contents[object_id])
    tampered = bytearray(contents[chunks[1]])
    tampered[-1] ^= 1
    with pytest.raises(ObjectIntegrityError):
        assembler.add(chunks[1], memoryview(tampered))
    assert chunks[1] in assembler.missing()
