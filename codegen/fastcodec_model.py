"""Proto descriptors → the model ``templates/fastcodec.py.j2`` renders into ``fastcodec.py``.

The fast codec covers the tensor-bearing messages of a wire line: every message reachable
(through message-typed fields, oneof members and map values) from :data:`ROOTS`. For each
of them the model lists its fields in field-number order with what the template needs to
emit a size function, a write function and a decode function: the Python attribute name
betterproto2 gives the field, its scalar kind, how presence works, whether it is packed,
its tags as integers and byte literals, and — for ``bytes`` fields in :data:`ZERO_COPY` —
that decoding hands out a ``memoryview`` of the received buffer instead of a copy.

Only proto3 is supported (all of Flower's protos are proto3); anything else raises
:class:`UnsupportedSchemaError` at generation time rather than producing a wrong codec.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from betterproto2_compiler.compile.naming import pythonize_field_name
from google.protobuf import descriptor_pb2

FDP = descriptor_pb2.FieldDescriptorProto

ROOTS: tuple[str, ...] = (
    "flwr.proto.Array",
    "flwr.proto.ParametersRecord",
    "flwr.proto.RecordSet",
    "flwr.proto.Task",
    "flwr.proto.TaskIns",
    "flwr.proto.TaskRes",
    "flwr.proto.PullTaskInsResponse",
    "flwr.proto.PushTaskResRequest",
    "flwr.proto.Message",
    "flwr.proto.PullMessagesResponse",
    "flwr.proto.PushMessagesRequest",
    "flwr.proto.Parameters",
    "flwr.proto.ServerMessage",
    "flwr.proto.ClientMessage",
    "flwr.proto.Scalar",
    "flwr.proto.PushObjectRequest",
    "flwr.proto.PullObjectResponse",
)
"""Tensor-bearing messages (and the envelopes that carry them); roots a line lacks are skipped."""

ZERO_COPY: frozenset[tuple[str, str]] = frozenset(
    {
        ("flwr.proto.Array", "data"),
        ("flwr.proto.Parameters", "tensors"),
        # 1.42: array chunks travel as object contents.
        ("flwr.proto.PushObjectRequest", "object_content"),
        ("flwr.proto.PullObjectResponse", "object_content"),
    }
)
"""(message, field) pairs of ``bytes`` fields decoded as memoryviews of the input buffer."""

MAX_DEPTH = 100
"""Deepest message nesting the decoder accepts (protobuf's default recursion limit)."""

_KINDS: dict[int, str] = {
    FDP.TYPE_DOUBLE: "double",
    FDP.TYPE_FLOAT: "float",
    FDP.TYPE_INT64: "int64",
    FDP.TYPE_UINT64: "uint64",
    FDP.TYPE_INT32: "int32",
    FDP.TYPE_FIXED64: "fixed64",
    FDP.TYPE_FIXED32: "fixed32",
    FDP.TYPE_BOOL: "bool",
    FDP.TYPE_STRING: "string",
    FDP.TYPE_MESSAGE: "message",
    FDP.TYPE_BYTES: "bytes",
    FDP.TYPE_UINT32: "uint32",
    FDP.TYPE_ENUM: "enum",
    FDP.TYPE_SFIXED32: "sfixed32",
    FDP.TYPE_SFIXED64: "sfixed64",
    FDP.TYPE_SINT32: "sint32",
    FDP.TYPE_SINT64: "sint64",
}

WIRE_VARINT, WIRE_FIXED64, WIRE_LEN, WIRE_FIXED32 = 0, 1, 2, 5

_WIRE_TYPES: dict[str, int] = {
    "double": WIRE_FIXED64,
    "fixed64": WIRE_FIXED64,
    "sfixed64": WIRE_FIXED64,
    "float": WIRE_FIXED32,
    "fixed32": WIRE_FIXED32,
    "sfixed32": WIRE_FIXED32,
    "string": WIRE_LEN,
    "bytes": WIRE_LEN,
    "message": WIRE_LEN,
    "int32": WIRE_VARINT,
    "int64": WIRE_VARINT,
    "uint32": WIRE_VARINT,
    "uint64": WIRE_VARINT,
    "sint32": WIRE_VARINT,
    "sint64": WIRE_VARINT,
    "bool": WIRE_VARINT,
    "enum": WIRE_VARINT,
}

_FIXED_WIDTH: dict[str, int] = {
    "double": 8,
    "fixed64": 8,
    "sfixed64": 8,
    "float": 4,
    "fixed32": 4,
    "sfixed32": 4,
}

_STRUCT_CODES: dict[str, str] = {
    "double": "d",
    "fixed64": "Q",
    "sfixed64": "q",
    "float": "f",
    "fixed32": "I",
    "sfixed32": "i",
}

_ZERO_VALUES: dict[str, str] = {
    "string": '""',
    "bytes": 'b""',
    "bool": "False",
    "double": "0.0",
    "float": "0.0",
}


_PY_TYPES: dict[str, str] = {
    "string": "str",
    "bytes": "bytes",
    "bool": "bool",
    "double": "float",
    "float": "float",
}


class UnsupportedSchemaError(ValueError):
    """The descriptors use a feature the fast codec does not implement."""


def class_name(full_name: str, package: str) -> str:
    """Class name betterproto2 gives a (possibly nested) type: nesting joined."""
    local = full_name.removeprefix(f"{package}.")
    return "".join(part[:1].upper() + part[1:] for part in local.split("."))


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@dataclass(frozen=True)
class Tag:
    """One field number + wire type, as the template writes and compares it."""

    number: int
    wire_type: int

    @property
    def value(self) -> int:
        """The tag as the decoder compares it (``number << 3 | wire_type``)."""
        return (self.number << 3) | self.wire_type

    @property
    def encoded(self) -> bytes:
        """The tag's varint bytes."""
        return _varint(self.value)

    @property
    def size(self) -> int:
        """Length of the tag's varint."""
        return len(self.encoded)

    @property
    def literal(self) -> str:
        """A Python bytes literal of the tag (for multi-byte tags)."""
        return 'b"' + "".join(f"\\x{b:02x}" for b in self.encoded) + '"'


@dataclass
class FieldModel:
    """One field (or the key/value of a map entry) as the template sees it."""

    attr: str  # Python attribute name on the betterproto2 class
    proto_name: str
    number: int
    kind: str  # "string", "bytes", "message", "double", "int32", ...
    label: str  # "implicit", "explicit", "always", "repeated", "packed", "map"
    type_class: str = ""  # generated class of a message or enum field
    oneof: str | None = None
    oneof_siblings: list[str] = field(default_factory=list)  # other members' attrs
    zero_copy: bool = False
    key: FieldModel | None = None  # map fields only
    value: FieldModel | None = None  # map fields only
    entry_fn: str = ""  # map fields only: suffix of the entry decode function

    @property
    def wire_type(self) -> int:
        """Wire type of one (unpacked) value of this field."""
        return _WIRE_TYPES[self.kind]

    @property
    def tag(self) -> Tag:
        """The tag this field is written with."""
        if self.label in ("packed", "map"):
            return Tag(self.number, WIRE_LEN)
        return Tag(self.number, self.wire_type)

    @property
    def element_tag(self) -> Tag:
        """Tag of one unpacked element (packed fields also accept this form)."""
        return Tag(self.number, self.wire_type)

    @property
    def fixed_width(self) -> int:
        """Byte width of a fixed-size scalar (0 for varint and length-delimited kinds)."""
        return _FIXED_WIDTH.get(self.kind, 0)

    @property
    def struct_code(self) -> str:
        """``struct`` format character of a fixed-size scalar."""
        return _STRUCT_CODES[self.kind]

    @property
    def zero(self) -> str:
        """Python expression of this field's default (implicit presence) value."""
        if self.kind == "enum":
            return f"pb.{self.type_class}(0)"
        return _ZERO_VALUES.get(self.kind, "0")

    @property
    def py_type(self) -> str:
        """Python type of one value of this field, as the decoder holds it."""
        if self.kind in ("message", "enum"):
            return f"pb.{self.type_class}"
        if self.zero_copy:
            return "bytes | memoryview"
        return _PY_TYPES.get(self.kind, "int")

    @property
    def is_varint(self) -> bool:
        """Whether values travel as varints."""
        return self.wire_type == WIRE_VARINT


@dataclass(frozen=True)
class DecodeCase:
    """One tag the decoder of a message accepts, and how it reads the value."""

    tag: int
    field: FieldModel
    mode: str  # "value": one value of the field's own wire type; "packed": a packed run


@dataclass
class MessageModel:
    """One message type covered by the fast codec."""

    full_name: str
    cls: str  # generated class name; also the suffix of its functions
    fields: list[FieldModel]
    oneofs: list[tuple[str, list[str]]]  # (oneof name, member attrs), real oneofs only

    @property
    def known_numbers(self) -> list[int]:
        """Field numbers this message defines (sorted)."""
        return sorted(f.number for f in self.fields)

    @property
    def maps(self) -> list[FieldModel]:
        """Map fields (each gets its own entry decode function)."""
        return [f for f in self.fields if f.label == "map"]

    @property
    def cases(self) -> list[DecodeCase]:
        """Every accepted tag, in field-number order."""
        out: list[DecodeCase] = []
        for f in self.fields:
            if f.label == "packed":
                out.append(DecodeCase(Tag(f.number, WIRE_LEN).value, f, "packed"))
                out.append(DecodeCase(f.element_tag.value, f, "value"))
            else:
                out.append(DecodeCase(f.tag.value, f, "value"))
        return out


@dataclass
class FastCodecModel:
    """Everything ``fastcodec.py.j2`` renders for one line."""

    messages: list[MessageModel]  # sorted by class name
    roots: list[str]  # class names of the roots present in this line


def _index(
    fds: descriptor_pb2.FileDescriptorSet,
) -> dict[str, tuple[descriptor_pb2.DescriptorProto, str, str]]:
    """Full name → (descriptor, package, syntax) of every message, nested ones included."""
    out: dict[str, tuple[descriptor_pb2.DescriptorProto, str, str]] = {}

    def walk(pkg: str, syntax: str, prefix: str, msg: descriptor_pb2.DescriptorProto) -> None:
        full = f"{prefix}.{msg.name}"
        out[full] = (msg, pkg, syntax)
        for nested in msg.nested_type:
            walk(pkg, syntax, full, nested)

    for fd in fds.file:
        for msg in fd.message_type:
            walk(fd.package, fd.syntax or "proto2", fd.package, msg)
    return out


def _scalar_field(
    fd: descriptor_pb2.FieldDescriptorProto, attr: str, label: str, package: str
) -> FieldModel:
    try:
        kind = _KINDS[fd.type]
    except KeyError:
        raise UnsupportedSchemaError(f"field {fd.name!r}: unsupported type {fd.type}") from None
    type_class = class_name(fd.type_name.lstrip("."), package) if fd.type_name else ""
    return FieldModel(attr, fd.name, fd.number, kind, label, type_class)


def _message_model(
    full_name: str,
    index: dict[str, tuple[descriptor_pb2.DescriptorProto, str, str]],
) -> tuple[MessageModel, list[str]]:
    """The model of one message and the full names of the message types it refers to."""
    desc, package, syntax = index[full_name]
    if syntax != "proto3":
        raise UnsupportedSchemaError(f"{full_name}: only proto3 is supported, not {syntax}")
    cls = class_name(full_name, package)
    refs: list[str] = []
    fields: list[FieldModel] = []
    oneof_members: dict[int, list[str]] = {}
    for fd in sorted(desc.field, key=lambda f: f.number):
        attr = pythonize_field_name(fd.name)
        real_oneof = fd.HasField("oneof_index") and not fd.proto3_optional
        if fd.type == FDP.TYPE_GROUP:
            raise UnsupportedSchemaError(f"{full_name}.{fd.name}: groups are not supported")
        entry = index.get(fd.type_name.lstrip(".")) if fd.type == FDP.TYPE_MESSAGE else None
        if entry is not None and entry[0].options.map_entry:
            entry_desc = entry[0]
            key_fd, value_fd = sorted(entry_desc.field, key=lambda f: f.number)
            key = _scalar_field(key_fd, "key", "always", package)
            value = _scalar_field(value_fd, "value", "always", package)
            if value.kind == "message":
                refs.append(value_fd.type_name.lstrip("."))
            fields.append(
                FieldModel(
                    attr,
                    fd.name,
                    fd.number,
                    "message",
                    "map",
                    key=key,
                    value=value,
                    entry_fn=f"{cls}_{attr}",
                )
            )
            continue
        if fd.label == FDP.LABEL_REPEATED:
            kind = _KINDS[fd.type]
            packable = _WIRE_TYPES[kind] != WIRE_LEN
            packed = packable and not (fd.options.HasField("packed") and not fd.options.packed)
            label = "packed" if packed else "repeated"
        elif real_oneof or fd.proto3_optional or fd.type == FDP.TYPE_MESSAGE:
            label = "explicit"
        else:
            label = "implicit"
        model = _scalar_field(fd, attr, label, package)
        model.zero_copy = (full_name, fd.name) in ZERO_COPY
        if model.zero_copy and model.kind != "bytes":
            raise UnsupportedSchemaError(f"{full_name}.{fd.name}: zero-copy needs a bytes field")
        if real_oneof:
            model.oneof = desc.oneof_decl[fd.oneof_index].name
            oneof_members.setdefault(fd.oneof_index, []).append(attr)
        if model.kind == "message":
            refs.append(fd.type_name.lstrip("."))
        fields.append(model)
    oneofs = [(desc.oneof_decl[i].name, members) for i, members in sorted(oneof_members.items())]
    for f in fields:
        if f.oneof is not None:
            members = next(m for name, m in oneofs if name == f.oneof)
            f.oneof_siblings = [m for m in members if m != f.attr]
    return MessageModel(full_name, cls, fields, oneofs), refs


def build_fastcodec_model(fds: descriptor_pb2.FileDescriptorSet) -> FastCodecModel:
    """The fast-codec model of one line: every message reachable from :data:`ROOTS`."""
    index = _index(fds)
    roots = [name for name in ROOTS if name in index]
    seen: dict[str, MessageModel] = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        if name not in index:
            raise UnsupportedSchemaError(f"message {name} is referenced but not defined")
        model, refs = _message_model(name, index)
        seen[name] = model
        pending.extend(r for r in refs if r not in seen)
    messages = sorted(seen.values(), key=lambda m: m.cls)
    classes = [len(m.cls) for m in messages]
    if len(set(m.cls for m in messages)) != len(classes):
        raise UnsupportedSchemaError("two covered messages map to the same class name")
    return FastCodecModel(messages, sorted(seen[name].cls for name in roots))
