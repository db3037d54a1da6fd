"""Generate typed packages for user-defined message types, and the SDK's extension package.

``flwr-sdk codegen --proto-path DIR --out DIR`` (``python -m codegen --proto-path DIR
--out DIR``) turns a user's ``.proto`` files into one importable Python package at
``--out`` (the folder name is the package name):

* ``<package path>/__init__.py`` per protobuf package, ``message_pool.py``: typed
  dataclasses from protoc with the betterproto2 plugin, exactly as for the SDK's own
  wire lines. Fields of type ``flwr_sdk.ext.v1.NdArray`` use the SDK's class
  (``flwr_sdk.ext.NdArray``), so that one class is shared by every package;
* ``adapters.py``: per message ``<name>_to_recordset`` / ``<name>_from_recordset`` and a
  :class:`flwr_sdk.ext.convention.MessageCodec` (jinja2, ``user_adapters.py.j2``),
  following the RecordSet convention of ``docs/extending.md``;
* ``flwr_records.py``: ``to_flwr_recordset`` / ``from_flwr_recordset``, the same
  convention on Flower's own ``flwr.common.RecordSet`` (jinja2, the same template), with
  the convention's rules in ``_flwr_convention.py`` (``convention_core.py.j2`` rendered
  for the ``flwr.common`` records; flwr-sdk's own copy is the same template rendered for
  ``flwr_sdk.common``, in ``generated/flwr_sdk_proto/ext/convention_core.py``), so that
  plain-Flower code needs neither flwr-sdk nor a copy of its rules;
* ``_sdk_ext.py`` and ``flwr_sdk/ext/v1``: the ``NdArray`` class, flwr-sdk's own where it
  is installed, else the package's copy;
* ``__init__.py``: imports the adapters where flwr-sdk is installed, which registers the
  codecs (jinja2).

Maps (``map<K, V>``: every key type, values scalar, enum, message, NdArray or a
supported well-known type) and the well-known types ``Timestamp``, ``Duration``, the
wrappers and ``Struct`` / ``Value`` / ``ListValue`` are supported (layout in
``docs/extending.md``). Unsupported schema features (groups, ``google.protobuf.Any`` and
the other well-known types, types from outside ``--proto-path`` other than
``flwr_sdk.ext.v1.NdArray``, files without a package) stop generation with a
:class:`UserCodegenError` that names the field and says why.

:func:`generate_sdk_ext` builds ``generated/flwr_sdk_proto/ext`` from
``proto/flwr_sdk`` (the SDK's own extension protos); ``python -m codegen`` includes it.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from betterproto2_compiler.casing import snake_case
from betterproto2_compiler.compile.naming import pythonize_class_name, pythonize_field_name
from google.protobuf import descriptor_pb2

from .generator import ROOT_PACKAGE
from .toolchain import (
    GENERATED_MARK,
    GeneratedTree,
    ProtocError,
    compile_descriptor_set,
    files_on_disk,
    header,
    jinja_environment,
    proto_files,
    replace_tree,
    report_check,
    ruff_format,
    run_betterproto,
    stale_files,
)

__all__ = [
    "ADAPTERS_MODULE",
    "NDARRAY_TYPE",
    "ProtocError",
    "UserCodegenError",
    "add_user_arguments",
    "build_package_model",
    "check_package_name",
    "generate_sdk_ext",
    "generate_user_package",
    "run_user_codegen",
    "sdk_proto_root",
    "stale_user_files",
    "wants_user_codegen",
    "write_user_package",
]

NDARRAY_TYPE = "flwr_sdk.ext.v1.NdArray"
"""The SDK's array marker type."""
ADAPTERS_MODULE = "adapters"
"""Module of a user package holding the RecordSet adapters."""
FLWR_MODULE = "flwr_records"
"""Module of a user package converting to and from ``flwr.common.RecordSet``."""
CORE_MODULE = "_flwr_convention"
"""Module of a user package holding the convention's rules for ``flwr.common`` records."""
SHIM_MODULE = "_sdk_ext"
"""Module of a user package that picks the ``NdArray`` class."""
_RESERVED = (ADAPTERS_MODULE, FLWR_MODULE, CORE_MODULE, SHIM_MODULE, "message_pool", "flwr_sdk")
EXT_PACKAGE = f"{ROOT_PACKAGE}/ext"
"""Where the SDK's extension package goes under ``generated/``."""
SDK_EXT_IMPORT = f"{ROOT_PACKAGE}.ext"
"""Import name of that package."""
SDK_ERRORS_MODULE = "flwr_sdk.ext.convention"
"""Public home of the convention's error types in flwr-sdk (error reasons name it)."""

_FD = descriptor_pb2.FieldDescriptorProto
_SCALARS: dict[int, str] = {
    _FD.TYPE_DOUBLE: "double",
    _FD.TYPE_FLOAT: "float",
    _FD.TYPE_INT32: "int32",
    _FD.TYPE_INT64: "int64",
    _FD.TYPE_UINT32: "uint32",
    _FD.TYPE_UINT64: "uint64",
    _FD.TYPE_SINT32: "sint32",
    _FD.TYPE_SINT64: "sint64",
    _FD.TYPE_FIXED32: "fixed32",
    _FD.TYPE_FIXED64: "fixed64",
    _FD.TYPE_SFIXED32: "sfixed32",
    _FD.TYPE_SFIXED64: "sfixed64",
    _FD.TYPE_BOOL: "bool",
    _FD.TYPE_STRING: "string",
    _FD.TYPE_BYTES: "bytes",
}
# betterproto2 imports a package outside the file's own as
# `from <dots><package> import <last> as <alias>`; the SDK's package goes through the
# shim module, which prefers the SDK's generated module to the package's own copy.
_SDK_IMPORT = re.compile(r"^from (\.+)flwr_sdk\.ext import (v1) as (\w+)$", re.MULTILINE)
# Generated modules are not the user's to lint; betterproto2's MessagePool() is untyped,
# which would fail users' `mypy --strict` runs.
_PRAGMAS = '# ruff: noqa\n# mypy: disable-error-code="no-untyped-call, unused-ignore"\n'
# betterproto2's own well-known types module is not written for `mypy --strict` (untyped
# defs, untyped dateutil): its types are used as they are, its insides not checked.
_WKT_PRAGMAS = "# ruff: noqa\n# mypy: ignore-errors\n"

_WKT = "google.protobuf."
_WRAPPERS: dict[str, str] = {
    f"{_WKT}DoubleValue": "double",
    f"{_WKT}FloatValue": "float",
    f"{_WKT}Int64Value": "int64",
    f"{_WKT}UInt64Value": "uint64",
    f"{_WKT}Int32Value": "int32",
    f"{_WKT}UInt32Value": "uint32",
    f"{_WKT}BoolValue": "bool",
    f"{_WKT}StringValue": "string",
    f"{_WKT}BytesValue": "bytes",
}
"""Wrapper types (betterproto2 unwraps them to ``T | None``) → the scalar they carry."""
_JSON_WKT: dict[str, str] = {
    f"{_WKT}Struct": "struct",
    f"{_WKT}Value": "value",
    f"{_WKT}ListValue": "list_value",
}
"""JSON-like types, carried as JSON text → their convention kind."""
_TIME_WKT: dict[str, str] = {f"{_WKT}Timestamp": "timestamp", f"{_WKT}Duration": "duration"}
"""Unwrapped to ``datetime`` / ``timedelta``; carried as ``seconds`` and ``nanos``."""
_REFUSED_WKT: dict[str, str] = {
    f"{_WKT}Any": "an Any packs a message of any type (a type URL and its serialized bytes), "
    "which has no fixed layout in records; use a oneof of your own message types",
    f"{_WKT}FieldMask": "FieldMask is not supported; use a repeated string of paths",
    f"{_WKT}Empty": "Empty is not supported; declare an empty message of your own",
}


class UserCodegenError(RuntimeError):
    """The user's protos use something the RecordSet convention does not support."""


def sdk_proto_root(scratch: Path) -> Path:
    """Include folder holding ``flwr_sdk/ext/v1/ndarray.proto``.

    The checkout's ``proto/flwr_sdk`` when codegen runs from a checkout; otherwise the
    sources embedded in the installed ``flwr_sdk_proto.ext`` (``PROTO_SOURCES``), written
    below ``scratch``.
    """
    checkout = Path(__file__).resolve().parent.parent / "proto" / "flwr_sdk"
    if (checkout / "flwr_sdk").is_dir():
        return checkout
    try:
        installed = importlib.import_module(SDK_EXT_IMPORT)
    except ImportError:
        sources: object = None
    else:
        sources = getattr(installed, "PROTO_SOURCES", None)
    if not isinstance(sources, dict) or not sources:
        raise UserCodegenError(
            "the SDK's extension protos (flwr_sdk/ext/v1/ndarray.proto) were not found: "
            "install flwr-sdk next to its codegen extra"
        )
    root = scratch / "sdk-protos"
    for name, text in sources.items():
        target = root / str(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(str(text), encoding="utf-8")
    return root


# --------------------------------------------------------------------------------------
# The SDK's own extension package


def generate_sdk_ext(repo_root: Path) -> GeneratedTree:
    """``generated/flwr_sdk_proto/ext``: betterproto2 classes of ``proto/flwr_sdk``."""
    root = repo_root / "proto" / "flwr_sdk"
    files = proto_files(root)
    names = [f.as_posix() for f in files]
    banner = header("proto/flwr_sdk", names)
    tree: GeneratedTree = {
        f"{EXT_PACKAGE}/{rel}": (banner + body).encode()
        for rel, body in run_betterproto([root], files).items()
        if rel != "__init__.py"  # replaced by our template below
    }
    # The proto sources ship inside the package, so that an installed flwr-sdk can
    # generate users' packages that import them (see sdk_proto_root).
    sources = {name: (root / name).read_text(encoding="utf-8") for name in names}
    init = (
        jinja_environment()
        .get_template("user_sdk_ext_init.py.j2")
        .render(header=banner, proto_files=names, proto_sources=sources)
    )
    tree[f"{EXT_PACKAGE}/__init__.py"] = ruff_format(init).encode()
    tree[f"{EXT_PACKAGE}/convention_core.py"] = render_convention_core(
        header("codegen/templates/convention_core.py.j2", ["records backend flwr_sdk"]), "flwr_sdk"
    )
    return tree


_CORE_BACKENDS: dict[str, tuple[str, str]] = {
    "flwr_sdk": ("flwr-sdk's records (``flwr_sdk.common.records``)", SDK_ERRORS_MODULE),
    "flwr": ("Flower's own records (``flwr.common``)", ""),
}
"""Records backend → (how the rendered module's docstring names it, error types' module)."""


def render_convention_core(banner: str, backend: str) -> bytes:
    """``convention_core.py.j2`` for ``backend``: the one source of the convention's rules.

    ``flwr_sdk``: flwr-sdk's copy (``flwr_sdk.ext.convention`` re-exports it; its error
    types keep that module's name); ``flwr``: the copy inside each generated package,
    for ``flwr.common`` records.
    """
    doc, error_module = _CORE_BACKENDS[backend]
    text = (
        jinja_environment()
        .get_template("convention_core.py.j2")
        .render(header=banner, backend=backend, backend_doc=doc, error_module=error_module)
    )
    return ruff_format(text).encode()


# --------------------------------------------------------------------------------------
# The model the adapter template renders


@dataclass
class FieldModel:
    """One field, as ``user_adapters.py.j2`` sees it."""

    key: str
    """Proto field name: the key segment in the records."""
    attr: str
    """Python attribute name."""
    kind: str
    """``scalar`` (wrappers and JSON types included), ``enum``, ``message``, ``ndarray``,
    ``timestamp`` or ``duration``; for a map, the kind of its values."""
    scalar: str
    """Convention scalar kind (``int32``, ``enum``, ``struct``, ...); empty otherwise."""
    repeated: bool
    presence: str
    """``plain``; ``optional`` (proto3 ``optional``); ``oneof`` (member of a oneof)."""
    type_ref: str
    """Python expression of the enum or message class; empty for scalars."""
    target: str
    """Identifier of the target message's read/write functions (messages only)."""
    map_key: str = ""
    """Scalar kind of the keys of a map field; empty for other fields."""


@dataclass
class OneofModel:
    """One real (non-synthetic) oneof."""

    name: str
    members: list[str]


@dataclass
class MessageModel:
    """One message."""

    full_name: str
    ident: str
    """Unique identifier used in private function names."""
    public: str
    """Prefix of the public functions: ``<public>_to_recordset``."""
    ref: str
    """Python expression of the class inside ``adapters.py``."""
    fields: list[FieldModel] = field(default_factory=list)
    oneofs: list[OneofModel] = field(default_factory=list)
    has_arrays: bool = False
    field_types: list[str] = field(default_factory=list)
    """Full names of the message types of its message fields (for has_arrays)."""


@dataclass
class ImportModel:
    """``from <module> import <name> as <alias>``."""

    module: str
    name: str
    alias: str


@dataclass
class PackageModel:
    """What ``user_adapters.py.j2`` renders."""

    messages: list[MessageModel]
    imports: list[ImportModel]
    uses_arrays: bool
    wkt_module: str = ""
    """Alias of the package's ``google.protobuf`` module, when JSON types need it."""


def _alias(package: str) -> str:
    return "_pkg_" + "_".join(package.split("."))


def _import_for(package: str) -> ImportModel:
    parts = package.split(".")
    parent = ".".join(parts[:-1])
    return ImportModel(module=f".{parent}", name=parts[-1], alias=_alias(package))


def build_package_model(fds: descriptor_pb2.FileDescriptorSet, wanted: set[str]) -> PackageModel:
    """Collect every message of the files in ``wanted``; raise on unsupported features."""
    owner: dict[str, tuple[str, str]] = {}  # full type name → (package, local name)
    kinds: dict[str, str] = {}  # full type name → "message" | "enum" | "map"
    entries: dict[str, descriptor_pb2.DescriptorProto] = {}  # map entry types
    user_files = [fd for fd in fds.file if fd.name in wanted]

    def index(pkg: str, prefix: str, msg: descriptor_pb2.DescriptorProto) -> None:
        local = f"{prefix}{msg.name}"
        full = f"{pkg}.{local}" if pkg else local
        owner[full] = (pkg, local)
        kinds[full] = "map" if msg.options.map_entry else "message"
        entries[full] = msg
        for enum in msg.enum_type:
            owner[f"{full}.{enum.name}"] = (pkg, f"{local}.{enum.name}")
            kinds[f"{full}.{enum.name}"] = "enum"
        for nested in msg.nested_type:
            index(pkg, f"{local}.", nested)

    for fd in user_files:
        if not fd.package:
            raise UserCodegenError(
                f"{fd.name}: declare a package (e.g. `package myapp.v1;`); the generated "
                "module path and the record names come from it"
            )
        if fd.package.split(".")[0] in _RESERVED:
            raise UserCodegenError(
                f"{fd.name}: package {fd.package!r} clashes with a generated module name"
            )
        for msg in fd.message_type:
            index(fd.package, "", msg)
        for enum in fd.enum_type:
            owner[f"{fd.package}.{enum.name}"] = (fd.package, enum.name)
            kinds[f"{fd.package}.{enum.name}"] = "enum"

    def ref(full: str) -> str:
        pkg, local = owner[full]
        return f"{_alias(pkg)}.{pythonize_class_name(local)}"

    def ident(full: str) -> str:
        return re.sub(r"\W", "_", snake_case(full.replace(".", "_"))).lower()

    messages: list[MessageModel] = []
    packages: set[str] = set()
    uses_arrays = uses_json = False

    def classify(where: str, f: descriptor_pb2.FieldDescriptorProto) -> tuple[str, str, str, str]:
        """``(kind, scalar, type_ref, target)`` of a field's (or a map value's) type."""
        if f.type in _SCALARS:
            return "scalar", _SCALARS[f.type], "", ""
        target = f.type_name.lstrip(".")
        if target == NDARRAY_TYPE:
            return "ndarray", "", "", ""
        if target in _TIME_WKT:
            return _TIME_WKT[target], "", "", ""
        if target in _WRAPPERS:
            return "scalar", _WRAPPERS[target], "", ""
        if target in _JSON_WKT:
            return "scalar", _JSON_WKT[target], "", ""
        if target in _REFUSED_WKT:
            raise UserCodegenError(f"field {where}: type {target}: {_REFUSED_WKT[target]}")
        if target.startswith(_WKT):
            raise UserCodegenError(
                f"field {where}: type {target} is not supported; the well-known types the "
                "RecordSet convention carries are Timestamp, Duration, the wrappers "
                "(DoubleValue ... BytesValue), Struct, Value and ListValue"
            )
        if target not in owner:
            raise UserCodegenError(
                f"field {where}: type {target} is not defined under --proto-path; only your "
                f"own messages and enums, {NDARRAY_TYPE} and the supported well-known types "
                "(Timestamp, Duration, the wrappers, Struct, Value, ListValue) can be "
                "carried in a RecordSet"
            )
        if f.type == _FD.TYPE_ENUM:
            return "enum", "enum", ref(target), ""
        return "message", "", ref(target), ident(target)

    def walk(pkg: str, prefix: str, msg: descriptor_pb2.DescriptorProto) -> None:
        nonlocal uses_arrays, uses_json
        local = f"{prefix}{msg.name}"
        full = f"{pkg}.{local}"
        if msg.options.map_entry:
            return
        packages.add(pkg)
        model = MessageModel(
            full_name=full,
            ident=ident(full),
            public=snake_case(pythonize_class_name(local)),
            ref=ref(full),
        )
        real_oneofs: dict[int, OneofModel] = {}
        for f in msg.field:
            where = f"{full}.{f.name}"
            synthetic = f.proto3_optional
            in_oneof = f.HasField("oneof_index") and not synthetic
            presence = "oneof" if in_oneof else ("optional" if synthetic else "plain")
            repeated = f.label == _FD.LABEL_REPEATED
            if f.type == _FD.TYPE_GROUP:
                raise UserCodegenError(f"field {where}: groups are not supported")
            target = f.type_name.lstrip(".")
            map_key = ""
            value: descriptor_pb2.FieldDescriptorProto = f
            if f.type == _FD.TYPE_MESSAGE and kinds.get(target) == "map":
                key_field, value = entries[target].field[0], entries[target].field[1]
                map_key, repeated = _SCALARS[key_field.type], False
            kind, scalar, type_ref, target = classify(where, value)
            if kind in ("scalar", "enum") and value.type == _FD.TYPE_MESSAGE and not map_key:
                presence = "oneof" if in_oneof else "optional"  # wrappers, JSON: `T | None`
            if kind == "message":
                model.field_types.append(value.type_name.lstrip("."))
            if kind == "ndarray":
                uses_arrays = model.has_arrays = True
            uses_json = uses_json or scalar in _JSON_WKT.values()
            fm = FieldModel(
                f.name, pythonize_field_name(f.name), kind, scalar, repeated, presence,
                type_ref, target, map_key,
            )  # fmt: skip
            if in_oneof:
                oneof_name = msg.oneof_decl[f.oneof_index].name
                real_oneofs.setdefault(f.oneof_index, OneofModel(oneof_name, [])).members.append(
                    f.name
                )
            model.fields.append(fm)
        model.oneofs = [real_oneofs[i] for i in sorted(real_oneofs)]
        messages.append(model)
        for nested in msg.nested_type:
            walk(pkg, f"{local}.", nested)

    for fd in user_files:
        for msg in fd.message_type:
            walk(fd.package, "", msg)

    # A message needs a ParametersRecord if any message it can contain holds an array.
    by_name = {m.full_name: m for m in messages}
    changed = True
    while changed:
        changed = False
        for m in messages:
            if not m.has_arrays and any(by_name[t].has_arrays for t in m.field_types):
                m.has_arrays = changed = True

    # Public names must be unique across packages; qualify the clashing ones.
    counts: dict[str, int] = {}
    for m in messages:
        counts[m.public] = counts.get(m.public, 0) + 1
    for m in messages:
        if counts[m.public] > 1:
            m.public = m.ident

    messages.sort(key=lambda m: m.full_name)
    if uses_json:
        packages.add(_WKT.rstrip("."))
    imports = [_import_for(p) for p in sorted(packages)]
    return PackageModel(
        messages=messages,
        imports=imports,
        uses_arrays=uses_arrays,
        wkt_module=_alias(_WKT.rstrip(".")) if uses_json else "",
    )


# --------------------------------------------------------------------------------------
# A user's package


def generate_user_package(proto_path: Path, package_name: str) -> GeneratedTree:
    """The package generated from every ``.proto`` under ``proto_path``.

    Keys are paths relative to the package folder. ``package_name`` only labels the
    output (the folder's name).

    Raises:
        UserCodegenError: an unsupported schema feature (the message names the field).
        codegen.toolchain.ProtocError: protoc rejected the files.

    """
    proto_path = proto_path.resolve()
    if not proto_path.is_dir():
        raise UserCodegenError(f"--proto-path {proto_path} is not a folder")
    files = [f for f in proto_files(proto_path) if f.parts[0] != "flwr_sdk"]
    if not files:
        raise UserCodegenError(f"no .proto files under {proto_path}")
    names = [f.as_posix() for f in files]
    banner = header(f"{package_name} (--proto-path)", names)
    tree: GeneratedTree = {}
    with tempfile.TemporaryDirectory(prefix="flwr-sdk-gen-") as tmp:
        sdk_root = sdk_proto_root(Path(tmp))
        fds = compile_descriptor_set(proto_path, files, extra_includes=[sdk_root])
        model = build_package_model(fds, set(names))
        generated = run_betterproto([proto_path, sdk_root], files)
    for rel, body in generated.items():
        if rel == "__init__.py":
            continue  # root: our template
        # flwr_sdk/ (NdArray) is kept as the fallback copy the shim module imports.
        body = _SDK_IMPORT.sub(rf"from \1{SHIM_MODULE} import \2 as \3", body)
        if rel.endswith(".py"):
            pragmas = _WKT_PRAGMAS if rel.startswith("google/") else _PRAGMAS
            body = ruff_format(banner + pragmas + body)
        tree[rel] = body.encode()

    env = jinja_environment()
    context = {
        "header": banner,
        "package_name": package_name,
        "model": model,
        "proto_files": names,
        "adapters_module": ADAPTERS_MODULE,
        "flwr_module": FLWR_MODULE,
    }
    adapters = env.get_template("user_adapters.py.j2")
    # Formatted with ruff (line length 100) so that formatting a project leaves them be.
    for module, backend in ((ADAPTERS_MODULE, "flwr_sdk"), (FLWR_MODULE, "flwr")):
        tree[f"{module}.py"] = ruff_format(adapters.render(context, backend=backend)).encode()
    tree[f"{CORE_MODULE}.py"] = render_convention_core(banner, "flwr")
    shim = env.get_template("user_sdk_shim.py.j2").render(context)
    tree[f"{SHIM_MODULE}.py"] = ruff_format(shim).encode()
    init = env.get_template("user_init.py.j2").render(context)
    tree["__init__.py"] = ruff_format(init).encode()
    return dict(sorted(tree.items()))


def stale_user_files(tree: GeneratedTree, out_dir: Path) -> list[str]:
    """Paths under ``out_dir`` that differ from ``tree``, are missing or extra (sorted)."""
    # Only bytecode caches are passed over here, as before: other tool caches in a
    # user's package folder count as extra files.
    on_disk = files_on_disk(out_dir, relative_to=out_dir, ignored={"__pycache__"})
    return stale_files(tree, on_disk)


def write_user_package(tree: GeneratedTree, out_dir: Path) -> None:
    """Replace ``out_dir`` with exactly ``tree``.

    Raises:
        UserCodegenError: ``out_dir`` exists, is not empty and was not made by us
            (its ``__init__.py`` lacks the DO-NOT-EDIT header): nothing is deleted.

    """
    if out_dir.exists():
        init = out_dir / "__init__.py"
        ours = init.is_file() and init.read_text(encoding="utf-8").startswith(GENERATED_MARK)
        if any(out_dir.iterdir()) and not ours:
            raise UserCodegenError(
                f"--out {out_dir} exists and was not generated by flwr-sdk codegen; "
                "refusing to replace it"
            )
    replace_tree(tree, out_dir, replaced=out_dir)


def check_package_name(out_dir: Path) -> str:
    """The Python package name of ``--out`` (its folder name), which must be an identifier."""
    name = out_dir.resolve().name
    if not name.isidentifier():
        raise UserCodegenError(
            f"--out {out_dir}: the folder name {name!r} becomes the Python package name "
            "and must be a valid identifier"
        )
    return name


# --------------------------------------------------------------------------------------
# Command line (hooked into ``python -m codegen`` / ``flwr-sdk codegen``)

PYPROJECT_TABLE = ("tool", "flwr-sdk", "codegen")
"""``[tool.flwr-sdk.codegen]`` with ``proto-path`` and ``out`` (relative to the file)."""


def add_user_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--proto-path``, ``--out`` and ``--pyproject`` to the codegen parser."""
    group = parser.add_argument_group(
        "your own message types",
        "generate typed classes and RecordSet adapters from your .proto files "
        "(instead of regenerating the SDK's generated/)",
    )
    group.add_argument("--proto-path", type=Path, help="folder holding your .proto files")
    group.add_argument(
        "--out", type=Path, help="package folder to (re)generate; its name is the import name"
    )
    group.add_argument(
        "--pyproject",
        type=Path,
        help="read proto-path and out from [tool.flwr-sdk.codegen] of this file "
        "(default: ./pyproject.toml when it has that table)",
    )


def _read_pyproject(path: Path) -> dict[str, object] | None:
    try:
        tomllib = importlib.import_module("tomllib")
    except ImportError:  # Python 3.10
        return None
    with path.open("rb") as handle:
        data: object = tomllib.load(handle)
    for key in PYPROJECT_TABLE:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data if isinstance(data, dict) else None


def wants_user_codegen(args: argparse.Namespace) -> bool:
    """Whether the command line (or ./pyproject.toml) asks for a user package."""
    if args.proto_path is not None or args.out is not None or args.pyproject is not None:
        return True
    default = Path.cwd() / "pyproject.toml"
    return default.is_file() and _read_pyproject(default) is not None


def _user_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    proto_path: Path | None = args.proto_path
    out: Path | None = args.out
    if proto_path is None or out is None:
        pyproject: Path = args.pyproject or Path.cwd() / "pyproject.toml"
        table = _read_pyproject(pyproject) if pyproject.is_file() else None
        if table is None:
            raise UserCodegenError(
                "give both --proto-path and --out, or a pyproject.toml with a "
                "[tool.flwr-sdk.codegen] table (proto-path, out; needs Python >= 3.11)"
            )
        base = pyproject.resolve().parent
        for key, value in (("proto-path", proto_path), ("out", out)):
            if value is None and not isinstance(table.get(key), str):
                raise UserCodegenError(f'{pyproject}: [tool.flwr-sdk.codegen] needs {key} = "..."')
        proto_path = proto_path or base / str(table["proto-path"])
        out = out or base / str(table["out"])
    return proto_path, out


def run_user_codegen(args: argparse.Namespace) -> int:
    """Generate (or with ``--check`` verify) a user's package; return the exit code."""
    try:
        proto_path, out = _user_paths(args)
        name = check_package_name(out)
        tree = generate_user_package(proto_path, name)
        if args.check:
            return report_check(stale_user_files(tree, out), len(tree), str(out), "regenerate it")
        write_user_package(tree, out)
    except (UserCodegenError, ProtocError) as exc:
        print(f"flwr-sdk codegen: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(tree)} files to {out} (package {name})")
    return 0
