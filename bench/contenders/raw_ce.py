"""``raw-ce`` and ``raw-ce-span``: the ceiling for eventwire's wire contract.

``raw-ce`` is a bare ``confluent_kafka.Producer.produce()`` + ``poll(0)`` loop that
writes what eventwire writes: the msgspec-encoded value, the ``order_id`` key, the
six CloudEvents headers (``ce_specversion``, ``ce_id`` a fresh UUIDv7,
``ce_type``, ``ce_source``, ``ce_time`` RFC 3339 with milliseconds cached per
millisecond, ``content-type``) and one module-level delivery callback, with the
librdkafka properties of eventwire's profile (``reliable`` for throughput,
``low_latency`` for latency). No library can keep this contract through
confluent-kafka any faster.

``raw-ce-span`` (variant ``span``) adds what eventwire does per traced event: an
OpenTelemetry SDK span (:mod:`bench.otel`, ALWAYS_ON, BatchSpanProcessor) named
``send <topic>``, kind PRODUCER, with eventwire's attributes given at start, the
W3C ``traceparent`` written into the headers by the global propagator, and the
span ended in the delivery callback with the partition and offset: the ceiling
for per-event tracing.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import msgspec
from confluent_kafka import Producer

from bench.contenders._context import RunContext
from bench.events import TYPE_NAME
from bench.measure import LatencySample, Pacer, Stopwatch, ThroughputSample
from bench.profiling import profiled
from eventwire import PROFILES
from eventwire._cloudevents import uuid7  # uuid_utils.uuid7, as eventwire calls it

__all__ = ["latency", "throughput"]

_SPEC = ("ce_specversion", b"1.0")
_TYPE = ("ce_type", TYPE_NAME.encode())
_SOURCE = ("ce_source", b"eventwire")
_CONTENT_TYPE = ("content-type", b"application/json")
_time_cache: list[Any] = [-1, b""]


def _ce_time() -> bytes:
    ms = time.time_ns() // 1_000_000
    if _time_cache[0] != ms:
        second, milli = divmod(ms, 1000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{milli:03d}Z"
        _time_cache[0], _time_cache[1] = ms, stamp.encode()
    return _time_cache[1]  # type: ignore[no-any-return]


def _headers(eid: str) -> list[tuple[str, bytes]]:
    return [
        _SPEC,
        ("ce_id", eid.encode()),
        _TYPE,
        _SOURCE,
        ("ce_time", _ce_time()),
        _CONTENT_TYPE,
    ]


def _producer(ctx: RunContext, profile: str) -> Producer:
    props: dict[str, Any] = dict(PROFILES[profile])  # type: ignore[index]
    props["bootstrap.servers"] = ctx.bootstrap
    return Producer(props)


class _Span:
    """The per-event span of ``raw-ce-span``: started at produce, ended at the report."""

    def __init__(self, topic: str) -> None:
        from opentelemetry import propagate, trace  # noqa: PLC0415

        from bench.otel import install_sdk  # noqa: PLC0415

        self.sdk = install_sdk("all")
        self.tracer = trace.get_tracer("raw-ce-span")
        self.name = f"send {topic}"
        self.base = {
            "messaging.system": "kafka",
            "messaging.operation.name": "send",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
        }
        self.kind = trace.SpanKind.PRODUCER
        self.in_context = trace.set_span_in_context
        self.inject = propagate.get_global_textmap().inject

    def start(self, eid: str, key: bytes, size: int, headers: list[tuple[str, bytes]]) -> Any:
        attributes: dict[str, Any] = dict(self.base)
        attributes["messaging.message.id"] = eid
        attributes["messaging.message.body.size"] = size
        attributes["messaging.kafka.message.key"] = key.decode()
        span = self.tracer.start_span(self.name, None, self.kind, attributes)
        self.inject(headers, self.in_context(span), _SETTER)
        return span

    def note(self) -> list[str]:
        from bench.otel import finish  # noqa: PLC0415

        return [f"{finish(*self.sdk)} spans exported"]


class _Setter:
    def set(self, carrier: list[tuple[str, bytes]], key: str, value: str) -> None:
        carrier.append((key, value.encode()))


_SETTER = _Setter()


def _end(span: Any, counts: list[int], err: Any, msg: Any) -> None:
    if err is None:
        counts[0] += 1
        span.set_attributes(
            {
                "messaging.destination.partition.id": str(msg.partition()),
                "messaging.kafka.offset": msg.offset(),
            }
        )
    else:
        counts[1] += 1
        span.set_attribute("error.type", err.name())
    span.end()


def throughput(ctx: RunContext) -> ThroughputSample:
    """Publish ctx.events as fast as produce() takes them; wait for every ack."""
    producer = _producer(ctx, "reliable")
    encode = msgspec.json.Encoder().encode
    spans = _Span(ctx.topic) if ctx.variant == "span" else None
    counts = [0, 0]  # acked, failed

    def on_delivery(err: Any, msg: Any) -> None:
        counts[err is not None] += 1

    produce, poll, topic, pool, mask = (
        producer.produce,
        producer.poll,
        ctx.topic,
        ctx.pool,
        ctx.mask,
    )

    for i in range(ctx.warmup):
        event = pool[i & mask]
        produce(topic, encode(event), event.order_id.encode(), headers=_headers(str(uuid7())))
        poll(0)
    producer.flush(30)
    sw = Stopwatch()
    with profiled(ctx.profile_path):
        sw.start()
        for i in range(ctx.events):
            event = pool[i & mask]
            value = encode(event)
            key = event.order_id.encode()
            eid = str(uuid7())
            headers = _headers(eid)
            callback: Any = on_delivery
            if spans is not None:
                callback = partial(_end, spans.start(eid, key, len(value), headers), counts)
            while True:
                try:
                    produce(topic, value, key, headers=headers, on_delivery=callback)
                    break
                except BufferError:
                    poll(0.005)
            poll(0)
        left = producer.flush(120)
        sw.stop()
    notes = [f"{left} still queued after flush(120)"] if left else []
    if spans is not None:
        notes += spans.note()
    return ThroughputSample(counts[0], counts[1] + left, sw.wall_s, sw.cpu_s, notes)


def latency(ctx: RunContext) -> LatencySample:
    """Send at ctx.rate with the low_latency properties; poll() (serving acks) while waiting."""
    producer = _producer(ctx, "low_latency")
    encode = msgspec.json.Encoder().encode
    lat: list[int] = []
    failed = [0]
    clock = time.perf_counter_ns

    def on_delivery(sent_ns: int, err: Any, msg: Any) -> None:
        if err is None:
            lat.append(clock() - sent_ns)
        else:
            failed[0] += 1

    for i in range(ctx.warmup):
        event = ctx.pool[i & ctx.mask]
        producer.produce(
            ctx.topic, encode(event), event.order_id.encode(), headers=_headers(str(uuid7()))
        )
    producer.flush(30)
    pacer = Pacer(ctx.rate, ctx.duration_s)
    sw = Stopwatch()
    sw.start()
    pacer.begin()
    for i in range(pacer.count):
        delay = pacer.delay_s(i)
        while delay > 0:
            producer.poll(delay) if delay >= 0.001 else time.sleep(delay)
            delay = pacer.delay_s(i)
        event = ctx.pool[i & ctx.mask]
        value, key = encode(event), event.order_id.encode()
        producer.produce(
            ctx.topic,
            value,
            key,
            headers=_headers(str(uuid7())),
            on_delivery=partial(on_delivery, clock()),
        )
        producer.poll(0)
    send_s = pacer.elapsed_s()
    producer.flush(30)
    sw.stop()
    return LatencySample(lat, failed[0], pacer.count, send_s, sw.cpu_s)
