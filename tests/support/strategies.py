"""Hypothesis strategies for wire values of both lines and for the SDK's own records.

Wire values (used by ``tests/interop/test_codec_roundtrip.py``): :func:`line_strategies`
draws RecordSet parts of a line's generated module (``pb``), exactly one member set in
every oneof, every value kind of Configs/Metrics records (scalars and lists), negative
sint64, uint64 >= 2**63, and empty and multi-MiB bytes; :func:`task_envelope` (1.12
TaskIns/TaskRes) and :func:`message_15` (1.15 ``flwr.proto.Message``) wrap them. These
are *any* values the schema allows, e.g. a Message without metadata or with both content
and error.

Valid values (used by the adapter tests, ``tests/unit/test_wire_v1_15.py``):
:func:`canonical_line_strategies` draws only what a Flower peer puts on the wire, so the
SDK's conversion maps it back bit for bit — ``uint64`` / ``uint_list`` only when a value
exceeds 2**63 - 1, no empty list except ``double_list`` in a MetricsRecord and
``bool_list`` in a ConfigsRecord (what an empty list encodes to), unique ParametersRecord
keys; :func:`valid_message_15` has metadata and exactly one of content and error.
:func:`sdk_recordsets` and :func:`sdk_messages` draw the SDK's own RecordSet / Message.
"""

from __future__ import annotations

import random
from typing import Any

from flwr_sdk_proto.v1_12.flwr import proto as pb12
from flwr_sdk_proto.v1_15.flwr import proto as pb15
from hypothesis import strategies as st

from flwr_sdk.common.message import Error, Message, Metadata
from flwr_sdk.common.records import (
    Array,
    ConfigsRecord,
    MetricsRecord,
    ParametersRecord,
    RecordSet,
)

MiB = 1024 * 1024
U64_MAX = 2**64 - 1
S64_MIN, S64_MAX = -(2**63), 2**63 - 1

# ----------------------------------------------------------------------------- values

uint64s = st.one_of(
    st.integers(0, U64_MAX),
    st.integers(2**63, U64_MAX),
    st.sampled_from([0, 1, 2**63 - 1, 2**63, U64_MAX]),
)
big_uint64s = st.one_of(st.integers(2**63, U64_MAX), st.sampled_from([2**63, U64_MAX]))
"""uint64 values a signed 64-bit integer cannot hold."""
sint64s = st.one_of(
    st.integers(S64_MIN, S64_MAX),
    st.integers(S64_MIN, -1),
    st.sampled_from([S64_MIN, -1, 0, 1, S64_MAX]),
)
int32s = st.integers(-(2**31), 2**31 - 1)
# Every Python float is a double: values travel exactly (NaN is left out: NaN != NaN).
doubles = st.floats(allow_nan=False, allow_infinity=True)
texts = st.text(max_size=12)
keys = st.text(max_size=8)
small_bytes = st.binary(max_size=48)
message_types = st.sampled_from(["", "train", "evaluate", "query", "x.custom"])


def big_bytes(min_size: int = 2 * MiB, max_size: int = 8 * MiB) -> st.SearchStrategy[bytes]:
    """Multi-MiB payloads, cheap to draw: a seeded PRNG fills them."""
    return st.builds(
        lambda n, seed: random.Random(seed).randbytes(n),
        st.integers(min_size, max_size),
        st.integers(0, 2**32),
    )


def lists(inner: st.SearchStrategy[Any], min_size: int = 0) -> st.SearchStrategy[list[Any]]:
    return st.lists(inner, min_size=min_size, max_size=5)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def one_of_members(cls: type, members: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy:
    """Values of ``cls`` with exactly one oneof member set (each member equally likely)."""
    return st.one_of(
        *(
            st.builds(lambda v, name=name: cls(**{name: v}), strat)
            for name, strat in members.items()
        )
    )


def with_a_big_uint(values: list[int], big: int, at: int) -> list[int]:
    """``values`` with ``big`` (>= 2**63) inserted at ``at`` (modulo the length)."""
    result = list(values)
    result.insert(at % (len(result) + 1), big)
    return result


uint_lists_needing_uint64 = st.builds(
    with_a_big_uint, lists(st.integers(0, U64_MAX)), big_uint64s, st.integers(0, 5)
)
"""Non-negative int lists holding at least one value >= 2**63 (what ``uint_list`` carries)."""


# ------------------------------------------------------------------ wire: any values


def _records(
    pb: Any,
    metrics_value: st.SearchStrategy[Any],
    configs_value: st.SearchStrategy[Any],
    params: st.SearchStrategy[Any],
) -> st.SearchStrategy[Any]:
    return st.builds(
        pb.RecordSet,
        parameters=st.dictionaries(keys, params, max_size=2),
        metrics=st.dictionaries(
            keys,
            st.builds(pb.MetricsRecord, data=st.dictionaries(keys, metrics_value, max_size=4)),
            max_size=2,
        ),
        configs=st.dictionaries(
            keys,
            st.builds(pb.ConfigsRecord, data=st.dictionaries(keys, configs_value, max_size=6)),
            max_size=2,
        ),
    )


def _array(pb: Any, data: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(
        pb.Array,
        dtype=st.sampled_from(["", "float32", "float64", "int64", "<f4"]),
        shape=st.lists(int32s, max_size=4),
        stype=st.sampled_from(["", "numpy.ndarray"]),
        data=data,
    )


def _parameters(
    pb: Any, data: st.SearchStrategy[Any], max_size: int, unique: bool
) -> st.SearchStrategy[Any]:
    pairs = st.lists(
        st.tuples(keys, _array(pb, data)),
        max_size=max_size,
        unique_by=(lambda pair: pair[0]) if unique else None,
    )
    return st.builds(
        lambda pairs: pb.ParametersRecord(
            data_keys=[k for k, _ in pairs], data_values=[a for _, a in pairs]
        ),
        pairs,
    )


def line_strategies(pb: Any) -> dict[str, st.SearchStrategy[Any]]:
    """Strategies for the record types, which both lines share."""
    double_list = st.builds(pb.DoubleList, vals=lists(doubles))
    sint_list = st.builds(pb.SintList, vals=lists(sint64s))
    uint_list = st.builds(pb.UintList, vals=lists(uint64s))
    metrics_value = one_of_members(
        pb.MetricsRecordValue,
        {
            "double": doubles,
            "sint64": sint64s,
            "uint64": uint64s,
            "double_list": double_list,
            "sint_list": sint_list,
            "uint_list": uint_list,
        },
    )
    configs_value = one_of_members(
        pb.ConfigsRecordValue,
        {
            "double": doubles,
            "sint64": sint64s,
            "uint64": uint64s,
            "bool": st.booleans(),
            "string": texts,
            "bytes": small_bytes,
            "double_list": double_list,
            "sint_list": sint_list,
            "uint_list": uint_list,
            "bool_list": st.builds(pb.BoolList, vals=lists(st.booleans())),
            "string_list": st.builds(pb.StringList, vals=lists(texts)),
            "bytes_list": st.builds(pb.BytesList, vals=lists(small_bytes)),
        },
    )
    big_params = _parameters(
        pb, st.one_of(st.just(b""), big_bytes()), max_size=2, unique=False
    ).filter(lambda p: len(p.data_values) > 0)
    return {
        "metrics_value": metrics_value,
        "configs_value": configs_value,
        "recordset": _records(
            pb,
            metrics_value,
            configs_value,
            _parameters(pb, small_bytes, max_size=3, unique=False),
        ),
        "big_recordset": st.builds(
            pb.RecordSet, parameters=st.dictionaries(keys, big_params, min_size=1, max_size=1)
        ),
        "error": st.builds(pb.Error, code=sint64s, reason=texts),
    }


S12 = line_strategies(pb12)
S15 = line_strategies(pb15)


def task_12(recordset: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    node = st.builds(pb12.Node, node_id=uint64s, anonymous=st.booleans())
    return st.builds(
        pb12.Task,
        producer=maybe(node),
        consumer=maybe(node),
        created_at=doubles,
        delivered_at=texts,
        pushed_at=doubles,
        ttl=doubles,
        ancestry=lists(texts),
        task_type=st.sampled_from(["", "train", "evaluate", "query", "reconnect", "x.custom"]),
        recordset=maybe(recordset),
        error=maybe(S12["error"]),
    )


def task_envelope(cls: type, recordset: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(
        cls, task_id=texts, group_id=texts, run_id=uint64s, task=maybe(task_12(recordset))
    )


metadata_15 = st.builds(
    pb15.Metadata,
    run_id=uint64s,
    message_id=texts,
    src_node_id=uint64s,
    dst_node_id=uint64s,
    reply_to_message=texts,
    group_id=texts,
    ttl=doubles,
    message_type=message_types,
    created_at=doubles,
)


def message_15(recordset: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(
        pb15.Message,
        metadata=maybe(metadata_15),
        content=maybe(recordset),
        error=maybe(S15["error"]),
    )


# ---------------------------------------------------------------- wire: valid values


def canonical_line_strategies(pb: Any) -> dict[str, st.SearchStrategy[Any]]:
    """Record values as a Flower peer encodes them (see the module docstring)."""
    metrics_value = one_of_members(
        pb.MetricsRecordValue,
        {
            "double": doubles,
            "sint64": sint64s,
            "uint64": big_uint64s,
            "double_list": st.builds(pb.DoubleList, vals=lists(doubles)),
            "sint_list": st.builds(pb.SintList, vals=lists(sint64s, min_size=1)),
            "uint_list": st.builds(pb.UintList, vals=uint_lists_needing_uint64),
        },
    )
    configs_value = one_of_members(
        pb.ConfigsRecordValue,
        {
            "double": doubles,
            "sint64": sint64s,
            "uint64": big_uint64s,
            "bool": st.booleans(),
            "string": texts,
            "bytes": small_bytes,
            "double_list": st.builds(pb.DoubleList, vals=lists(doubles, min_size=1)),
            "sint_list": st.builds(pb.SintList, vals=lists(sint64s, min_size=1)),
            "uint_list": st.builds(pb.UintList, vals=uint_lists_needing_uint64),
            "bool_list": st.builds(pb.BoolList, vals=lists(st.booleans())),
            "string_list": st.builds(pb.StringList, vals=lists(texts, min_size=1)),
            "bytes_list": st.builds(pb.BytesList, vals=lists(small_bytes, min_size=1)),
        },
    )
    big_params = _parameters(pb, big_bytes(), max_size=2, unique=True).filter(
        lambda p: len(p.data_values) > 0
    )
    return {
        "metrics_value": metrics_value,
        "configs_value": configs_value,
        "recordset": _records(
            pb, metrics_value, configs_value, _parameters(pb, small_bytes, max_size=3, unique=True)
        ),
        "big_recordset": st.builds(
            pb.RecordSet, parameters=st.dictionaries(keys, big_params, min_size=1, max_size=1)
        ),
        "error": st.builds(pb.Error, code=sint64s, reason=texts),
    }


C15 = canonical_line_strategies(pb15)


def valid_message_15(recordset: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """1.15 ``flwr.proto.Message`` values with metadata and exactly one of content/error."""
    return st.one_of(
        st.builds(pb15.Message, metadata=metadata_15, content=recordset),
        st.builds(pb15.Message, metadata=metadata_15, error=C15["error"]),
    )


# ------------------------------------------------------------------- the SDK's values


def _sdk_array(data: st.SearchStrategy[Any]) -> st.SearchStrategy[Array]:
    return st.builds(
        Array,
        dtype=st.sampled_from(["", "float32", "float64", "int64", "<f4"]),
        shape=st.lists(int32s, max_size=4),
        stype=st.sampled_from(["", "numpy.ndarray"]),
        data=data,
    )


sdk_array_data = st.one_of(small_bytes, st.builds(lambda b: memoryview(bytearray(b)), small_bytes))
"""``Array.data`` as ``bytes`` or as a memoryview of a buffer (both travel uncopied)."""
_sdk_int_lists = st.one_of(lists(sint64s), uint_lists_needing_uint64)
sdk_metrics_values = st.one_of(doubles, sint64s, big_uint64s, lists(doubles), _sdk_int_lists)
sdk_configs_values = st.one_of(
    doubles,
    sint64s,
    big_uint64s,
    st.booleans(),
    texts,
    small_bytes,
    lists(doubles),
    _sdk_int_lists,
    lists(st.booleans()),
    lists(texts),
    lists(small_bytes),
)


def sdk_recordsets(
    array_data: st.SearchStrategy[Any] = sdk_array_data,
) -> st.SearchStrategy[RecordSet]:
    """The SDK's RecordSet with every kind of record value."""
    parameters = st.builds(
        ParametersRecord, st.dictionaries(keys, _sdk_array(array_data), max_size=3)
    )
    metrics = st.builds(MetricsRecord, st.dictionaries(keys, sdk_metrics_values, max_size=4))
    configs = st.builds(ConfigsRecord, st.dictionaries(keys, sdk_configs_values, max_size=6))
    return st.builds(
        RecordSet,
        parameters_records=st.dictionaries(keys, parameters, max_size=2),
        metrics_records=st.dictionaries(keys, metrics, max_size=2),
        configs_records=st.dictionaries(keys, configs, max_size=2),
    )


sdk_metadata = st.builds(
    Metadata,
    run_id=uint64s,
    message_id=texts,
    src_node_id=uint64s,
    dst_node_id=uint64s,
    reply_to_message=texts,
    group_id=texts,
    ttl=doubles,
    message_type=message_types,
    created_at=doubles,
)


def sdk_messages(
    recordsets: st.SearchStrategy[RecordSet] | None = None,
) -> st.SearchStrategy[Message]:
    """The SDK's Message, with content or with an error."""
    content = sdk_recordsets() if recordsets is None else recordsets
    errors = st.builds(Error, code=sint64s, reason=texts)
    return st.one_of(
        st.builds(lambda md, rs: Message(md, content=rs), sdk_metadata, content),
        st.builds(lambda md, err: Message(md, error=err), sdk_metadata, errors),
    )
