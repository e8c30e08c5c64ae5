"""Consume typed events with confluent-kafka, de-duplicating on ce_id (the at-least-once contract).

Kafka and eventwire deliver **at least once**. The same event can reach a consumer
twice, always with the same ``ce_id``:

* the publisher re-sends it -- after a ``_MSG_TIMED_OUT`` the broker may already have
  the record, and after a fatal producer error eventwire re-sends every
  unacknowledged event through a new producer (README, "Errors");
* an application re-publishes it with ``publish(event, event_id=...)``, e.g. from a retry;
* the consumer itself processes a record and dies (or loses its partitions in a
  rebalance) before committing the offset, so the record is read again.

So a consumer de-duplicates on ``ce_id``. This one keeps a bounded LRU of the ids it
has processed: it catches re-sends that arrive within the last ``--capacity`` events,
in this process. It starts empty after a restart, so a record read again after a
crash is processed again -- for effects that must happen exactly once, store the id
in the same transaction as the effect (a unique constraint on ``ce_id`` in the
handler's database) instead of, or behind, the LRU.

What the script does:

1. publishes ``--events`` OrderPlaced events, re-publishes ``--duplicates`` of them
   under their original ``event_id`` (what a retry does), and writes one record that
   is not an event (no CloudEvents headers) with a plain producer;
2. consumes the topic in a consumer group with a ``confluent_kafka.Consumer``, decodes
   each record with ``eventwire.Decoder.decode_or_none`` (a record it cannot decode
   goes to ``<topic>.dlq`` with the reason in a header, never stopping the loop),
   skips ids already seen, and commits after each batch is handled;
3. prints what it processed, skipped and dead-lettered, and exits 1 if that is not
   exactly what was published.

    python examples/consume_dedup.py            # or with EVENTWIRE_BOOTSTRAP=host:port
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections import OrderedDict
from typing import Any

import msgspec
from _common import bootstrap
from confluent_kafka import Consumer, Producer, TopicPartition

from eventwire import DecodeError, Decoder, Publisher, Route


class OrderPlaced(msgspec.Struct, frozen=True):
    order_id: str
    customer_name: str
    total_price: float


class SeenIds:
    """The ``ce_id`` s of the last ``capacity`` processed events (least recent dropped first)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> None:
        """Remember ``event_id``: call it once the event's effect is done."""
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


def publish(servers: str, topic: str, events: int, duplicates: int) -> None:
    routes = {OrderPlaced: Route(topic=topic, key="order_id", type_name="shop.OrderPlaced")}
    orders = [OrderPlaced(f"order-{n}", "Ada Lovelace", 10.0 * n) for n in range(1, events + 1)]
    with Publisher(servers, routes=routes, source="urn:example:shop") as publisher:
        ids = [h.result(30).event_id for h in map(publisher.publish, orders)]
        for order, event_id in list(zip(orders, ids, strict=True))[:duplicates]:
            publisher.publish(order, event_id=event_id).result(30)  # a retry: same ce_id
    plain = Producer({"bootstrap.servers": servers, "log_level": 3})
    plain.produce(topic, key=b"legacy", value=b'{"legacy": true}')
    plain.flush(30)
    print(
        f"published {events} events to {topic!r}, re-sent {duplicates} of them under their "
        "ce_id, and wrote 1 record without CloudEvents headers"
    )


def end_offsets(servers: str, topic: str) -> dict[int, int]:
    """Each partition's end offset now: this run reads only what it writes after."""
    probe = Consumer({"bootstrap.servers": servers, "group.id": "probe", "log_level": 3})
    try:
        meta = probe.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return {}  # the topic does not exist yet: start from the beginning
        return {
            p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        }
    finally:
        probe.close()


def dead_letter(producer: Producer, err: DecodeError) -> None:
    """Send the undecodable record, unchanged, to ``<topic>.dlq`` with why it failed."""
    message: Any = err.record
    headers = list(message.headers() or [])
    headers += [
        ("eventwire.decode_error", err.kind.encode()),
        ("eventwire.decode_reason", err.reason.encode()),
        ("eventwire.origin", f"{err.topic}[{err.partition}]@{err.offset}".encode()),
    ]
    producer.produce(f"{err.topic}.dlq", key=message.key(), value=message.value(), headers=headers)
    if producer.flush(30):  # never commit past a record that is not safely dead-lettered
        raise RuntimeError(f"could not dead-letter {err.topic}[{err.partition}]@{err.offset}")


def consume(
    servers: str, topic: str, start: dict[int, int], expected: int, capacity: int
) -> dict[str, int]:
    counts = {"records": 0, "processed": 0, "duplicates": 0, "dead_lettered": 0}
    total = 0.0
    seen = SeenIds(capacity)
    dlq = Producer({"bootstrap.servers": servers, "log_level": 3})
    decoder = Decoder(
        routes={OrderPlaced: Route(topic=topic, key="order_id", type_name="shop.OrderPlaced")},
        on_error=lambda err: dead_letter(dlq, err),
    )
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": f"billing-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,  # commit only what was handled: at least once
            "auto.offset.reset": "earliest",
            "log_level": 3,
        }
    )

    def on_assign(c: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            tp.offset = start.get(tp.partition, 0)
        c.assign(partitions)

    consumer.subscribe([topic], on_assign=on_assign)
    deadline = time.monotonic() + 60
    try:
        while counts["records"] < expected and time.monotonic() < deadline:
            batch = consumer.consume(num_messages=100, timeout=0.5)
            for message in batch:
                if message.error() is not None:
                    continue  # librdkafka reports errors here; it retries by itself
                counts["records"] += 1
                envelope = decoder.decode_or_none(message)
                if envelope is None:  # dead-lettered by on_error
                    counts["dead_lettered"] += 1
                    continue
                if envelope.id in seen:
                    counts["duplicates"] += 1
                    continue
                total += envelope.event.total_price  # the "effect"
                seen.add(envelope.id)  # only once the effect is done
                counts["processed"] += 1
            if batch:
                consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    print(f"total of the processed orders: {total:.2f}")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topic", default="orders-dedup")
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--duplicates", type=int, default=5)
    parser.add_argument("--capacity", type=int, default=10_000, help="ids the LRU keeps")
    args = parser.parse_args()
    with bootstrap() as servers:
        start = end_offsets(servers, args.topic)
        publish(servers, args.topic, args.events, args.duplicates)
        expected = args.events + args.duplicates + 1
        counts = consume(servers, args.topic, start, expected, args.capacity)
    print(
        f"consumed {counts['records']} records: {counts['processed']} processed, "
        f"{counts['duplicates']} duplicates skipped, {counts['dead_lettered']} dead-lettered "
        f"to {args.topic + '.dlq'!r}"
    )
    ok = (counts["processed"], counts["duplicates"], counts["dead_lettered"]) == (
        args.events,
        args.duplicates,
        1,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
