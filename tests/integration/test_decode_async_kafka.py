"""Decoder.process_async and Decoder.handler with aiokafka on the real broker.

eventwire publishes traced events; an ``aiokafka.AIOKafkaConsumer`` reads them and each
record is handled by an awaited handler inside its CONSUMER ``process`` span.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from eventwire import Decoder, Envelope

from .test_decode_kafka import EVENTS, publish, routes_for

pytestmark = pytest.mark.kafka


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


async def read_records(bootstrap: str, topic: str, count: int, timeout: float = 60) -> list[Any]:
    """``count`` aiokafka ConsumerRecords of ``topic`` from the beginning."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"decode-async-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def by_kind(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is kind]


def test_awaited_handlers_run_inside_their_process_spans(
    kafka_bootstrap: str, kafka_topic: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """`async with decoder.process_async(record)`: the process span links to the producer
    span, stays current across the handler's awaits (its spans are children) and ends
    after the handler; decorated handlers run concurrently each get their own span."""
    provider, exporter = spans
    results = publish(kafka_bootstrap, kafka_topic, tracer_provider=provider)
    producers = {
        s.attributes["messaging.message.id"]: s
        for s in by_kind(exporter, SpanKind.PRODUCER)
        if s.attributes
    }
    assert set(producers) == {r.event_id for r in results}
    tracer = provider.get_tracer("handler")
    decoder = Decoder(routes=routes_for(kafka_topic), tracer_provider=provider)

    async def sequential(records: list[Any]) -> list[Any]:
        handled = []
        for record in records:
            async with decoder.process_async(record) as envelope:
                await asyncio.sleep(0.01)  # other tasks run; the span stays current here
                with tracer.start_as_current_span("handle sequential") as child:
                    child.set_attribute("event.id", envelope.id)
                handled.append(envelope.event)
        return handled

    @decoder.handler
    async def on_event(envelope: Envelope[Any]) -> str:
        await asyncio.sleep(0.05)  # all handlers are suspended here at once
        with tracer.start_as_current_span("handle concurrent") as child:
            child.set_attribute("event.id", envelope.id)
        return envelope.id

    async def main() -> tuple[list[Any], list[str]]:
        records = await read_records(kafka_bootstrap, kafka_topic, len(EVENTS))
        assert len(records) == len(EVENTS)
        handled = await sequential(records)
        ids = await asyncio.gather(*(on_event(record) for record in records))
        return handled, list(ids)

    handled, ids = asyncio.run(main())
    assert sorted(map(repr, handled)) == sorted(map(repr, EVENTS))
    assert sorted(ids) == sorted(producers)

    processes = by_kind(exporter, SpanKind.CONSUMER)
    assert len(processes) == 2 * len(EVENTS)
    children = [s for s in exporter.get_finished_spans() if s.name.startswith("handle ")]
    assert len(children) == 2 * len(EVENTS)
    for child in children:
        assert child.parent is not None
        [parent] = [p for p in processes if p.context.span_id == child.parent.span_id]
        attrs = dict(parent.attributes or {})
        # the handler ran inside the span of its own record, also when run concurrently
        assert attrs["messaging.message.id"] == (child.attributes or {})["event.id"]
        assert parent.name == f"process {kafka_topic}"
        assert parent.end_time is not None and child.end_time is not None
        assert parent.end_time >= child.end_time  # the span ended after the awaited handler
        producer = producers[attrs["messaging.message.id"]]
        assert [(link.context.trace_id, link.context.span_id) for link in parent.links] == [
            (producer.context.trace_id, producer.context.span_id)
        ]
    # nothing stays current once the handlers are done
    assert not trace.get_current_span().get_span_context().is_valid


def test_an_exception_in_an_awaited_handler_propagates_and_marks_the_span(
    kafka_bootstrap: str, kafka_topic: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """A handler that raises after an await: the exception reaches the caller unchanged
    and the record's process span ends with ERROR status and error.type."""
    provider, exporter = spans
    publish(kafka_bootstrap, kafka_topic)
    decoder = Decoder(routes=routes_for(kafka_topic), tracer_provider=provider)

    class HandlerFailed(Exception):
        pass

    @decoder.handler
    async def failing(envelope: Envelope[Any]) -> None:
        await asyncio.sleep(0)
        raise HandlerFailed(envelope.id)

    async def main() -> str:
        records = await read_records(kafka_bootstrap, kafka_topic, 1)
        with pytest.raises(HandlerFailed) as caught:
            await failing(records[0])
        return str(caught.value)

    failed_id = asyncio.run(main())
    [span] = by_kind(exporter, SpanKind.CONSUMER)
    assert (span.attributes or {})["messaging.message.id"] == failed_id
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"].endswith("HandlerFailed")
