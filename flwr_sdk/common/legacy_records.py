"""Legacy instruction/result types ⇄ :class:`~flwr_sdk.common.records.RecordSet`.

The fixed record keys are those Flower's "recordset compat" layer uses (identical in
1.12 and 1.15), e.g. a ``FitRes`` becomes::

    parameters_records["fitres.parameters"]    the Parameters (see below)
    metrics_records["fitres.num_examples"]     {"num_examples": int}
    configs_records["fitres.metrics"]          the metrics dict
    configs_records["fitres.status"]           {"code": int, "message": str}

:class:`~flwr_sdk.common.legacy_types.Parameters` become a ParametersRecord with keys
``"0"``, ``"1"``, … whose Arrays have ``dtype=""``, ``shape=[]``,
``stype=tensor_type`` and the tensor bytes as ``data`` (the same objects: no copy);
zero tensors become the single key ``"_empty"`` with empty data.

Reading a RecordSet back requires every key (:class:`KeyError` naming the missing one)
and accepts only scalar values (bool, bytes, float, int, str) in config, metrics and
properties dicts (:class:`TypeError` naming the key for lists).

``keep_input=False`` removes converted entries from the input (tensor lists, records),
so that large tensors are referenced only once.

Everything is table-driven: :data:`LEGACY_KINDS` holds one :class:`LegacyKind` per legacy
message type (its Ins and Res classes, whose lower-case names are the record-key
prefixes, and its Client method), and each field of an Ins/Res dataclass is stored under
``"<prefix>.<field>"`` by the codec for that field name (``parameters``, ``config``,
``metrics``, ``properties``, ``status``, ``num_examples``, ``loss``). The named functions
below (``fitins_to_recordset``, …) are thin wrappers around the table, kept for the
conversions a server-side driver makes; the other directions are :class:`LegacyKind`
methods (e.g. ``FIT_KIND.recordset_to_ins``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from flwr_sdk.common import legacy_types as lt
from flwr_sdk.common.message import MessageType
from flwr_sdk.common.records import (
    Array,
    ConfigsRecord,
    MetricsRecord,
    ParametersRecord,
    RecordMapping,
    RecordSet,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "EMPTY_TENSOR_KEY",
    "EVALUATE_KIND",
    "FIT_KIND",
    "GET_PARAMETERS_KIND",
    "GET_PROPERTIES_KIND",
    "LEGACY_KINDS",
    "LEGACY_KINDS_BY_TYPE",
    "LegacyKind",
    "evaluateins_to_recordset",
    "fitins_to_recordset",
    "getparametersins_to_recordset",
    "getpropertiesins_to_recordset",
    "parameters_to_parametersrecord",
    "parametersrecord_to_parameters",
    "recordset_to_evaluateres",
    "recordset_to_fitres",
    "recordset_to_getparametersres",
]

EMPTY_TENSOR_KEY = "_empty"
"""Key of the placeholder Array that stands for an empty tensor list."""

T = TypeVar("T")
D = TypeVar("D", bound="DataclassInstance")
InsT = TypeVar("InsT", bound="DataclassInstance")
ResT = TypeVar("ResT", bound="DataclassInstance")


# --------------------------------------------------------------------------------------
# Building blocks


def parameters_to_parametersrecord(parameters: lt.Parameters, keep_input: bool) -> ParametersRecord:
    """Convert legacy Parameters to a ParametersRecord (tensor objects are reused as is).

    With ``keep_input=False`` the tensors are removed from ``parameters.tensors``.
    """
    if not isinstance(parameters, lt.Parameters):
        raise TypeError(f"parameters must be Parameters, got {type(parameters).__name__}")
    tensor_type = parameters.tensor_type
    record = ParametersRecord()
    if not parameters.tensors:
        record[EMPTY_TENSOR_KEY] = Array(dtype="", shape=[], stype=tensor_type, data=b"")
        return record
    for index, tensor in enumerate(parameters.tensors):
        record[str(index)] = Array(dtype="", shape=[], stype=tensor_type, data=tensor)
    if not keep_input:
        parameters.tensors.clear()
    return record


def parametersrecord_to_parameters(record: ParametersRecord, keep_input: bool) -> lt.Parameters:
    """Convert a ParametersRecord to legacy Parameters (data objects are reused as is).

    Tensors are the Arrays' ``data`` in key order, skipping ``"_empty"``; ``tensor_type``
    is the ``stype`` of the first Array (``""`` for an empty record). With
    ``keep_input=False`` the Arrays are removed from ``record``.
    """
    if not isinstance(record, ParametersRecord):
        raise TypeError(f"record must be ParametersRecord, got {type(record).__name__}")
    tensors = [array.data for key, array in record.items() if key != EMPTY_TENSOR_KEY]
    tensor_type = next(iter(record.values())).stype if record else ""
    if not keep_input:
        record.clear()
    return lt.Parameters(tensors=tensors, tensor_type=tensor_type)


def _get(mapping: Mapping[str, T], key: str, missing: str) -> T:
    """``mapping[key]``, or :class:`KeyError` with the text ``missing``."""
    if key not in mapping:
        raise KeyError(missing)
    return mapping[key]


def _scalars(record: ConfigsRecord, record_key: str) -> dict[str, lt.Scalar]:
    """Return a ConfigsRecord's entries as a legacy dict, refusing lists."""
    result: dict[str, lt.Scalar] = {}
    for key, value in record.items():
        if isinstance(value, list):
            raise TypeError(
                f"record {record_key!r}, key {key!r}: list values cannot be converted to "
                "a legacy dict (allowed: bool, bytes, float, int, str)"
            )
        result[key] = value
    return result


def _configs(values: Mapping[str, lt.Scalar], record_key: str) -> ConfigsRecord:
    if not isinstance(values, Mapping):
        raise TypeError(f"{record_key} must be a dict, got {type(values).__name__}")
    return ConfigsRecord(values)


def _status_to_record(status: lt.Status) -> ConfigsRecord:
    if not isinstance(status, lt.Status):
        raise TypeError(f"status must be Status, got {type(status).__name__}")
    return ConfigsRecord({"code": int(status.code), "message": status.message})


def _record_to_status(record: ConfigsRecord, record_key: str) -> lt.Status:
    code = _get(record, "code", f"record {record_key!r} has no entry 'code'")
    message = _get(record, "message", f"record {record_key!r} has no entry 'message'")
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError(f"record {record_key!r}: 'code' must be int, got {type(code).__name__}")
    if not isinstance(message, str):
        raise TypeError(
            f"record {record_key!r}: 'message' must be str, got {type(message).__name__}"
        )
    try:
        status_code = lt.Code(code)
    except ValueError:
        raise ValueError(f"record {record_key!r}: unknown status code {code}") from None
    return lt.Status(code=status_code, message=message)


def _number(record: MetricsRecord, record_key: str, key: str, as_float: bool) -> int | float:
    """The int (or, with ``as_float``, float) entry ``key`` of a MetricsRecord."""
    value = _get(record, key, f"record {record_key!r} has no entry {key!r}")
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value) if as_float else value
    if as_float and isinstance(value, float):
        return value
    expected = "float" if as_float else "int"
    raise TypeError(
        f"record {record_key!r}: {key!r} must be {expected}, got {type(value).__name__}"
    )


# --------------------------------------------------------------------------------------
# Field codecs: how one field of a legacy dataclass is stored under "<prefix>.<field>"

_Section = Literal["parameters", "metrics", "configs"]


@dataclass(frozen=True)
class _FieldCodec:
    """Stores one Ins/Res field as a record of ``section`` and reads it back.

    ``encode(value, record_key, keep_input)`` returns the record;
    ``decode(record, record_key, keep_input)`` returns the field value.
    """

    section: _Section
    encode: Callable[[Any, str, bool], ParametersRecord | MetricsRecord | ConfigsRecord]
    decode: Callable[[Any, str, bool], Any]


_SCALARS_CODEC = _FieldCodec(
    "configs",
    lambda values, record_key, _keep: _configs(values, record_key),
    lambda record, record_key, _keep: _scalars(record, record_key),
)


_FIELD_CODECS: Mapping[str, _FieldCodec] = MappingProxyType(
    {
        "parameters": _FieldCodec(
            "parameters",
            lambda parameters, _key, keep: parameters_to_parametersrecord(parameters, keep),
            lambda record, _key, keep: parametersrecord_to_parameters(record, keep),
        ),
        "config": _SCALARS_CODEC,
        "metrics": _SCALARS_CODEC,
        "properties": _SCALARS_CODEC,
        "status": _FieldCodec(
            "configs",
            lambda status, _key, _keep: _status_to_record(status),
            lambda record, record_key, _keep: _record_to_status(record, record_key),
        ),
        "num_examples": _FieldCodec(
            "metrics",
            lambda value, _key, _keep: MetricsRecord({"num_examples": value}),
            lambda record, record_key, _keep: _number(record, record_key, "num_examples", False),
        ),
        "loss": _FieldCodec(
            "metrics",
            lambda value, _key, _keep: MetricsRecord({"loss": float(value)}),
            lambda record, record_key, _keep: _number(record, record_key, "loss", True),
        ),
    }
)


def _section(recordset: RecordSet, section: _Section) -> RecordMapping[Any]:
    mapping: RecordMapping[Any] = getattr(recordset, f"{section}_records")
    return mapping


def _to_recordset(cls: type[D], value: D, keep_input: bool) -> RecordSet:
    """Store every field of ``value`` (a ``cls``) under ``"<prefix>.<field>"``.

    The prefix is the class name in lower case (``"fitins"``), as in Flower.

    Fields are stored in declaration order except ``status``, which comes last (the
    record order of Flower's compat layer).
    """
    names = sorted((field.name for field in fields(cls)), key=lambda name: name == "status")
    recordset = RecordSet()
    for name in names:
        codec = _FIELD_CODECS[name]
        record_key = f"{cls.__name__.lower()}.{name}"
        record = codec.encode(getattr(value, name), record_key, keep_input)
        _section(recordset, codec.section)[record_key] = record
    return recordset


def _from_recordset(cls: type[D], recordset: RecordSet, keep_input: bool) -> D:
    """Read a ``cls`` back, field by field in declaration order.

    A missing record raises :class:`KeyError` naming the first one missing.
    """
    values: dict[str, Any] = {}
    for field in fields(cls):
        codec = _FIELD_CODECS[field.name]
        record_key = f"{cls.__name__.lower()}.{field.name}"
        missing = f"RecordSet has no {codec.section} record {record_key!r}"
        record = _get(_section(recordset, codec.section), record_key, missing)
        values[field.name] = codec.decode(record, record_key, keep_input)
    return cls(**values)


# --------------------------------------------------------------------------------------
# The table of legacy message kinds


@dataclass(frozen=True)
class LegacyKind(Generic[InsT, ResT]):
    """One legacy message kind: its message type, Ins/Res classes and record keys.

    The converters take ``keep_input`` for every kind; it only matters where tensors are
    carried (``keep_input=False`` moves them out of the input, see the module docstring).

    Attributes:
        message_type: Flower's ``message_type`` (a :class:`MessageType` value).
        method: the :class:`~flwr_sdk.clientapp.client.Client` method that handles it.
        ins_type: the instruction class (``FitIns``, …); its name in lower case is the
            record-key prefix (``"fitins"``).
        res_type: the result class (``FitRes``, …), likewise (``"fitres"``).

    """

    message_type: str
    method: str
    ins_type: type[InsT]
    res_type: type[ResT]

    def ins_to_recordset(self, ins: InsT, keep_input: bool) -> RecordSet:
        """Instruction → RecordSet."""
        return _to_recordset(self.ins_type, ins, keep_input)

    def recordset_to_ins(self, recordset: RecordSet, keep_input: bool) -> InsT:
        """RecordSet → instruction."""
        return _from_recordset(self.ins_type, recordset, keep_input)

    def res_to_recordset(self, res: ResT, keep_input: bool) -> RecordSet:
        """Result → RecordSet."""
        return _to_recordset(self.res_type, res, keep_input)

    def recordset_to_res(self, recordset: RecordSet, keep_input: bool) -> ResT:
        """RecordSet → result."""
        return _from_recordset(self.res_type, recordset, keep_input)


FIT_KIND = LegacyKind(MessageType.TRAIN, "fit", lt.FitIns, lt.FitRes)
EVALUATE_KIND = LegacyKind(MessageType.EVALUATE, "evaluate", lt.EvaluateIns, lt.EvaluateRes)
GET_PARAMETERS_KIND = LegacyKind(
    MessageType.GET_PARAMETERS, "get_parameters", lt.GetParametersIns, lt.GetParametersRes
)
GET_PROPERTIES_KIND = LegacyKind(
    MessageType.GET_PROPERTIES, "get_properties", lt.GetPropertiesIns, lt.GetPropertiesRes
)

LEGACY_KINDS: tuple[LegacyKind[Any, Any], ...] = (
    FIT_KIND,
    EVALUATE_KIND,
    GET_PARAMETERS_KIND,
    GET_PROPERTIES_KIND,
)
"""The four legacy message kinds (train, evaluate, get_parameters, get_properties)."""

LEGACY_KINDS_BY_TYPE: Mapping[str, LegacyKind[Any, Any]] = MappingProxyType(
    {kind.message_type: kind for kind in LEGACY_KINDS}
)
""":data:`LEGACY_KINDS` by ``message_type``."""


# --------------------------------------------------------------------------------------
# Named converters (Flower's function names)


def fitins_to_recordset(fitins: lt.FitIns, keep_input: bool) -> RecordSet:
    """FitIns → RecordSet (``fitins.parameters``, ``fitins.config``)."""
    return FIT_KIND.ins_to_recordset(fitins, keep_input)


def recordset_to_fitres(recordset: RecordSet, keep_input: bool) -> lt.FitRes:
    """RecordSet → FitRes."""
    return FIT_KIND.recordset_to_res(recordset, keep_input)


def evaluateins_to_recordset(evaluateins: lt.EvaluateIns, keep_input: bool) -> RecordSet:
    """EvaluateIns → RecordSet (``evaluateins.parameters``, ``evaluateins.config``)."""
    return EVALUATE_KIND.ins_to_recordset(evaluateins, keep_input)


def recordset_to_evaluateres(recordset: RecordSet) -> lt.EvaluateRes:
    """RecordSet → EvaluateRes."""
    return EVALUATE_KIND.recordset_to_res(recordset, keep_input=True)


def getparametersins_to_recordset(getparametersins: lt.GetParametersIns) -> RecordSet:
    """GetParametersIns → RecordSet (``getparametersins.config``)."""
    return GET_PARAMETERS_KIND.ins_to_recordset(getparametersins, keep_input=True)


def recordset_to_getparametersres(recordset: RecordSet, keep_input: bool) -> lt.GetParametersRes:
    """RecordSet → GetParametersRes."""
    return GET_PARAMETERS_KIND.recordset_to_res(recordset, keep_input)


def getpropertiesins_to_recordset(getpropertiesins: lt.GetPropertiesIns) -> RecordSet:
    """GetPropertiesIns → RecordSet (``getpropertiesins.config``)."""
    return GET_PROPERTIES_KIND.ins_to_recordset(getpropertiesins, keep_input=True)
