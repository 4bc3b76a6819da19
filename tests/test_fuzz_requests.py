"""A structured fuzzer over every (API, version) the broker advertises, against an in-process
broker over real sockets.

Each frame is either a well-formed request whose fields hold hostile values (long strings, edge
and negative integers, empty and long arrays, garbage record batches, nested structs filled the
same way) or the bytes of one mutated (bytes overwritten with edge values, cut short, a length
field pointed past the end). For each frame the broker must answer or close that connection
promptly, a bystander connection must keep being served, and the broker must never exit (an
error escaping to its nursery fails the test).

Budget: FUZZ_FRAMES frames (the environment variable TRIOKA_FUZZ_FRAMES, default a short CI
run); a long campaign sets it to 100000 or more. The seed is TRIOKA_FUZZ_SEED (default fixed,
so a CI failure replays), and the frames tried and the slowest answer are printed.
"""

import os
import random
import struct
import uuid

import pytest
import trio

from message_values import INT_RANGES
from trioka.apis import APIS
from trioka.testing.embedded import open_broker
from trioka.wire import protocol, schema
from trioka.wire.api_keys import ApiKey

FUZZ_FRAMES = int(os.environ.get("TRIOKA_FUZZ_FRAMES", "3000"))
SEED = int(os.environ.get("TRIOKA_FUZZ_SEED", "20261202"))
# How soon a request must be answered or its connection closed. Requests that may park by
# Kafka's rules (a Fetch's max_wait_ms, a JoinGroup's rebalance) have their wait fields clamped
# below CLAMP_MS, so every answer is due within ANSWER_MS plus the clamp.
ANSWER_MS = 100
CLAMP_MS = 50
# A loaded CI machine may stall the whole process now and then; a frame slower than ANSWER_MS
# counts as late, and at most LATE_SHARE of frames may be late, none beyond HARD_LIMIT_S.
LATE_SHARE = 0.01
HARD_LIMIT_S = 5.0

# Fields whose value is a wait the broker honours: clamped so the answer is due soon.
WAIT_FIELDS = ("max_wait_ms", "timeout_ms", "rebalance_timeout_ms", "session_timeout_ms",
               "transaction_timeout_ms", "throttle_time_ms")
TEXT = "abcXYZ019-._ éü€中文🙂\x00\n"


def hostile_int(kind: str, rng: random.Random) -> int:
    lo, hi = INT_RANGES[kind]
    return rng.choice([lo, hi, -1, 0, 1, 2, -2, rng.randint(lo, hi), rng.randint(-5, 1000)])


def hostile_string(rng: random.Random, flexible: bool) -> str:
    limit = 40_000 if flexible else 32_767 // 4   # UTF-8 up to 4 bytes a character
    n = rng.choice([0, 1, 2, 249, 250, 255, 256, rng.randint(0, 40), limit])
    if rng.random() < 0.3:
        return "".join(rng.choice(TEXT) for _ in range(min(n, 300)))
    return rng.choice(["t", "__consumer_offsets", "..", ".", "a/b"])[:max(n, 1)] * max(1, n // 2)


def hostile_records(rng: random.Random) -> bytes:
    """Record-batch-shaped garbage: a v2 header with lies in it, or random bytes."""
    choice = rng.randrange(4)
    if choice == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 120)))
    records_count = rng.choice([0, 1, 1_000_000, -1, 2**31 - 1])
    body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
    attributes = rng.choice([0, 1, 2, 3, 4, 5, 0x10, 0x20, 0x30, -1])
    batch_length = rng.choice([49 + len(body), 0, -1, 2**31 - 1, 12])
    header = struct.pack(">qiibIhiqqqhii", rng.choice([0, -1, 2**62]), batch_length,
                         rng.choice([0, -1]), rng.choice([2, 1, 0, 3, 127]),
                         rng.getrandbits(32), attributes, rng.choice([0, -1, 5]),
                         rng.choice([0, -1, 2**62]), rng.choice([0, -1]),
                         rng.choice([-1, 0, 7]), rng.choice([-1, 0, 5]),
                         rng.choice([-1, 0, 2**31 - 1]), records_count)
    if choice == 1:
        return header + body
    return (header + body) * rng.randint(2, 3)


def hostile_value(f: schema.Field, v: int, rng: random.Random, flexible: bool, depth: int):
    if f.is_nullable(v) and rng.random() < 0.15:
        return None
    if f.type == "array":
        n = rng.choice([0, 0, 1, 1, 2, 3, 50 if depth < 2 else 2])
        if f.is_struct:
            return [populate(f.struct, f.children, v, rng, flexible, depth + 1) for _ in range(n)]
        return [scalar(f.elem, f.name, rng, flexible) for _ in range(n)]
    if f.is_struct:
        return populate(f.struct, f.children, v, rng, flexible, depth + 1)
    return scalar(f.type, f.name, rng, flexible)


def scalar(kind: str, name: str, rng: random.Random, flexible: bool):
    if kind in INT_RANGES:
        x = hostile_int(kind, rng)
        if name in WAIT_FIELDS:
            x = min(max(x, -1), CLAMP_MS)
        return x
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "float64":
        return rng.choice([0.0, -1.0, 1e308, float("inf"), float("nan")])
    if kind == "string":
        return hostile_string(rng, flexible)
    if kind == "bytes":
        return bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 16, 300])))
    if kind == "records":
        return hostile_records(rng)
    if kind == "uuid":
        return rng.choice([uuid.UUID(int=0), uuid.UUID(int=rng.getrandbits(128))])
    raise AssertionError(f"no hostile value for {kind!r}")


def populate(cls, fields, v: int, rng: random.Random, flexible: bool, depth: int = 0):
    o = cls()
    for f in fields:
        if f.present(v) or f.is_tagged(v):
            if rng.random() < 0.8:
                setattr(o, f.name, hostile_value(f, v, rng, flexible, depth))
    return o


def encode_hostile(key: int, version: int, rng: random.Random) -> bytes | None:
    api = schema.api(key)
    flexible = api.is_flexible(version)
    message = populate(api.request.cls, api.request.fields, version, rng, flexible)
    if key == ApiKey.PRODUCE and rng.random() < 0.5:
        message.acks = rng.choice([0, 1, -1])
    try:
        return protocol.encode_request(key, version, rng.getrandbits(31), hostile_client_id(rng),
                                       message)
    except (struct.error, ValueError, OverflowError, TypeError):
        return None      # a value this version cannot carry: not a frame a client could send


def hostile_client_id(rng: random.Random):
    return rng.choice([None, "", "fuzz", "x" * 300, "\u00e9\u4e2d"])


def waits_long(frame: bytes) -> bool:
    """Whether a (mutated) frame still decodes into a request whose wait fields ask for more
    than CLAMP_MS: Kafka holds such a Fetch or JoinGroup that long, so no prompt answer is due."""
    try:
        view = memoryview(frame)[4:]
        header, pos = protocol.parse_request_header(view)
        request = protocol.decode_request_body(header, view, pos)
    except Exception:
        return False
    return any(isinstance(getattr(request, f, None), int) and getattr(request, f) > CLAMP_MS
               for f in WAIT_FIELDS)


def mutate(frame: bytes, rng: random.Random) -> bytes:
    """A few bytes of the request overwritten with edge values, maybe cut or extended; the size
    prefix is kept true to the new length so the broker reads the whole frame."""
    body = bytearray(frame[4:])
    for _ in range(rng.randint(1, 6)):
        if not body:
            break
        i = rng.randrange(len(body))
        if rng.random() < 0.3 and i + 4 <= len(body):
            body[i:i + 4] = struct.pack(">i", rng.choice([-2, -1, 0x7FFFFFFF, 0x40000000, 65535]))
        else:
            body[i] = rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF])
    if rng.random() < 0.3:
        body = body[:rng.randint(0, len(body))]
    elif rng.random() < 0.1:
        body += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 20)))
    return struct.pack(">i", len(body)) + bytes(body)


async def connect(server) -> trio.SocketStream:
    host, port = server.bootstrap_servers.split(",")[0].rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


FOLLOW_UP_ID = 0x7AB0C0DE
# Sent after every fuzzed frame on the same connection: its answer proves the fuzzed request was
# dealt with (a Produce with acks=0 has no answer of its own) and the connection still works.
FOLLOW_UP = protocol.encode_request(ApiKey.API_VERSIONS, 0, FOLLOW_UP_ID, "fuzz",
                                    protocol.request_class(ApiKey.API_VERSIONS)())


async def answered_or_closed(stream: trio.SocketStream, until: int = FOLLOW_UP_ID) -> str:
    """'answer' once the response with correlation id `until` arrives, 'closed' when the broker
    closes the connection first."""
    buf = b""
    while True:
        while len(buf) >= 8 and len(buf) >= 4 + struct.unpack_from(">i", buf)[0]:
            if struct.unpack_from(">i", buf, 4)[0] == until:
                return "answer"
            buf = buf[4 + struct.unpack_from(">i", buf)[0]:]
        try:
            chunk = await stream.receive_some(1 << 20)
        except trio.BrokenResourceError:
            return "closed"
        if not chunk:
            return "closed"
        buf += chunk


async def bystander_ok(server) -> None:
    stream = await connect(server)
    cls = protocol.request_class(ApiKey.API_VERSIONS)
    await stream.send_all(protocol.encode_request(ApiKey.API_VERSIONS, 3, 1, "bystander", cls(
        client_software_name="bystander", client_software_version="1")))
    with trio.fail_after(HARD_LIMIT_S):
        assert await answered_or_closed(stream, until=1) == "answer", "a bystander was not served"
    await stream.aclose()


def frames(rng: random.Random):
    """(description, bytes) of every frame of the campaign: each advertised (API, version) in
    turn, hostile fields or mutated bytes."""
    targets = [(key, v) for key, api in sorted(APIS.items())
               for v in range(api.versions[0], api.versions[1] + 1)]
    produced = 0
    while produced < FUZZ_FRAMES:
        key, version = targets[produced % len(targets)]
        frame = encode_hostile(key, version, rng)
        if frame is None:
            produced += 1
            continue
        kind = "fields"
        if rng.random() < 0.4:
            frame, kind = mutate(frame, rng), "bytes"
            if waits_long(frame):
                produced += 1
                continue     # a mutation that asks to wait long may be honoured, as by Kafka
        produced += 1
        yield f"{ApiKey(key).name} v{version} ({kind})", frame


# A long campaign (TRIOKA_FUZZ_FRAMES) gets time for its frames: about 800 a second here.
@pytest.mark.timeout(max(120, FUZZ_FRAMES // 100))
async def test_no_request_stops_the_broker_or_stalls_its_answer(caplog):
    rng = random.Random(SEED)
    latencies = []
    outcomes = {"answer": 0, "closed": 0}
    async with open_broker(memory=True, group_initial_rebalance_delay_ms=0,
                           num_partitions=1) as server:
        for i, (what, frame) in enumerate(frames(rng)):
            if os.environ.get("TRIOKA_FUZZ_TRACE"):
                print(i, what, len(frame), flush=True)
            stream = await connect(server)
            start = trio.current_time()
            try:
                await stream.send_all(frame + FOLLOW_UP)
            except trio.BrokenResourceError:
                pass     # closed while we were still sending: an answer too
            with trio.move_on_after(HARD_LIMIT_S) as late:
                outcomes[await answered_or_closed(stream)] += 1
            assert not late.cancelled_caught, f"{what}: no answer and no close in " \
                                              f"{HARD_LIMIT_S} s (frame {i}, seed {SEED})"
            latencies.append((trio.current_time() - start, what))
            await stream.aclose()
            if i % 200 == 0:
                await bystander_ok(server)
        await bystander_ok(server)
    latencies.sort(reverse=True)
    late = [x for x in latencies if x[0] > (ANSWER_MS + CLAMP_MS) / 1000]
    print(f"\nfuzzed {len(latencies)} frames (seed {SEED}): {outcomes['answer']} answered, "
          f"{outcomes['closed']} closed; slowest {latencies[0][0] * 1000:.1f} ms "
          f"({latencies[0][1]})")
    assert len(late) <= LATE_SHARE * len(latencies), late[:10]
    # A handler that fails on a request is a broker bug even though only that connection pays:
    # Kafka answers hostile values with error codes. Every such failure is listed.
    failures = sorted({r.getMessage() for r in caplog.records
                       if r.name == "trioka.server" and r.levelname == "ERROR"})
    assert not failures, failures
