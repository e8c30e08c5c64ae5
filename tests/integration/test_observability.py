"""Observability against the real broker: spans, trace headers, /metrics, logs, secrets.

Each test builds its own TracerProvider / MeterProvider and passes it explicitly; no
OpenTelemetry global is set. A handler is added to the ``eventwire`` logger only inside
``captured_logs`` and removed after.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode

from eventwire import (
    BrokerUnavailableError,
    DeliveryError,
    EventwireError,
    KafkaConfig,
    Publisher,
    Route,
)
from eventwire.observability.logging import capture_logs
from eventwire.observability.prometheus import serve_prometheus
from eventwire_devkit.consume import read_topic

from .conftest import Placed


class Traces:
    """A private SDK TracerProvider exporting to memory."""

    def __init__(self, sampler: Sampler | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(sampler=sampler) if sampler else TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self, prefix: str = "send ") -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith(prefix)]


@pytest.fixture
def traces() -> Iterator[Traces]:
    t = Traces()
    yield t
    t.provider.shutdown()


def routes(topic: str) -> dict[type, Route]:
    return {Placed: Route(topic=topic, key="order_id", type_name="test.Placed")}


def traceparent(headers: Any) -> tuple[int, int, int]:
    value = dict(headers)["traceparent"].decode()
    _version, trace_id, span_id, flags = value.split("-")
    return int(trace_id, 16), int(span_id, 16), int(flags, 16)


def incompressible(n: int) -> str:
    return base64.b64encode(os.urandom(n)).decode()


def create_topic(bootstrap: str, config: dict[str, str]) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"t-obs-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, 1, -1, config=config)])[name].result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait for a leader before producing
        meta = admin.list_topics(name, timeout=5).topics[name]
        if meta.error is None and all(p.leader >= 0 for p in meta.partitions.values()):
            return name
        time.sleep(0.1)
    raise AssertionError(f"topic {name} has no leader")


class TestSpansOnKafka:
    def test_one_span_per_event_ends_after_the_ack_with_partition_and_offset(
        self, traces: Traces, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """Each event's PRODUCER span is finished once result() returns, with its position."""
        with Publisher(
            kafka_bootstrap, routes=routes(kafka_topic), tracer_provider=traces.provider
        ) as pub:
            handles = [pub.publish(Placed(order_id=f"o{n}", seq=n)) for n in range(20)]
            results = [h.result(30) for h in handles]
            spans = traces.spans()  # read before close(): ended by the ack itself
        assert len(spans) == 20
        by_id = {s.attributes["messaging.message.id"]: s for s in spans if s.attributes}
        for n, result in enumerate(results):
            span = by_id[result.event_id]
            assert span.name == f"send {kafka_topic}" and span.kind is SpanKind.PRODUCER
            assert span.attributes is not None
            assert span.attributes["messaging.destination.partition.id"] == str(result.partition)
            assert span.attributes["messaging.kafka.offset"] == result.offset
            assert span.attributes["messaging.kafka.message.key"] == f"o{n}"
            assert span.end_time is not None and span.start_time is not None
            assert span.end_time >= span.start_time
            assert span.status.status_code is StatusCode.UNSET

    def test_oversize_event_ends_its_span_with_msg_size_too_large(
        self, traces: Traces, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """librdkafka's immediate MSG_SIZE_TOO_LARGE ends the span with error status/type."""
        with Publisher(
            kafka_bootstrap, routes=routes(kafka_topic), tracer_provider=traces.provider
        ) as pub:
            with pytest.raises(DeliveryError):
                pub.publish(Placed(order_id="big", seq=0, note="x" * 1_100_000))
        [span] = traces.spans()
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes["error.type"] == "MSG_SIZE_TOO_LARGE"
        assert "MSG_SIZE_TOO_LARGE" in (span.status.description or "")

    def test_broker_rejection_in_the_delivery_report_ends_the_span_with_error(
        self, traces: Traces, kafka_bootstrap: str
    ) -> None:
        """A record over the topic's max.message.bytes fails in its report; the span says so."""
        topic = create_topic(kafka_bootstrap, {"max.message.bytes": "2048"})
        pub = Publisher(kafka_bootstrap, routes=routes(topic), tracer_provider=traces.provider)
        handle = pub.publish(Placed(order_id="big", seq=0, note=incompressible(30_000)))
        with pytest.raises(DeliveryError) as info:
            handle.result(30)
        code = info.value.failures[0].code
        assert "TOO_LARGE" in code
        [span] = traces.spans()
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None and span.attributes["error.type"] == code
        assert handle.event_id in (span.status.description or "")
        pub.close(10)  # result() raised the failure: close() does not raise it again

    def test_traceparent_read_back_matches_the_span_and_continues_the_trace(
        self, traces: Traces, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """An independent consumer finds the span's ids in traceparent and can continue it."""
        with Publisher(
            kafka_bootstrap, routes=routes(kafka_topic), tracer_provider=traces.provider
        ) as pub:
            result = pub.publish(Placed(order_id="o-1", seq=1)).result(30)
        [record] = read_topic(kafka_bootstrap, kafka_topic, expected=1, timeout=60, idle=0.5)
        [producer] = traces.spans()
        assert record.header("ce_id") == result.event_id.encode()
        trace_id, span_id, _flags = traceparent(record.headers)
        assert (trace_id, span_id) == (producer.context.trace_id, producer.context.span_id)
        carrier = {k: v.decode() for k, v in record.headers}
        tracer = traces.provider.get_tracer("consumer")
        with tracer.start_as_current_span(
            f"process {kafka_topic}", context=extract(carrier), kind=SpanKind.CONSUMER
        ):
            pass
        [consumer] = traces.spans("process ")
        assert consumer.context.trace_id == producer.context.trace_id
        assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id

    def test_publish_many_one_batch_span_whose_traceparent_every_record_carries(
        self, traces: Traces, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """publish_many: ONE send span (messaging.batch.message_count), finished once every
        event is acknowledged by the broker; each record read back names it in traceparent."""
        with Publisher(
            kafka_bootstrap, routes=routes(kafka_topic), tracer_provider=traces.provider
        ) as pub:
            handles = pub.publish_many([Placed(order_id=f"o{n % 5}", seq=n) for n in range(30)])
            for handle in handles:
                handle.result(30)
            [span] = traces.spans()  # read before close(): ended by the last ack
        assert span.name == f"send {kafka_topic}" and span.kind is SpanKind.PRODUCER
        assert span.attributes is not None
        assert span.attributes["messaging.batch.message_count"] == 30
        assert span.status.status_code is StatusCode.UNSET
        records = read_topic(kafka_bootstrap, kafka_topic, expected=30, timeout=60, idle=0.5)
        assert len(records) == 30
        for record in records:
            trace_id, span_id, _flags = traceparent(record.headers)
            assert (trace_id, span_id) == (span.context.trace_id, span.context.span_id)

    @pytest.mark.parametrize("sampler", [ALWAYS_OFF, ParentBased(TraceIdRatioBased(0.0))])
    def test_unsampled_run_records_no_spans_and_writes_no_trace_headers(
        self, sampler: Sampler, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """With everything sampled out, nothing is recorded and no traceparent is written."""
        traces = Traces(sampler)
        with Publisher(
            kafka_bootstrap, routes=routes(kafka_topic), tracer_provider=traces.provider
        ) as pub:
            for n in range(50):
                pub.publish(Placed(order_id=f"o{n}", seq=n))
        records = read_topic(kafka_bootstrap, kafka_topic, expected=50, timeout=60, idle=0.5)
        assert len(records) == 50
        assert traces.exporter.get_finished_spans() == ()
        assert all(r.header("traceparent") is None for r in records)


def scrape(url: str) -> str:
    return urllib.request.urlopen(url, timeout=5).read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the series ``name{labels}`` (labels in any order), or None."""
    for line in text.splitlines():
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if found == labels:
            return float(m.group(3))
    return None


class TestMetricsEndpoint:
    def test_scraped_counter_and_histogram_match_the_events_published(
        self, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """After N acks, /metrics shows published_total N and a duration histogram of N."""
        n = 250
        with serve_prometheus(0) as server:
            pub = Publisher(
                kafka_bootstrap,
                routes=routes(kafka_topic),
                meter_provider=server.meter_provider,
                overrides={"statistics.interval.ms": 200},
            )
            for i in range(n):
                pub.publish(Placed(order_id=f"o{i % 10}", seq=i))
            pub.flush(30)
            deadline = time.monotonic() + 10
            live = scrape(server.url)
            while "eventwire_broker_rtt_seconds" not in live and time.monotonic() < deadline:
                time.sleep(0.2)
                live = scrape(server.url)
            pub.close(10)
            final = scrape(server.url)
        labels = {"topic": kafka_topic, "outcome": "delivered"}
        assert sample(final, "eventwire_events_published_total", **labels) == n
        assert sample(final, "eventwire_publish_duration_seconds_count") == n
        assert sample(final, "eventwire_publish_duration_seconds_bucket", le="+Inf") == n
        assert 0 < (sample(final, "eventwire_publish_duration_seconds_sum") or 0) < n * 30
        assert sample(final, "eventwire_events_published_total", topic=kafka_topic,
                      outcome="failed") is None  # fmt: skip
        # Gauges while the publisher was open: in flight, librdkafka's queue, statistics.
        assert sample(live, "eventwire_in_flight_events") == 0
        assert sample(live, "eventwire_producer_queue_messages") == 0
        assert re.search(r'^eventwire_broker_rtt_seconds\{broker="[^"]+",producer="[^"]+"\} ',
                         live, re.M)  # fmt: skip
        assert re.search(r"^eventwire_producer_queue_bytes\{producer=", live, re.M)
        assert re.search(r"^eventwire_broker_tx_errors\{broker=", live, re.M)


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Render every eventwire event (any level) as key=value lines into a StringIO.

    Through structlog's stdlib integration, as an application would: a handler on the
    ``eventwire`` logger with a ``ProcessorFormatter``.
    """
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.KeyValueRenderer(key_order=["event"]),
            ],
        )
    )
    with capture_logs():  # DEBUG on the eventwire logger, fresh collapse windows
        logging.getLogger("eventwire").addHandler(handler)
        try:
            yield buffer
        finally:
            logging.getLogger("eventwire").removeHandler(handler)


class TestLogs:
    def test_nothing_is_logged_per_event_on_the_success_path(
        self, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """Publishing 500 events that are all acknowledged logs no eventwire event."""
        with captured_logs() as logs:
            with Publisher(kafka_bootstrap, routes=routes(kafka_topic)) as pub:
                for n in range(500):
                    pub.publish(Placed(order_id=f"o{n}", seq=n))
        lines = [line for line in logs.getvalue().splitlines() if "librdkafka_log" not in line]
        assert lines == []

    def test_failures_are_logged_with_the_event_bound(self, kafka_bootstrap: str) -> None:
        """delivery_failed carries event_id, event_type, topic and the Kafka error code."""
        topic = create_topic(kafka_bootstrap, {"max.message.bytes": "2048"})
        with captured_logs() as logs:
            pub = Publisher(kafka_bootstrap, routes=routes(topic))
            handle = pub.publish(Placed(order_id="big", seq=0, note=incompressible(30_000)))
            with pytest.raises(DeliveryError):
                handle.result(30)
            pub.close(10)  # result() raised it: not raised again
        [line] = [ln for ln in logs.getvalue().splitlines() if ln.startswith("event='delivery_f")]
        assert f"event_id='{handle.event_id}'" in line
        assert "event_type='test.Placed'" in line and f"topic='{topic}'" in line
        assert "code='MSG_SIZE_TOO_LARGE'" in line and "level='warning'" in line


SECRET = "Sup3r-Secr3t-PW-7f2c"
OAUTH_SECRET = "0auth-Cl1ent-Secr3t-91ab"
KEY_PASSWORD = "Key-Passw0rd-44de"


class TestSecretsNeverLeak:
    @pytest.mark.parametrize("where", ["sasl-on-plaintext-listener", "unreachable"])
    def test_configured_secrets_appear_in_no_output(
        self, where: str, kafka_bootstrap: str, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """Secrets stay out of logs, stdout/stderr, reprs, exceptions and the config dump."""
        bootstrap = kafka_bootstrap if where.startswith("sasl") else "127.0.0.1:9"
        config = KafkaConfig(
            bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_username="svc-orders",
            sasl_password=SECRET,
            ssl_key_password=KEY_PASSWORD,
            overrides={
                "sasl.oauthbearer.client.secret": OAUTH_SECRET,
                "message.timeout.ms": 3000,
                "debug": "broker,security,conf,msg",  # make librdkafka talk a lot
            },
        )
        texts: list[str] = [repr(config), str(config.redacted()), repr(config.overrides)]
        with captured_logs() as logs:
            with pytest.raises(BrokerUnavailableError) as refused:
                Publisher(config=config, routes=routes("orders"), connect_timeout=2)
            texts += [str(refused.value), repr(refused.value)]
            pub = Publisher(config=config, routes=routes("orders"), connect_timeout=None)
            texts.append(repr(pub))
            handle = pub.publish(Placed(order_id="o-1", seq=1))
            with pytest.raises(DeliveryError) as failed:
                handle.result(30)
            texts += [str(failed.value), repr(handle), repr(failed.value.failures)]
            pub.publish(Placed(order_id="o-2", seq=2))  # not observed: close() reports it
            with pytest.raises(EventwireError) as closing:
                pub.close(2)
            texts.append(str(closing.value))
        out, err = capfd.readouterr()
        log_text = logs.getvalue()
        everything = "\n".join([*texts, log_text, out, err])
        assert "kafka_error" in log_text or "librdkafka_log" in log_text  # errors were logged
        assert "sasl.password" in everything  # the config dump really was inspected
        for secret in (SECRET, OAUTH_SECRET, KEY_PASSWORD):
            assert secret not in everything, f"{secret} leaked"
