"""Kafka's default partitioner for keyed records, as the Java producer computes it.

A record with a key goes to the positive part of `murmur2(key)` modulo the partition count, so the
tools put a keyed record where a Java producer would (and where librdkafka's `murmur2_random`
partitioner or kafka-python's default would), and consumers of those clients find keys where they
expect them. Records without a key are the caller's to place (cli/produce.py).
"""


def murmur2(data: bytes) -> int:
    """MurmurHash2 (32-bit, seed 0x9747b28c) as Kafka's default partitioner computes it over a
    record key, returned as a signed int32 like Java's."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    rest = length % 4
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, num_partitions: int) -> int:
    """The partition Kafka's Java producer picks for a keyed record: the positive part of the
    key's murmur2 hash modulo the partition count."""
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions
