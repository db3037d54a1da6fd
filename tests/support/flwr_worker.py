"""Worker run *inside* an isolated Flower virtualenv; never imported by our interpreter.

Start it as ``<venv>/bin/python -I flwr_worker.py`` (see ``tests/conftest.py``). It loads
flwr's client-facing ``flwr.proto.*_pb2`` modules and answers requests, one JSON object per
line on stdin, one JSON reply per line on stdout. Bytes travel base64-encoded; types are
named by protobuf full name (e.g. ``flwr.proto.TaskIns``) and looked up in the descriptor
pool those modules populated.

Requests and replies (every reply has ``"ok"``; failures carry ``"error"``)::

    {"op": "ping"}                                    -> {"ok", "flwr", "protobuf", "modules"}
    {"op": "descriptors"}                             -> {"ok", "files", "all_modules", ...}
    {"op": "parse", "type": T, "data": B64}           -> {"ok", "dict", "data"}
    {"op": "build", "type": T, "dict": {...}}         -> {"ok", "data", "dict"}

``parse`` decodes bytes with flwr's class and returns ``json_format.MessageToDict``
(``preserving_proto_field_name=True``) plus flwr's own re-serialisation; ``build`` does
``json_format.ParseDict`` and serialises. ``descriptors`` dumps every message, enum and
service of the client-facing modules in a canonical JSON form.

flwr 1.12.0 ships ``common_pb2``, which redefines ``flwr.proto.DoubleList`` (also in
``recordset_pb2``); it is not client-facing and is never imported here.
"""

from __future__ import annotations

import base64
import importlib
import json
import pkgutil
import sys
import traceback
from typing import Any

if __name__ != "__main__":  # pragma: no cover - guard against accidental imports
    raise ImportError(
        "tests/support/flwr_worker.py runs inside a Flower virtualenv as a script; "
        "it must not be imported into flwr-sdk's own interpreter"
    )

# The modules a Flower client (node) talks through; everything else in flwr/proto
# (driver, exec, serverappio, clientappio, control, log, simulationio, common, ...) is
# server-internal.
CLIENT_FACING = (
    "transport",
    "fleet",
    "node",
    "task",
    "message",
    "recordset",
    "run",
    "fab",
    "error",
    "grpcadapter",
)


def _load_modules() -> dict[str, Any]:
    modules: dict[str, Any] = {}
    for name in CLIENT_FACING:
        try:
            modules[name] = importlib.import_module(f"flwr.proto.{name}_pb2")
        except ModuleNotFoundError:
            continue  # not every release has every module (e.g. task after 1.15)
    return modules


MODULES = _load_modules()


def _all_pb2_modules() -> list[str]:
    """Every ``*_pb2`` module flwr ships (names only; nothing is imported)."""
    import flwr.proto  # type: ignore[import-not-found]  # only inside a Flower venv

    return sorted(
        info.name.removesuffix("_pb2")
        for info in pkgutil.iter_modules(flwr.proto.__path__)
        if info.name.endswith("_pb2")
    )


# --------------------------------------------------------------------- descriptors


def _type_name(value: int) -> str:
    from google.protobuf import descriptor_pb2

    return str(descriptor_pb2.FieldDescriptorProto.Type.Name(value))  # type: ignore[arg-type]


def _label_name(value: int) -> str:
    from google.protobuf import descriptor_pb2

    return str(descriptor_pb2.FieldDescriptorProto.Label.Name(value))  # type: ignore[arg-type]


def _dump_message(desc: Any, out: dict[str, Any]) -> None:
    from google.protobuf import descriptor_pb2

    raw = descriptor_pb2.DescriptorProto()
    desc.CopyToProto(raw)
    proto3_optional = {f.name: f.proto3_optional for f in raw.field}
    fields = []
    for f in sorted(desc.fields, key=lambda f: f.number):
        sub = f.message_type or f.enum_type
        is_map = bool(
            f.message_type is not None
            and f.message_type.GetOptions().map_entry
            and f.label == f.LABEL_REPEATED
        )
        fields.append(
            {
                "name": f.name,
                "number": f.number,
                "type": _type_name(f.type),
                "type_name": sub.full_name if sub is not None else "",
                "label": _label_name(f.label),
                "oneof": f.containing_oneof.name if f.containing_oneof is not None else None,
                "map": is_map,
                "proto3_optional": proto3_optional.get(f.name, False),
                "has_presence": bool(getattr(f, "has_presence", False)),
            }
        )
    out["messages"][desc.full_name] = {
        "file": desc.file.name,
        "map_entry": bool(desc.GetOptions().map_entry),
        "oneofs": [o.name for o in desc.oneofs],
        "fields": fields,
    }
    for enum in desc.enum_types:
        _dump_enum(enum, out)
    for nested in desc.nested_types:
        _dump_message(nested, out)


def _dump_enum(desc: Any, out: dict[str, Any]) -> None:
    out["enums"][desc.full_name] = {
        "file": desc.file.name,
        "values": [[v.name, v.number] for v in desc.values],
    }


def _dump_service(desc: Any, out: dict[str, Any]) -> None:
    out["services"][desc.full_name] = {
        "file": desc.file.name,
        "methods": [
            {
                "name": m.name,
                "path": f"/{desc.full_name}/{m.name}",
                "input": m.input_type.full_name,
                "output": m.output_type.full_name,
                "client_streaming": bool(m.client_streaming),
                "server_streaming": bool(m.server_streaming),
            }
            for m in desc.methods
        ],
    }


def op_descriptors(_request: dict[str, Any]) -> dict[str, Any]:
    files: dict[str, Any] = {}
    for module in MODULES.values():
        fd = module.DESCRIPTOR
        out: dict[str, Any] = {"messages": {}, "enums": {}, "services": {}}
        for msg in fd.message_types_by_name.values():
            _dump_message(msg, out)
        for enum in fd.enum_types_by_name.values():
            _dump_enum(enum, out)
        for svc in fd.services_by_name.values():
            _dump_service(svc, out)
        files[fd.name] = {
            "package": fd.package,
            "dependencies": [d.name for d in fd.dependencies],
            **out,
        }
    return {
        "files": files,
        "client_facing": sorted(MODULES),
        "all_modules": _all_pb2_modules(),
        "common_pb2_loaded": "flwr.proto.common_pb2" in sys.modules,
    }


# ---------------------------------------------------------------------- codec ops


def _message_class(full_name: str) -> Any:
    from google.protobuf import descriptor_pool

    desc = descriptor_pool.Default().FindMessageTypeByName(full_name)
    try:
        from google.protobuf.message_factory import GetMessageClass
    except ImportError:  # protobuf < 4.22
        from google.protobuf import symbol_database

        return symbol_database.Default().GetSymbol(full_name)
    return GetMessageClass(desc)


def _to_dict(msg: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    result: dict[str, Any] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return result


def op_parse(request: dict[str, Any]) -> dict[str, Any]:
    cls = _message_class(request["type"])
    msg = cls()
    msg.ParseFromString(base64.b64decode(request["data"]))
    return {
        "dict": _to_dict(msg),
        "data": base64.b64encode(msg.SerializeToString()).decode("ascii"),
    }


def op_build(request: dict[str, Any]) -> dict[str, Any]:
    from google.protobuf import json_format

    cls = _message_class(request["type"])
    msg = json_format.ParseDict(request["dict"], cls())
    return {
        "data": base64.b64encode(msg.SerializeToString()).decode("ascii"),
        "dict": _to_dict(msg),
    }


def op_ping(_request: dict[str, Any]) -> dict[str, Any]:
    import flwr
    import google.protobuf

    try:
        from importlib.metadata import version

        flwr_version = version("flwr")
    except Exception:  # pragma: no cover - metadata missing
        flwr_version = getattr(flwr, "__version__", "unknown")
    return {
        "flwr": flwr_version,
        "flwr_file": flwr.__file__,
        "protobuf": google.protobuf.__version__,
        "modules": sorted(MODULES),
        "python": sys.version.split()[0],
    }


OPS = {"ping": op_ping, "descriptors": op_descriptors, "parse": op_parse, "build": op_build}


def main() -> int:
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            handler = OPS[request["op"]]
            reply: dict[str, Any] = {"ok": True, **handler(request)}
        except Exception as exc:  # report every failure to the caller, keep serving
            reply = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


sys.exit(main())
