"""``guide-recipe``: the guide's ``OrderEventPublisher``, written from its text.

Per event: an OpenTelemetry span (``start_as_current_span`` + ``set_attribute``),
msgspec encoding, ``produce()`` with a delivery callback, ``poll(0)``; the
callback makes a structlog ``debug`` call (``error`` on failure). Producer
properties as the guide lists them: acks=all, retries=5,
max.in.flight.requests.per.connection=1, snappy, idempotence (librdkafka's
default linger.ms=5 applies; the guide sets none).

Set-up choices (a typical production configuration):

* OTel SDK ``TracerProvider`` (ALWAYS_ON sampler) with a ``BatchSpanProcessor``
  and an exporter that drops spans (:mod:`bench.otel`).
* structlog configured with ``make_filtering_bound_logger(INFO)`` (debug calls
  are no-ops), ``PrintLoggerFactory(stderr)`` and ``cache_logger_on_first_use``.

Harness additions, not in the guide: a counter in the delivery callback (to
verify every ack), and a retry on ``BufferError`` around ``publish_order``. In
latency mode the guide's own "For Low Latency" settings are applied on top
(linger.ms=0, batch.size=16384); acks are then still only served by the
``poll(0)`` inside the *next* ``publish_order`` call, as the guide is written.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import defaultdict, deque
from typing import Any

import msgspec
import structlog
from confluent_kafka import Producer
from opentelemetry import trace
from structlog import get_logger

from bench.contenders._context import RunContext
from bench.measure import LatencySample, Pacer, Stopwatch, ThroughputSample
from bench.otel import finish, install_sdk
from bench.profiling import profiled
from eventwire_devkit.demo.messages import OrderEventMessage

__all__ = ["OrderEventPublisher", "latency", "throughput"]


class KafkaProducerError(Exception):
    """Raised when a flush leaves messages undelivered (as in the guide)."""


class OrderEventPublisher:
    """The guide's publisher, as written (plus an ack counter for the benchmark)."""

    def __init__(self, brokers: list[str], topic: str, extra: dict[str, Any] | None = None) -> None:
        self.topic = topic
        self.logger = get_logger(__name__)
        self.tracer = trace.get_tracer(__name__)
        self.encoder = msgspec.json.Encoder()
        config: dict[str, Any] = {
            "bootstrap.servers": ",".join(brokers),
            "acks": "all",
            "retries": 5,
            "max.in.flight.requests.per.connection": 1,
            "compression.type": "snappy",
            "enable.idempotence": True,
        }
        config.update(extra or {})
        self.producer = Producer(config)
        self.acked = 0
        self.failed = 0
        self.on_ack: Any = None

    def publish_order(self, event: OrderEventMessage) -> None:
        """Publish order event with order_id as partition key."""
        with self.tracer.start_as_current_span("publish_order") as span:
            span.set_attribute("order_id", event.order_id)
            payload = self.encoder.encode(event)
            self.producer.produce(
                topic=self.topic,
                key=event.order_id.encode("utf-8"),
                value=payload,
                on_delivery=self._delivery_callback,
            )
            self.producer.poll(0)

    def _delivery_callback(self, err: Any, msg: Any) -> None:
        """Handle delivery callback."""
        if err:
            self.failed += 1
            self.logger.error("delivery_failed", error=str(err))
        else:
            self.acked += 1
            if self.on_ack is not None:
                self.on_ack(msg)
            self.logger.debug("message_delivered", partition=msg.partition(), offset=msg.offset())

    def flush(self, timeout: float = 10.0) -> None:
        """Flush all pending messages."""
        remaining = self.producer.flush(timeout)
        if remaining > 0:
            raise KafkaProducerError(f"Failed to flush {remaining} messages")

    def close(self) -> None:
        """Close producer and release resources."""
        self.flush()


def _configure_structlog() -> None:
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def _publish(publisher: OrderEventPublisher, event: OrderEventMessage) -> None:
    while True:
        try:
            publisher.publish_order(event)
            return
        except BufferError:
            publisher.producer.poll(0.005)


def _setup(ctx: RunContext, extra: dict[str, Any] | None = None) -> tuple[Any, Any, Any]:
    _configure_structlog()
    provider, exporter = install_sdk("all")
    publisher = OrderEventPublisher(ctx.bootstrap.split(","), ctx.topic, extra)
    for i in range(ctx.warmup):
        _publish(publisher, ctx.pool[i & ctx.mask])
    publisher.flush(30)
    publisher.acked = 0
    return publisher, provider, exporter


def throughput(ctx: RunContext) -> ThroughputSample:
    """Call publish_order for ctx.events events, then flush."""
    publisher, provider, exporter = _setup(ctx)
    pool, mask = ctx.pool, ctx.mask
    sw = Stopwatch()
    with profiled(ctx.profile_path):
        sw.start()
        for i in range(ctx.events):
            _publish(publisher, pool[i & mask])
        publisher.flush(120)
        sw.stop()
    spans = finish(provider, exporter)
    return ThroughputSample(
        publisher.acked,
        publisher.failed,
        sw.wall_s,
        sw.cpu_s,
        [f"{spans} spans exported (incl. {ctx.warmup} warm-up)"],
    )


def latency(ctx: RunContext) -> LatencySample:
    """publish_order at ctx.rate with the guide's low-latency settings; sleep in between.

    An ack is matched to its send by key (FIFO per key: one key is one partition,
    acknowledged in order).
    """
    publisher, _provider, _exporter = _setup(ctx, {"linger.ms": 0, "batch.size": 16384})
    clock = time.perf_counter_ns
    sent: defaultdict[bytes, deque[int]] = defaultdict(deque)
    lat: list[int] = []

    def on_ack(msg: Any) -> None:
        lat.append(clock() - sent[msg.key()].popleft())

    publisher.on_ack = on_ack
    pacer = Pacer(ctx.rate, ctx.duration_s)
    sw = Stopwatch()
    sw.start()
    pacer.begin()
    for i in range(pacer.count):
        delay = pacer.delay_s(i)
        if delay > 0:
            time.sleep(delay)
        event = ctx.pool[i & ctx.mask]
        sent[event.order_id.encode()].append(clock())
        _publish(publisher, event)
    send_s = pacer.elapsed_s()
    publisher.flush(30)
    sw.stop()
    return LatencySample(lat, publisher.failed, pacer.count, send_s, sw.cpu_s)
