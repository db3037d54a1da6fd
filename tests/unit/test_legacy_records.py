"""Legacy types ⇄ RecordSet: the fixed keys of Flower's compat layer, zero-copy tensors."""

from __future__ import annotations

from typing import Any

import pytest

from flwr_sdk.common import legacy_records as lr
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
    Status,
)
from flwr_sdk.common.records import Array, ConfigsRecord, MetricsRecord, ParametersRecord, RecordSet

OK = Status(code=Code.OK, message="Success")


def params(*tensors: Any, tensor_type: str = "numpy.ndarray") -> Parameters:
    return Parameters(tensors=list(tensors), tensor_type=tensor_type)


def sections(recordset: RecordSet) -> tuple[list[str], list[str], list[str]]:
    return (
        list(recordset.parameters_records),
        list(recordset.metrics_records),
        list(recordset.configs_records),
    )


# ------------------------------------------------------------------------ Parameters


def test_parameters_to_record_layout_and_zero_copy() -> None:
    first = b"tensor-0"
    second = memoryview(bytearray(b"tensor-1"))
    record = lr.parameters_to_parametersrecord(params(first, second), keep_input=True)
    assert list(record) == ["0", "1"]
    for key, tensor in (("0", first), ("1", second)):
        array = record[key]
        assert array.dtype == "" and array.shape == [] and array.stype == "numpy.ndarray"
        assert array.data is tensor  # same object: no copy


def test_empty_parameters_become_empty_marker() -> None:
    record = lr.parameters_to_parametersrecord(params(tensor_type="custom"), keep_input=True)
    assert list(record) == ["_empty"]
    assert record["_empty"] == Array(dtype="", shape=[], stype="custom", data=b"")
    back = lr.parametersrecord_to_parameters(record, keep_input=True)
    assert back == Parameters(tensors=[], tensor_type="custom")


def test_record_to_parameters_zero_copy_and_tensor_type_from_first() -> None:
    data: list[bytes | memoryview] = [memoryview(b"aa"), b"bb"]
    record = ParametersRecord(
        {
            "0": Array(dtype="", shape=[], stype="first", data=data[0]),
            "1": Array(dtype="", shape=[], stype="second", data=data[1]),
        }
    )
    back = lr.parametersrecord_to_parameters(record, keep_input=True)
    assert back.tensor_type == "first"
    assert back.tensors[0] is data[0] and back.tensors[1] is data[1]
    assert len(record) == 2


def test_empty_record_gives_empty_parameters() -> None:
    assert lr.parametersrecord_to_parameters(ParametersRecord(), keep_input=True) == Parameters(
        tensors=[], tensor_type=""
    )


def test_keep_input_false_releases_inputs() -> None:
    parameters = params(b"a", b"b")
    record = lr.parameters_to_parametersrecord(parameters, keep_input=False)
    assert parameters.tensors == [] and len(record) == 2
    back = lr.parametersrecord_to_parameters(record, keep_input=False)
    assert len(record) == 0 and back.tensors == [b"a", b"b"]


# ------------------------------------------------------------------------- fit


def test_fitins_keys_and_round_trip() -> None:
    fitins = FitIns(parameters=params(b"w0", b"w1"), config={"lr": 0.1, "epochs": 2, "x": b"y"})
    recordset = lr.fitins_to_recordset(fitins, keep_input=True)
    assert sections(recordset) == (["fitins.parameters"], [], ["fitins.config"])
    assert recordset.configs_records["fitins.config"] == ConfigsRecord(
        {"lr": 0.1, "epochs": 2, "x": b"y"}
    )
    assert lr.FIT_KIND.recordset_to_ins(recordset, keep_input=True) == fitins


def test_fitres_keys_and_values() -> None:
    fitres = FitRes(
        status=OK,
        parameters=params(b"p"),
        num_examples=10,
        metrics={"client_index": 0, "cfg_ok": True, "name": "c0"},
    )
    recordset = lr.FIT_KIND.res_to_recordset(fitres, keep_input=True)
    assert sections(recordset) == (
        ["fitres.parameters"],
        ["fitres.num_examples"],
        ["fitres.metrics", "fitres.status"],
    )
    assert recordset.metrics_records["fitres.num_examples"] == MetricsRecord({"num_examples": 10})
    assert recordset.configs_records["fitres.status"] == ConfigsRecord(
        {"code": 0, "message": "Success"}
    )
    # the status code is stored as a plain int (sint64 on the wire), not the enum
    assert type(recordset.configs_records["fitres.status"]["code"]) is int
    assert recordset.configs_records["fitres.metrics"] == ConfigsRecord(fitres.metrics)
    back = lr.recordset_to_fitres(recordset, keep_input=True)
    assert back == fitres
    assert back.status.code is Code.OK


# -------------------------------------------------------------------- evaluate


def test_evaluateins_keys_and_round_trip() -> None:
    ins = EvaluateIns(parameters=params(b"w"), config={"batch": 32})
    recordset = lr.evaluateins_to_recordset(ins, keep_input=True)
    assert sections(recordset) == (["evaluateins.parameters"], [], ["evaluateins.config"])
    assert lr.EVALUATE_KIND.recordset_to_ins(recordset, keep_input=True) == ins


def test_evaluateres_keys_and_loss_as_float() -> None:
    res = EvaluateRes(
        status=Status(Code.EVALUATE_NOT_IMPLEMENTED, "nope"), loss=2, num_examples=5, metrics={}
    )
    recordset = lr.EVALUATE_KIND.res_to_recordset(res, keep_input=True)
    assert sections(recordset) == (
        [],
        ["evaluateres.loss", "evaluateres.num_examples"],
        ["evaluateres.metrics", "evaluateres.status"],
    )
    loss = recordset.metrics_records["evaluateres.loss"]["loss"]
    assert type(loss) is float and loss == 2.0
    assert recordset.metrics_records["evaluateres.num_examples"] == MetricsRecord(
        {"num_examples": 5}
    )
    assert recordset.configs_records["evaluateres.status"] == ConfigsRecord(
        {"code": 4, "message": "nope"}
    )
    back = lr.recordset_to_evaluateres(recordset)
    assert back.loss == 2.0 and back.status.code is Code.EVALUATE_NOT_IMPLEMENTED


# --------------------------------------------------------------- get_parameters


def test_getparameters_keys_and_round_trip() -> None:
    ins = GetParametersIns(config={})
    recordset = lr.getparametersins_to_recordset(ins)
    assert sections(recordset) == ([], [], ["getparametersins.config"])
    assert lr.GET_PARAMETERS_KIND.recordset_to_ins(recordset, keep_input=True) == ins

    res = GetParametersRes(status=OK, parameters=params(b"a", b"b"))
    recordset = lr.GET_PARAMETERS_KIND.res_to_recordset(res, keep_input=True)
    assert sections(recordset) == (
        ["getparametersres.parameters"],
        [],
        ["getparametersres.status"],
    )
    assert lr.recordset_to_getparametersres(recordset, keep_input=True) == res


# --------------------------------------------------------------- get_properties


def test_getproperties_keys_and_round_trip() -> None:
    ins = GetPropertiesIns(config={"want": "all"})
    recordset = lr.getpropertiesins_to_recordset(ins)
    assert sections(recordset) == ([], [], ["getpropertiesins.config"])
    assert lr.GET_PROPERTIES_KIND.recordset_to_ins(recordset, keep_input=True) == ins

    res = GetPropertiesRes(status=OK, properties={})
    recordset = lr.GET_PROPERTIES_KIND.res_to_recordset(res, keep_input=True)
    # the properties record is present even when empty
    assert sections(recordset) == (
        [],
        [],
        ["getpropertiesres.properties", "getpropertiesres.status"],
    )
    assert len(recordset.configs_records["getpropertiesres.properties"]) == 0
    assert lr.GET_PROPERTIES_KIND.recordset_to_res(recordset, keep_input=True) == res


# ------------------------------------------------------------------ reading back


def fitres_recordset() -> RecordSet:
    return lr.FIT_KIND.res_to_recordset(
        FitRes(status=OK, parameters=params(b"p"), num_examples=1, metrics={"m": 1.0}),
        keep_input=True,
    )


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("parameters_records", "fitres.parameters"),
        ("metrics_records", "fitres.num_examples"),
        ("configs_records", "fitres.metrics"),
        ("configs_records", "fitres.status"),
    ],
)
def test_missing_record_raises_key_error_naming_it(section: str, key: str) -> None:
    recordset = fitres_recordset()
    del getattr(recordset, section)[key]
    with pytest.raises(KeyError, match=key):
        lr.recordset_to_fitres(recordset, keep_input=True)


@pytest.mark.parametrize(
    ("record", "entry"), [("fitres.status", "code"), ("fitres.status", "message")]
)
def test_missing_status_entry_raises(record: str, entry: str) -> None:
    recordset = fitres_recordset()
    del recordset.configs_records[record][entry]
    with pytest.raises(KeyError, match=entry):
        lr.recordset_to_fitres(recordset, keep_input=True)


def test_missing_num_examples_entry_raises() -> None:
    recordset = fitres_recordset()
    recordset.metrics_records["fitres.num_examples"] = MetricsRecord({"other": 1})
    with pytest.raises(KeyError, match="num_examples"):
        lr.recordset_to_fitres(recordset, keep_input=True)


def test_missing_instruction_records_raise() -> None:
    with pytest.raises(KeyError, match=r"fitins\.parameters"):
        lr.FIT_KIND.recordset_to_ins(RecordSet(), keep_input=True)
    with pytest.raises(KeyError, match=r"getpropertiesins\.config"):
        lr.GET_PROPERTIES_KIND.recordset_to_ins(RecordSet(), keep_input=True)
    with pytest.raises(KeyError, match=r"evaluateres\.status"):
        lr.recordset_to_evaluateres(RecordSet())


def test_list_values_rejected_when_reading_legacy_dicts() -> None:
    recordset = lr.fitins_to_recordset(FitIns(params(b"w"), {"lr": 0.1}), keep_input=True)
    recordset.configs_records["fitins.config"]["layers"] = [1, 2]
    with pytest.raises(TypeError, match=r"'fitins.config'.*'layers'"):
        lr.FIT_KIND.recordset_to_ins(recordset, keep_input=True)


def test_unknown_status_code_rejected() -> None:
    recordset = fitres_recordset()
    recordset.configs_records["fitres.status"]["code"] = 9
    with pytest.raises(ValueError, match="status code 9"):
        lr.recordset_to_fitres(recordset, keep_input=True)


def test_wrong_status_types_rejected() -> None:
    recordset = fitres_recordset()
    recordset.configs_records["fitres.status"]["code"] = "0"
    with pytest.raises(TypeError, match="'code'"):
        lr.recordset_to_fitres(recordset, keep_input=True)


def test_invalid_metrics_from_user_code_name_the_key() -> None:
    res = FitRes(status=OK, parameters=params(), num_examples=1, metrics={"bad": None})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="'bad'"):
        lr.FIT_KIND.res_to_recordset(res, keep_input=True)
