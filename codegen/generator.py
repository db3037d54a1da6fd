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

Output is a pure function of the proto files and the pinned tool versions: files are
passed to protoc in sorted order and nothing time- or machine-dependent is rendered.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from google.protobuf import descriptor_pb2

from .descriptors import compile_descriptor_set, run_protoc
from .fastcodec_model import build_fastcodec_model, class_name, ruff_format

ROOT_PACKAGE = "flwr_sdk_proto"
TEMPLATES = Path(__file__).parent / "templates"
BETTERPROTO_OPTIONS = "client_generation=async,server_generation=async"

# The Fleet API is also served over HTTP at this prefix, one kebab-case path per RPC.
REST_PREFIX = "/api/v0/fleet/"
REST_SERVICE = "flwr.proto.Fleet"

GeneratedTree = dict[str, bytes]
"""Relative path under ``generated/`` → file content."""


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
        return sorted(p.relative_to(self.proto_root) for p in self.proto_root.rglob("*.proto"))


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


def build_schema(fds: descriptor_pb2.FileDescriptorSet, wanted: set[str]) -> SchemaModel:
    """Collect messages, enums and services of the files named in ``wanted``."""
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
                        rest_path=REST_PREFIX + _kebab(m.name)
                        if full_name == REST_SERVICE
                        else None,
                    )
                )
            services.append(model)
    return SchemaModel(sorted(messages), sorted(enums), sorted(services, key=lambda s: s.name))


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def header(source_label: str, files: list[str]) -> str:
    """The DO-NOT-EDIT banner every generated file starts with."""
    return (
        "# DO NOT EDIT: generated by flwr-sdk codegen (`python -m codegen`).\n"
        f"# Source: {source_label}: {', '.join(files)}\n"
    )


def _plugin_path() -> str:
    exe_dir = Path(sys.executable).parent
    candidate = exe_dir / "protoc-gen-python_betterproto2"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("protoc-gen-python_betterproto2")
    if found is None:
        raise RuntimeError(
            "protoc-gen-python_betterproto2 not found: install the codegen extra "
            "(pip install 'flwr-sdk[codegen]')"
        )
    return found


def generate_line(line: WireLine) -> GeneratedTree:
    """Generate the package of one wire line; return it as a tree of files."""
    files = line.proto_files()
    names = [f.as_posix() for f in files]
    banner = header(line.source_label, names)
    pkg_dir = f"{ROOT_PACKAGE}/{line.name}"
    tree: GeneratedTree = {}

    with tempfile.TemporaryDirectory(prefix="flwr-sdk-gen-") as tmp:
        out = Path(tmp)
        run_protoc(
            [line.proto_root],
            files,
            [
                f"--plugin=protoc-gen-python_betterproto2={_plugin_path()}",
                f"--python_betterproto2_out={out}",
                f"--python_betterproto2_opt={BETTERPROTO_OPTIONS}",
            ],
        )
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            rel = path.relative_to(out).as_posix()
            if rel == "__init__.py":
                continue  # replaced by our template below
            body = path.read_text(encoding="utf-8")
            tree[f"{pkg_dir}/{rel}"] = (banner + body).encode()

    fds = compile_descriptor_set(line.proto_root, files)
    schema = build_schema(fds, set(names))
    env = _environment()
    context = {"header": banner, "line": line, "schema": schema, "proto_files": names}
    for template, target in (
        ("line_init.py.j2", "__init__.py"),
        ("fleet_api.py.j2", "fleet_api.py"),
        ("registry.py.j2", "registry.py"),
    ):
        tree[f"{pkg_dir}/{target}"] = env.get_template(template).render(context).encode()
    fast_context = {**context, "codec": build_fastcodec_model(fds)}
    fast_source = env.get_template("fastcodec.py.j2").render(fast_context)
    tree[f"{pkg_dir}/fastcodec.py"] = ruff_format(fast_source).encode()
    return tree


def generate_root(lines: list[WireLine]) -> GeneratedTree:
    """The parent package ``flwr_sdk_proto`` that holds every line."""
    banner = header("proto/flower", [line.name for line in lines])
    env = _environment()
    return {
        f"{ROOT_PACKAGE}/__init__.py": env.get_template("root_init.py.j2")
        .render(header=banner, lines=lines)
        .encode(),
        f"{ROOT_PACKAGE}/py.typed": banner.encode(),
    }


def generate_all(repo_root: Path) -> GeneratedTree:
    """The complete content of ``generated/``."""
    lines = discover_lines(repo_root)
    tree = generate_root(lines)
    for line in lines:
        tree.update(generate_line(line))
    return tree
