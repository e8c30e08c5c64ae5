"""OpenTelemetry tracing on the memory transport: spans, their end, propagation, sampling.

Every test passes its own TracerProvider explicitly; no global is ever set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    NonRecordingSpan,
    NoOpTracerProvider,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from eventwire import (
    AsyncPublisher,
    BackpressureError,
    BatchPublishError,
    DeliveryError,
    ProducerFatalError,
    Publisher,
    RoutingError,
    event,
)
from eventwire.observability.tracing import make_tracing
from eventwire.transports.memory import MemoryRecord, MemoryTransport

from .conftest import OrderPlaced, Unrouted, order

LIMIT = (1 << 64) - 1


class Tracing:
    """A private SDK TracerProvider with an in-memory exporter."""

    def __init__(self, sampler: Sampler = ALWAYS_ON) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(sampler=sampler)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.started = 0
        outer = self

        class CountStarts(SimpleSpanProcessor):
            def on_start(self, span: Any, parent_context: Any = None) -> None:
                outer.started += 1

        self.provider.add_span_processor(CountStarts(InMemorySpanExporter()))

    def spans(self, name_prefix: str = "send ") -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith(name_prefix)]

    def tracer(self) -> trace.Tracer:
        return self.provider.get_tracer("test")


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    t = Tracing()
    yield t
    t.provider.shutdown()


def headers_of(record: MemoryRecord) -> dict[str, bytes]:
    return dict(record.headers)


def traceparent_ids(value: bytes) -> tuple[int, int, int]:
    version, trace_id, span_id, flags = value.decode().split("-")
    assert version == "00"
    return int(trace_id, 16), int(span_id, 16), int(flags, 16)


def publisher(transport: MemoryTransport, **kwargs: Any) -> Publisher:
    return Publisher(transport=transport, source="urn:test", **kwargs)


def count_start_span_calls(pub: Publisher, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count eventwire's calls of the SDK's start_span (recording or not)."""
    from opentelemetry.sdk.trace import Tracer as SdkTracer

    calls = [0]
    real = SdkTracer.start_span

    def counting(self: SdkTracer, *args: Any, **kwargs: Any) -> Any:
        if self.instrumentation_info.name == "eventwire":
            calls[0] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SdkTracer, "start_span", counting)
    return calls


class TestProducerSpan:
    def test_one_producer_span_per_event_with_messaging_attributes(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """Each event gets one PRODUCER span `send <topic>` with the semconv attributes."""
        with publisher(transport, tracer_provider=tracing.provider) as pub:
            results = [pub.publish(order(n)).result(1) for n in range(3)]
        spans = tracing.spans()
        assert len(spans) == 3
        for span, result in zip(spans, results, strict=True):
            assert span.name == "send orders"
            assert span.kind is SpanKind.PRODUCER
            assert span.status.status_code is StatusCode.UNSET
            assert dict(span.attributes or {}) == {
                "messaging.system": "kafka",
                "messaging.operation.name": "send",
                "messaging.operation.type": "send",
                "messaging.destination.name": "orders",
                "messaging.message.id": result.event_id,
                "messaging.message.body.size": span.attributes["messaging.message.body.size"],  # type: ignore[index]
                "messaging.kafka.message.key": f"o-{results.index(result)}",
                "messaging.destination.partition.id": str(result.partition),
                "messaging.kafka.offset": result.offset,
            }

    def test_span_ends_when_the_ack_arrives_not_at_publish(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """While the report is held back the span is open; it ends with the ack."""
        pub = publisher(transport, tracer_provider=tracing.provider)
        transport.pause()
        handle = pub.publish(order(1))
        assert tracing.spans() == []
        transport.resume()
        [span] = tracing.spans()
        assert span.attributes is not None
        assert span.attributes["messaging.kafka.offset"] == handle.result(1).offset
        assert span.end_time is not None and span.start_time is not None
        pub.close(1)

    def test_parent_is_the_callers_current_span(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """A span current at publish() is the producer span's parent, in the same trace."""
        with (
            publisher(transport, tracer_provider=tracing.provider) as pub,
            tracing.tracer().start_as_current_span("handle-request") as request,
        ):
            pub.publish(order(1))
        [span] = tracing.spans()
        assert span.parent is not None
        assert span.parent.span_id == request.get_span_context().span_id
        assert span.context.trace_id == request.get_span_context().trace_id

    def test_failed_report_ends_the_span_with_error_type_and_description(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """A failed delivery sets status ERROR, error.type and records the failure."""
        pub = publisher(transport, tracer_provider=tracing.provider)
        transport.fail_next(1, "_MSG_TIMED_OUT")
        handle = pub.publish(order(1))
        [span] = tracing.spans()
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None and span.attributes["error.type"] == "_MSG_TIMED_OUT"
        assert handle.failure is not None
        assert span.status.description == handle.failure.describe()
        [event] = span.events
        assert event.name == "exception"
        assert event.attributes is not None
        assert handle.failure.event_id in str(event.attributes["exception.message"])
        pub.close(1)  # reading handle.failure observed it: close() does not raise it again

    def test_synchronous_rejection_ends_the_span_once(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """An event refused at publish() (too large) ends its span with the error."""
        small = MemoryTransport(max_message_bytes=10)
        with publisher(small, tracer_provider=tracing.provider) as pub:
            with pytest.raises(DeliveryError):
                pub.publish(order(1))
        [span] = tracing.spans()
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes["error.type"] == "MSG_SIZE_TOO_LARGE"

    def test_backpressure_ends_the_span_with_queue_full(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """An event never enqueued (queue full past enqueue_timeout) ends its span."""
        pub = publisher(transport, tracer_provider=tracing.provider, enqueue_timeout=0.02)
        transport.queue_full_next(10**6)
        with pytest.raises(BackpressureError):
            pub.publish(order(1))
        [span] = tracing.spans()
        assert span.attributes is not None and span.attributes["error.type"] == "_QUEUE_FULL"
        transport.heal()
        pub.close(1)

    def test_close_sweep_ends_every_open_span_exactly_once(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """Events purged at close() end their spans once, with the purge code."""
        pub = publisher(transport, tracer_provider=tracing.provider)
        transport.pause()
        for n in range(5):
            pub.publish(order(n))
        with pytest.raises(DeliveryError):
            pub.close(0)
        spans = tracing.spans()
        assert len(spans) == 5
        assert {s.attributes["error.type"] for s in spans if s.attributes} == {"_PURGE_INFLIGHT"}

    def test_fatal_sweep_and_late_reports_end_each_span_once(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """A fatal error (no replacement allowed) fails pending events; their late reports
        do not end spans again."""
        pub = publisher(transport, tracer_provider=tracing.provider, producer_restarts=0)
        transport.pause()
        for n in range(3):
            pub.publish(order(n))
        transport.set_fatal()
        spans = tracing.spans()
        assert len(spans) == 3
        assert all(s.status.status_code is StatusCode.ERROR for s in spans)
        with pytest.raises(ProducerFatalError):
            pub.publish(order(9))
        assert len(tracing.spans()) == 3
        with pytest.raises(DeliveryError):
            pub.close(0)

    def test_async_publish_ends_the_span_before_the_await_returns(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """await publish() resolves after the event's span has ended."""

        async def main() -> int:
            async with AsyncPublisher(transport=transport, tracer_provider=tracing.provider) as pub:
                await pub.publish(order(1))
                return len(tracing.spans())

        assert asyncio.run(main()) == 1


class TestPropagation:
    def test_traceparent_header_names_the_producer_span(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """The record's traceparent carries the producer span's trace and span id."""
        with publisher(transport, tracer_provider=tracing.provider) as pub:
            pub.publish(order(1))
        [record] = transport.records()
        [span] = tracing.spans()
        names = [k for k, _ in record.headers]
        assert names[:6] == ["ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time",
                             "content-type"]  # fmt: skip
        trace_id, span_id, flags = traceparent_ids(headers_of(record)["traceparent"])
        assert (trace_id, span_id) == (span.context.trace_id, span.context.span_id)
        assert flags & TraceFlags.SAMPLED

    def test_consumer_side_extract_continues_the_trace(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """propagate.extract of the headers gives a context whose child joins the trace."""
        with publisher(transport, tracer_provider=tracing.provider) as pub:
            pub.publish(order(1))
        [record] = transport.records()
        carrier = {k: v.decode() for k, v in record.headers}
        with tracing.tracer().start_as_current_span("process", context=extract(carrier)):
            pass
        [producer] = tracing.spans()
        [consumer] = tracing.spans("process")
        assert consumer.parent is not None and consumer.parent.is_remote
        assert consumer.parent.span_id == producer.context.span_id
        assert consumer.context.trace_id == producer.context.trace_id

    def test_baggage_and_tracestate_travel_in_headers(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """Baggage in the caller's context becomes a baggage header (global propagator)."""
        token = context.attach(baggage.set_baggage("tenant", "acme"))
        try:
            with publisher(transport, tracer_provider=tracing.provider) as pub:
                pub.publish(order(1))
        finally:
            context.detach(token)
        [record] = transport.records()
        assert headers_of(record)["baggage"] == b"tenant=acme"

    def test_explicit_propagator_is_used(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """propagator= replaces the global one (here: trace context only, no baggage)."""
        token = context.attach(baggage.set_baggage("tenant", "acme"))
        try:
            with publisher(
                transport,
                tracer_provider=tracing.provider,
                propagator=TraceContextTextMapPropagator(),
            ) as pub:
                pub.publish(order(1))
        finally:
            context.detach(token)
        [record] = transport.records()
        assert "traceparent" in headers_of(record)
        assert "baggage" not in headers_of(record)

    def test_user_headers_come_before_trace_headers(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """Extra headers follow the CloudEvents ones; trace headers are appended last."""
        with publisher(transport, tracer_provider=tracing.provider) as pub:
            pub.publish(order(1), headers=[("x-tenant", b"acme")])
        [record] = transport.records()
        names = [k for k, _ in record.headers]
        assert names[-2:] == ["x-tenant", "traceparent"]


class TestWithoutSdk:
    def test_no_span_and_no_header_without_a_current_trace(
        self, transport: MemoryTransport
    ) -> None:
        """With a no-op provider nothing is traced and no trace header is written."""
        with publisher(transport, tracer_provider=NoOpTracerProvider()) as pub:
            pub.publish(order(1))
        [record] = transport.records()
        assert "traceparent" not in headers_of(record)

    def test_a_valid_current_context_is_still_propagated(self, transport: MemoryTransport) -> None:
        """A span context attached by the caller (e.g. extracted) passes through unchanged."""
        parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
        token = context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
        try:
            with publisher(transport, tracer_provider=NoOpTracerProvider()) as pub:
                pub.publish(order(1))
        finally:
            context.detach(token)
        [record] = transport.records()
        assert traceparent_ids(headers_of(record)["traceparent"]) == (0xABC, 0xDEF, 1)

    def test_a_disabled_sdk_counts_as_no_sdk(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An SDK TracerProvider disabled by OTEL_SDK_DISABLED makes no per-event spans."""
        monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
        assert make_tracing(TracerProvider(), None).spans is False

    def test_the_api_default_global_provider_means_no_spans(self) -> None:
        """Without an SDK set globally, the publisher only propagates."""
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        assert make_tracing(None, None).spans is False


class TestSampling:
    @pytest.mark.parametrize("sampler", [ALWAYS_OFF, ParentBased(TraceIdRatioBased(0.0))])
    def test_unsampled_run_records_nothing_and_writes_no_header(
        self, sampler: Sampler, transport: MemoryTransport, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Sampled-out root spans record nothing and inject nothing (documented choice);
        the application's sampler is asked for each event."""
        tracing = Tracing(sampler)
        with publisher(transport, tracer_provider=tracing.provider) as pub:
            calls = count_start_span_calls(pub, monkeypatch)
            for n in range(50):
                pub.publish(order(n))
        assert tracing.spans() == [] and calls == [50]
        assert all("traceparent" not in headers_of(r) for r in transport.records())

    def test_unsampled_parent_is_propagated_with_its_flags(
        self, transport: MemoryTransport
    ) -> None:
        """A caller's valid but unsampled context is injected (flags 00), not recorded."""
        tracing = Tracing(ParentBased(ALWAYS_ON))
        parent = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(0))
        token = context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
        try:
            with publisher(transport, tracer_provider=tracing.provider) as pub:
                pub.publish(order(1))
        finally:
            context.detach(token)
        assert tracing.spans() == []
        [record] = transport.records()
        trace_id, _span_id, flags = traceparent_ids(headers_of(record)["traceparent"])
        assert (trace_id, flags & TraceFlags.SAMPLED) == (0x1234, 0)

    def test_the_applications_ratio_sampler_decides_every_event(
        self, transport: MemoryTransport, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With ParentBased(ratio), the SDK is asked for every event (eventwire takes no
        decision of its own) and records the spans whose trace id the ratio admits."""
        ratio = TraceIdRatioBased(0.25)
        tracing = Tracing(ParentBased(ratio))
        with publisher(transport, tracer_provider=tracing.provider) as pub:
            calls = count_start_span_calls(pub, monkeypatch)
            for n in range(800):
                pub.publish(order(n))
        spans = tracing.spans()
        assert 120 < len(spans) < 280  # ~200 expected; binomial sd ~12
        assert calls == [800]  # every decision is the SDK's, through start_span
        assert all((s.context.trace_id & LIMIT) < ratio.bound for s in spans)
        with_header = [r for r in transport.records() if "traceparent" in headers_of(r)]
        assert len(with_header) == len(spans)

    def test_sampled_parent_is_followed(self, transport: MemoryTransport) -> None:
        """ParentBased(ratio 0) still records a span whose parent is sampled."""
        tracing = Tracing(ParentBased(TraceIdRatioBased(0.0)))
        with (
            publisher(transport, tracer_provider=tracing.provider) as pub,
            Tracing().tracer().start_as_current_span("sampled-elsewhere"),
        ):
            pub.publish(order(1))
        assert len(tracing.spans()) == 1

    def test_custom_sampler_is_asked_for_every_event(self, transport: MemoryTransport) -> None:
        """A custom sampler decides each span itself."""

        class EveryOther(Sampler):
            def __init__(self) -> None:
                self.calls = 0

            def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
                self.calls += 1
                return SamplingResult(
                    Decision.RECORD_AND_SAMPLE if self.calls % 2 else Decision.DROP
                )

            def get_description(self) -> str:
                return "EveryOther"

        sampler = EveryOther()
        tracing = Tracing(sampler)
        with publisher(transport, tracer_provider=tracing.provider) as pub:
            for n in range(10):
                pub.publish(order(n))
        assert len(tracing.spans()) == 5
        assert sampler.calls == 10  # asked for every event

    def test_two_publishers_on_one_provider_trace_their_own_events(
        self, transport: MemoryTransport
    ) -> None:
        """Two publishers on one provider each trace their own events."""
        tracing = Tracing(ParentBased(TraceIdRatioBased(1.0)))
        with (
            publisher(transport, tracer_provider=tracing.provider) as a,
            publisher(transport, tracer_provider=tracing.provider) as b,
        ):
            a.publish(order(1))
            b.publish(order(2))
        ids: Sequence[int] = [s.context.trace_id for s in tracing.spans()]
        assert len(ids) == 2 and len(set(ids)) == 2


@event(topic="refunds", key="order_id")
class RefundIssued(msgspec.Struct, frozen=True):
    order_id: str


class TestBatchSpan:
    """publish_many: one `send` span per batch (messaging semconv for batches)."""

    def test_publish_many_makes_one_send_span_whose_context_every_record_carries(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """One PRODUCER span with messaging.batch.message_count; each record's traceparent
        names it; an invalid batch starts no span at all."""
        with publisher(transport, tracer_provider=tracing.provider) as pub:
            with pytest.raises(RoutingError):
                pub.publish_many([order(1), Unrouted(order_id="x")])
            assert tracing.started == 0
            pub.publish_many([order(n) for n in range(4)])
        [span] = tracing.spans()
        assert span.name == "send orders"
        assert span.kind is SpanKind.PRODUCER
        assert span.status.status_code is StatusCode.UNSET
        assert dict(span.attributes or {}) == {
            "messaging.system": "kafka",
            "messaging.operation.name": "send",
            "messaging.operation.type": "send",
            "messaging.destination.name": "orders",
            "messaging.batch.message_count": 4,
        }
        records = transport.records()
        assert len(records) == 4
        for record in records:
            trace_id, span_id, flags = traceparent_ids(headers_of(record)["traceparent"])
            assert (trace_id, span_id) == (span.context.trace_id, span.context.span_id)
            assert flags & TraceFlags.SAMPLED

    def test_batch_span_is_a_child_of_the_callers_span(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """The batch span's parent is the span current at publish_many()."""
        with (
            publisher(transport, tracer_provider=tracing.provider) as pub,
            tracing.tracer().start_as_current_span("handle-request") as request,
        ):
            pub.publish_many([order(n) for n in range(3)])
        [span] = tracing.spans()
        assert span.parent is not None
        assert span.parent.span_id == request.get_span_context().span_id

    def test_batch_span_ends_when_the_last_event_settles(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """While reports are held back the batch span is open; it ends with the last ack."""
        pub = publisher(transport, tracer_provider=tracing.provider)
        transport.pause()
        handles = pub.publish_many([order(n) for n in range(3)])
        assert tracing.spans() == []
        transport.resume()
        assert all(h.done() for h in handles)
        [span] = tracing.spans()
        assert span.end_time is not None
        pub.close(1)

    def test_a_failed_event_makes_the_batch_span_an_error(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """One failed delivery in the batch: status ERROR, error.type, the failed count."""
        pub = publisher(transport, tracer_provider=tracing.provider)
        transport.fail_next(1, "_MSG_TIMED_OUT")
        pub.publish_many([order(n) for n in range(3)])
        [span] = tracing.spans()
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes["error.type"] == "_MSG_TIMED_OUT"
        assert span.attributes["eventwire.batch.failed_count"] == 1
        with pytest.raises(DeliveryError):
            pub.close(1)

    def test_a_batch_cut_short_still_ends_its_span(self, tracing: Tracing) -> None:
        """Event 1 refused (too large), events 2.. never sent: the span ends anyway."""
        small = MemoryTransport(max_message_bytes=70)
        pub = publisher(small, tracer_provider=tracing.provider)
        big = OrderPlaced(order_id="o-big", customer_name="x" * 200, total_price=1.0)
        with pytest.raises(BatchPublishError):
            pub.publish_many([order(0), big, order(2), order(3)])
        [span] = tracing.spans()
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes["error.type"] == "MSG_SIZE_TOO_LARGE"
        assert span.attributes["messaging.batch.message_count"] == 4
        pub.close(1)

    def test_a_batch_of_several_topics_is_named_send(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """A batch across topics has no single destination: `send`, no destination.name."""
        with publisher(transport, tracer_provider=tracing.provider) as pub:
            pub.publish_many([order(1), RefundIssued(order_id="o-1")])
        [span] = tracing.spans("send")
        assert span.name == "send"
        assert span.attributes is not None
        assert "messaging.destination.name" not in span.attributes
        assert span.attributes["messaging.batch.message_count"] == 2

    def test_create_spans_when_asked_each_record_carries_its_own(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """trace_create_spans=True: a `create` span per event, whose context its record
        carries; the CLIENT send span links to each."""
        with publisher(transport, tracer_provider=tracing.provider, trace_create_spans=True) as pub:
            handles = pub.publish_many([order(n) for n in range(3)])
        creates = tracing.spans("create ")
        [send] = tracing.spans()
        assert [c.name for c in creates] == ["create orders"] * 3
        assert all(c.kind is SpanKind.PRODUCER for c in creates)
        assert [c.attributes["messaging.message.id"] for c in creates if c.attributes] == [
            h.event_id for h in handles
        ]
        assert {c.attributes["messaging.operation.type"] for c in creates if c.attributes} == {
            "create"
        }
        assert send.kind is SpanKind.CLIENT
        assert [link.context.span_id for link in send.links] == [c.context.span_id for c in creates]
        parents = [traceparent_ids(headers_of(r)["traceparent"])[1] for r in transport.records()]
        assert parents == [c.context.span_id for c in creates]

    def test_without_an_sdk_the_callers_context_is_in_every_record(
        self, transport: MemoryTransport
    ) -> None:
        """No SDK: publish_many passes the caller's trace on to each record, unchanged."""
        parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
        token = context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
        try:
            with publisher(transport, tracer_provider=NoOpTracerProvider()) as pub:
                pub.publish_many([order(n) for n in range(3)])
        finally:
            context.detach(token)
        ids = [traceparent_ids(headers_of(r)["traceparent"]) for r in transport.records()]
        assert ids == [(0xABC, 0xDEF, 1)] * 3


class TestAsyncBatchSpan:
    """AsyncPublisher.publish_many: one `send` span per batch too (it made one per event)."""

    def test_one_send_span_for_the_batch_and_an_invalid_event_fails_alone(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """Three valid events and one unroutable: the three share one PRODUCER span
        (message_count 3) whose context each record carries; the fourth gets its error."""
        from eventwire import AsyncPublisher

        async def main() -> list[Any]:
            async with AsyncPublisher(
                transport=transport, source="urn:test", tracer_provider=tracing.provider
            ) as pub:
                return await pub.publish_many(
                    [order(1), Unrouted(order_id="x"), order(2), order(3)]
                )

        results = asyncio.run(main())
        assert isinstance(results[1], RoutingError)
        assert [r.offset >= 0 for r in results if not isinstance(r, Exception)] == [True] * 3
        [span] = tracing.spans()
        assert span.kind is SpanKind.PRODUCER
        assert span.status.status_code is StatusCode.UNSET
        assert span.attributes is not None
        assert span.attributes["messaging.batch.message_count"] == 3
        records = transport.records()
        assert len(records) == 3
        for record in records:
            trace_id, span_id, _ = traceparent_ids(headers_of(record)["traceparent"])
            assert (trace_id, span_id) == (span.context.trace_id, span.context.span_id)

    def test_create_spans_when_asked(self, tracing: Tracing, transport: MemoryTransport) -> None:
        """trace_create_spans=True: a `create` span per event and one CLIENT send span."""
        from eventwire import AsyncPublisher

        async def main() -> None:
            async with AsyncPublisher(
                transport=transport,
                source="urn:test",
                tracer_provider=tracing.provider,
                trace_create_spans=True,
            ) as pub:
                await pub.publish_many([order(n) for n in range(3)])

        asyncio.run(main())
        assert [c.name for c in tracing.spans("create ")] == ["create orders"] * 3
        [send] = tracing.spans()
        assert send.kind is SpanKind.CLIENT


class _RaisesOnSecondSend(MemoryTransport):
    """A transport with a bug: its second send raises something no event owns."""

    def __init__(self) -> None:
        super().__init__()
        self.sends = 0

    def send(self, *args: Any, **kwargs: Any) -> Any:
        self.sends += 1
        if self.sends == 2:
            raise RuntimeError("a transport bug")
        return super().send(*args, **kwargs)


class TestAsyncBatchSpanEnds:
    def test_an_unexpected_error_mid_batch_still_ends_the_span(self, tracing: Tracing) -> None:
        """The error propagates (as before), and the batch span ends: the events after it
        were never sent and are counted off."""
        from eventwire import AsyncPublisher

        async def main() -> None:
            pub = AsyncPublisher(
                transport=_RaisesOnSecondSend(), source="urn:test", tracer_provider=tracing.provider
            )
            with pytest.raises(RuntimeError, match="a transport bug"):
                await pub.publish_many([order(n) for n in range(4)])
            await pub.close(1)

        asyncio.run(main())
        [span] = tracing.spans()
        assert span.attributes is not None
        assert span.attributes["messaging.batch.message_count"] == 4

    def test_a_publisher_of_another_loop_traces_nothing(self, tracing: Tracing) -> None:
        """Bound to another loop: each event gets PublisherStateError and no batch span is
        made for events that were never sent."""
        from eventwire import AsyncPublisher, PublisherStateError

        pub = AsyncPublisher(
            transport=MemoryTransport(), source="urn:test", tracer_provider=tracing.provider
        )

        async def first() -> None:
            await pub.publish(order(1))

        async def second() -> list[Any]:
            return await pub.publish_many([order(2), order(3)])

        asyncio.run(first())
        results = asyncio.run(second())
        assert [type(r) for r in results] == [PublisherStateError, PublisherStateError]
        assert len(tracing.spans()) == 1  # the first publish's own span


class CountingIds(IdGenerator):
    """The application's own id generator: sequential ids, counted."""

    def __init__(self) -> None:
        self.trace_ids = 0
        self.span_ids = 0

    def generate_trace_id(self) -> int:
        self.trace_ids += 1
        return (0xA << 64) | self.trace_ids

    def generate_span_id(self) -> int:
        self.span_ids += 1
        return self.span_ids


class TestPublicApiOnly:
    """eventwire goes through the OpenTelemetry API the application configured."""

    def test_the_applications_id_generator_is_left_in_place_and_used(
        self, transport: MemoryTransport, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The tracer eventwire got keeps the provider's id generator (not swapped for a
        wrapper), and every span's ids are the ones that generator made."""
        ids = CountingIds()
        provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(1.0)), id_generator=ids)
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracers: list[Any] = []
        real_get_tracer = provider.get_tracer

        def get_tracer(*args: Any, **kwargs: Any) -> Any:
            tracers.append(real_get_tracer(*args, **kwargs))
            return tracers[-1]

        monkeypatch.setattr(provider, "get_tracer", get_tracer)
        with publisher(transport, tracer_provider=provider) as pub:
            for n in range(5):
                pub.publish(order(n))
        [tracer] = tracers
        assert tracer.id_generator is ids
        spans = exporter.get_finished_spans()
        assert sorted(s.context.trace_id for s in spans) == [(0xA << 64) | n for n in range(1, 6)]
        assert ids.trace_ids == 5

    def test_a_provider_of_the_api_alone_is_traced_through_start_span(
        self, transport: MemoryTransport
    ) -> None:
        """A TracerProvider that only implements the API (no SDK attributes at all) gets
        one start_span per event, with the semconv attributes, and a traceparent."""
        sdk = Tracing()

        class ApiOnlyTracer(trace.Tracer):
            __slots__ = ("calls",)

            def __init__(self) -> None:
                self.calls: list[dict[str, Any]] = []

            def start_span(
                self,
                name: str,
                context: Any = None,
                kind: Any = None,
                attributes: Any = None,
                links: Any = None,
                *args: Any,
                **kwargs: Any,
            ) -> trace.Span:
                self.calls.append(dict(attributes or {}))
                return sdk.tracer().start_span(name, context, kind, attributes, links)

            def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
                raise AssertionError("not used by eventwire")

        api_tracer = ApiOnlyTracer()

        class ApiOnlyProvider(trace.TracerProvider):
            def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
                return api_tracer

        with publisher(transport, tracer_provider=ApiOnlyProvider()) as pub:
            handle = pub.publish(order(7))
        [attributes] = api_tracer.calls
        assert attributes["messaging.message.id"] == handle.event_id
        assert attributes["messaging.kafka.message.key"] == "o-7"
        [span] = sdk.spans()
        [record] = transport.records()
        assert traceparent_ids(headers_of(record)["traceparent"])[1] == span.context.span_id
        sdk.provider.shutdown()

    def test_tracing_module_reads_no_private_opentelemetry_attribute(self) -> None:
        """The source of eventwire's tracing names no private OpenTelemetry attribute."""
        import inspect
        import re

        from eventwire.observability import tracing as module

        source = inspect.getsource(module)
        private = re.findall(
            r"\b(?:getattr\([^)]*['\"]_\w+|otel_context\._\w+|\.sampler\b|"
            r"\.id_generator\b|opentelemetry\.sdk)",
            source,
        )
        assert private == []


class _NoOffset:
    """A delivery report with no offset: what confluent-kafka gives with acks=0."""

    def partition(self) -> int:
        return 2

    def offset(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


class TestOutcomeAttributes:
    """A span says only what Kafka answered, and a durable event is no failure."""

    def test_an_ack_without_an_offset_sets_no_offset_and_the_result_says_minus_one(
        self, tracing: Tracing
    ) -> None:
        """acks=0: confluent-kafka gives no offset. The span has no messaging.kafka.offset
        (it used to say 0) and DeliveryResult.offset is -1, not a made-up 0."""
        from eventwire._handle import DeliveryHandle
        from eventwire._inflight import InFlight
        from eventwire.observability.tracing import finish_span

        span = tracing.tracer().start_span("send orders")
        finish_span(span, _NoOffset(), None)  # type: ignore[arg-type]
        [ended] = tracing.exporter.get_finished_spans()
        attributes = dict(ended.attributes or {})
        assert attributes["messaging.destination.partition.id"] == "2"
        assert "messaging.kafka.offset" not in attributes
        ledger = InFlight()
        handle = DeliveryHandle(ledger, "e-1", "test.Order", "orders", 0)
        ledger.add(handle)
        handle(None, _NoOffset())  # type: ignore[arg-type]
        result = handle.result(0)
        assert (result.partition, result.offset) == (2, -1)

    def test_events_left_in_the_outbox_at_close_end_their_spans_without_error(
        self, tracing: Tracing, tmp_path: Any
    ) -> None:
        """_IN_OUTBOX is deferred, not failed (the next relay sends the event): the event's
        span and a batch's span end with status UNSET and eventwire.outcome=in_outbox."""
        from eventwire.outbox import SQLiteOutbox

        store = SQLiteOutbox(tmp_path / "outbox.db")
        pub = Publisher(
            transport=MemoryTransport(),
            source="urn:test",
            outbox=store,
            relay=False,
            tracer_provider=tracing.provider,
        )
        single = pub.publish(order(1))
        pub.publish_many([order(2), order(3)])
        pub.close(0.5)
        assert single.failure is not None and single.failure.code == "_IN_OUTBOX"
        spans = tracing.spans()
        assert len(spans) == 2
        for span in spans:
            attributes = dict(span.attributes or {})
            assert span.status.status_code is StatusCode.UNSET, span.status
            assert attributes["eventwire.outcome"] == "in_outbox"
            assert "error.type" not in attributes
        assert store.status().pending == 3


class _CtrlCWhileWaiting(MemoryTransport):
    """Ctrl-C while publish() waits for room: the first send after ``full_at`` finds
    the queue full, and the wait for room raises KeyboardInterrupt."""

    def __init__(self, full_at: int) -> None:
        super().__init__()
        self.sends = 0
        self.full_at = full_at

    def send(self, *args: Any, **kwargs: Any) -> Any:
        self.sends += 1
        if self.sends == self.full_at:
            self.queue_full_next(10**6)
        return super().send(*args, **kwargs)

    def wait_for_space(self, timeout: float) -> None:
        self.heal()  # (for close())
        raise KeyboardInterrupt


class TestInterruptedWhileWaitingForRoom:
    """observability review 2, F02: a KeyboardInterrupt out of the wait ends the spans."""

    def test_publish_interrupted_ends_its_span_once(self, tracing: Tracing) -> None:
        transport = _CtrlCWhileWaiting(full_at=1)
        pub = publisher(transport, tracer_provider=tracing.provider, enqueue_timeout=5)
        with pytest.raises(KeyboardInterrupt):
            pub.publish(order(1))
        [span] = tracing.spans()
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None and span.attributes["error.type"] == "_QUEUE_FULL"
        assert pub.in_flight == 0  # never enqueued: nothing for close() to wait for
        pub.close(1)
        assert len(tracing.spans()) == 1
        assert transport.records() == []

    def test_publish_many_interrupted_ends_the_batch_span_once(self, tracing: Tracing) -> None:
        transport = _CtrlCWhileWaiting(full_at=2)  # event 0 goes out, event 1 waits
        pub = publisher(transport, tracer_provider=tracing.provider, enqueue_timeout=5)
        with pytest.raises(KeyboardInterrupt):
            pub.publish_many([order(0), order(1), order(2)])
        pub.close(1)
        [span] = tracing.spans()
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes["error.type"] == "_QUEUE_FULL"
        assert span.attributes["eventwire.batch.failed_count"] == 1
        assert len(transport.records()) == 1
        assert tracing.started == 1  # and it ended: no span left open
