"""What the extension tests share: paths, running the checkout's code generator, and the
round-trip tests' strategies and wire codec.

A module of its own (not the conftest) so tests can import it by a name no other test
directory uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import flwr_sdk_proto.v1_12.flwr.proto as wire_pb
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from flwr_sdk.common.records import RecordSet
from flwr_sdk.ext import ndarray_from_numpy
from flwr_sdk.wire.records import recordset_from_wire, recordset_to_wire

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TEST_PROTOS = HERE / "proto"


def run_codegen(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """``python -m codegen ARGS`` with the checkout's codegen."""
    return subprocess.run(
        [sys.executable, "-m", "codegen", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


# --------------------------------------------------------------------------------------
# What the round-trip property tests share: value strategies and the wire codec

INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "sint32": (-(2**31), 2**31 - 1),
    "sfixed32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "fixed32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "sint64": (-(2**63), 2**63 - 1),
    "sfixed64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
    "fixed64": (0, 2**64 - 1),
}
DTYPES = ["bool", "int8", "uint16", "int32", "int64", "float16", "float32", "float64",
          "complex64", ">i4", ">f8"]  # fmt: skip

doubles = st.floats(allow_nan=False)
float32s = st.floats(allow_nan=False, width=32)


def ints(kind: str) -> st.SearchStrategy[int]:
    low, high = INT_RANGES[kind]
    return st.one_of(st.integers(low, high), st.sampled_from([low, high, 0]))


@st.composite
def ndarrays(draw: st.DrawFn) -> Any:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    array = draw(hnp.arrays(dtype, shape))
    return ndarray_from_numpy(array)


def wire_roundtrip(recordset: RecordSet) -> RecordSet:
    """RecordSet → flwr.proto.RecordSet bytes (1.12 line) → RecordSet."""
    return recordset_from_wire(wire_pb.RecordSet.parse(recordset_to_wire_bytes(recordset)))


def recordset_to_wire_bytes(recordset: RecordSet) -> bytes:
    """The 1.12 line's ``flwr.proto.RecordSet`` bytes of ``recordset`` (our codec)."""
    return bytes(recordset_to_wire(recordset, wire_pb))


def recordset_from_wire_bytes(data: bytes) -> RecordSet:
    """``flwr.proto.RecordSet`` bytes (1.12 line) → RecordSet (our codec)."""
    return recordset_from_wire(wire_pb.RecordSet.parse(data))
