"""Java-compatible key partitioning."""

import pytest

from eventwire._partitioner import java_partition, murmur2


class TestMurmur2:
    @pytest.mark.parametrize(
        ("key", "expected"),
        [  # Kafka's own UtilsTest.testMurmur2 vectors
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            (b"abc", 479470107),
        ],
    )
    def test_matches_kafka_java_vectors(self, key: bytes, expected: int) -> None:
        """murmur2 returns exactly what Kafka's Java Utils.murmur2 returns."""
        assert murmur2(key) == expected

    def test_partition_is_positive_hash_mod_count(self) -> None:
        """The partition is toPositive(murmur2(key)) % partitions, always in range."""
        assert java_partition(b"foobar", 7) == (-790332482 & 0x7FFFFFFF) % 7
        assert all(0 <= java_partition(bytes([i]), 3) < 3 for i in range(256))
