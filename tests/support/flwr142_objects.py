"""Runner inside the flwr 1.42.0 virtualenv: flwr's own object ids and bytes for messages.

Start it as ``<venv>/bin/python -I flwr142_objects.py`` (see
``tests/interop/test_objects_1_42.py``). One JSON request per line on stdin, one JSON reply
per line on stdout (bytes base64-encoded)::

    {"op": "encode", "messages": [SPEC, ...]}
        -> {"ok": true, "results": [{"message_id", "objects": {id: B64}, "tree": TREE}, ...]}

``SPEC`` describes a message in plain JSON, built here with flwr's public classes
(``flwr.app.Message`` with explicit ``Metadata``, ``RecordDict``, ``ArrayRecord``,
``MetricRecord``, ``ConfigRecord``, legacy-form ``Array``) and put in object form with
flwr's inflatable helpers (``get_all_nested_objects``, ``deflate``, ``get_object_tree``)::

    {"metadata": {run_id, src_node_id, dst_node_id, reply_to_message_id, group_id, ttl,
                  message_type, created_at, src_task_id?, dst_task_id?},
     "error": {"code", "reason"} | null,
     "records": [[name, "array" | "metric" | "config", [[key, VALUE], ...]], ...]}

An array VALUE is ``{"dtype", "shape", "stype", "data": B64}``; a record VALUE is
``{"bool": b}``, ``{"int": i}``, ``{"float": float.hex()}``, ``{"str": s}``,
``{"bytes": B64}`` or ``{"list": kind, "v": [elements encoded as that kind]}``.
``TREE`` is ``{"id": ..., "children": [TREE, ...]}``.
"""

from __future__ import annotations

import base64
import json
import sys
import traceback
from typing import Any

if __name__ != "__main__":  # pragma: no cover - guard against accidental imports
    raise ImportError("tests/support/flwr142_objects.py runs inside the flwr 1.42.0 venv")

from flwr.app import (  # type: ignore[import-not-found]  # only inside the Flower venv
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    Metadata,
    MetricRecord,
    RecordDict,
)
from flwr.supercore.inflatable.inflatable_object import (  # type: ignore[import-not-found]
    get_all_nested_objects,
    get_object_tree,
)

_SCALARS: dict[str, Any] = {
    "bool": bool,
    "int": int,
    "float": float.fromhex,
    "str": str,
    "bytes": base64.b64decode,
}


def _value(spec: dict[str, Any]) -> Any:
    if "list" in spec:
        convert = _SCALARS[spec["list"]]
        return [convert(v) for v in spec["v"]]
    ((kind, raw),) = spec.items()
    return _SCALARS[kind](raw)


def _record(kind: str, items: list[list[Any]]) -> Any:
    if kind == "array":
        arrays = {
            key: Array(
                dtype=a["dtype"],
                shape=tuple(a["shape"]),
                stype=a["stype"],
                data=base64.b64decode(a["data"]),
            )
            for key, a in items
        }
        return ArrayRecord(arrays)
    values = {key: _value(v) for key, v in items}
    return MetricRecord(values) if kind == "metric" else ConfigRecord(values)


def _message(spec: dict[str, Any]) -> Any:
    md = spec["metadata"]
    metadata = Metadata(
        run_id=md["run_id"],
        message_id="",
        src_node_id=md["src_node_id"],
        dst_node_id=md["dst_node_id"],
        reply_to_message_id=md["reply_to_message_id"],
        group_id=md["group_id"],
        created_at=float.fromhex(md["created_at"]),
        ttl=float.fromhex(md["ttl"]),
        message_type=md["message_type"],
        src_task_id=md.get("src_task_id"),
        dst_task_id=md.get("dst_task_id"),
    )
    if spec["error"] is not None:
        error = Error(code=spec["error"]["code"], reason=spec["error"]["reason"])
        return Message(error=error, metadata=metadata)
    content = RecordDict({name: _record(kind, items) for name, kind, items in spec["records"]})
    return Message(content=content, metadata=metadata)


def _tree(tree: Any) -> dict[str, Any]:
    return {"id": tree.object_id, "children": [_tree(c) for c in tree.children]}


def op_encode(request: dict[str, Any]) -> dict[str, Any]:
    results = []
    for spec in request["messages"]:
        message = _message(spec)
        objects = {
            object_id: base64.b64encode(obj.deflate()).decode("ascii")
            for object_id, obj in get_all_nested_objects(message).items()
        }
        results.append(
            {
                "message_id": message.object_id,
                "objects": objects,
                "tree": _tree(get_object_tree(message)),
            }
        )
    return {"results": results}


OPS = {"encode": op_encode}


def main() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            reply: dict[str, Any] = {"ok": True, **OPS[request["op"]](request)}
        except Exception as exc:  # report every failure to the caller, keep serving
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            reply["traceback"] = traceback.format_exc()
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


sys.exit(main())
