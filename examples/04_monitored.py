"""Monitored publisher: OpenTelemetry spans, a Prometheus /metrics endpoint, JSON logs.

* **Traces.** An OpenTelemetry SDK ``TracerProvider`` (here exporting to memory, so the
  example can print a compact view; use an OTLP exporter in production) is passed to the
  publisher. Each event gets a PRODUCER span ``send <topic>`` that starts in
  ``publish()`` under the caller's span and ends when the broker answers, with the
  partition and offset -- or with ERROR and ``error.type``. Its W3C ``traceparent`` is
  written into the record headers, so a consumer continues the same trace.
* **Metrics.** ``serve_prometheus(port)`` serves ``/metrics`` from an SDK
  ``MeterProvider`` that the publisher reports to: ``eventwire_events_published_total``,
  ``eventwire_publish_duration_seconds``, in-flight/queue gauges and librdkafka
  statistics (broker round-trip time, queue bytes, transmission errors).
* **Logs.** eventwire logs through stdlib ``logging`` (loggers ``eventwire.*``);
  structlog's stdlib integration (``ProcessorFormatter`` with ``ExtraAdder``) renders
  its records and the example's own structlog events as one JSON stream on stderr.
  eventwire logs nothing per event when all goes well; failures are logged with the
  event's id, type and topic.

    pip install 'eventwire[prometheus]'
    python examples/04_monitored.py            # or with EVENTWIRE_BOOTSTRAP=host:port
"""

from __future__ import annotations

import logging
import sys
import urllib.request

import msgspec
import structlog
from _common import bootstrap
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eventwire import DeliveryError, Publisher, event, serve_prometheus
from eventwire_devkit.consume import read_topic

TOPIC = "orders-monitored"

# structlog over stdlib logging, so eventwire's records (stdlib, "foreign" to structlog)
# and this example's own events share one JSON handler; ExtraAdder turns eventwire's
# fields into keys (the README's "Logging" recipe).
shared = [
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso"),
]
structlog.configure(
    processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
)
handler = logging.StreamHandler(sys.stderr)
handler.setFormatter(
    structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(),
        ],
    )
)
# force=True replaces the plain stderr handler that _common installed on the root logger.
logging.basicConfig(handlers=[handler], level=logging.INFO, force=True)
log = structlog.get_logger("shop")


@event(topic=TOPIC, key="order_id", type_name="com.example.orders.OrderPlaced")
class OrderPlaced(msgspec.Struct, frozen=True):
    order_id: str
    customer_name: str
    total_price: float


def main() -> int:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = tracer_provider.get_tracer("shop")

    metrics = serve_prometheus(0)  # 0: any free port; use e.g. 9464 in a service
    print(f"metrics: {metrics.url}")
    orders = [OrderPlaced(f"order-{n}", "Ada Lovelace", 10.0 * n) for n in range(1, 6)]
    failed = 0
    with bootstrap() as servers:
        with Publisher(
            servers,
            source="urn:example:shop",
            tracer_provider=tracer_provider,
            meter_provider=metrics.meter_provider,
        ) as publisher:
            with tracer.start_as_current_span("checkout") as checkout:
                handles = [publisher.publish(order) for order in orders]
                try:  # far over message.max.bytes: refused at once, its span ends in error
                    publisher.publish(OrderPlaced("order-huge", "x" * 2_000_000, 0.0))
                except DeliveryError as exc:
                    failed = len(exc.failures)
                    log.warning("order_not_published", **_fields(exc))
            results = [h.result(timeout=30) for h in handles]
            publisher.flush(30)
            scraped = urllib.request.urlopen(metrics.url, timeout=5).read().decode()
        ids = {r.event_id.encode() for r in results}
        records = [
            r for r in read_topic(servers, TOPIC, timeout=30, idle=1.0) if r.header("ce_id") in ids
        ]

    print(f"\ntrace {checkout.get_span_context().trace_id:032x}:")
    for span in sorted(spans.get_finished_spans(), key=lambda s: s.start_time or 0):
        attrs = dict(span.attributes or {})
        if "messaging.kafka.offset" in attrs:
            where = (
                f"partition {attrs['messaging.destination.partition.id']} "
                f"offset {attrs['messaging.kafka.offset']}"
            )
        elif "error.type" in attrs:
            where = f"error.type={attrs['error.type']}"
        else:
            where = "(the caller's span: the parent of the sends)"
        print(f"  {span.name:24} {span.kind.name:8} {span.status.status_code.name:5} {where}")

    first = min(records, key=lambda r: (r.partition, r.offset))
    print(f"\ntraceparent of a consumed record: {first.header('traceparent')!r}")

    print("\nscraped /metrics (excerpt):")
    for line in scraped.splitlines():
        if line.startswith(SHOWN):
            print(f"  {line}")
    metrics.close()
    print(
        f"\nsummary: published={len(orders) + 1} acknowledged={len(results)} failed={failed} lost=0"
    )
    return 0


SHOWN = (
    "eventwire_events_published_total",
    "eventwire_publish_duration_seconds_count",
    "eventwire_in_flight_events",
    "eventwire_producer_queue_messages",
)


def _fields(exc: DeliveryError) -> dict[str, str]:
    failure = exc.failures[0]
    return {
        "event_id": failure.event_id,
        "event_type": failure.event_type,
        "topic": failure.topic,
        "code": failure.code,
    }


if __name__ == "__main__":
    raise SystemExit(main())
