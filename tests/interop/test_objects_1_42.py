"""Our 1.42 object codec against flwr 1.42.0's own helpers, for random messages.

For each message (hypothesis: all record kinds, empty records and RecordSets, every scalar
kind and list kind, uint64 values, non-ASCII names, optional task ids, error messages;
plus fixed multi-chunk arrays over 5 MiB) flwr 1.42.0 builds the same message with its
public classes in its own virtualenv (``tests/support/flwr142_objects.py``) and returns
its object ids, object bytes and tree. We assert that our encoder produces exactly those
ids, bytes and tree, that our decoder rebuilds the message from flwr's objects, and that a
tampered flwr object (one byte flipped, truncated, under another id, or missing) is
refused.
"""

from __future__ import annotations

import base64
import json
import math
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flwr_sdk_proto.v1_42.flwr import proto as pb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.flower_env import FlowerEnv

from flwr_sdk.common.message import Error, Message, Metadata
from flwr_sdk.common.records import (
    Array,
    ConfigsRecord,
    MetricsRecord,
    ParametersRecord,
    RecordSet,
)
from flwr_sdk.constants import INT64_MAX, INT64_MIN, UINT64_MAX
from flwr_sdk.errors import MalformedMessageError, MessageTooLargeError, ObjectIntegrityError
from flwr_sdk.wire.v1_42_objects import (
    CHUNK_SIZE,
    EncodedMessage,
    encode_message,
    error_to_wire,
    metadata_to_wire,
)
from flwr_sdk.wire.v1_42_objects_decode import decode_message

pytestmark = pytest.mark.interop

RUNNER = Path(__file__).resolve().parents[1] / "support" / "flwr142_objects.py"
LIMIT = 2**31


class FlwrObjects:
    """The runner process in the flwr 1.42.0 venv (one per test module)."""

    def __init__(self, env: FlowerEnv) -> None:
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self._proc = env.popen(
            [env.python, "-I", str(RUNNER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )

    def encode(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps({"op": "encode", "messages": specs}) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            self._stderr.seek(0)
            raise RuntimeError(f"flwr 1.42 runner died: {self._stderr.read()[-3000:]}")
        reply = json.loads(line)
        assert reply["ok"], reply.get("traceback") or reply
        results: list[dict[str, Any]] = reply["results"]
        for result in results:
            result["objects"] = {k: base64.b64decode(v) for k, v in result["objects"].items()}
        return results

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()


@pytest.fixture(scope="module")
def flwr_objects() -> Iterator[FlwrObjects]:
    runner = FlwrObjects(FlowerEnv.get("1.42.0"))
    try:
        yield runner
    finally:
        runner.close()


# ------------------------------------------------------------- spec <-> our model


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def value_spec(value: Any) -> dict[str, Any]:
    """A record value as the runner's JSON (see flwr142_objects.py)."""
    if isinstance(value, list):
        kinds = {_kind(v) for v in value} or {"float"}
        (kind,) = kinds
        return {"list": kind, "v": [value_spec(v)[kind] for v in value]}
    kind = _kind(value)
    encoded = {"float": float.hex, "bytes": _b64}.get(kind, lambda v: v)(value)
    return {kind: encoded}


def _kind(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", bytes: "bytes"}[type(value)]


def message_spec(message: Message, task_ids: tuple[int | None, int | None]) -> dict[str, Any]:
    md = message.metadata
    spec: dict[str, Any] = {
        "metadata": {
            "run_id": md.run_id,
            "src_node_id": md.src_node_id,
            "dst_node_id": md.dst_node_id,
            "reply_to_message_id": md.reply_to_message,
            "group_id": md.group_id,
            "ttl": md.ttl.hex(),
            "message_type": md.message_type,
            "created_at": md.created_at.hex(),
            "src_task_id": task_ids[0],
            "dst_task_id": task_ids[1],
        },
        "error": None,
        "records": [],
    }
    if message.has_error():
        spec["error"] = {"code": message.error.code, "reason": message.error.reason}
        return spec
    content = message.content
    for name, parameters in content.parameters_records.items():
        arrays = [
            [k, {"dtype": a.dtype, "shape": a.shape, "stype": a.stype, "data": _b64(a.data)}]
            for k, a in parameters.items()
        ]
        spec["records"].append([name, "array", arrays])
    for kind, records in (
        ("metric", content.metrics_records),
        ("config", content.configs_records),
    ):
        for name, record in records.items():
            spec["records"].append([name, kind, [[k, value_spec(v)] for k, v in record.items()]])
    return spec


def tree_from_json(tree: dict[str, Any]) -> pb.ObjectTree:
    return pb.ObjectTree(
        object_id=tree["id"], children=[tree_from_json(c) for c in tree["children"]]
    )


def wire_message(message: Message, message_id: str, task_ids: tuple[int | None, ...]) -> Any:
    metadata = metadata_to_wire(
        message.metadata, message_id=message_id, src_task_id=task_ids[0], dst_task_id=task_ids[1]
    )
    if message.has_error():
        return pb.Message(metadata=metadata, error=error_to_wire(message.error))
    return pb.Message(metadata=metadata, content=pb.RecordDict())


# -------------------------------------------------------------------- strategies

names = st.text(max_size=6)
signed = st.integers(INT64_MIN, INT64_MAX)
unsigned_big = st.integers(INT64_MAX + 1, UINT64_MAX)
# NaN travels to the flwr runner as JSON, which keeps no NaN payload or sign bits: the
# examples use the one NaN JSON gives back (hypothesis also draws NaNs with payloads).
floats = st.floats(allow_nan=True, allow_infinity=True).map(
    lambda x: math.nan if math.isnan(x) else x
)
int_lists = st.one_of(
    st.lists(signed, max_size=4), st.lists(st.integers(0, UINT64_MAX), min_size=1, max_size=4)
)
metric_values = st.one_of(signed, unsigned_big, floats, int_lists, st.lists(floats, max_size=4))
config_values = st.one_of(
    metric_values,
    st.booleans(),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.lists(st.booleans(), min_size=1, max_size=3),
    st.lists(st.text(max_size=4), min_size=1, max_size=3),
    st.lists(st.binary(max_size=4), min_size=1, max_size=3),
)
arrays = st.builds(
    Array,
    dtype=st.sampled_from(["", "float32", "int64"]),
    shape=st.lists(st.integers(0, 2**31 - 1), max_size=3),
    stype=st.sampled_from(["numpy.ndarray", "", "raw"]),
    data=st.one_of(st.binary(max_size=64), st.just(b"")),
)


@st.composite
def record_sets(draw: st.DrawFn) -> RecordSet:
    taken: set[str] = set()

    def fresh(kind_names: list[str]) -> list[str]:
        out = [n for n in kind_names if n not in taken]
        taken.update(out)
        return out

    p_names = fresh(draw(st.lists(names, max_size=2, unique=True)))
    m_names = fresh(draw(st.lists(names, max_size=2, unique=True)))
    c_names = fresh(draw(st.lists(names, max_size=2, unique=True)))
    return RecordSet(
        parameters_records={
            n: ParametersRecord(draw(st.dictionaries(names, arrays, max_size=3)), keep_input=True)
            for n in p_names
        },
        metrics_records={
            n: MetricsRecord(draw(st.dictionaries(names, metric_values, max_size=3)))
            for n in m_names
        },
        configs_records={
            n: ConfigsRecord(draw(st.dictionaries(names, config_values, max_size=4)))
            for n in c_names
        },
    )


uint64 = st.integers(0, UINT64_MAX)
metadatas = st.builds(
    Metadata,
    run_id=uint64,
    message_id=st.just(""),
    src_node_id=uint64,
    dst_node_id=uint64,
    reply_to_message=st.one_of(
        st.just(""), st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
    ),
    group_id=st.text(max_size=4),
    ttl=st.floats(min_value=0.0, max_value=1e9),
    message_type=st.sampled_from(["train", "evaluate", "query", "get_parameters", "train.step"]),
    created_at=st.floats(min_value=0.0, max_value=4e9),
)
errors = st.builds(Error, code=st.integers(INT64_MIN, INT64_MAX), reason=st.text(max_size=10))
task_ids = st.tuples(st.none() | uint64, st.none() | uint64)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    metadata = draw(metadatas)
    if draw(st.integers(0, 5)) == 0:
        return Message(metadata, error=draw(errors))
    return Message(metadata, content=draw(record_sets()))


# ------------------------------------------------------------------------ checks


def tree_json(tree: pb.ObjectTree) -> dict[str, Any]:
    return {"id": tree.object_id, "children": [tree_json(c) for c in tree.children]}


def check_against_flwr(
    message: Message, ids: tuple[int | None, int | None], theirs: dict[str, Any]
) -> EncodedMessage:
    ours = encode_message(message, src_task_id=ids[0], dst_task_id=ids[1])
    assert ours.message_id == theirs["message_id"]
    assert set(ours.object_ids()) == set(theirs["objects"])
    for object_id, content in theirs["objects"].items():
        assert ours.object_bytes(object_id) == content, object_id
    assert tree_json(ours.tree) == theirs["tree"]

    wire = wire_message(message, theirs["message_id"], ids)
    tree = tree_from_json(theirs["tree"])
    decoded = decode_message(wire, tree, theirs["objects"], max_message_length=LIMIT)
    message.metadata.message_id = theirs["message_id"]
    try:
        assert decoded == message
    finally:
        message.metadata.message_id = ""
    return ours


def check_tampering_refused(
    message: Message, ids: tuple[int | None, ...], theirs: dict[str, Any], pick: int
) -> None:
    wire = wire_message(message, theirs["message_id"], ids)
    tree = tree_from_json(theirs["tree"])
    objects: dict[str, bytes] = theirs["objects"]
    victim = sorted(objects)[pick % len(objects)]
    content = objects[victim]
    other = next((i for i in sorted(objects) if i != victim), None)
    tampered = [
        bytes([content[0] ^ 0x20]) + content[1:],
        content[:-1],
        content[: len(content) // 2]
        + bytes([content[len(content) // 2] ^ 1])
        + content[len(content) // 2 + 1 :],
    ]
    if other is not None:
        tampered.append(objects[other])
    for bad in tampered:
        with pytest.raises(ObjectIntegrityError) as info:
            decode_message(wire, tree, {**objects, victim: bad}, max_message_length=LIMIT)
        assert info.value.object_id == victim
    missing = {k: v for k, v in objects.items() if k != victim}
    with pytest.raises(MalformedMessageError, match="missing"):
        decode_message(wire, tree, missing, max_message_length=LIMIT)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(message=messages(), ids=task_ids, pick=st.integers(0, 1000))
def test_random_messages_match_flwr(flwr_objects, message, ids, pick):
    (theirs,) = flwr_objects.encode([message_spec(message, ids)])
    check_against_flwr(message, ids, theirs)
    check_tampering_refused(message, ids, theirs, pick)


def test_multi_chunk_arrays_match_flwr(flwr_objects):
    """Arrays over 5 MiB: chunking, identical chunks once, an exact multiple of 5 MiB."""
    head = bytes(range(256)) * 4
    records = {
        "p": ParametersRecord(
            {
                "zeros": Array("uint8", [2 * CHUNK_SIZE + 7], "raw", bytes(2 * CHUNK_SIZE + 7)),
                "exact": Array("", [], "numpy.ndarray", head * (CHUNK_SIZE // len(head))),
                "empty": Array("", [], "numpy.ndarray", b""),
            },
            keep_input=True,
        ),
        "q": ParametersRecord(
            {"same": Array("uint8", [2 * CHUNK_SIZE + 7], "raw", bytes(2 * CHUNK_SIZE + 7))}
        ),
    }
    metadata = Metadata(3, "", 5, 1, "cd" * 32, "2", 60.0, "train", 1780000000.5)
    message = Message(metadata, content=RecordSet(parameters_records=records))
    ids = (None, 1)
    (theirs,) = flwr_objects.encode([message_spec(message, ids)])
    ours = check_against_flwr(message, ids, theirs)
    zeros = ours.tree.children[0].children[0].children[0]
    assert len(zeros.children) == 2  # three chunk positions, two distinct chunks
    wire = wire_message(message, theirs["message_id"], ids)
    tree = tree_from_json(theirs["tree"])
    with pytest.raises(MessageTooLargeError):
        decode_message(wire, tree, theirs["objects"], max_message_length=2 * CHUNK_SIZE)
    check_tampering_refused(message, ids, theirs, pick=7)
