"""Compile the compact message definitions of wire/messages.py into message classes and codecs.

For each API key and direction there is one slotted class per struct, holding the union of every
version's fields with their defaults, so handlers read `request.topics` without caring which version
carried it. For each (api key, direction, version) a decoder and an encoder are generated as Python
source on first use and cached: runs of fixed-width fields go through one `struct.Struct`, and
`records` fields stay zero-copy slices of the request frame.

The same machinery compiles Kafka's "data" schemas (RECORDS: the key and value structs kept in
`__consumer_offsets` and `__transaction_state`, the consumer protocol's payloads): `record(name)`.
Persisted, each is an int16 version followed by the struct at that version (`encode_record`,
`decode_record`). KRaft's metadata records (METADATA_RECORDS: RegisterBrokerRecord, TopicRecord,
PartitionRecord, ... of `__cluster_metadata`) compile the same way, keyed by record type, framed
as KRaft frames them (`encode_metadata_record`, `decode_metadata_record`).
"""

import struct

from trioka.wire import types as t
from trioka.wire.messages import MESSAGES, METADATA_RECORDS, RECORDS

PRIMITIVES = {"bool", "int8", "int16", "uint16", "int32", "uint32", "int64", "float64", "string",
              "bytes", "uuid", "records"}


def parse_versions(text: str) -> tuple[int, int]:
    """'3+' -> (3, big), '0-2' -> (0, 2), '5' -> (5, 5), 'none' -> an empty range."""
    if text == "none":
        return (1, 0)
    if text.endswith("+"):
        return (int(text[:-1]), 1 << 15)
    if "-" in text:
        lo, hi = text.split("-")
        return (int(lo), int(hi))
    return (int(text), int(text))


def within(version: int, r: tuple[int, int] | None) -> bool:
    return r is not None and r[0] <= version <= r[1]


class Field:
    __slots__ = ("name", "type", "elem", "struct", "versions", "nullable", "tag", "tagged",
                 "flex_none", "default", "children")

    def __init__(self, line: str):
        cols = line.split()
        self.name = cols[0]
        ftype = cols[1]
        self.versions = (0, 1 << 15)
        self.nullable = None
        self.tag = None
        self.tagged = None
        self.flex_none = False
        default = None
        for opt in cols[2:]:
            if opt[0].isdigit() or opt == "none":
                self.versions = parse_versions(opt)
            elif opt.startswith("null="):
                self.nullable = parse_versions(opt[5:])
            elif opt.startswith("tag="):
                self.tag = int(opt[4:])
            elif opt.startswith("tagged="):
                self.tagged = parse_versions(opt[7:])
            elif opt == "flex=none":
                self.flex_none = True
            elif opt.startswith("default="):
                default = opt[8:]
        if self.tag is not None and self.tagged is None:
            self.tagged = self.versions
        self.children: list[Field] = []
        self.struct = None
        if ftype.startswith("[]"):
            self.type = "array"
            self.elem = ftype[2:]
        else:
            self.type = ftype
            self.elem = None
        self.default = self._default(default)

    def _default(self, text):
        kind = self.elem if self.type == "array" else self.type
        if self.type == "array":
            return None if text == "null" else []
        if kind in ("string", "bytes", "records"):
            if text is None:
                return None if kind == "records" else ("" if kind == "string" else b"")
            return None if text == "null" else text
        if kind == "bool":
            return text == "true"
        if kind in ("float64",):
            return float(text) if text else 0.0
        if kind == "uuid":
            return t.ZERO_UUID
        if kind in t.FIXED:
            return int(text, 0) if text else 0
        return None if text == "null" else "struct"   # a nested struct: a fresh instance

    @property
    def is_struct(self) -> bool:
        return bool(self.children)

    def present(self, v: int) -> bool:
        return within(v, self.versions)

    def is_tagged(self, v: int) -> bool:
        return self.tag is not None and within(v, self.tagged)

    def is_nullable(self, v: int) -> bool:
        return within(v, self.nullable)


def parse_fields(text: str) -> list[Field]:
    root: list[Field] = []
    stack: list[tuple[int, list[Field]]] = [(-1, root)]
    for line in text.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        while stack[-1][0] >= depth:
            stack.pop()
        f = Field(line)
        stack[-1][1].append(f)
        stack.append((depth, f.children))
    return root


# --- message classes ---

class Message:
    """Base of every generated message class: keyword construction and a readable repr."""
    __slots__ = ()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)


def _struct_name(f: Field) -> str:
    if f.type == "array":
        return f.elem
    return f.type


_MISSING = object()   # "argument not given" in generated __init__s


def build_class(name: str, fields: list[Field]) -> type:
    """A slotted class for a struct; nested struct classes become attributes of it."""
    names = [f.name for f in fields]
    nested = {}
    for f in fields:
        if f.is_struct:
            f.struct = nested[_struct_name(f)] = build_class(_struct_name(f), f.children)
    params, body, env = [], [], {}
    for f in fields:
        d = f.default
        if f.is_struct and f.type != "array":
            if d is None:
                params.append(f"{f.name}=None")
                body.append(f"    self.{f.name} = {f.name}")
            else:
                params.append(f"{f.name}=None")
                env[f"_S_{f.name}"] = f.struct
                body.append(f"    self.{f.name} = _S_{f.name}() if {f.name} is None else {f.name}")
        elif f.type == "array":
            if d is None:
                params.append(f"{f.name}=None")
                body.append(f"    self.{f.name} = {f.name}")
            else:
                # A sentinel, not None: None is a null array, distinct from the empty default.
                params.append(f"{f.name}=_MISSING")
                env["_MISSING"] = _MISSING
                body.append(f"    self.{f.name} = [] if {f.name} is _MISSING else {f.name}")
        else:
            env[f"_D_{f.name}"] = d
            params.append(f"{f.name}=_D_{f.name}")
            body.append(f"    self.{f.name} = {f.name}")
    src = f"def __init__(self, {', '.join(['*'] + params) if params else ''}):\n"
    src = src.replace("(self, )", "(self)")
    src += "\n".join(body) if body else "    pass"

    def __init__(self, *args, **kw):
        # The generated __init__ is compiled on the first construction and replaces this one:
        # compiling every class at import would cost the broker's startup some 20 ms.
        exec(compile(src, f"<{name}.__init__>", "exec"), env)
        cls.__init__ = env["__init__"]
        cls.__init__(self, *args, **kw)

    ns = {"__slots__": tuple(names), "__init__": __init__}
    ns.update(nested)
    cls = type(name, (Message,), ns)
    return cls


# --- code generation ---

class _Gen:
    """Generates the source of one (api key, direction, version) decoder and encoder."""

    def __init__(self, version: int, flexible: bool):
        self.v = version
        self.flex = flexible
        self.lines: list[str] = []
        self.env: dict = {"t": t, "DecodeError": t.DecodeError}
        self.n = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    # decoding

    def reader(self, f: Field) -> str:
        """The name of a function (buf, pos) -> (value, pos) reading one value of f."""
        v, flex = self.v, self.flex and not f.flex_none
        null = f.is_nullable(v)
        kind = f.type
        if kind == "array":
            return self.array_reader(f)
        if f.is_struct:
            fn = self.struct_decoder(f.struct, f.children)
            if not null:
                return fn
            name = self.name("nd")
            self.lines += [f"def {name}(buf, pos):",
                           "    if buf[pos] == 0xFF:",
                           "        return None, pos + 1",
                           f"    return {fn}(buf, pos + 1)", ""]
            return name
        return self.primitive_reader(kind, null, flex)

    def primitive_reader(self, kind: str, null: bool, flex: bool) -> str:
        if kind in ("string", "bytes"):
            return "t.read_" + ("compact_" if flex else "") + ("nullable_" if null else "") + kind
        if kind == "records":
            return "t.read_compact_records" if flex else "t.read_records"
        if kind == "uuid":
            return "t.read_uuid"
        s = struct.Struct(">" + t.FIXED[kind])
        name = self.name("rf")
        self.env[name + "_s"] = s
        self.lines += [f"def {name}(buf, pos):",
                       f"    return {name}_s.unpack_from(buf, pos)[0], pos + {s.size}", ""]
        return name

    def array_reader(self, f: Field) -> str:
        flex = self.flex
        count = "t.read_compact_count" if flex else "t.read_count"
        null = f.is_nullable(self.v)
        name = self.name("ra")
        if f.is_struct:
            elem = self.struct_decoder(f.struct, f.children)
        else:
            elem = self.primitive_reader(f.elem, False, flex)
        self.lines += [f"def {name}(buf, pos):",
                       f"    n, pos = {count}(buf, pos)",
                       "    if n < 0:",
                       f"        return {'None' if null else '[]'}, pos",
                       "    out = []",
                       "    for _ in range(n):",
                       f"        x, pos = {elem}(buf, pos)",
                       "        out.append(x)",
                       "    return out, pos", ""]
        return name

    def struct_decoder(self, cls: type, fields: list[Field]) -> str:
        v = self.v
        name = self.name("ds")
        self.env[name + "_cls"] = cls
        body = [f"def {name}(buf, pos):", f"    o = {name}_cls()"]
        run: list[Field] = []

        def flush():
            if not run:
                return
            s = struct.Struct(">" + "".join(t.FIXED[x.type] for x in run))
            self.env[f"{name}_s{len(body)}"] = s
            targets = ", ".join(f"o.{x.name}" for x in run)
            body.append(f"    ({targets},) = {name}_s{len(body)}.unpack_from(buf, pos)")
            body.append(f"    pos += {s.size}")
            run.clear()

        tagged = []
        for f in fields:
            if not f.present(v) and not f.is_tagged(v):
                continue
            if f.is_tagged(v):
                tagged.append(f)
                continue
            if f.type in t.FIXED and not f.is_struct:
                run.append(f)
                continue
            flush()
            body.append(f"    o.{f.name}, pos = {self.reader(f)}(buf, pos)")
        flush()
        if self.flex:
            if tagged:
                body += ["    n, pos = t.read_uvarint(buf, pos)",
                         "    for _ in range(n):",
                         "        tag, pos = t.read_uvarint(buf, pos)",
                         "        size, pos = t.read_uvarint(buf, pos)",
                         "        end = pos + size",
                         "        if end > len(buf):",
                         "            raise DecodeError('tagged field runs past the frame')"]
                for i, f in enumerate(tagged):
                    kw = "if" if i == 0 else "elif"
                    body += [f"        {kw} tag == {f.tag}:",
                             f"            o.{f.name}, _ = {self.reader(f)}(buf[:end], pos)"]
                body.append("        pos = end")
            else:
                body.append("    pos = t.skip_tagged_fields(buf, pos)")
        body += ["    return o, pos", ""]
        self.lines += body
        return name

    # encoding

    def writer(self, f: Field) -> str:
        """The name of a function (out, value) writing one value of f."""
        v, flex = self.v, self.flex and not f.flex_none
        null = f.is_nullable(v)
        if f.type == "array":
            return self.array_writer(f)
        if f.is_struct:
            fn = self.struct_encoder(f.children)
            if not null:
                return fn
            name = self.name("nw")
            self.lines += [f"def {name}(out, o):",
                           "    if o is None:",
                           "        out.append(b'\\xff')",
                           "        return",
                           "    out.append(b'\\x01')",
                           f"    {fn}(out, o)", ""]
            return name
        return self.primitive_writer(f.type, null, flex)

    def primitive_writer(self, kind: str, null: bool, flex: bool) -> str:
        if kind in ("string", "bytes"):
            return "t.write_" + ("compact_" if flex else "") + ("nullable_" if null else "") + kind
        if kind == "records":
            return "t.write_compact_records" if flex else "t.write_records"
        if kind == "uuid":
            return "t.write_uuid"
        name = self.name("wf")
        self.env[name + "_s"] = struct.Struct(">" + t.FIXED[kind])
        self.lines += [f"def {name}(out, x):", f"    out.append({name}_s.pack(x))", ""]
        return name

    def array_writer(self, f: Field) -> str:
        flex = self.flex
        null = f.is_nullable(self.v)
        name = self.name("wa")
        if f.is_struct:
            elem = self.struct_encoder(f.children)
        else:
            elem = self.primitive_writer(f.elem, False, flex)
        count = "t.uvarint(len(a) + 1)" if flex else "t.INT32.pack(len(a))"
        none = ("b'\\x00'" if flex else "b'\\xff\\xff\\xff\\xff'") if null else (
            "b'\\x01'" if flex else "b'\\x00\\x00\\x00\\x00'")
        self.lines += [f"def {name}(out, a):",
                       "    if a is None:",
                       f"        out.append({none})",
                       "        return",
                       f"    out.append({count})",
                       "    for x in a:",
                       f"        {elem}(out, x)", ""]
        return name

    def struct_encoder(self, fields: list[Field]) -> str:
        v = self.v
        name = self.name("es")
        body = [f"def {name}(out, o):"]
        run: list[Field] = []

        def flush():
            if not run:
                return
            s = struct.Struct(">" + "".join(t.FIXED[x.type] for x in run))
            key = f"{name}_s{len(body)}"
            self.env[key] = s
            body.append(f"    out.append({key}.pack({', '.join('o.' + x.name for x in run)}))")
            run.clear()

        tagged = []
        for f in fields:
            if f.is_tagged(v):
                tagged.append(f)
                continue
            if not f.present(v):
                continue
            if f.type in t.FIXED and not f.is_struct:
                run.append(f)
                continue
            flush()
            body.append(f"    {self.writer(f)}(out, o.{f.name})")
        flush()
        if self.flex:
            if tagged:
                body.append("    tags = []")
                for f in tagged:
                    dflt = f"{name}_d{f.tag}"
                    self.env[dflt] = f.struct() if f.default == "struct" else f.default
                    cond = (f"o.{f.name} is not None and o.{f.name} != {dflt}"
                            if f.is_struct and f.type != "array" else f"o.{f.name} != {dflt}")
                    if f.type == "array" and f.default == []:
                        cond = f"o.{f.name}"
                    body += [f"    if {cond}:",
                             "        part = []",
                             f"        {self.writer(f)}(part, o.{f.name})",
                             "        data = b''.join(part)",
                             f"        tags.append(t.uvarint({f.tag}) + t.uvarint(len(data)) + data)"]
                body += ["    out.append(t.uvarint(len(tags)))", "    out.extend(tags)"]
            else:
                body.append("    out.append(b'\\x00')")
        if len(body) == 1:
            body.append("    pass")
        body.append("")
        self.lines += body
        return name


class MessageType:
    """One direction (request or response) of one API: its class and per-version codecs."""

    def __init__(self, api_key: int, kind: str, name: str, valid: str, flexible: str, text: str):
        self.api_key = api_key
        self.kind = kind
        self.valid = parse_versions(valid)
        self.flexible = parse_versions(flexible)
        self.fields = parse_fields(text)
        self.cls = build_class(name + kind.capitalize(), self.fields)
        self._decoders: dict[int, object] = {}
        self._encoders: dict[int, object] = {}

    def is_flexible(self, version: int) -> bool:
        return within(version, self.flexible)

    def _compile(self, version: int):
        g = _Gen(version, self.is_flexible(version))
        dec = g.struct_decoder(self.cls, self.fields)
        enc = g.struct_encoder(self.fields)
        src = "\n".join(g.lines)
        label = f"<{self.cls.__name__} v{version}>"
        exec(compile(src, label, "exec"), g.env)
        self._decoders[version] = g.env[dec]
        self._encoders[version] = g.env[enc]

    def decode(self, buf, pos: int, version: int):
        """(message, end position); raises DecodeError on bytes that do not parse."""
        fn = self._decoders.get(version)
        if fn is None:
            self._compile(version)
            fn = self._decoders[version]
        try:
            return fn(buf, pos)
        except t.DecodeError:
            raise
        except (IndexError, struct.error, UnicodeDecodeError, ValueError) as e:
            raise t.DecodeError(f"{self.cls.__name__} v{version}: {e}") from None

    def encode_into(self, out: list, message, version: int) -> None:
        fn = self._encoders.get(version)
        if fn is None:
            self._compile(version)
            fn = self._encoders[version]
        fn(out, message)

    def encode(self, message, version: int) -> bytes:
        out: list = []
        self.encode_into(out, message, version)
        return b"".join(out)


class ApiSchema:
    """An API key's request and response message types."""

    def __init__(self, key: int):
        name, valid, flexible, unstable, req, resp = MESSAGES[key]
        self.key = key
        self.name = name
        self.valid = parse_versions(valid)
        self.unstable_latest = unstable
        self.request = MessageType(key, "request", name, valid, flexible, req)
        self.response = MessageType(key, "response", name, valid, flexible, resp)

    def is_flexible(self, version: int) -> bool:
        return self.request.is_flexible(version)


_APIS: dict[int, ApiSchema] = {}


def api(key: int) -> ApiSchema:
    """The compiled definition of an API key (built on first use). KeyError if unknown."""
    a = _APIS.get(key)
    if a is None:
        a = _APIS[key] = ApiSchema(int(key))
    return a


def known(key: int) -> bool:
    return key in MESSAGES


_RECORDS: dict[str, MessageType] = {}
_VERSION = struct.Struct(">h")


def record(name: str) -> MessageType:
    """The compiled definition of a data schema of RECORDS, e.g. "OffsetCommitValue" (built on
    first use; its class is `record(name).cls`). KeyError if unknown."""
    r = _RECORDS.get(name)
    if r is None:
        valid, flexible, text = RECORDS[name]
        r = _RECORDS[name] = MessageType(-1, "", name, valid, flexible, text)
    return r


def encode_record(name: str, message, version: int) -> bytes:
    """The persisted form: int16 version, then the struct encoded at that version."""
    return _VERSION.pack(version) + record(name).encode(message, version)


def decode_record(name: str, data) -> tuple[int, object]:
    """(version, message) of a persisted struct; DecodeError if it does not parse or the version
    is not one the schema knows."""
    try:
        (version,) = _VERSION.unpack_from(data, 0)
    except struct.error:
        raise t.DecodeError(f"{name}: shorter than its int16 version") from None
    r = record(name)
    if not within(version, r.valid):
        raise t.DecodeError(f"{name}: unknown version {version}")
    message, _ = r.decode(memoryview(data), 2, version)
    return version, message


# --- KRaft metadata records (`__cluster_metadata`) ---

# Kafka's AbstractApiMessageSerde: a record value is the frame version, the record type and its
# version as unsigned varints, then the record (flexible in every version so far).
METADATA_FRAME_VERSION = 1
_METADATA: dict[int, MessageType] = {}


def metadata_record(record_type: int) -> MessageType:
    """The compiled definition of a metadata record type (3 is PartitionRecord; its class is
    `metadata_record(3).cls`). KeyError if unknown."""
    r = _METADATA.get(record_type)
    if r is None:
        name, valid, flexible, text = METADATA_RECORDS[record_type]
        r = _METADATA[record_type] = MessageType(record_type, "", name, valid, flexible, text)
    return r


def metadata_record_type(name: str) -> int:
    """The record type of a metadata record's name ("PartitionRecord" -> 3)."""
    for record_type, (record_name, *_rest) in METADATA_RECORDS.items():
        if record_name == name:
            return record_type
    raise KeyError(name)


def encode_metadata_record(record_type: int, message, version: int) -> bytes:
    """A `__cluster_metadata` record value: framed as KRaft frames it."""
    return (t.uvarint(METADATA_FRAME_VERSION) + t.uvarint(record_type) + t.uvarint(version)
            + metadata_record(record_type).encode(message, version))


def decode_metadata_record(data) -> tuple[int, int, object]:
    """(record type, version, message) of a `__cluster_metadata` record value; DecodeError for
    an unknown frame version, record type or version, or a body that does not parse."""
    view = memoryview(data)
    try:
        frame, pos = t.read_uvarint(view, 0)
        record_type, pos = t.read_uvarint(view, pos)
        version, pos = t.read_uvarint(view, pos)
    except IndexError:
        raise t.DecodeError("metadata record: truncated header") from None
    if frame != METADATA_FRAME_VERSION:
        raise t.DecodeError(f"metadata record: unknown frame version {frame}")
    if record_type not in METADATA_RECORDS:
        raise t.DecodeError(f"metadata record: unknown record type {record_type}")
    r = metadata_record(record_type)
    name = METADATA_RECORDS[record_type][0]
    if not within(version, r.valid):
        raise t.DecodeError(f"{name}: unknown version {version}")
    message, end = r.decode(view, pos, version)
    if end != len(view):
        raise t.DecodeError(f"{name}: {len(view) - end} bytes after the record")
    return record_type, version, message
