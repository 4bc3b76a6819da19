"""Message values for codec tests: a populator that walks the compiled `Field`s of a message and
gives every field present in a version a value different from its default (arrays of one or two
elements, nested structs filled the same way, tagged fields set so they are written, and, with
`nulls`, null wherever the version allows it). Used by test_wire_schema.py (round trips),
test_wire_golden.py (against kafka-python's codec) and test_wire_types.py (mutations)."""

import random
import uuid

from trioka.wire import schema

# Inclusive ranges of the integer types, to draw values from.
INT_RANGES = {
    "int8": (-(1 << 7), (1 << 7) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "uint16": (0, (1 << 16) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "uint32": (0, (1 << 32) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
}

# Text that is not ASCII, so a codec that counts characters instead of UTF-8 bytes fails.
ALPHABET = "abcXYZ019-._ éü€中文🙂"


def in_version(f: schema.Field, v: int) -> bool:
    """Whether field f is carried by version v (as a regular or as a tagged field)."""
    return f.present(v) or f.is_tagged(v)


def scalar(kind: str, default, rng: random.Random):
    """A value of a primitive kind, different from `default`."""
    while True:
        if kind in INT_RANGES:
            lo, hi = INT_RANGES[kind]
            # Favour the edges now and then: they catch a wrong struct format character.
            x = rng.choice([lo, hi, rng.randint(lo, hi), rng.randint(-300, 300)])
            x = min(max(x, lo), hi)
        elif kind == "bool":
            x = not default if isinstance(default, bool) else True
        elif kind == "float64":
            x = rng.choice([1.5, -2.25e300, rng.uniform(-1e6, 1e6)])
        elif kind == "string":
            x = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 12)))
        elif kind in ("bytes", "records"):
            x = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))
        elif kind == "uuid":
            x = uuid.UUID(int=rng.getrandbits(128) | 1)
        else:  # pragma: no cover - a type the populator does not know is a test bug
            raise AssertionError(f"no value for type {kind!r}")
        if x != default:
            return x


def value(f: schema.Field, v: int, rng: random.Random, nulls: bool):
    if nulls and f.is_nullable(v) and f.default is not None:
        # Null where the version allows it: only worth writing when null is not the default
        # (a tagged field at its default is not written at all).
        return None
    if f.type == "array":
        n = rng.randint(1, 2)
        if f.is_struct:
            return [populate(f.struct, f.children, v, rng, nulls) for _ in range(n)]
        return [scalar(f.elem, None, rng) for _ in range(n)]
    if f.is_struct:
        return populate(f.struct, f.children, v, rng, nulls)
    return scalar(f.type, f.default, rng)


def populate(cls, fields, v: int, rng: random.Random, nulls: bool = False):
    """An instance of cls whose every field in version v has a non-default value."""
    o = cls()
    for f in fields:
        if in_version(f, v):
            setattr(o, f.name, value(f, v, rng, nulls))
    return o
