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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from flwr_sdk.common.legacy_types import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    Parameters,
    Scalar,
    Status,
    TensorBytes,
)
from flwr_sdk.common.records import (
    Array,
    ConfigsRecord,
    ConfigsRecordValues,
    MetricsRecord,
    ParametersRecord,
    RecordMapping,
    RecordSet,
)

__all__ = [
    "EMPTY_TENSOR_KEY",
    "evaluateins_to_recordset",
    "evaluateres_to_recordset",
    "fitins_to_recordset",
    "fitres_to_recordset",
    "getparametersins_to_recordset",
    "getparametersres_to_recordset",
    "getpropertiesins_to_recordset",
    "getpropertiesres_to_recordset",
    "parameters_to_parametersrecord",
    "parametersrecord_to_parameters",
    "recordset_to_evaluateins",
    "recordset_to_evaluateres",
    "recordset_to_fitins",
    "recordset_to_fitres",
    "recordset_to_getparametersins",
    "recordset_to_getparametersres",
    "recordset_to_getpropertiesins",
    "recordset_to_getpropertiesres",
]

EMPTY_TENSOR_KEY = "_empty"
"""Key of the placeholder Array that stands for an empty tensor list."""

T = TypeVar("T")


# --------------------------------------------------------------------------------------
# Building blocks


def parameters_to_parametersrecord(parameters: Parameters, keep_input: bool) -> ParametersRecord:
    """Convert legacy Parameters to a ParametersRecord (tensor objects are reused as is).

    With ``keep_input=False`` the tensors are removed from ``parameters.tensors``.
    """
    if not isinstance(parameters, Parameters):
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


def parametersrecord_to_parameters(record: ParametersRecord, keep_input: bool) -> Parameters:
    """Convert a ParametersRecord to legacy Parameters (data objects are reused as is).

    Tensors are the Arrays' ``data`` in key order, skipping ``"_empty"``; ``tensor_type``
    is the ``stype`` of the first Array (``""`` for an empty record). With
    ``keep_input=False`` the Arrays are removed from ``record``.
    """
    if not isinstance(record, ParametersRecord):
        raise TypeError(f"record must be ParametersRecord, got {type(record).__name__}")
    tensors: list[TensorBytes] = []
    tensor_type = ""
    for index, key in enumerate(list(record)):
        array = record[key]
        if index == 0:
            tensor_type = array.stype
        if key != EMPTY_TENSOR_KEY:
            tensors.append(array.data)
        if not keep_input:
            del record[key]
    return Parameters(tensors=tensors, tensor_type=tensor_type)


def _require(mapping: RecordMapping[T], key: str, section: str) -> T:
    if key not in mapping:
        raise KeyError(f"RecordSet has no {section} record {key!r}")
    return mapping[key]


def _record_value(record: Mapping[str, object], key: str, record_key: str) -> object:
    if key not in record:
        raise KeyError(f"record {record_key!r} has no entry {key!r}")
    return record[key]


def _scalars(record: ConfigsRecord, record_key: str) -> dict[str, Scalar]:
    """Return a ConfigsRecord's entries as a legacy dict, refusing lists."""
    result: dict[str, Scalar] = {}
    for key, value in record.items():
        if isinstance(value, list):
            raise TypeError(
                f"record {record_key!r}, key {key!r}: list values cannot be converted to "
                "a legacy dict (allowed: bool, bytes, float, int, str)"
            )
        result[key] = value
    return result


def _configs(values: Mapping[str, Scalar], record_key: str) -> ConfigsRecord:
    if not isinstance(values, Mapping):
        raise TypeError(f"{record_key} must be a dict, got {type(values).__name__}")
    source: dict[str, ConfigsRecordValues] = dict(values)
    return ConfigsRecord(source)


def _status_to_record(status: Status) -> ConfigsRecord:
    if not isinstance(status, Status):
        raise TypeError(f"status must be Status, got {type(status).__name__}")
    return ConfigsRecord({"code": int(status.code), "message": status.message})


def _record_to_status(recordset: RecordSet, record_key: str) -> Status:
    record = _require(recordset.configs_records, record_key, "configs")
    code = _record_value(record, "code", record_key)
    message = _record_value(record, "message", record_key)
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError(f"record {record_key!r}: 'code' must be int, got {type(code).__name__}")
    if not isinstance(message, str):
        raise TypeError(
            f"record {record_key!r}: 'message' must be str, got {type(message).__name__}"
        )
    try:
        status_code = Code(code)
    except ValueError:
        raise ValueError(f"record {record_key!r}: unknown status code {code}") from None
    return Status(code=status_code, message=message)


def _get_int(recordset: RecordSet, record_key: str, key: str) -> int:
    record = _require(recordset.metrics_records, record_key, "metrics")
    value = _record_value(record, key, record_key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"record {record_key!r}: {key!r} must be int, got {type(value).__name__}")
    return value


def _get_float(recordset: RecordSet, record_key: str, key: str) -> float:
    record = _require(recordset.metrics_records, record_key, "metrics")
    value = _record_value(record, key, record_key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"record {record_key!r}: {key!r} must be float, got {type(value).__name__}")
    return float(value)


def _get_parameters(recordset: RecordSet, record_key: str, keep_input: bool) -> Parameters:
    record = _require(recordset.parameters_records, record_key, "parameters")
    return parametersrecord_to_parameters(record, keep_input=keep_input)


def _get_scalars(recordset: RecordSet, record_key: str) -> dict[str, Scalar]:
    return _scalars(_require(recordset.configs_records, record_key, "configs"), record_key)


# --------------------------------------------------------------------------------------
# fit


def fitins_to_recordset(fitins: FitIns, keep_input: bool) -> RecordSet:
    """FitIns → RecordSet (``fitins.parameters``, ``fitins.config``)."""
    return RecordSet(
        parameters_records={
            "fitins.parameters": parameters_to_parametersrecord(fitins.parameters, keep_input)
        },
        configs_records={"fitins.config": _configs(fitins.config, "fitins.config")},
    )


def recordset_to_fitins(recordset: RecordSet, keep_input: bool) -> FitIns:
    """RecordSet → FitIns."""
    return FitIns(
        parameters=_get_parameters(recordset, "fitins.parameters", keep_input),
        config=_get_scalars(recordset, "fitins.config"),
    )


def fitres_to_recordset(fitres: FitRes, keep_input: bool) -> RecordSet:
    """FitRes → RecordSet.

    Keys: ``fitres.parameters``, ``fitres.num_examples``, ``fitres.metrics``,
    ``fitres.status``.
    """
    return RecordSet(
        parameters_records={
            "fitres.parameters": parameters_to_parametersrecord(fitres.parameters, keep_input)
        },
        metrics_records={
            "fitres.num_examples": MetricsRecord({"num_examples": fitres.num_examples})
        },
        configs_records={
            "fitres.metrics": _configs(fitres.metrics, "fitres.metrics"),
            "fitres.status": _status_to_record(fitres.status),
        },
    )


def recordset_to_fitres(recordset: RecordSet, keep_input: bool) -> FitRes:
    """RecordSet → FitRes."""
    return FitRes(
        status=_record_to_status(recordset, "fitres.status"),
        parameters=_get_parameters(recordset, "fitres.parameters", keep_input),
        num_examples=_get_int(recordset, "fitres.num_examples", "num_examples"),
        metrics=_get_scalars(recordset, "fitres.metrics"),
    )


# --------------------------------------------------------------------------------------
# evaluate


def evaluateins_to_recordset(evaluateins: EvaluateIns, keep_input: bool) -> RecordSet:
    """EvaluateIns → RecordSet (``evaluateins.parameters``, ``evaluateins.config``)."""
    return RecordSet(
        parameters_records={
            "evaluateins.parameters": parameters_to_parametersrecord(
                evaluateins.parameters, keep_input
            )
        },
        configs_records={"evaluateins.config": _configs(evaluateins.config, "evaluateins.config")},
    )


def recordset_to_evaluateins(recordset: RecordSet, keep_input: bool) -> EvaluateIns:
    """RecordSet → EvaluateIns."""
    return EvaluateIns(
        parameters=_get_parameters(recordset, "evaluateins.parameters", keep_input),
        config=_get_scalars(recordset, "evaluateins.config"),
    )


def evaluateres_to_recordset(evaluateres: EvaluateRes) -> RecordSet:
    """EvaluateRes → RecordSet.

    Keys: ``evaluateres.loss``, ``evaluateres.num_examples``, ``evaluateres.metrics``,
    ``evaluateres.status``.
    """
    return RecordSet(
        metrics_records={
            "evaluateres.loss": MetricsRecord({"loss": float(evaluateres.loss)}),
            "evaluateres.num_examples": MetricsRecord({"num_examples": evaluateres.num_examples}),
        },
        configs_records={
            "evaluateres.metrics": _configs(evaluateres.metrics, "evaluateres.metrics"),
            "evaluateres.status": _status_to_record(evaluateres.status),
        },
    )


def recordset_to_evaluateres(recordset: RecordSet) -> EvaluateRes:
    """RecordSet → EvaluateRes."""
    return EvaluateRes(
        status=_record_to_status(recordset, "evaluateres.status"),
        loss=_get_float(recordset, "evaluateres.loss", "loss"),
        num_examples=_get_int(recordset, "evaluateres.num_examples", "num_examples"),
        metrics=_get_scalars(recordset, "evaluateres.metrics"),
    )


# --------------------------------------------------------------------------------------
# get_parameters


def getparametersins_to_recordset(getparametersins: GetParametersIns) -> RecordSet:
    """GetParametersIns → RecordSet (``getparametersins.config``)."""
    return RecordSet(
        configs_records={
            "getparametersins.config": _configs(getparametersins.config, "getparametersins.config")
        }
    )


def recordset_to_getparametersins(recordset: RecordSet) -> GetParametersIns:
    """RecordSet → GetParametersIns."""
    return GetParametersIns(config=_get_scalars(recordset, "getparametersins.config"))


def getparametersres_to_recordset(
    getparametersres: GetParametersRes, keep_input: bool
) -> RecordSet:
    """GetParametersRes → RecordSet.

    Keys: ``getparametersres.parameters``, ``getparametersres.status``.
    """
    return RecordSet(
        parameters_records={
            "getparametersres.parameters": parameters_to_parametersrecord(
                getparametersres.parameters, keep_input
            )
        },
        configs_records={"getparametersres.status": _status_to_record(getparametersres.status)},
    )


def recordset_to_getparametersres(recordset: RecordSet, keep_input: bool) -> GetParametersRes:
    """RecordSet → GetParametersRes."""
    return GetParametersRes(
        status=_record_to_status(recordset, "getparametersres.status"),
        parameters=_get_parameters(recordset, "getparametersres.parameters", keep_input),
    )


# --------------------------------------------------------------------------------------
# get_properties


def getpropertiesins_to_recordset(getpropertiesins: GetPropertiesIns) -> RecordSet:
    """GetPropertiesIns → RecordSet (``getpropertiesins.config``)."""
    return RecordSet(
        configs_records={
            "getpropertiesins.config": _configs(getpropertiesins.config, "getpropertiesins.config")
        }
    )


def recordset_to_getpropertiesins(recordset: RecordSet) -> GetPropertiesIns:
    """RecordSet → GetPropertiesIns."""
    return GetPropertiesIns(config=_get_scalars(recordset, "getpropertiesins.config"))


def getpropertiesres_to_recordset(getpropertiesres: GetPropertiesRes) -> RecordSet:
    """GetPropertiesRes → RecordSet.

    Keys: ``getpropertiesres.properties``, ``getpropertiesres.status``.
    """
    return RecordSet(
        configs_records={
            "getpropertiesres.properties": _configs(
                getpropertiesres.properties, "getpropertiesres.properties"
            ),
            "getpropertiesres.status": _status_to_record(getpropertiesres.status),
        }
    )


def recordset_to_getpropertiesres(recordset: RecordSet) -> GetPropertiesRes:
    """RecordSet → GetPropertiesRes."""
    return GetPropertiesRes(
        status=_record_to_status(recordset, "getpropertiesres.status"),
        properties=_get_scalars(recordset, "getpropertiesres.properties"),
    )
