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
    {"op": "verify_signed_call", "metadata": M, "method": RPC}
                                                      -> {"ok", "accepted", "reason", "code"}
    {"op": "sign_call", "curve": C}                   -> {"ok", "metadata": M}
    {"op": "validate_push", "data": B64}              -> {"ok", "errors", "messages"}

``parse`` decodes bytes with flwr's class and returns ``json_format.MessageToDict``
(``preserving_proto_field_name=True``) plus flwr's own re-serialisation; ``build`` does
``json_format.ParseDict`` and serialises. ``descriptors`` dumps every message, enum and
service of the client-facing modules in a canonical JSON form.

Node authentication of the 1.15 line (signed timestamps; flwr >= 1.15 only):
``verify_signed_call`` hands call metadata ``M`` to flwr's own SuperLink interceptor
(``AuthenticateServerInterceptor``, auto-auth, fresh in-memory LinkState) for a call of
Fleet RPC ``RPC`` (default ``CreateNode``, the one call a new key may make) and runs the
call: ``accepted`` is whether it went through, ``reason`` / ``code`` what the interceptor
aborted with (or the exception it raised). ``sign_call`` makes flwr's own client
interceptor (``AuthenticateClientInterceptor``) sign a call with a key pair flwr
generates (``curve``: a ``cryptography`` curve class name, default ``SECP384R1``).
``M`` maps each metadata key to ``{"b64": ...}`` (bytes) or ``{"str": ...}``.
``validate_push`` reads a ``PushMessagesRequest`` as the 1.15 SuperLink's push handler
does (``message_from_proto`` of the first Message, ``message_to_taskres``) and returns
what its validator (``validate_task_ins_or_res``) finds wrong with the reply.

flwr 1.12.0 ships ``common_pb2``, which redefines ``flwr.proto.DoubleList`` (also in
``recordset_pb2``); it is not client-facing and is never imported here.
"""

from __future__ import annotations

import base64
import collections
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
    "recorddict",  # 1.17+ (replaces recordset)
    "heartbeat",  # 1.19+
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


# -------------------------------------------------------------- 1.15 node auth ops


def _metadata_from_json(encoded: dict[str, dict[str, str]]) -> tuple[tuple[str, Any], ...]:
    pairs: list[tuple[str, Any]] = []
    for key, value in encoded.items():
        if "b64" in value:
            pairs.append((key, base64.b64decode(value["b64"])))
        else:
            pairs.append((key, value["str"]))
    return tuple(pairs)


def _metadata_to_json(pairs: Any) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for key, value in pairs:
        if isinstance(value, bytes):
            out[key] = {"b64": base64.b64encode(value).decode("ascii")}
        else:
            out[key] = {"str": value}
    return out


class _AbortedError(Exception):
    """``context.abort`` of the fake servicer context."""


class _Context:
    """The one servicer-context method the interceptor's handlers use."""

    def abort(self, code: Any, details: str) -> None:
        raise _AbortedError(code, details)


_HandlerCallDetails = collections.namedtuple(  # what the interceptor reads
    "_HandlerCallDetails", "method invocation_metadata"
)
_ClientCallDetails = collections.namedtuple(  # what the interceptor _replace()s
    "_ClientCallDetails", "method timeout metadata credentials wait_for_ready compression"
)


def op_verify_signed_call(request: dict[str, Any]) -> dict[str, Any]:
    grpc = importlib.import_module("grpc")
    fleet_pb2 = importlib.import_module("flwr.proto.fleet_pb2")
    node_pb2 = importlib.import_module("flwr.proto.node_pb2")
    interceptor_module = importlib.import_module(
        "flwr.server.superlink.fleet.grpc_rere.server_interceptor"
    )
    linkstate = importlib.import_module("flwr.server.superlink.linkstate")

    method = f"/flwr.proto.Fleet/{request.get('method', 'CreateNode')}"
    factory = linkstate.LinkStateFactory(":flwr-in-memory-state:")

    def continuation(_details: Any) -> Any:
        def create_node(req: Any, _context: Any) -> Any:
            node_id = factory.state().create_node(req.ping_interval)
            return fleet_pb2.CreateNodeResponse(node=node_pb2.Node(node_id=node_id))

        return grpc.unary_unary_rpc_method_handler(create_node)

    interceptor = interceptor_module.AuthenticateServerInterceptor(factory, auto_auth=True)
    metadata = _metadata_from_json(request["metadata"])
    try:
        handler = interceptor.intercept_service(continuation, _HandlerCallDetails(method, metadata))
        handler.unary_unary(fleet_pb2.CreateNodeRequest(ping_interval=30.0), _Context())
    except _AbortedError as aborted:
        code, reason = aborted.args
        return {"accepted": False, "reason": reason, "code": code.name}
    except Exception as exc:  # the interceptor itself failed (gRPC would answer UNKNOWN)
        return {"accepted": False, "reason": f"{type(exc).__name__}: {exc}", "code": "UNKNOWN"}
    return {"accepted": True, "reason": "", "code": "OK"}


def op_sign_call(request: dict[str, Any]) -> dict[str, Any]:
    ec = importlib.import_module("cryptography.hazmat.primitives.asymmetric.ec")
    fleet_pb2 = importlib.import_module("flwr.proto.fleet_pb2")
    client_interceptor = importlib.import_module("flwr.client.grpc_rere_client.client_interceptor")

    curve = getattr(ec, request.get("curve", "SECP384R1"))()
    private_key = ec.generate_private_key(curve)
    interceptor = client_interceptor.AuthenticateClientInterceptor(
        private_key, private_key.public_key()
    )
    seen: dict[str, Any] = {}

    def continuation(details: Any, _request: Any) -> None:
        seen["metadata"] = details.metadata

    details = _ClientCallDetails("/flwr.proto.Fleet/CreateNode", None, None, None, None, None)
    interceptor.intercept_unary_unary(continuation, details, fleet_pb2.CreateNodeRequest())
    return {"metadata": _metadata_to_json(seen["metadata"])}


def op_validate_push(request: dict[str, Any]) -> dict[str, Any]:
    fleet_pb2 = importlib.import_module("flwr.proto.fleet_pb2")
    serde = importlib.import_module("flwr.common.serde")
    validator = importlib.import_module("flwr.server.utils.validator")
    push = fleet_pb2.PushMessagesRequest()
    push.ParseFromString(base64.b64decode(request["data"]))
    message = serde.message_from_proto(message_proto=push.messages_list[0])
    task_res = serde.message_to_taskres(message)
    errors: list[str] = list(validator.validate_task_ins_or_res(task_res))
    return {"errors": errors, "messages": len(push.messages_list)}


OPS = {
    "ping": op_ping,
    "descriptors": op_descriptors,
    "parse": op_parse,
    "build": op_build,
    "verify_signed_call": op_verify_signed_call,
    "sign_call": op_sign_call,
    "validate_push": op_validate_push,
}


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
