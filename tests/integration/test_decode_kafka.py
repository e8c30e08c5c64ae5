"""Typed decode on the real broker: eventwire publishes, confluent-kafka and aiokafka consumers read.

The consumers here are the real clients (``confluent_kafka.Consumer``,
``aiokafka.AIOKafkaConsumer``); eventwire only decodes what they return.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from eventwire import DecodeError, Decoder, DeliveryResult, Publisher, Route


class OrderPlaced(msgspec.Struct, frozen=True):
    order_id: str
    total: float


class OrderCancelled(msgspec.Struct, frozen=True):
    order_id: str
    reason: str


EVENTS: list[Any] = [
    OrderPlaced("o-1", 10.0),
    OrderPlaced("o-2", 20.5),
    OrderCancelled("o-1", "changed mind"),
    OrderPlaced("o-3", 3.0),
]


def routes_for(topic: str) -> dict[type, Route]:
    return {
        OrderPlaced: Route(topic=topic, key="order_id", type_name="shop.OrderPlaced"),
        OrderCancelled: Route(topic=topic, key="order_id", type_name="shop.OrderCancelled"),
    }


def publish(bootstrap: str, topic: str, **options: Any) -> list[DeliveryResult]:
    with Publisher(bootstrap, routes=routes_for(topic), source="urn:shop", **options) as pub:
        handles = [pub.publish(e) for e in EVENTS]
        return [h.result(30) for h in handles]


def confluent_read(bootstrap: str, topic: str, count: int, timeout: float = 60) -> list[Any]:
    """``count`` records of ``topic`` from the beginning, as confluent_kafka.Message objects."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"decode-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        messages: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(messages) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                messages.append(msg)
        return messages
    finally:
        consumer.close()


def aiokafka_read(bootstrap: str, topic: str, count: int, timeout: float = 60) -> list[Any]:
    """``count`` records of ``topic`` from the beginning, as aiokafka ConsumerRecords."""
    from aiokafka import AIOKafkaConsumer

    async def main() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"decode-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            records: list[Any] = []
            deadline = time.monotonic() + timeout
            while len(records) < count and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    records.extend(batch)
            return records
        finally:
            await consumer.stop()

    return asyncio.run(main())


READERS = {"confluent": confluent_read, "aiokafka": aiokafka_read}


@pytest.fixture(params=sorted(READERS))
def reader(request: pytest.FixtureRequest) -> Any:
    return READERS[request.param]


def test_decode_returns_the_typed_events_and_their_attributes(
    kafka_bootstrap: str, kafka_topic: str, reader: Any
) -> None:
    """Every record the publisher wrote decodes into its class with ce_id, type, source, time, key and position."""
    results = publish(kafka_bootstrap, kafka_topic)
    messages = reader(kafka_bootstrap, kafka_topic, len(EVENTS))
    assert len(messages) == len(EVENTS)
    decoder = Decoder(routes=routes_for(kafka_topic))
    envelopes = {e.id: e for e in map(decoder.decode, messages)}
    assert set(envelopes) == {r.event_id for r in results}
    for event, result in zip(EVENTS, results, strict=True):
        envelope = envelopes[result.event_id]
        assert envelope.event == event
        assert type(envelope.event) is type(event)
        assert envelope.type == result.event_type
        assert envelope.source == "urn:shop"
        assert envelope.specversion == "1.0"
        assert envelope.datacontenttype == "application/json"
        assert envelope.time is not None
        assert abs((envelope.time - result.timestamp).total_seconds()) < 60
        assert envelope.key == event.order_id.encode()
        assert (envelope.topic, envelope.partition, envelope.offset) == (
            result.topic,
            result.partition,
            result.offset,
        )
        assert envelope.timestamp == result.timestamp
        assert envelope.trace_context is None  # no tracing, no trace headers


def test_a_foreign_record_on_the_topic_is_a_decode_error_not_a_crash(
    kafka_bootstrap: str, kafka_topic: str, reader: Any
) -> None:
    """A record written without CloudEvents headers is reported by decode_or_none; the others decode."""
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "log_level": 3})
    producer.produce(kafka_topic, value=b'{"order_id": "x"}', key=b"x", partition=0)
    assert producer.flush(30) == 0
    results = publish(kafka_bootstrap, kafka_topic)
    messages = reader(kafka_bootstrap, kafka_topic, len(EVENTS) + 1)
    errors: list[DecodeError] = []
    decoder = Decoder(routes=routes_for(kafka_topic), on_error=errors.append)
    decoded = [e for e in map(decoder.decode_or_none, messages) if e is not None]
    assert {e.id for e in decoded} == {r.event_id for r in results}
    (err,) = errors
    assert (err.kind, err.topic, err.partition, err.offset) == ("missing_header", kafka_topic, 0, 0)
    assert f"{kafka_topic}[0]@0" in str(err)


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def test_process_spans_link_to_the_producer_spans(
    kafka_bootstrap: str,
    kafka_topic: str,
    reader: Any,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """Each record read back gets a CONSUMER process span linked to the PRODUCER span that sent it."""
    provider, exporter = spans
    results = publish(kafka_bootstrap, kafka_topic, tracer_provider=provider)
    producers = {
        s.attributes["messaging.message.id"]: s
        for s in exporter.get_finished_spans()
        if s.kind is SpanKind.PRODUCER and s.attributes
    }
    assert set(producers) == {r.event_id for r in results}
    decoder = Decoder(routes=routes_for(kafka_topic), tracer_provider=provider)
    for message in reader(kafka_bootstrap, kafka_topic, len(EVENTS)):
        with decoder.process(message) as envelope:
            assert envelope.span_context is not None
    processes = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert len(processes) == len(EVENTS)
    for span in processes:
        attrs = dict(span.attributes or {})
        producer = producers[attrs["messaging.message.id"]]
        assert span.name == f"process {kafka_topic}"
        assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [
            (producer.context.trace_id, producer.context.span_id)
        ]
        assert attrs["messaging.system"] == "kafka"
        assert attrs["messaging.operation.type"] == "process"
        assert attrs["messaging.destination.name"] == kafka_topic
        assert (
            attrs["messaging.destination.partition.id"]
            == (producer.attributes["messaging.destination.partition.id"])
        )
        assert attrs["messaging.kafka.offset"] == producer.attributes["messaging.kafka.offset"]
