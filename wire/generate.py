"""Write wire/messages.py: trioka's own compact definitions of Kafka's request and response bodies.

Kafka publishes each message's layout as a JSON schema. This script reads those schemas (the path of
the folder is its argument) and keeps only the protocol facts: field names in snake_case, types,
version ranges, nullable and tagged versions, tags and defaults. Everything else (comments, prose,
entity types, map keys) is dropped. Versions that Kafka 4.x added after the schemas we read are
described in NEWER below, from the KIPs that introduced them.

    python -m trioka.wire.generate ../shared/kafka-protocol/messages > wire/messages.py

Kafka also publishes "data" schemas: the key and value structs of the records its coordinators keep
in `__consumer_offsets` and `__transaction_state`, and the consumer protocol's subscription and
assignment payloads. Those become RECORDS. They are read from the folders given after the first one;
without any, from every folder of `coordinator-records/` next to the messages folder:

    python -m trioka.wire.generate MESSAGES [RECORDS_FOLDER ...] > wire/messages.py

The folders used for the committed file:

    python -m trioka.wire.generate ../shared/kafka-protocol/messages \
        ../shared/kafka-protocol/coordinator-records/group-coordinator \
        ../shared/kafka-protocol/coordinator-records/transaction-coordinator \
        ../shared/kafka-protocol/coordinator-records/storage > wire/messages.py

KRaft's metadata records (the `__cluster_metadata` log: RegisterBrokerRecord, TopicRecord,
PartitionRecord, ...) become METADATA_RECORDS, keyed by their record type (the schema's apiKey),
read from `metadata-records/` next to the messages folder. Unlike coordinator records, they are
framed by KRaft's serde (frame version, type and version as unsigned varints: wire/schema.py).

The notation of the output, one field a line, children indented by two spaces:

    name  type  [versions]  [null=versions]  [tag=N]  [default=value]

`versions` is "0+" when left out; a field with `tag=N` is a tagged field in its versions.
"""

import json
import os
import re
import sys

# What a broker or a KRaft controller can be asked: the client APIs and the nodes' own (KRaft
# quorum, BrokerRegistration, BrokerHeartbeat, AlterPartition, ...). ZooKeeper's inter-broker
# calls (LeaderAndIsr, StopReplica, UpdateMetadata, ControlledShutdown) are left out. Envelope is
# kept: a KRaft broker forwards a client's admin request to the controller inside one.
LISTENERS = {"broker", "zkBroker", "controller"}
SKIP = {4, 5, 6, 7}

# Kafka 4.x versions newer than the schemas in the reference folder: (api key, kind) -> edits.
NEWER = {
    # KIP-890 part 2: Produce v12 is v11 with transactions v2 allowed; KIP-516: v13 names topics
    # by id instead of by name, in the request and in the response.
    (0, "request"): {"valid": "0-13", "replace": [
        ("  name  string", ["  name  string  0-12", "  topic_id  uuid  13+"])]},
    (0, "response"): {"valid": "0-13", "replace": [
        ("  name  string", ["  name  string  0-12", "  topic_id  uuid  13+"])]},
    # KIP-890 part 2 (Kafka 4.0): EndTxn v5 became stable; TxnOffsetCommit v5 is v4 with the
    # group's offsets partition added to the transaction implicitly.
    (26, "request"): {"stable": True},
    (28, "request"): {"valid": "0-5"},
    (28, "response"): {"valid": "0-5"},
    # KIP-1102: Metadata v13 adds a top-level error code to the response.
    (3, "request"): {"valid": "0-13"},
    (3, "response"): {"valid": "0-13", "append": ["error_code  int16  13+"]},
    # KIP-1166 (Kafka 4.1): Fetch v18, a follower tells the leader the high watermark it knows.
    (1, "request"): {"valid": "0-18", "replace": [
        ("    replica_directory_id  uuid  17+  tag=0",
         ["    replica_directory_id  uuid  17+  tag=0",
          "    high_watermark  int64  18+  tag=1  default=9223372036854775807"])]},
    (1, "response"): {"valid": "0-18"},
    # KIP-1043 (Kafka 4.0): DescribeGroups v6, an error message per group (GROUP_ID_NOT_FOUND).
    (15, "request"): {"valid": "0-6"},
    (15, "response"): {"valid": "0-6", "replace": [
        ("  error_code  int16",
         ["  error_code  int16", "  error_message  string  6+  null=6+  default=null"])]},
    # KIP-860 (Kafka 4.1): AlterPartitionReassignments v1 may refuse a replication factor change.
    (45, "request"): {"valid": "0-1", "replace": [
        ("timeout_ms  int32  default=60000",
         ["timeout_ms  int32  default=60000",
          "allow_replication_factor_change  bool  1+  default=true"])]},
    (45, "response"): {"valid": "0-1", "replace": [
        ("throttle_time_ms  int32",
         ["throttle_time_ms  int32", "allow_replication_factor_change  bool  1+  default=true"])]},
    # KIP-1073 (Kafka 4.0): DescribeCluster v2 can list the fenced brokers too.
    (60, "request"): {"valid": "0-2",
                      "append": ["include_fenced_brokers  bool  2+  default=false"]},
    (60, "response"): {"valid": "0-2", "replace": [
        ("  rack  string  null=0+  default=null",
         ["  rack  string  null=0+  default=null", "  is_fenced  bool  2+  default=false"])]},
    # KIP-1152 (Kafka 4.1): ListTransactions v2 filters by a transactional id pattern.
    (66, "request"): {"valid": "0-2",
                      "append": ["transactional_id_pattern  string  2+  null=2+  default=null"]},
    (66, "response"): {"valid": "0-2"},
    # KIP-1099 (Kafka 4.0): ConsumerGroupDescribe v1 gives each member's type.
    (69, "request"): {"valid": "0-1"},
    (69, "response"): {"valid": "0-1", "replace": [
        ("  authorized_operations  int32  default=-2147483648",
         ["    member_type  int8  1+  default=-1",
          "  authorized_operations  int32  default=-2147483648"])]},
}


def snake(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


def load(path: str) -> dict:
    text = open(path, encoding="utf-8").read()
    # Comments are whole lines or trail after a field; `//` never starts a line inside a string.
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
    return json.loads(text)


def default_text(field: dict) -> str | None:
    d = field.get("default")
    if d is None:
        return None
    d = str(d)
    return d.replace(" ", "")


def field_lines(fields: list, common: dict, depth: int) -> list[str]:
    out = []
    for f in fields:
        name = snake(f["name"])
        ftype = f["type"]
        children = f.get("fields")
        base = ftype[2:] if ftype.startswith("[]") else ftype
        if children is None and base in common:
            children = common[base]
        parts = [name, ftype]
        # A tagged field given only its taggedVersions exists in exactly those versions.
        versions = f.get("versions") or f.get("taggedVersions") or "0+"
        if versions != "0+":
            parts.append(versions)
        if "nullableVersions" in f:
            parts.append("null=" + f["nullableVersions"])
        if "tag" in f:
            parts.append(f"tag={f['tag']}")
            tv = f.get("taggedVersions", versions)
            if tv != versions:
                parts.append("tagged=" + tv)
        if f.get("flexibleVersions") == "none":
            parts.append("flex=none")
        d = default_text(f)
        if d is not None:
            parts.append("default=" + d)
        out.append("  " * depth + "  ".join(parts))
        if children:
            out.extend(field_lines(children, common, depth + 1))
    return out


def apply_newer(key: tuple, lines: list[str]) -> list[str]:
    edit = NEWER.get(key, {})
    for old, new in edit.get("replace", []):
        i = lines.index(old)
        lines[i:i + 1] = new
    lines.extend(edit.get("append", []))
    return lines


# Data schemas of the messages folder worth compiling: the payloads a group coordinator may read.
DATA_IN_MESSAGES = ("ConsumerProtocolSubscription", "ConsumerProtocolAssignment")


def data_schemas(folders: list[str], names=None) -> dict:
    """name -> (valid versions, flexible versions, field lines) of the "data" schemas found."""
    out = {}
    for folder in folders:
        for fn in sorted(os.listdir(folder)):
            if not fn.endswith(".json"):
                continue
            spec = load(os.path.join(folder, fn))
            if spec.get("type") != "data" or (names is not None and spec["name"] not in names):
                continue
            common = {c["name"]: c["fields"] for c in spec.get("commonStructs", [])}
            out[spec["name"]] = (spec["validVersions"], spec.get("flexibleVersions", "none"),
                                 field_lines(spec["fields"], common, 0))
    return out


def metadata_records(messages: str) -> dict:
    """record type -> (name, valid versions, flexible versions, field lines) of KRaft's metadata
    records, from `metadata-records/` next to the messages folder."""
    folder = os.path.join(messages, os.pardir, "metadata-records")
    out = {}
    if not os.path.isdir(folder):
        return out
    for fn in sorted(os.listdir(folder)):
        if not fn.endswith(".json"):
            continue
        spec = load(os.path.join(folder, fn))
        if spec.get("type") != "metadata":
            continue
        common = {c["name"]: c["fields"] for c in spec.get("commonStructs", [])}
        out[spec["apiKey"]] = (spec["name"], spec["validVersions"],
                               spec.get("flexibleVersions", "none"),
                               field_lines(spec["fields"], common, 0))
    return out


def default_record_folders(messages: str) -> list[str]:
    root = os.path.join(messages, os.pardir, "coordinator-records")
    if not os.path.isdir(root):
        return []
    return [os.path.join(root, d) for d in sorted(os.listdir(root))
            if os.path.isdir(os.path.join(root, d))]


def main(folder: str, record_folders: list[str] | None = None) -> None:
    apis = {}
    for fn in sorted(os.listdir(folder)):
        if not fn.endswith(".json"):
            continue
        spec = load(os.path.join(folder, fn))
        kind = spec.get("type")
        if kind not in ("request", "response"):
            continue
        key = spec["apiKey"]
        if key in SKIP or not LISTENERS & set(spec.get("listeners", ["broker"])):
            if kind == "request" or key not in apis:
                continue
        common = {c["name"]: c["fields"] for c in spec.get("commonStructs", [])}
        lines = apply_newer((key, kind), field_lines(spec["fields"], common, 0))
        entry = apis.setdefault(key, {})
        entry["name"] = spec["name"][: -len("Request")] if kind == "request" else entry.get("name")
        entry[kind] = (spec["validVersions"], spec.get("flexibleVersions", "none"), lines,
                       bool(spec.get("latestVersionUnstable")))
        edit = NEWER.get((key, kind))
        if edit and "valid" in edit:
            v = entry[kind]
            entry[kind] = (edit["valid"],) + v[1:]
        if edit and edit.get("stable"):
            entry[kind] = entry[kind][:3] + (False,)
    w = sys.stdout.write
    w('"""Kafka\'s request and response bodies in trioka\'s compact notation (see wire/generate.py).\n\n')
    w("Each API key maps to (name, valid versions, flexible versions, unstable latest version,\n")
    w("request fields, response fields). One field a line: `name  type  [versions]  [null=versions]\n")
    w("[tag=N]  [default=value]`; children of a struct are indented by two spaces; versions are\n")
    w('"0+" when not written. RECORDS, at the end, holds Kafka\'s "data" schemas (coordinator '
      'records,\n')
    w("consumer protocol payloads) in the same notation. Written by wire/generate.py; edit the\n")
    w('generator, not this file.\n"""\n\n')
    w("MESSAGES = {\n")
    for key in sorted(apis):
        e = apis[key]
        if "request" not in e or "response" not in e:
            continue
        valid, flex, req, unstable = e["request"]
        rvalid, rflex, resp, _ = e["response"]
        assert valid == rvalid and flex == rflex, (key, valid, rvalid, flex, rflex)
        w(f"    {key}: ({e['name']!r}, {valid!r}, {flex!r}, {unstable!r}, \"\"\"\n")
        w("\n".join(req) + "\n" if req else "")
        w('""", """\n')
        w("\n".join(resp) + "\n" if resp else "")
        w('"""),\n')
    w("}\n")
    records = data_schemas([folder], DATA_IN_MESSAGES)
    records.update(data_schemas(record_folders if record_folders else
                                default_record_folders(folder)))
    w("\n# Persisted and embedded structs (Kafka's \"data\" schemas): name -> (valid versions,\n")
    w("# flexible versions, fields). Stored as an int16 version and then the struct at that "
      "version.\n")
    w("RECORDS = {\n")
    for name in sorted(records):
        valid, flex, lines = records[name]
        w(f"    {name!r}: ({valid!r}, {flex!r}, \"\"\"\n")
        w("\n".join(lines) + "\n" if lines else "")
        w('"""),\n')
    w("}\n")
    w("\n# KRaft metadata records (`__cluster_metadata`): record type -> (name, valid versions,\n")
    w("# flexible versions, fields).\n")
    w("METADATA_RECORDS = {\n")
    for key, (name, valid, flex, lines) in sorted(metadata_records(folder).items()):
        w(f"    {key}: ({name!r}, {valid!r}, {flex!r}, \"\"\"\n")
        w("\n".join(lines) + "\n" if lines else "")
        w('"""),\n')
    w("}\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/kafka-protocol/messages", sys.argv[2:])
