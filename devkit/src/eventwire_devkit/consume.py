"""An independent consumer, for verifying what actually reached Kafka.

It deliberately shares no code with the publisher: tests, the demo and the
chaos suite use it to check counts, keys, headers and order from the log
itself. (Like the cluster tooling, it is test tooling and so imports
confluent_kafka directly; the publishing path only does so in
``eventwire.transports.kafka``.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

__all__ = ["ConsumedRecord", "read_topic"]


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    """One record as a consumer sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    def header(self, name: str) -> bytes | None:
        """The value of the first header called ``name``, or None."""
        return next((v for k, v in self.headers if k == name), None)


def read_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    expected: int | None = None,
    timeout: float = 60.0,
    idle: float = 3.0,
    on_record: Callable[[ConsumedRecord], None] | None = None,
    config: Mapping[str, str | int | float | bool] | None = None,
) -> list[ConsumedRecord]:
    """Read ``topic`` from the beginning of every partition.

    Stops when ``expected`` records were read (then waits ``idle`` more seconds
    to catch duplicates), when nothing new arrived for ``idle`` seconds after the
    end of every partition, or at ``timeout``. Reads committed data only
    (``isolation.level=read_committed``) with a throwaway group id. ``config`` adds
    client properties, e.g. a secured cluster's
    ``LocalKafkaCluster.client_properties("admin")`` (its ``bootstrap.servers`` is
    replaced by ``bootstrap_servers``).
    """
    consumer = Consumer(
        {
            **(config or {}),
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"eventwire-verify-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "log_level": 3,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=min(timeout, 10.0)).topics[topic]
        partitions = sorted(meta.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[ConsumedRecord] = []
        at_eof: set[int] = set()
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch: list[Any] = consumer.consume(num_messages=10_000, timeout=0.2)
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_eof.add(msg.partition())
                    continue
                at_eof.discard(msg.partition())
                record = ConsumedRecord(
                    msg.topic(),
                    msg.partition(),
                    msg.offset(),
                    msg.key(),
                    msg.value(),
                    tuple((k, v or b"") for k, v in (msg.headers() or [])),
                    msg.timestamp()[1],
                )
                records.append(record)
                if on_record is not None:
                    on_record(record)
                last_new = time.monotonic()
            quiet = time.monotonic() - last_new >= idle
            if expected is not None and len(records) >= expected and quiet:
                break
            if expected is None and len(at_eof) == len(partitions) and quiet:
                break
        return records
    finally:
        consumer.close()
