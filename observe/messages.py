"""Kafka messages as JSON: how the request log (request_log.py) shows a request and its response.

A message becomes a JSON object whose keys are the schema's field names (Kafka's, in snake_case),
holding the fields present in the message's version and no others, nested structs as objects and
arrays as lists. Values are shown as follows:

- numbers, booleans and strings as they are; null where the version allows it and the value is;
- `bytes` fields (group protocol metadata, assignments) as standard base64, except secrets:
  SASL tokens (`auth_bytes`: a PLAIN token holds the password) and SCRAM salts and salted
  passwords (AlterUserScramCredentials) show as `"REDACTED"`, so that the log (in memory, over
  the admin endpoint, in its file) never holds a credential;
- `uuid` fields (topic ids) in Kafka's own text form, `Uuid.toString()`: URL-safe base64 of the
  16 bytes without padding, as kafka-topics.sh prints them (`AAAAAAAAAAAAAAAAAAAAAA` is zero);
- `records` fields as a list with one object per record batch, read from the batch's 61-byte v2
  header only (log/batch.py): `base_offset`, `last_offset_delta`, `records_count`,
  `compression` (Kafka's codec name: none, gzip, snappy, lz4, zstd), `timestamp_type`
  (CreateTime or LogAppendTime), `base_timestamp`, `max_timestamp`, `producer_id`,
  `producer_epoch`, `base_sequence`, `partition_leader_epoch`, `is_transactional`, `is_control`
  and `size_bytes` (the whole batch, header included). A Produce request's batches show what the
  producer sent (base offset 0, leader epoch -1). The records themselves are never shown unless
  asked for (`trioka.request.log.payloads`): then each batch also has `records`, each with its
  `offset`, `timestamp`, `key`, `value` (base64) and `headers` ([{"key": ..., "value": ...}]).
  Bytes that do not begin a v2 batch (a legacy message set, a truncated batch), and the batches
  after the first MAX_BATCHES of one field, are not read: a last item `{"unsummarised_bytes": N}`
  counts them. Null records are null, empty ones an empty list.

`error_codes` of a message counts every non-zero error code in it (every field named
`error_code`, or ending so: `partition_error_code`, ...), at any depth, by Kafka's error name:
`{"NOT_LEADER_OR_FOLLOWER": 3}` for a Produce response with three partitions refused; `{}` when
every code is NONE. Counts, not a list, because which and how many partitions failed is the
question a test asks.

Capture is cheap and rendering lazy: the log keeps the messages and renders them only when
someone reads the log (a message with records fields frozen into bytes, which the garbage
collector never walks: _freezers). Record batches are the exception, as they do not outlive the
request (a Produce request's records are a view into the connection's reused read buffer, which
the handler patches; a Fetch response's are file regions sent with sendfile and then closed):
each `records` field is summarised from its batch headers (a request's when it arrives, a
response's once encoded), in time proportional to the number of batches, never to their size,
and the summary takes the field's place in the message once the message has served.
"""

import base64
import marshal
import os
import uuid

from trioka.log.batch import (CONTROL_FLAG_MASK, COMPRESSION_CODEC_MASK, CURRENT_MAGIC, HEADER,
                              HEADER_SIZE, LOG_OVERHEAD, MIN_BATCH_LENGTH, TIMESTAMP_TYPE_MASK,
                              TRANSACTIONAL_FLAG_MASK)
from trioka.log.checkpoint import uuid_to_base64
from trioka.log.compression import CompressionType
from trioka.log.files import FileRegion
from trioka.wire.errors import ErrorCode, KafkaError

# The batches of one `records` field whose headers are read; the rest are counted in bytes. A
# Produce request holds one batch a partition; a Fetch response may hold many, and this keeps
# capture bounded (for a file region, each header is one 61-byte pread).
MAX_BATCHES = 64

_CODECS = {c.value: c.name.lower() for c in CompressionType}
_new = object.__new__


class RecordsSummary:
    """The batch headers of one `records` field, read when the request was captured: `headers`
    are HEADER's 13 values per batch, `payloads` each batch's bytes (only when asked for),
    `unsummarised` the bytes not read as batches."""
    __slots__ = ("headers", "payloads", "unsummarised")

    def __init__(self, headers: list, payloads: list | None, unsummarised: int):
        self.headers = headers
        self.payloads = payloads
        self.unsummarised = unsummarised

    def to_json(self) -> list:
        out = []
        for i, h in enumerate(self.headers):
            batch = batch_to_json(h)
            if self.payloads is not None:
                batch["records"] = records_to_json(self.payloads[i])
            out.append(batch)
        if self.unsummarised:
            out.append({"unsummarised_bytes": self.unsummarised})
        return out


def summarise(records, payloads: bool = False) -> RecordsSummary | None:
    """The summary of a `records` value: None, bytes, a memoryview, a log FileRegion, or a list
    of those (the stored batches a Fetch returns)."""
    if records is None:
        return None
    if not payloads and type(records) is not list and type(records) is not FileRegion:
        # The common case, a Produce request's partition: one buffer holding one batch.
        size = len(records)
        if size >= HEADER_SIZE:
            h = HEADER.unpack_from(records, 0)
            if h[1] + LOG_OVERHEAD == size and h[3] == CURRENT_MAGIC and \
                    h[1] >= MIN_BATCH_LENGTH:
                summary = _new(RecordsSummary)    # RecordsSummary([h], None, 0), one call less
                summary.headers, summary.payloads, summary.unsummarised = [h], None, 0
                return summary
    headers: list = []
    copies = [] if payloads else None
    unsummarised = 0
    for chunk in (records if type(records) is list else (records,)):
        if type(chunk) is FileRegion:
            unsummarised += _walk_region(chunk, headers, copies)
        else:
            unsummarised += _walk_buffer(chunk, headers, copies)
    return RecordsSummary(headers, copies, unsummarised)


def _walk_buffer(buf, headers: list, copies: list | None) -> int:
    """Append the headers of the v2 batches laid end to end in `buf`; the bytes left unread."""
    size = len(buf)
    pos = 0
    while size - pos >= HEADER_SIZE and len(headers) < MAX_BATCHES:
        h = HEADER.unpack_from(buf, pos)
        end = pos + LOG_OVERHEAD + h[1]
        if h[3] != CURRENT_MAGIC or h[1] < MIN_BATCH_LENGTH or end > size:
            break
        headers.append(h)
        if copies is not None:
            copies.append(bytes(buf[pos:end]))
        pos = end
    return size - pos


def _walk_region(region: FileRegion, headers: list, copies: list | None) -> int:
    """As _walk_buffer, for stored batches about to be sent from their segment file: one
    61-byte pread per header (the pages are those sendfile is about to send)."""
    fd, start, size = region.fd, region.offset, region.length
    pos = 0
    try:
        while size - pos >= HEADER_SIZE and len(headers) < MAX_BATCHES:
            raw = os.pread(fd, HEADER_SIZE, start + pos)
            if len(raw) < HEADER_SIZE:
                break
            h = HEADER.unpack(raw)
            end = pos + LOG_OVERHEAD + h[1]
            if h[3] != CURRENT_MAGIC or h[1] < MIN_BATCH_LENGTH or end > size:
                break
            headers.append(h)
            if copies is not None:
                copies.append(os.pread(fd, end - pos, start + pos))
            pos = end
    except OSError:
        pass
    return size - pos


def batch_to_json(h: tuple) -> dict:
    """One batch header (HEADER's values) under Kafka's field names."""
    (base_offset, batch_length, partition_leader_epoch, _magic, _crc, attributes,
     last_offset_delta, base_timestamp, max_timestamp, producer_id, producer_epoch,
     base_sequence, records_count) = h
    codec = attributes & COMPRESSION_CODEC_MASK
    return {"base_offset": base_offset, "last_offset_delta": last_offset_delta,
            "records_count": records_count, "compression": _CODECS.get(codec, str(codec)),
            "timestamp_type": "LogAppendTime" if attributes & TIMESTAMP_TYPE_MASK
            else "CreateTime",
            "base_timestamp": base_timestamp, "max_timestamp": max_timestamp,
            "producer_id": producer_id, "producer_epoch": producer_epoch,
            "base_sequence": base_sequence, "partition_leader_epoch": partition_leader_epoch,
            "is_transactional": bool(attributes & TRANSACTIONAL_FLAG_MASK),
            "is_control": bool(attributes & CONTROL_FLAG_MASK),
            "size_bytes": LOG_OVERHEAD + batch_length}


def records_to_json(batch: bytes) -> list | dict:
    """The records of one batch (its bytes), decoded: only with trioka.request.log.payloads."""
    from trioka.log.records import iter_records
    out = []
    try:
        for r in iter_records(batch, verify_crc=False):
            out.append({"offset": r.offset, "timestamp": r.timestamp, "key": _b64(r.key),
                        "value": _b64(r.value),
                        "headers": [{"key": k, "value": _b64(v)} for k, v in r.headers]})
    except KafkaError as e:
        return {"error": str(e)}
    return out


def _b64(value) -> str | None:
    return None if value is None else base64.b64encode(value).decode("ascii")


# -------------------------------------------------------------------- capture: records fields

_FIELDS: dict = {}


class RecordsFields:
    """Where the `records` fields of a message type are, as three functions generated for it
    (see _walkers), visiting them in the same order: `collect(message, out, payloads)` appends
    their summaries to `out`, `put(message, iterator)` puts summaries in their place,
    `in_place(message, payloads)` replaces each by its summary. And how such a message, once
    summarised, is kept out of the garbage collector's sight (see _freezers): `freeze(message)`
    gives it as bytes, `thaw(frozen)` gives it back."""
    __slots__ = ("collect", "put", "in_place", "freeze", "thaw")

    def __init__(self, collect, put, in_place, freeze, thaw):
        self.collect = collect
        self.put = put
        self.in_place = in_place
        self.freeze = freeze
        self.thaw = thaw


def records_fields(message_type) -> RecordsFields | None:
    """The RecordsFields of a MessageType (wire/schema.py); None when it has no `records`
    field (most of them)."""
    found = _FIELDS.get(message_type, False)
    if found is False:
        walkers = _walkers(message_type.cls, message_type.fields)
        found = _FIELDS[message_type] = None if walkers is None else \
            RecordsFields(*walkers, *_freezers(message_type.cls, message_type.fields))
    return found


def records_summaries(message, message_type, payloads: bool = False) -> list | None:
    """The RecordsSummary of each `records` field of `message`, in the order of its fields;
    None when its type has no such field. Taken when a request arrives, before its handler
    patches the batches (base offset, leader epoch) and before the read buffer is reused."""
    fields = records_fields(message_type)
    if fields is None:
        return None
    out: list = []
    fields.collect(message, out, payloads)
    return out


def put_summaries(message, message_type, summaries: list) -> None:
    """Put `summaries` (records_summaries' list) in place of the message's `records` fields,
    once the message has served its purpose (the request handled): the log keeps the message
    without the buffer its records were a view of."""
    records_fields(message_type).put(message, iter(summaries))


def summarise_in_place(message, message_type, payloads: bool = False) -> None:
    """Replace each `records` field of a message by its summary: for a response once encoded
    (the encoded frame holds the batches, or the file regions, it sends)."""
    fields = records_fields(message_type)
    if fields is not None and message is not None:
        fields.in_place(message, payloads)


def _walkers(cls, fields):
    """(collect, put, in_place) for a message type with `records` somewhere in it, or None:
    functions generated as source, as the codecs are (wire/schema.py), each one function with
    the loops over the arrays on the way nested in it. All three visit the records fields in
    the same order: collect(o, out, payloads) appends their summaries, put(o, iterator) puts
    them back in place, in_place(o, payloads) replaces each by its summary."""
    if not _has_records(fields):
        return None
    heads = {"collect": "def collect(o, out, payloads):", "put": "def put(o, it):",
             "in_place": "def in_place(o, payloads):"}
    source = []
    for mode, head in heads.items():
        source.append(head)
        _emit(fields, "o", 1, mode, source)
    env = {"summarise": summarise}
    exec(compile("\n".join(source), f"<records of {cls.__name__}>", "exec"), env)
    return env["collect"], env["put"], env["in_place"]


def _has_records(fields) -> bool:
    return any(f.type == "records" or (f.is_struct and _has_records(f.children))
               for f in fields)


def _emit(fields, var: str, depth: int, mode: str, lines: list) -> None:
    """The statements visiting the records fields of struct `var`, at `depth` levels of
    indentation (variables v<depth>, x<depth> hold the arrays and their elements)."""
    pad = "    " * depth
    for f in fields:
        name = f.name
        if f.type == "records":
            lines.append(pad + {
                "collect": f"out.append(summarise({var}.{name}, payloads))",
                "put": f"{var}.{name} = next(it, None)",
                "in_place": f"{var}.{name} = summarise({var}.{name}, payloads)"}[mode])
        elif f.is_struct and _has_records(f.children):
            v, x = f"v{depth}", f"x{depth}"
            lines += [f"{pad}{v} = {var}.{name}", f"{pad}if {v} is not None:"]
            if f.type == "array":
                lines.append(f"{pad}    for {x} in {v}:")
                _emit(f.children, x, depth + 2, mode, lines)
            else:
                _emit(f.children, v, depth + 1, mode, lines)


# --------------------------------------------------- keeping: out of the garbage collector

def _freezers(cls, fields):
    """(freeze, thaw) for a message type: functions generated as source, one pair per struct.

    Why: CPython's cyclic collector walks every object that can hold references, and a message
    is a tree of them (a Fetch response of 1,000 partitions is some 3,000). The request log
    keeps thousands of messages for a while: each one would be walked by every collection of
    the generations it passes through, a middle-generation pass of tens of milliseconds with
    the event loop waiting. (Nested tuples of numbers and strings do not escape it: CPython
    untracks such a tuple only once everything in it is untracked, one level per collection.)
    So a message is kept as one bytes object, which the collector never walks: `freeze(o)`
    gives each struct's fields in order as a tuple, arrays as tuples, a RecordsSummary as
    (headers, payloads, unsummarised bytes), a topic id (uuid.UUID) as its number, enum
    members as plain numbers, all in marshal's format (C speed, and these are the values it
    takes); `thaw(b)` builds the objects again, for rendering."""
    lines: list = []
    env = {"_new": _new, "RecordsSummary": RecordsSummary, "_freeze_records": _freeze_records,
           "_UUID": uuid.UUID}
    names = iter(range(1 << 30))

    def struct(cls, fields) -> tuple[str, str]:
        n = next(names)
        env[f"C{n}"] = cls
        parts, after = [], []
        for i, f in enumerate(fields):
            get = f"o.{f.name}"
            if f.type == "records":
                parts.append(f"_freeze_records({get})")
                after.append(f"    v = t[{i}]\n    o.{f.name} = None if v is None else "
                             f"RecordsSummary(list(v[0]), None if v[1] is None else "
                             f"list(v[1]), v[2])")
            elif f.is_struct:
                fz, th = struct(f.struct, f.children)
                if f.type == "array":
                    parts.append(f"None if (v := {get}) is None else tuple([{fz}(x) for x in v])")
                    after.append(f"    v = t[{i}]\n    o.{f.name} = None if v is None else "
                                 f"[{th}(x) for x in v]")
                else:
                    parts.append(f"None if (v := {get}) is None else {fz}(v)")
                    after.append(f"    v = t[{i}]\n    o.{f.name} = None if v is None else "
                                 f"{th}(v)")
            elif f.type == "uuid":
                parts.append(f"None if (v := {get}) is None else v.int")
                after.append(f"    v = t[{i}]\n    o.{f.name} = None if v is None else "
                             f"_UUID(int=v)")
            elif f.type == "array":
                parts.append(f"None if (v := {get}) is None else tuple(v)")
                after.append(f"    v = t[{i}]\n    o.{f.name} = None if v is None else list(v)")
            elif f.type in ("int8", "int16"):
                # Handlers answer with enum members (ErrorCode): objects the collector walks.
                parts.append(f"int({get})")
                after.append(f"    o.{f.name} = t[{i}]")
            else:
                parts.append(get)
                after.append(f"    o.{f.name} = t[{i}]")
        lines.append(f"def freeze{n}(o):\n    return ({', '.join(parts)},)")
        lines.append(f"def thaw{n}(t):\n    o = _new(C{n})\n" + "\n".join(after)
                     + "\n    return o")
        return f"freeze{n}", f"thaw{n}"

    top = struct(cls, fields)
    exec(compile("\n".join(lines), f"<freezing {cls.__name__}>", "exec"), env)
    freeze_top, thaw_top = env[top[0]], env[top[1]]
    dumps, loads = marshal.dumps, marshal.loads
    return (lambda message: dumps(freeze_top(message))), (lambda frozen: thaw_top(loads(frozen)))


def _freeze_records(value):
    """A records field of a summarised message, frozen: a RecordsSummary as a tuple."""
    if value is None:
        return None
    if type(value) is not RecordsSummary:
        value = summarise(value)
    payloads = value.payloads
    return (tuple(value.headers), None if payloads is None else tuple(payloads),
            value.unsummarised)


# ------------------------------------------------------------------------- rendering: to JSON

_PRESENT: dict = {}


def _present(fields: list, version: int) -> list:
    """The fields a version carries (tagged ones included), cached per field list."""
    key = (id(fields), version)
    found = _PRESENT.get(key)
    if found is None:
        found = _PRESENT[key] = [f for f in fields if f.present(version) or f.is_tagged(version)]
    return found


def to_json(message, fields: list, version: int) -> dict | None:
    """The JSON object of a message (or struct) at `version`; see the module's docstring."""
    if message is None:
        return None
    out = {}
    for f in _present(fields, version):
        out[f.name] = _value(f, getattr(message, f.name), version)
    return out


# The bytes fields that hold secrets (see the module's docstring): never shown.
SECRET_FIELDS = frozenset({"auth_bytes", "salt", "salted_password"})


def _value(f, value, version: int):
    if value is None:
        return None
    if f.name in SECRET_FIELDS:
        return "REDACTED"
    if f.type == "array":
        if f.is_struct:
            return [to_json(x, f.children, version) for x in value]
        return [_primitive(f.elem, x) for x in value]
    if f.is_struct:
        return to_json(value, f.children, version)
    return _primitive(f.type, value)


def _primitive(kind: str, value):
    if kind == "bytes":
        return _b64(value)
    if kind == "uuid":
        return uuid_to_base64(value)
    if kind == "records":
        summary = value if type(value) is RecordsSummary else summarise(value)
        return summary.to_json()
    return value


def message_json(message, message_type, version: int) -> dict | None:
    """to_json of a whole request or response (a MessageType of wire/schema.py)."""
    return to_json(message, message_type.fields, version)


def error_codes(message, message_type, version: int) -> dict[str, int]:
    """Every non-zero error code in a message, counted by Kafka's error name (sorted)."""
    counts: dict[str, int] = {}
    if message is not None:
        _collect_errors(message, message_type.fields, version, counts)
    return dict(sorted(counts.items()))


def _collect_errors(obj, fields: list, version: int, counts: dict) -> None:
    for f in _present(fields, version):
        value = getattr(obj, f.name)
        if value is None:
            continue
        if f.is_struct:
            for x in (value if f.type == "array" else (value,)):
                _collect_errors(x, f.children, version, counts)
        elif value and f.type == "int16" and f.name.endswith("error_code"):
            name = error_name(value)
            counts[name] = counts.get(name, 0) + 1


def error_name(code: int) -> str:
    """Kafka's name for an error code; the number itself for one Kafka does not define."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)

