"""Kafka's default partitioner (cli/client/partitioner.py) against kafka-python's."""

import pytest
from hypothesis import given, settings, strategies as st

from trioka.cli.client.partitioner import murmur2, partition_for_key

pytestmark = pytest.mark.timeout(30)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_murmur2_matches_kafka_python(key):
    from kafka.partitioner import default
    assert murmur2(key) & 0xFFFFFFFF == default.murmur2(key) & 0xFFFFFFFF
    assert partition_for_key(key, 7) == (default.murmur2(key) & 0x7FFFFFFF) % 7
