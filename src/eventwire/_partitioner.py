"""Kafka's Java default partitioner for keyed records, in pure Python.

librdkafka's ``partitioner=murmur2_random`` uses the same function, which is
why eventwire's profiles set it: a key lands on the same partition whichever
language produced it. The memory transport uses this to place records exactly
where a real cluster would.
"""

from __future__ import annotations

__all__ = ["java_partition", "murmur2"]

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: returns a *signed* 32-bit int, as Java does."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    n4 = length // 4
    for i in range(n4):
        k = int.from_bytes(data[i * 4 : i * 4 + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = length & ~3
    rest = length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: bytes, num_partitions: int) -> int:
    """The partition Kafka's Java producer picks for ``key``: ``toPositive(murmur2) % n``."""
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions
