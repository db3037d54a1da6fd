"""Serialize / parse a tensor payload: generated fast codec vs google protobuf vs betterproto2.

Usage: python bench/codec.py [--mib 1,64,512] [--arrays 10] [--repeat 3] [--codecs ...]

The payload is ``--arrays`` float32 arrays (raw little-endian bytes) totalling ``--mib`` MiB in
``Message{metadata, content: RecordSet{parameters: {"model": ParametersRecord{data_keys,
data_values: [Array]}}}}`` of the 1.15 wire line. Columns, best of ``--repeat``:

* ``ser``: message object → wire bytes (fast: ``fastcodec.encode``; protobuf:
  ``SerializeToString()``; betterproto2: ``bytes(msg)``);
* ``parse``: wire ``bytes`` → message object (``fastcodec.decode`` / ``FromString`` /
  ``Message.parse``);
* ``parse+np``: parse, then one ``numpy.frombuffer`` per array (protobuf copies the
  ``bytes`` field on access; the fast codec hands out memoryviews of the input).

google protobuf (upb) classes are built at start-up from our own protos: grpcio-tools'
protoc compiles ``proto/flower/v1_15`` into a descriptor set, which is loaded into a
private descriptor pool (flwr's generated ``*_pb2`` modules are not needed). All codecs
produce the same bytes (checked once per size). Prints a table and writes nothing.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from flwr_sdk_proto.v1_15 import fastcodec
from flwr_sdk_proto.v1_15.flwr import proto as pb
from google.protobuf import descriptor_pool, message_factory

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from codegen.descriptors import compile_descriptor_set  # noqa: E402

MiB = 1024 * 1024
CODECS = ("fast", "protobuf", "betterproto2")


def protobuf_message_class() -> Any:
    """google protobuf's (upb) class of ``flwr.proto.Message``, compiled from our protos."""
    root = REPO / "proto" / "flower" / "v1_15"
    files = sorted(p.relative_to(root) for p in root.rglob("*.proto"))
    pool = descriptor_pool.DescriptorPool()
    for fd in compile_descriptor_set(root, files).file:
        pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("flwr.proto.Message"))


def tensors(total_mib: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    per = total_mib * MiB // count // 4
    return [rng.standard_normal(per, dtype=np.float32) for _ in range(count)]


def metadata_fields() -> dict[str, Any]:
    return {
        "run_id": 2**63 + 5,
        "message_id": "m" * 64,
        "src_node_id": 1,
        "dst_node_id": 2**64 - 1,
        "group_id": "round-1",
        "ttl": 3600.0,
        "message_type": "train",
        "created_at": 1.7e9,
    }


def betterproto_message(arrays: list[np.ndarray]) -> pb.Message:
    values = [pb.Array(dtype="<f4", shape=[a.size], stype="raw", data=a.tobytes()) for a in arrays]
    record = pb.ParametersRecord(
        data_keys=[f"w{i}" for i in range(len(arrays))], data_values=values
    )
    return pb.Message(
        metadata=pb.Metadata(**metadata_fields()),
        content=pb.RecordSet(parameters={"model": record}),
    )


def protobuf_message(cls: Any, arrays: list[np.ndarray]) -> Any:
    msg = cls()
    for name, value in metadata_fields().items():
        setattr(msg.metadata, name, value)
    record = msg.content.parameters["model"]
    for i, a in enumerate(arrays):
        record.data_keys.append(f"w{i}")
        record.data_values.add(dtype="<f4", shape=[a.size], stype="raw", data=a.tobytes())
    return msg


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        del result
    return min(times)


def arrays_of(msg: Any) -> list[Any]:
    return list(msg.content.parameters["model"].data_values)


def run(size: int, args: argparse.Namespace, pb_cls: Any) -> list[tuple[str, float, float, float]]:
    arrays = tensors(size, args.arrays)
    ours = betterproto_message(arrays)
    reference = bytes(fastcodec.encode(ours))
    rows = []
    for codec in args.codecs:
        if codec == "fast":
            encode: Callable[[], Any] = lambda: fastcodec.encode(ours)  # noqa: E731
            decode: Callable[[bytes], Any] = lambda data: fastcodec.decode(pb.Message, data)  # noqa: E731
            data = reference
        elif codec == "protobuf":
            theirs = protobuf_message(pb_cls, arrays)
            encode = theirs.SerializeToString
            decode = pb_cls.FromString
            data = theirs.SerializeToString()
            assert pb_cls.FromString(reference) == theirs
            del theirs
        else:
            encode = ours.__bytes__
            decode = pb.Message.parse
            data = bytes(ours)
            assert data == reference, "betterproto2 and the fast codec disagree"

        def parse_numpy(decode: Callable[[bytes], Any] = decode, data: bytes = data) -> int:
            msg = decode(data)
            return sum(np.frombuffer(a.data, dtype=np.float32).size for a in arrays_of(msg))

        ser = best(encode, args.repeat)
        parse = best(lambda decode=decode, data=data: decode(data), args.repeat)
        parse_np = best(parse_numpy, args.repeat)
        rows.append((codec, ser, parse, parse_np))
        del data
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", default="1,64,512", help="comma-separated payload sizes (MiB)")
    parser.add_argument("--arrays", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--codecs", default=",".join(CODECS))
    args = parser.parse_args()
    args.codecs = [c for c in args.codecs.split(",") if c]
    unknown = set(args.codecs) - set(CODECS)
    if unknown:
        parser.error(f"unknown codecs {sorted(unknown)}; known: {', '.join(CODECS)}")
    pb_cls = protobuf_message_class()

    print(
        f"{args.arrays} float32 arrays in Message→RecordSet→ParametersRecord→Array; best of "
        f"{args.repeat}"
    )
    header = f"{'MiB':>5} {'codec':<13} {'ser s':>9} {'ser MB/s':>9} {'parse s':>9} "
    header += f"{'parse MB/s':>11} {'parse+np s':>11}"
    print(header)
    print("-" * len(header))
    for size in (int(s) for s in args.mib.split(",")):
        megabytes = size * MiB / 1e6
        for codec, ser, parse, parse_np in run(size, args, pb_cls):
            print(
                f"{size:>5} {codec:<13} {ser:>9.4f} {megabytes / ser:>9.0f} {parse:>9.4f} "
                f"{megabytes / parse:>11.0f} {parse_np:>11.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
