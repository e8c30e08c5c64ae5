"""``java-perf-test``: Kafka's own ``org.apache.kafka.tools.ProducerPerformance``.

The runner starts it directly (it is its own process) and reads rusage for it
with ``os.wait4``. Records are ``--record-size`` bytes of random payload with
**no key and no headers** (ProducerPerformance cannot set either), sent by the
Java client (acks=all, idempotence, linger.ms=5, lz4; latency mode: linger.ms=0,
no compression, ``--throughput <rate>``). Its events/s is its own figure: records
over the time from just before the first send (metadata fetch included) to the
last callback. Its CPU and RSS cover the whole JVM, start-up and JIT included.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = ["MAIN_CLASS", "command", "parse_summary"]

MAIN_CLASS = "org.apache.kafka.tools.ProducerPerformance"

# "200000 records sent, 123456.7 records/sec (37.65 MB/sec), 12.34 ms avg latency,
#  345.00 ms max latency, 10 ms 50th, 20 ms 95th, 30 ms 99th, 40 ms 99.9th."
_SUMMARY = re.compile(
    r"(?P<records>\d+) records sent, (?P<rate>[\d.]+) records/sec \((?P<mb>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, "
    r"(?P<p50>\d+) ms 50th, (?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99.9th"
)


def command(
    java: str,
    jars: Path,
    *,
    bootstrap: str,
    topic: str,
    records: int,
    record_size: int,
    throughput: float = -1,
    latency_mode: bool = False,
) -> list[str]:
    """The ProducerPerformance command line for one run."""
    props = [
        f"bootstrap.servers={bootstrap}",
        "acks=all",
        "enable.idempotence=true",
        "linger.ms=0" if latency_mode else "linger.ms=5",
        "compression.type=none" if latency_mode else "compression.type=lz4",
    ]
    return [
        java,
        "-Xmx512m",
        "-Dlog4j2.level=WARN",
        "-cp",
        f"{jars}/*",
        MAIN_CLASS,
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--record-size",
        str(record_size),
        "--throughput",
        str(int(throughput)),
        "--producer-props",
        *props,
    ]


def parse_summary(output: str) -> dict[str, Any]:
    """Parse the final summary line (the last line that matches).

    Raises:
        ValueError: no summary line in ``output``.
    """
    matches = list(_SUMMARY.finditer(output))
    if not matches:
        raise ValueError("no ProducerPerformance summary line in its output")
    m = matches[-1]
    return {
        "acked": int(m["records"]),
        "events_per_s": float(m["rate"]),
        "avg_ms": float(m["avg"]),
        "max_ms": float(m["max"]),
        "p50_ms": float(m["p50"]),
        "p95_ms": float(m["p95"]),
        "p99_ms": float(m["p99"]),
        "p999_ms": float(m["p999"]),
    }
