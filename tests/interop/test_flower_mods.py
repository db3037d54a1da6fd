"""Our client mods and Flower module paths against flwr's own (1.12.0, and 1.15.2 for noise).

Every case runs through flwr's mod in its isolated venv (``tests/support/flwr_mods_runner.py``)
and through ours here, on the same inputs and NumPy seed; outputs must agree. Arrays are
compared to a few ulps, not bitwise: ``numpy.linalg.norm`` sums through BLAS, whose order
differs between NumPy builds.

Documented differences (``docs/flower-api.md``) are asserted as such: flwr 1.12's
``LocalDpMod`` draws its noise but sends the clipped parameters without it (ours adds it,
as flwr 1.15 does, and matches 1.15's output), and flwr divides by zero on an update of
norm 0 (ours keeps the update).
"""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.flower_env import FlowerEnv

from flwr_sdk.client import mod as sdk_mod
from flwr_sdk.common import (
    Array,
    Code,
    ConfigsRecord,
    Context,
    FitIns,
    FitRes,
    Message,
    Metadata,
    MetricsRecord,
    ParametersRecord,
    RecordSet,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr_sdk.common import legacy_records as lr

pytestmark = pytest.mark.interop

RUNNER = Path(__file__).resolve().parents[1] / "support" / "flwr_mods_runner.py"


def npy(array: Any) -> str:
    out = io.BytesIO()
    np.save(out, np.asarray(array), allow_pickle=False)
    return base64.b64encode(out.getvalue()).decode()


def load(b64: str) -> Any:
    return np.load(io.BytesIO(base64.b64decode(b64)), allow_pickle=False)


def run_flower(env: FlowerEnv, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = env.run(
        [env.python, "-I", str(RUNNER)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[list[Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append([record.msg, list(record.args or ())])


def config_value(value: Any) -> Any:
    return base64.b64decode(value["b64"]) if isinstance(value, dict) else value


def content_of(case: dict[str, Any]) -> RecordSet:
    if "content" not in case:
        sent = [load(a) for a in case["sent"]]
        ins = FitIns(ndarrays_to_parameters(sent), dict(case["config"]))
        return lr.fitins_to_recordset(ins, keep_input=True)
    spec = case["content"]
    recordset = RecordSet()
    for name, arrays in spec.get("parameters", {}).items():
        recordset.parameters_records[name] = ParametersRecord(
            {
                key: Array(a["dtype"], a["shape"], a["stype"], base64.b64decode(a["data"]))
                for key, a in arrays.items()
            }
        )
    for name, values in spec.get("metrics", {}).items():
        recordset.metrics_records[name] = MetricsRecord(values)
    for name, values in spec.get("configs", {}).items():
        recordset.configs_records[name] = ConfigsRecord(
            {
                k: [config_value(x) for x in v] if isinstance(v, list) else config_value(v)
                for k, v in values.items()
            }
        )
    return recordset


def run_ours(case: dict[str, Any]) -> dict[str, Any]:
    """The runner's logic with flwr_sdk's classes and mods."""
    if case["mod"] == "LocalDpMod":
        mod: Any = sdk_mod.LocalDpMod(*case["mod_args"])
    else:
        mod = getattr(sdk_mod, case["mod"])
    metadata = Metadata(
        run_id=1,
        message_id="m",
        src_node_id=0,
        dst_node_id=1,
        reply_to_message="",
        group_id="1",
        ttl=3600.0,
        message_type=case.get("message_type", "train"),
    )
    message = Message(metadata, content=content_of(case))

    def call_next(msg: Message, ctxt: Context) -> Message:
        if "returned" not in case:
            return msg.create_reply(RecordSet())
        returned = [load(a) for a in case["returned"]]
        res = FitRes(
            Status(Code.OK, ""), ndarrays_to_parameters(returned), 10, dict(case["metrics"])
        )
        return msg.create_reply(lr.FIT_KIND.res_to_recordset(res, keep_input=True))

    collect = Collect()
    logger = logging.getLogger("flwr_sdk")
    logger.addHandler(collect)
    level = logger.level
    logger.setLevel(logging.INFO)
    if case.get("seed") is not None:
        np.random.seed(case["seed"])
    context = Context(node_id=1, node_config={}, state=RecordSet(), run_config={})
    try:
        reply = mod(message, context, call_next)
    except Exception as exc:
        return {
            "error": {
                "type": type(exc).__name__,
                "mro": [c.__name__ for c in type(exc).__mro__],
                "message": str(exc),
            }
        }
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
    result: dict[str, Any] = {"logs": collect.records, "after_rng": float(np.random.random())}
    if "returned" in case:
        fitres = lr.recordset_to_fitres(reply.content, keep_input=True)
        result["params"] = [npy(a) for a in parameters_to_ndarrays(fitres.parameters)]
        result["metrics"] = fitres.metrics
        result["num_examples"] = fitres.num_examples
    return result


# ------------------------------------------------------------------ cases

rng = np.random.default_rng(20241204)
SENT = [
    rng.normal(size=(4, 3)).astype(np.float32),
    rng.normal(size=7).astype(np.float64),
    rng.normal(size=(2, 2, 2)).astype(np.float32),
]
RETURNED = [a + rng.normal(scale=0.3, size=a.shape).astype(a.dtype) for a in SENT]


def train_case(mod: str, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    case = {
        "mod": mod,
        "sent": [npy(a) for a in SENT],
        "returned": [npy(a) for a in RETURNED],
        "config": config,
        "metrics": {"loss": 0.25},
        "seed": 7,
    }
    case.update(extra)
    return case


def legacy_array(ndarray: Any) -> dict[str, Any]:
    return {"dtype": "", "shape": [], "stype": "numpy.ndarray", "data": npy(ndarray)}


def shaped_array(ndarray: Any) -> dict[str, Any]:
    return {
        "dtype": str(ndarray.dtype),
        "shape": list(ndarray.shape),
        "stype": "numpy.ndarray",
        "data": npy(ndarray),
    }


SIZE_CONTENT = {
    "parameters": {
        "fitins.parameters": {"0": legacy_array(SENT[0]), "1": legacy_array(SENT[1])},
        "extra": {"weights": shaped_array(np.zeros((5, 6), np.int32))},
    },
    "metrics": {"m": {"acc": 0.5, "steps": 3, "hist": [1.0, 2.0, 3.0]}},
    "configs": {
        "c": {
            "flag": True,
            "lr": 0.01,
            "name": "client-ä",
            "blob": {"b64": base64.b64encode(b"\x00\x01\x02").decode()},
            "names": ["a", "bcd"],
            "ints": [1, 2, 3, 4],
        }
    },
}

CASES_1_12: dict[str, dict[str, Any]] = {
    "fixed-clips": train_case("fixedclipping_mod", {"clipping_norm": 0.5}),
    "fixed-no-clip": train_case("fixedclipping_mod", {"clipping_norm": 100.0}),
    "fixed-int-norm": train_case("fixedclipping_mod", {"clipping_norm": 1}),
    "fixed-missing-norm": train_case("fixedclipping_mod", {}),
    "adaptive-clips": train_case("adaptiveclipping_mod", {"clipping_norm": 0.5}),
    "adaptive-no-clip": train_case("adaptiveclipping_mod", {"clipping_norm": 100.0}),
    "adaptive-int-norm": train_case("adaptiveclipping_mod", {"clipping_norm": 1}),
    "adaptive-missing-norm": train_case("adaptiveclipping_mod", {}),
    "fixed-on-evaluate": train_case(
        "fixedclipping_mod", {}, message_type="evaluate", returned=[npy(a) for a in SENT]
    ),
    "localdp-no-sensitivity": train_case("LocalDpMod", {}, mod_args=[0.5, 0.0, 1.0, 1e-5]),
    "localdp-noise": train_case("LocalDpMod", {}, mod_args=[0.5, 0.2, 2.0, 1e-5]),
    "localdp-zero-update": train_case(
        "LocalDpMod", {}, mod_args=[0.5, 0.0, 1.0, 1e-5], returned=[npy(a) for a in SENT]
    ),
    "message-size": {"mod": "message_size_mod", "message_type": "query", "content": SIZE_CONTENT},
    "parameters-size": {
        "mod": "parameters_size_mod",
        "message_type": "query",
        "content": SIZE_CONTENT,
    },
}
# float64 only: flwr 1.15 runs on NumPy 2, which squares a float32 norm in float32 (flwr
# 1.12 on NumPy 1, and we, in float64), so float32 models differ there in the 8th digit.
SENT_64 = [a.astype(np.float64) for a in SENT]
RETURNED_64 = [a.astype(np.float64) for a in RETURNED]
CASES_1_15: dict[str, dict[str, Any]] = {
    name: train_case(
        "LocalDpMod",
        {},
        mod_args=args,
        seed=seed,
        sent=[npy(a) for a in SENT_64],
        returned=[npy(a) for a in RETURNED_64],
    )
    for name, args, seed in [
        ("localdp-noise", [0.5, 0.2, 2.0, 1e-5], 7),
        ("localdp-big-noise", [10.0, 1.0, 0.5, 1e-3], 99),
    ]
}


@pytest.fixture(scope="module")
def flower_1_12(flwr_1_12: FlowerEnv) -> dict[str, dict[str, Any]]:
    return dict(zip(CASES_1_12, run_flower(flwr_1_12, list(CASES_1_12.values())), strict=True))


@pytest.fixture(scope="module")
def flower_1_15(flwr_1_15: FlowerEnv) -> dict[str, dict[str, Any]]:
    return dict(zip(CASES_1_15, run_flower(flwr_1_15, list(CASES_1_15.values())), strict=True))


def assert_same_arrays(ours: list[str], theirs: list[str]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        mine, flower = load(a), load(b)
        assert mine.dtype == flower.dtype and mine.shape == flower.shape
        np.testing.assert_allclose(mine, flower, rtol=4 * np.finfo(mine.dtype).eps, atol=0)


def assert_same_result(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert "error" not in ours and "error" not in theirs, (ours, theirs)
    assert_same_arrays(ours["params"], theirs["params"])
    assert ours["metrics"] == theirs["metrics"]
    assert ours["num_examples"] == theirs["num_examples"]
    assert ours["after_rng"] == theirs["after_rng"]


@pytest.mark.parametrize(
    "name",
    [
        "fixed-clips",
        "fixed-no-clip",
        "fixed-int-norm",
        "adaptive-clips",
        "adaptive-no-clip",
        "fixed-on-evaluate",
        "localdp-no-sensitivity",
    ],
)
def test_clipping_results_equal_flower_1_12(name: str, flower_1_12: dict[str, Any]) -> None:
    ours = run_ours(CASES_1_12[name])
    assert_same_result(ours, flower_1_12[name])


def test_the_clipping_cases_clip(flower_1_12: dict[str, Any]) -> None:
    """Guard the cases: clipping changes the update in one and not in the other."""
    clipped = [load(a) for a in flower_1_12["fixed-clips"]["params"]]
    kept = [load(a) for a in flower_1_12["fixed-no-clip"]["params"]]
    assert not np.allclose(clipped[0], RETURNED[0])
    np.testing.assert_allclose(kept[0], RETURNED[0], rtol=1e-6)
    assert flower_1_12["adaptive-clips"]["metrics"]["norm_bit"] is True
    assert flower_1_12["adaptive-no-clip"]["metrics"]["norm_bit"] is False


@pytest.mark.parametrize(
    ("name", "builtin"),
    [
        ("fixed-missing-norm", "KeyError"),
        ("adaptive-missing-norm", "KeyError"),
        ("adaptive-int-norm", "ValueError"),
    ],
)
def test_config_errors_are_of_flowers_builtin_type(
    name: str, builtin: str, flower_1_12: dict[str, Any]
) -> None:
    theirs, ours = flower_1_12[name]["error"], run_ours(CASES_1_12[name])["error"]
    assert theirs["type"] == builtin
    assert ours["type"] == "ModInputError" and builtin in ours["mro"]


def test_localdp_mod_flower_1_12_drops_its_noise_and_we_add_it(
    flower_1_12: dict[str, Any],
) -> None:
    theirs = flower_1_12["localdp-noise"]
    ours = run_ours(CASES_1_12["localdp-noise"])
    clipped_only = flower_1_12["localdp-no-sensitivity"]["params"]
    # flwr 1.12 sends the clipped parameters without noise ...
    assert_same_arrays(theirs["params"], clipped_only)
    # ... though it drew the noise: the global RNG moved as far as ours did.
    assert ours["after_rng"] == theirs["after_rng"]
    assert not np.allclose(load(ours["params"][0]), load(theirs["params"][0]))


@pytest.mark.parametrize("name", sorted(CASES_1_15))
def test_localdp_mod_noise_equals_flower_1_15(name: str, flower_1_15: dict[str, Any]) -> None:
    ours = run_ours(CASES_1_15[name])
    assert_same_result(ours, flower_1_15[name])


def test_zero_update_flower_divides_by_zero_we_keep_it(flower_1_12: dict[str, Any]) -> None:
    assert flower_1_12["localdp-zero-update"]["error"]["type"] == "ZeroDivisionError"
    ours = run_ours(CASES_1_12["localdp-zero-update"])
    assert_same_arrays(ours["params"], [npy(a) for a in SENT])


def test_message_size_equals_flower_1_12(flower_1_12: dict[str, Any]) -> None:
    [[_, [theirs]]] = flower_1_12["message-size"]["logs"]
    [[_, [ours]]] = run_ours(CASES_1_12["message-size"])["logs"]
    assert ours == theirs


def test_parameters_size_equals_flower_1_12(flower_1_12: dict[str, Any]) -> None:
    [[per_record, []], [_, [total]]] = flower_1_12["parameters-size"]["logs"]
    logs = run_ours(CASES_1_12["parameters-size"])["logs"]
    *records, (_, [our_total]) = logs
    ours = {name: {"parameters": count, "bytes": size} for _, (name, count, size) in records}
    assert ours == per_record
    assert our_total == total


def test_module_paths_offer_flowers_names(flwr_1_12: FlowerEnv) -> None:
    done = flwr_1_12.run(
        [
            flwr_1_12.python,
            "-I",
            "-c",
            "import json, flwr.client, flwr.client.mod, flwr.common;"
            "print(json.dumps([flwr.client.__all__, flwr.client.mod.__all__,"
            " flwr.common.__all__]))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    client_all, mod_all, common_all = json.loads(done.stdout)
    import flwr_sdk.client
    import flwr_sdk.client.mod
    import flwr_sdk.common

    assert sorted(flwr_sdk.client.__all__) == sorted(client_all)
    assert sorted(flwr_sdk.common.__all__) == sorted(common_all)
    left_out = {"secagg_mod", "secaggplus_mod"}
    assert sorted(flwr_sdk.client.mod.__all__) == sorted(set(mod_all) - left_out)
