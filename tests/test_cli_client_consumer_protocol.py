"""The consumer protocol's subscription and assignment bytes (cli/client/consumer_protocol.py)."""

import struct

import pytest

from trioka.cli.client.consumer_protocol import (decode_assignment, decode_subscription,
                                                 encode_assignment, encode_subscription)

pytestmark = pytest.mark.timeout(30)


def _string(s: str) -> bytes:
    return struct.pack(">h", len(s)) + s.encode()


def test_decode_assignment_of_hand_built_bytes_v0_and_v3():
    body = (struct.pack(">i", 2) + _string("a") + struct.pack(">iii", 2, 0, 2)
            + _string("b") + struct.pack(">ii", 1, 5))
    v0 = struct.pack(">h", 0) + body + struct.pack(">i", -1)
    v3 = struct.pack(">h", 3) + body + struct.pack(">i", 3) + b"xyz"
    for data in (v0, v3):
        assert decode_assignment(data) == [("a", 0), ("a", 2), ("b", 5)]
    assert decode_assignment(b"") == []


def test_assignment_and_subscription_round_trip():
    data = encode_assignment([("b", 1), ("a", 0), ("a", 3)])
    assert data[:2] == b"\x00\x00"
    assert decode_assignment(data) == [("a", 0), ("a", 3), ("b", 1)]
    assert decode_subscription(encode_subscription(["x", "y"])) == ["x", "y"]
