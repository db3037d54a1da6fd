"""Our protos compile to the same wire schema as the real Flower releases.

For each wire line (1.12 ↔ flwr 1.12.0, 1.15 ↔ flwr 1.15.2, 1.42 ↔ flwr 1.42.0) every
message, enum and service our ``.proto`` files define is compared with flwr's compiled
descriptors: full names; each field's name, number, type, type name, label, oneof,
map-ness, proto3 ``optional`` and presence; enum value names and numbers; each RPC's
path, request/response types and streaming kinds. flwr's side is dumped by
``tests/support/flwr_worker.py`` in the release's own virtualenv; ours is compiled here
with the codegen's protoc.

flwr 1.42.0 still ships ``task.proto`` and ``grpcadapter.proto``, which are not on a
SuperNode's Fleet wire any more; the 1.42 line does not restate them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from support.flower_env import FlowerEnv, FlowerWorker

from codegen.descriptors import compile_descriptor_set

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.interop

F = descriptor_pb2.FieldDescriptorProto


def compile_line(line: str) -> descriptor_pb2.FileDescriptorSet:
    root = REPO / "proto" / "flower" / line
    files = sorted(p.relative_to(root) for p in root.rglob("*.proto"))
    assert files, f"no protos under {root}"
    return compile_descriptor_set(root, files)


def canonical_ours(fds: descriptor_pb2.FileDescriptorSet) -> dict[str, Any]:
    """Same shape as the worker's ``descriptors`` reply, built from FileDescriptorProtos."""
    by_name: dict[str, descriptor_pb2.DescriptorProto] = {}

    def index(prefix: str, msg: descriptor_pb2.DescriptorProto) -> None:
        full = f"{prefix}.{msg.name}"
        by_name[full] = msg
        for nested in msg.nested_type:
            index(full, nested)

    for fd in fds.file:
        for msg in fd.message_type:
            index(fd.package, msg)

    files: dict[str, Any] = {}
    for fd in fds.file:
        out: dict[str, Any] = {"messages": {}, "enums": {}, "services": {}}
        proto3 = fd.syntax == "proto3"

        def enum(prefix: str, e: descriptor_pb2.EnumDescriptorProto, fd=fd, out=out) -> None:
            out["enums"][f"{prefix}.{e.name}"] = {
                "file": fd.name,
                "values": [[v.name, v.number] for v in e.value],
            }

        def message(
            prefix: str, m: descriptor_pb2.DescriptorProto, fd=fd, out=out, proto3=proto3
        ) -> None:
            full = f"{prefix}.{m.name}"
            fields = []
            for f in sorted(m.field, key=lambda f: f.number):
                type_name = f.type_name.lstrip(".")
                in_oneof = f.HasField("oneof_index")
                is_map = (
                    f.type == F.TYPE_MESSAGE
                    and f.label == F.LABEL_REPEATED
                    and by_name[type_name].options.map_entry
                )
                presence = f.label != F.LABEL_REPEATED and (
                    f.type == F.TYPE_MESSAGE or in_oneof or f.proto3_optional or not proto3
                )
                fields.append(
                    {
                        "name": f.name,
                        "number": f.number,
                        "type": F.Type.Name(f.type),
                        "type_name": type_name,
                        "label": F.Label.Name(f.label),
                        "oneof": m.oneof_decl[f.oneof_index].name if in_oneof else None,
                        "map": bool(is_map),
                        "proto3_optional": f.proto3_optional,
                        "has_presence": bool(presence),
                    }
                )
            out["messages"][full] = {
                "file": fd.name,
                "map_entry": m.options.map_entry,
                "oneofs": [o.name for o in m.oneof_decl],
                "fields": fields,
            }
            for e in m.enum_type:
                enum(full, e)
            for nested in m.nested_type:
                message(full, nested)

        for m in fd.message_type:
            message(fd.package, m)
        for e in fd.enum_type:
            enum(fd.package, e)
        for s in fd.service:
            full = f"{fd.package}.{s.name}"
            out["services"][full] = {
                "file": fd.name,
                "methods": [
                    {
                        "name": m.name,
                        "path": f"/{full}/{m.name}",
                        "input": m.input_type.lstrip("."),
                        "output": m.output_type.lstrip("."),
                        "client_streaming": m.client_streaming,
                        "server_streaming": m.server_streaming,
                    }
                    for m in s.method
                ],
            }
        files[fd.name] = {"package": fd.package, **out}
    return files


def flatten(files: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """kind → full name → description, over all files."""
    flat: dict[str, dict[str, Any]] = {"messages": {}, "enums": {}, "services": {}}
    for fd in files.values():
        for kind in flat:
            for name, desc in fd[kind].items():
                assert name not in flat[kind], f"{kind[:-1]} {name} defined twice"
                flat[kind][name] = desc
    return flat


def diff_schemas(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Human-readable differences of everything *we* define against flwr."""
    problems: list[str] = []
    for kind in ("messages", "enums", "services"):
        for name, mine in sorted(ours[kind].items()):
            other = theirs[kind].get(name)
            if other is None:
                problems.append(f"{kind[:-1]} {name}: defined by us, absent in flwr")
                continue
            if mine["file"] != other["file"]:
                problems.append(f"{kind[:-1]} {name}: file {mine['file']} != {other['file']}")
            if kind == "messages":
                problems += _diff_message(name, mine, other)
            elif kind == "enums":
                if mine["values"] != other["values"]:
                    problems.append(f"enum {name}: values {mine['values']} != {other['values']}")
            else:
                mine_m = {m["name"]: m for m in mine["methods"]}
                other_m = {m["name"]: m for m in other["methods"]}
                for rpc in sorted(set(mine_m) | set(other_m)):
                    a, b = mine_m.get(rpc), other_m.get(rpc)
                    if a != b:
                        problems.append(f"service {name} rpc {rpc}: ours {a} != flwr {b}")
    return problems


def _diff_message(name: str, mine: dict[str, Any], other: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("map_entry", "oneofs"):
        if mine[key] != other[key]:
            problems.append(f"message {name}: {key} {mine[key]} != {other[key]}")
    mine_f = {f["name"]: f for f in mine["fields"]}
    other_f = {f["name"]: f for f in other["fields"]}
    for field in sorted(set(mine_f) | set(other_f)):
        a, b = mine_f.get(field), other_f.get(field)
        if a is None or b is None:
            where = "only ours" if b is None else "only flwr's"
            problems.append(f"message {name} field {field}: {where} ({a or b})")
            continue
        for attr in a:
            if a[attr] != b[attr]:
                problems.append(
                    f"message {name} field {field}: {attr} ours={a[attr]!r} flwr={b[attr]!r}"
                )
    return problems


@pytest.fixture(scope="module")
def flwr_1_42_worker() -> Iterator[FlowerWorker]:
    """A `flwr_worker.py` process in the flwr 1.42.0 venv, for this module."""
    worker = FlowerWorker(FlowerEnv.get("1.42.0"))
    try:
        assert worker.ping()["flwr"] == "1.42.0"
        yield worker
    finally:
        worker.close()


# Client-facing modules a line leaves out because its Fleet wire no longer uses them.
NOT_RESTATED: dict[str, set[str]] = {"v1_42": {"task", "grpcadapter"}}

LINES = [
    pytest.param("v1_12", "flwr_1_12_worker", "1.12.0", id="1.12"),
    pytest.param("v1_15", "flwr_1_15_worker", "1.15.2", id="1.15"),
    pytest.param("v1_42", "flwr_1_42_worker", "1.42.0", id="1.42"),
]


@pytest.mark.parametrize(("line", "worker_fixture", "version"), LINES)
def test_descriptors_match_flwr(line, worker_fixture, version, request):
    worker = request.getfixturevalue(worker_fixture)
    reply = worker.descriptors()
    assert not reply["common_pb2_loaded"], "worker must not load flwr's common_pb2"
    theirs_files = reply["files"]
    ours_files = canonical_ours(compile_line(line))

    # The modules we restate are exactly flwr's client-facing ones (minus those the
    # line leaves out on purpose).
    left_out_modules = NOT_RESTATED.get(line, set())
    assert left_out_modules <= set(reply["client_facing"]), reply["client_facing"]
    client_facing = {
        f"flwr/proto/{m}.proto" for m in reply["client_facing"] if m not in left_out_modules
    }
    assert set(ours_files) == client_facing, (
        f"our {line} files {sorted(ours_files)} != flwr {version} client-facing "
        f"{sorted(client_facing)}"
    )
    for name, fd in ours_files.items():
        assert fd["package"] == theirs_files[name]["package"] == "flwr.proto", name

    ours, theirs = flatten(ours_files), flatten(theirs_files)
    problems = diff_schemas(ours, theirs)
    assert not problems, f"{len(problems)} descriptor difference(s) vs flwr {version}:\n" + (
        "\n".join(problems)
    )

    counts = {kind: len(ours[kind]) for kind in ours}
    assert counts["messages"] > 20 and counts["services"] >= 2, counts
    left_out = {kind: sorted(set(theirs[kind]) - set(ours[kind])) for kind in ("messages", "enums")}
    left_out["services"] = sorted(set(theirs["services"]) - set(ours["services"]))
    server_internal = sorted(set(reply["all_modules"]) - set(reply["client_facing"]))
    optional = [
        f"{msg}.{f['name']}"
        for msg, desc in sorted(ours["messages"].items())
        for f in desc["fields"]
        if f["proto3_optional"]
    ]
    print(
        f"\nflwr {version} vs proto/flower/{line}: 0 differences over "
        f"{counts['messages']} messages (incl. map entries), {counts['enums']} enums, "
        f"{counts['services']} services"
    )
    for kind, names in left_out.items():
        print(f"  client-facing {kind} of flwr we leave out: {', '.join(names) or 'none'}")
    print(f"  server-internal flwr modules not restated: {', '.join(server_internal)}")
    print(f"  proto3 optional fields: {', '.join(optional) or 'none'}")


def test_diff_detects_every_kind_of_difference(flwr_1_12_worker):
    """The comparison is not vacuous: each mutated attribute shows up as a difference."""
    import copy

    theirs = flatten(flwr_1_12_worker.descriptors()["files"])
    assert diff_schemas(theirs, theirs) == []

    def mutated(change) -> list[str]:
        mine = copy.deepcopy(theirs)
        change(mine)
        return diff_schemas(mine, theirs)

    def field(mine, msg, name):
        return next(f for f in mine["messages"][msg]["fields"] if f["name"] == name)

    edits = {
        "number": lambda m: field(m, "flwr.proto.TaskIns", "run_id").update(number=33),
        "type": lambda m: field(m, "flwr.proto.TaskIns", "run_id").update(type="TYPE_INT64"),
        "type_name": lambda m: field(m, "flwr.proto.Task", "producer").update(
            type_name="flwr.proto.Run"
        ),
        "label": lambda m: field(m, "flwr.proto.Task", "ancestry").update(label="LABEL_OPTIONAL"),
        "oneof": lambda m: field(m, "flwr.proto.ConfigsRecordValue", "bool").update(oneof=None),
        "map": lambda m: field(m, "flwr.proto.RecordSet", "configs").update(map=False),
        "name": lambda m: field(m, "flwr.proto.Node", "anonymous").update(name="anon"),
        "enum": lambda m: m["enums"][next(iter(m["enums"]))]["values"].append(["EXTRA", 99]),
        "streaming": lambda m: m["services"]["flwr.proto.FlowerService"]["methods"][0].update(
            client_streaming=False
        ),
        "path": lambda m: m["services"]["flwr.proto.Fleet"]["methods"][0].update(path="/x/Y"),
        "extra message": lambda m: m["messages"].update({"flwr.proto.Extra": {}}),
    }
    for what, change in edits.items():
        assert mutated(change), f"a changed {what} went unnoticed"
