"""Runs flwr's own client mods on given inputs, *inside* a Flower virtualenv.

Start it as ``<venv>/bin/python -I flwr_mods_runner.py`` with a JSON list of cases on
stdin; it prints a JSON list of results (same order) on stdout. Never imported by our
interpreter (see ``tests/interop/test_flower_mods.py``).

A case::

    {"mod": "fixedclipping_mod" | "adaptiveclipping_mod" | "LocalDpMod"
            | "message_size_mod" | "parameters_size_mod",
     "mod_args": [...],            # LocalDpMod's four arguments
     "message_type": "train",
     "sent": [NPY], "config": {...},          # the train instruction (FitIns)
     "returned": [NPY], "metrics": {...},     # what the inner app answers (FitRes)
     "content": {"parameters": {name: {key: ARRAY}}, "metrics": {name: {...}},
                 "configs": {name: {...}}},   # size mods: the message content instead
     "seed": int | null}

``NPY`` is base64 of a ``.npy`` file; ``ARRAY`` is ``{"dtype", "shape", "stype", "data"}``
with base64 ``data``; a configs value ``{"b64": ...}`` is bytes. A result carries the
reply's arrays (``params``, NPY), ``metrics``, ``num_examples``, the INFO log records of
the ``flwr`` logger (``logs``: ``[msg, args]``), ``after_rng`` (``numpy.random.random()``
drawn after the mod, to compare how much randomness it used) or ``error``
(``{"type", "mro", "message"}``).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import sys
from typing import Any

if __name__ != "__main__":  # pragma: no cover - guard against accidental imports
    raise ImportError("flwr_mods_runner.py runs inside a Flower virtualenv as a script")

import numpy as np
from flwr.client import mod as flwr_mod
from flwr.common import (
    Array,
    Code,
    ConfigsRecord,
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
from flwr.common import recordset_compat as compat


def load(b64: str) -> Any:
    return np.load(io.BytesIO(base64.b64decode(b64)), allow_pickle=False)


def dump(array: Any) -> str:
    out = io.BytesIO()
    np.save(out, np.asarray(array), allow_pickle=False)
    return base64.b64encode(out.getvalue()).decode()


def config_value(value: Any) -> Any:
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    return value


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[list[Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append([record.msg, list(record.args or ())])


def content_of(case: dict[str, Any]) -> RecordSet:
    if "content" not in case:
        sent = [load(a) for a in case["sent"]]
        return compat.fitins_to_recordset(
            FitIns(ndarrays_to_parameters(sent), dict(case["config"])), keep_input=True
        )
    spec = case["content"]
    recordset = RecordSet()
    for name, arrays in spec.get("parameters", {}).items():
        record = ParametersRecord()
        for key, a in arrays.items():
            record[key] = Array(
                dtype=a["dtype"],
                shape=a["shape"],
                stype=a["stype"],
                data=base64.b64decode(a["data"]),
            )
        recordset.parameters_records[name] = record
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


def run(case: dict[str, Any], collect: Collect) -> dict[str, Any]:
    collect.records.clear()
    if case["mod"] == "LocalDpMod":
        mod = flwr_mod.LocalDpMod(*case["mod_args"])
    else:
        mod = getattr(flwr_mod, case["mod"])
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
    message = Message(metadata=metadata, content=content_of(case))

    def call_next(msg: Message, ctxt: Any) -> Message:
        if "returned" not in case:
            return msg.create_reply(RecordSet())
        returned = [load(a) for a in case["returned"]]
        res = FitRes(
            Status(Code.OK, ""), ndarrays_to_parameters(returned), 10, dict(case["metrics"])
        )
        return msg.create_reply(compat.fitres_to_recordset(res, keep_input=True))

    if case.get("seed") is not None:
        np.random.seed(case["seed"])
    try:
        reply = mod(message, None, call_next)
    except Exception as exc:
        return {
            "error": {
                "type": type(exc).__name__,
                "mro": [c.__name__ for c in type(exc).__mro__],
                "message": str(exc),
            }
        }
    result: dict[str, Any] = {"logs": list(collect.records), "after_rng": float(np.random.random())}
    if "returned" in case:
        fitres = compat.recordset_to_fitres(reply.content, keep_input=True)
        result["params"] = [dump(a) for a in parameters_to_ndarrays(fitres.parameters)]
        result["metrics"] = dict(fitres.metrics)
        result["num_examples"] = fitres.num_examples
    return result


def main() -> None:
    cases = json.load(sys.stdin)
    collect = Collect()
    logger = logging.getLogger("flwr")
    logger.addHandler(collect)
    json.dump([run(case, collect) for case in cases], sys.stdout)


main()
