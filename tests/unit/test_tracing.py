"""OpenTelemetry tracing on the memory transport: spans, their end, propagation, sampling.

Every test passes its own TracerProvider explicitly; no global is ever set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
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
    DeliveryError,
    ProducerFatalError,
    Publisher,
    RoutingError,
)
from eventwire.observability.tracing import make_tracing
from eventwire.transports.memory import MemoryRecord, MemoryTransport

from .conftest import Unrouted, order

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

    def test_publish_many_traces_only_events_it_sends(
        self, tracing: Tracing, transport: MemoryTransport
    ) -> None:
        """publish_many makes one span per event; an invalid batch makes none."""
        with publisher(transport, tracer_provider=tracing.provider) as pub:
            with pytest.raises(RoutingError):
                pub.publish_many([order(1), Unrouted(order_id="x")])
            assert tracing.started == 0
            pub.publish_many([order(n) for n in range(4)])
        assert len(tracing.spans()) == 4

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
        """Sampled-out root spans are never started and inject nothing (documented choice)."""
        tracing = Tracing(sampler)
        with publisher(transport, tracer_provider=tracing.provider) as pub:
            calls = count_start_span_calls(pub, monkeypatch)
            for n in range(50):
                pub.publish(order(n))
        assert tracing.spans() == [] and calls == [0]
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

    def test_ratio_shortcut_agrees_with_the_sdk_sampler(
        self, transport: MemoryTransport, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With ParentBased(ratio), recorded spans are those whose trace id the ratio admits."""
        ratio = TraceIdRatioBased(0.25)
        tracing = Tracing(ParentBased(ratio))
        with publisher(transport, tracer_provider=tracing.provider) as pub:
            calls = count_start_span_calls(pub, monkeypatch)
            for n in range(800):
                pub.publish(order(n))
        spans = tracing.spans()
        assert 120 < len(spans) < 280  # ~200 expected; binomial sd ~12
        assert calls == [len(spans)]  # start_span only for the spans that record
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

    def test_unknown_sampler_is_asked_for_every_event(self, transport: MemoryTransport) -> None:
        """A custom sampler gets no shortcut and decides each span itself."""

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
        assert sampler.calls == 10  # asked for every event: no shortcut of its own

    def test_shortcut_is_shared_safely_by_two_publishers(self, transport: MemoryTransport) -> None:
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
