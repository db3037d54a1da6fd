"""RecordSet ⇄ ``flwr.proto.RecordSet`` (``recordset.proto`` is identical in every line).

The functions take the generated module of a line (``pb``) so each line's classes are
used with the same logic. Encoding rules, as Flower applies them:

* a MetricsRecord value is tried as float, then int; a ConfigsRecord value as bool, int,
  float, str, bytes — the first type that matches a single value, or that every element
  of a list has, wins (so an empty list becomes ``double_list`` in a MetricsRecord and
  ``bool_list`` in a ConfigsRecord);
* ints go to ``sint64`` (zig-zag), or to ``uint64`` / ``uint_list`` when a value exceeds
  2^63 - 1;
* a ParametersRecord keeps its order as parallel ``data_keys`` / ``data_values`` lists.

Tensor bytes are never copied: ``Array.data`` moves between the two sides as the same
``bytes`` or ``memoryview`` object.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import betterproto2

from flwr_sdk.common.records import Array, ConfigsRecord, MetricsRecord, ParametersRecord, RecordSet
from flwr_sdk.constants import INT64_MAX
from flwr_sdk.errors import MalformedMessageError

#: The Python types a MetricsRecord / ConfigsRecord value may have, in Flower's order.
METRICS_TYPES: tuple[type, ...] = (float, int)
CONFIGS_TYPES: tuple[type, ...] = (bool, int, float, str, bytes)
_SINGLE_FIELD = {bool: "bool", int: "sint64", float: "double", str: "string", bytes: "bytes"}
_LIST_FIELD = {
    bool: ("bool_list", "BoolList"),
    int: ("sint_list", "SintList"),
    float: ("double_list", "DoubleList"),
    str: ("string_list", "StringList"),
    bytes: ("bytes_list", "BytesList"),
}


def _is_instance(value: object, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def value_to_wire(value: Any, allowed: tuple[type, ...], cls: type[Any], pb: ModuleType) -> Any:
    """One record value as the line's ``cls`` (a ``*RecordValue`` message), by Flower's rules.

    ``allowed`` is :data:`METRICS_TYPES` or :data:`CONFIGS_TYPES`; ``pb`` supplies the
    list classes. Raises ``TypeError`` for a value the record kind cannot hold.
    """
    for kind in allowed:
        if _is_instance(value, kind):
            member = _SINGLE_FIELD[kind]
            if kind is int and value > INT64_MAX:
                member = "uint64"
            return cls(**{member: value})
        if isinstance(value, list) and all(_is_instance(v, kind) for v in value):
            member, list_cls = _LIST_FIELD[kind]
            if kind is int and any(v > INT64_MAX for v in value):
                member, list_cls = "uint_list", "UintList"
            return cls(**{member: getattr(pb, list_cls)(vals=list(value))})
    raise TypeError(f"{cls.__name__} cannot hold {type(value).__name__} value {value!r}")


def value_from_wire(message: betterproto2.Message, key: str) -> Any:
    """The Python value of one ``*RecordValue`` message (lists as ``list``).

    Raises ``ValueError`` when no member of the ``value`` oneof is set.
    """
    member, value = betterproto2.which_one_of(message, "value")
    if not member:
        raise ValueError(f"record value {key!r} is empty on the wire")
    if member.endswith("_list"):
        return list(value.vals)  # type: ignore[union-attr]
    return value


def parameters_record_to_wire(record: ParametersRecord, pb: ModuleType) -> Any:
    """A ParametersRecord as ``pb.ParametersRecord`` (tensor bytes not copied)."""
    return pb.ParametersRecord(
        data_keys=list(record.keys()),
        data_values=[
            pb.Array(dtype=a.dtype, shape=list(a.shape), stype=a.stype, data=a.data)
            for a in record.values()
        ],
    )


def parameters_record_from_wire(message: Any) -> ParametersRecord:
    """A ``pb.ParametersRecord`` as ParametersRecord (tensor bytes not copied)."""
    if len(message.data_keys) != len(message.data_values):
        raise ValueError(
            f"ParametersRecord has {len(message.data_keys)} keys but "
            f"{len(message.data_values)} values"
        )
    arrays = {
        key: Array(dtype=a.dtype, shape=list(a.shape), stype=a.stype, data=a.data)
        for key, a in zip(message.data_keys, message.data_values, strict=True)
    }
    return ParametersRecord(arrays, keep_input=True)


def recordset_to_wire(recordset: RecordSet, pb: ModuleType) -> Any:
    """A RecordSet as the line's ``pb.RecordSet``."""
    return pb.RecordSet(
        parameters={
            name: parameters_record_to_wire(record, pb)
            for name, record in recordset.parameters_records.items()
        },
        metrics={
            name: pb.MetricsRecord(
                data={
                    k: value_to_wire(v, METRICS_TYPES, pb.MetricsRecordValue, pb)
                    for k, v in record.items()
                }
            )
            for name, record in recordset.metrics_records.items()
        },
        configs={
            name: pb.ConfigsRecord(
                data={
                    k: value_to_wire(v, CONFIGS_TYPES, pb.ConfigsRecordValue, pb)
                    for k, v in record.items()
                }
            )
            for name, record in recordset.configs_records.items()
        },
    )


def recordset_from_wire(message: Any) -> RecordSet:
    """A line's ``pb.RecordSet`` as RecordSet.

    Raises:
        MalformedMessageError: the record set is malformed (an empty value, keys and values of a
            ParametersRecord that do not pair up, a value a record cannot hold); the
            message names the record and key.

    """
    try:
        return _recordset_from_wire(message)
    except (ValueError, TypeError) as exc:
        raise MalformedMessageError(f"malformed record set: {exc}", what="RecordSet") from exc


def _recordset_from_wire(message: Any) -> RecordSet:
    parameters: Mapping[str, Any] = message.parameters
    metrics: Mapping[str, Any] = message.metrics
    configs: Mapping[str, Any] = message.configs
    return RecordSet(
        parameters_records={
            name: parameters_record_from_wire(record) for name, record in parameters.items()
        },
        metrics_records={
            name: MetricsRecord(
                {k: value_from_wire(v, k) for k, v in record.data.items()}, keep_input=True
            )
            for name, record in metrics.items()
        },
        configs_records={
            name: ConfigsRecord(
                {k: value_from_wire(v, k) for k, v in record.data.items()}, keep_input=True
            )
            for name, record in configs.items()
        },
    )
