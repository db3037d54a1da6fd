"""Generate the typed bindings of one wire line, plus the glue protoc does not give.

For each folder ``proto/flower/<line>`` (one Flower wire line, e.g. ``v1_12``) the
generator produces the package ``flwr_sdk_proto.<line>`` under ``generated/``:

* ``flwr/proto/__init__.py``, ``message_pool.py``: typed dataclasses, grpclib client stubs
  and server bases, from protoc with the betterproto2 plugin;
* ``fleet_api.py``: every RPC of every service with its gRPC path, streaming kind,
  request/response classes and, for the Fleet service, its REST path (jinja2);
* ``registry.py``: full protobuf name → generated class, for messages and enums (jinja2);
* ``__init__.py``: what the line is and where it came from (jinja2);
* ``fastcodec.py``: a size-first encoder and zero-copy decoder for the tensor-bearing
  messages, byte-identical to protobuf (jinja2 over ``fastcodec_model``).

The parent package ``flwr_sdk_proto`` holds what every line shares: ``fastcodec_runtime.py``
(the model-independent part of the fast codecs) and ``rpc.py`` (the ``Rpc`` record of
``fleet_api``).

Output is a pure function of the proto files and the pinned tool versions: files are
passed to protoc in sorted order and nothing time- or machine-dependent is rendered.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from google.protobuf import descriptor_pb2

from .fastcodec_model import MAX_DEPTH, build_fastcodec_model, class_name
from .toolchain import (
    GeneratedTree,
    compile_descriptor_set,
    header,
    jinja_environment,
    proto_files,
    ruff_format,
    run_betterproto,
)

ROOT_PACKAGE = "flwr_sdk_proto"

# The Fleet API is also served over HTTP at this prefix, one kebab-case path per RPC.
REST_PREFIX = "/api/v0/fleet/"
REST_SERVICE = "flwr.proto.Fleet"
# Lines whose HTTP Fleet API lives elsewhere (1.42: protobuf-over-HTTP on the SuperLink's port).
REST_PREFIX_BY_LINE: dict[str, str] = {"v1_42": "/v1/fleet/"}


@dataclass(frozen=True)
class WireLine:
    """One folder of protos that is generated into one Python package."""

    name: str  # e.g. "v1_12"
    proto_root: Path  # folder that import paths are relative to
    source_label: str  # how the header names the source, e.g. "proto/flower/v1_12"

    @property
    def version(self) -> str:
        """The Flower release line, e.g. ``"1.12"``."""
        return self.name.removeprefix("v").replace("_", ".")

    @property
    def package(self) -> str:
        """Import name of the generated package."""
        return f"{ROOT_PACKAGE}.{self.name}"

    def proto_files(self) -> list[Path]:
        """The line's ``.proto`` files relative to its root, sorted."""
        return proto_files(self.proto_root)


def discover_lines(repo_root: Path) -> list[WireLine]:
    """Every wire line folder under ``proto/flower``, sorted by name."""
    base = repo_root / "proto" / "flower"
    return [
        WireLine(d.name, d, f"proto/flower/{d.name}")
        for d in sorted(base.iterdir())
        if d.is_dir() and re.fullmatch(r"v\d+_\d+", d.name)
    ]


@dataclass
class MethodModel:
    """One RPC, as the templates see it."""

    name: str
    grpc_path: str
    request: str
    response: str
    client_streaming: bool
    server_streaming: bool
    rest_path: str | None

    @property
    def constant(self) -> str:
        """Upper snake-case name used for the generated constant, e.g. ``PULL_TASK_INS``."""
        return _snake(self.name).upper()

    @property
    def cardinality(self) -> str:
        """Name of the matching ``grpclib.const.Cardinality`` member."""
        return {
            (False, False): "UNARY_UNARY",
            (False, True): "UNARY_STREAM",
            (True, False): "STREAM_UNARY",
            (True, True): "STREAM_STREAM",
        }[(self.client_streaming, self.server_streaming)]


@dataclass
class ServiceModel:
    """One service, as the templates see it."""

    name: str
    full_name: str
    methods: list[MethodModel] = field(default_factory=list)


@dataclass
class SchemaModel:
    """Everything the templates render for one line."""

    messages: list[tuple[str, str]]  # (full protobuf name, generated class name)
    enums: list[tuple[str, str]]
    services: list[ServiceModel]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _kebab(name: str) -> str:
    return _snake(name).replace("_", "-")


def build_schema(
    fds: descriptor_pb2.FileDescriptorSet, wanted: set[str], rest_prefix: str = REST_PREFIX
) -> SchemaModel:
    """Collect messages, enums and services of the files named in ``wanted``.

    Fleet RPCs get an HTTP path: ``rest_prefix`` plus the kebab-case method name.
    """
    messages: list[tuple[str, str]] = []
    enums: list[tuple[str, str]] = []
    services: list[ServiceModel] = []

    def walk(pkg: str, prefix: str, msg: descriptor_pb2.DescriptorProto) -> None:
        full = f"{prefix}.{msg.name}"
        if msg.options.map_entry:
            return
        messages.append((full, class_name(full, pkg)))
        for enum in msg.enum_type:
            enum_full = f"{full}.{enum.name}"
            enums.append((enum_full, class_name(enum_full, pkg)))
        for nested in msg.nested_type:
            walk(pkg, full, nested)

    for fd in fds.file:
        if fd.name not in wanted:
            continue
        pkg = fd.package
        for msg in fd.message_type:
            walk(pkg, pkg, msg)
        for enum in fd.enum_type:
            full = f"{pkg}.{enum.name}"
            enums.append((full, class_name(full, pkg)))
        for svc in fd.service:
            full_name = f"{pkg}.{svc.name}"
            model = ServiceModel(svc.name, full_name)
            for m in svc.method:
                model.methods.append(
                    MethodModel(
                        name=m.name,
                        grpc_path=f"/{full_name}/{m.name}",
                        request=class_name(m.input_type.lstrip("."), pkg),
                        response=class_name(m.output_type.lstrip("."), pkg),
                        client_streaming=m.client_streaming,
                        server_streaming=m.server_streaming,
                        rest_path=rest_prefix + _kebab(m.name)
                        if full_name == REST_SERVICE
                        else None,
                    )
                )
            services.append(model)
    return SchemaModel(sorted(messages), sorted(enums), sorted(services, key=lambda s: s.name))


def _render_fastcodec_runtime(env: jinja2.Environment, banner: str) -> str:
    return env.get_template("fastcodec_runtime.py.j2").render(header=banner, max_depth=MAX_DEPTH)


@functools.cache
def fastcodec_runtime_names() -> tuple[str, ...]:
    """What ``fastcodec_runtime.py`` exports: the ``__all__`` its template renders."""
    tree = ast.parse(_render_fastcodec_runtime(jinja_environment(), ""))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return tuple(ast.literal_eval(node.value))
    raise RuntimeError("fastcodec_runtime.py.j2 renders no __all__")


_RUNTIME_IMPORT = re.compile(r"^from \.\.fastcodec_runtime import \([^)]*\)\n", re.MULTILINE)


def _render_fastcodec(env: jinja2.Environment, context: dict[str, object]) -> str:
    """A line's ``fastcodec.py``, importing just the runtime names its code uses."""
    template = env.get_template("fastcodec.py.j2")
    names = fastcodec_runtime_names()
    draft = template.render(context, runtime_imports=names)
    found = _RUNTIME_IMPORT.search(draft)
    if found is None:
        raise RuntimeError("fastcodec.py.j2 renders no import of fastcodec_runtime")
    code = draft[found.end() :]
    used = [name for name in names if re.search(rf"\b{name}\b", code)]
    return template.render(context, runtime_imports=used)


def generate_line(line: WireLine) -> GeneratedTree:
    """Generate the package of one wire line; return it as a tree of files."""
    files = line.proto_files()
    names = [f.as_posix() for f in files]
    banner = header(line.source_label, names)
    pkg_dir = f"{ROOT_PACKAGE}/{line.name}"
    tree: GeneratedTree = {}

    for rel, body in run_betterproto([line.proto_root], files).items():
        if rel != "__init__.py":  # replaced by our template below
            tree[f"{pkg_dir}/{rel}"] = (banner + body).encode()

    fds = compile_descriptor_set(line.proto_root, files)
    schema = build_schema(fds, set(names), REST_PREFIX_BY_LINE.get(line.name, REST_PREFIX))
    env = jinja_environment()
    context = {"header": banner, "line": line, "schema": schema, "proto_files": names}
    for template, target in (
        ("line_init.py.j2", "__init__.py"),
        ("fleet_api.py.j2", "fleet_api.py"),
        ("registry.py.j2", "registry.py"),
    ):
        tree[f"{pkg_dir}/{target}"] = env.get_template(template).render(context).encode()
    fast_context = {**context, "codec": build_fastcodec_model(fds)}
    tree[f"{pkg_dir}/fastcodec.py"] = ruff_format(_render_fastcodec(env, fast_context)).encode()
    return tree


def generate_root(lines: list[WireLine]) -> GeneratedTree:
    """The parent package ``flwr_sdk_proto`` that holds every line."""
    banner = header("proto/flower", [line.name for line in lines])
    env = jinja_environment()
    runtime = _render_fastcodec_runtime(env, banner)
    return {
        f"{ROOT_PACKAGE}/__init__.py": env.get_template("root_init.py.j2")
        .render(header=banner, lines=lines)
        .encode(),
        f"{ROOT_PACKAGE}/fastcodec_runtime.py": ruff_format(runtime).encode(),
        f"{ROOT_PACKAGE}/py.typed": banner.encode(),
        f"{ROOT_PACKAGE}/rpc.py": env.get_template("rpc.py.j2").render(header=banner).encode(),
    }


def generate_all(repo_root: Path) -> GeneratedTree:
    """The complete content of ``generated/``."""
    lines = discover_lines(repo_root)
    tree = generate_root(lines)
    for line in lines:
        tree.update(generate_line(line))
    return tree
