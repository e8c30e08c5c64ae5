"""``kafka-python``: ``kafka.KafkaProducer`` (pure Python, its own sender thread).

acks=all and ``enable_idempotence=True`` (supported). linger_ms=5 for throughput,
0 for latency; no compression (its lz4 needs the ``lz4`` package, not installed).
One ``send()`` per event with a success/error callback pair, then ``flush()``.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from kafka import KafkaProducer  # type: ignore[import-untyped]

from bench.contenders._context import RunContext
from bench.measure import LatencySample, Pacer, Stopwatch, ThroughputSample
from bench.profiling import profiled

__all__ = ["latency", "throughput"]

NOTE = "no compression (lz4 package not installed)"


def _producer(ctx: RunContext, linger_ms: int) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=ctx.bootstrap.split(","),
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
    )


def _warm_up(producer: KafkaProducer, ctx: RunContext, encode: Any) -> None:
    for i in range(ctx.warmup):
        event = ctx.pool[i & ctx.mask]
        producer.send(ctx.topic, encode(event), event.order_id.encode())
    producer.flush(30)


def throughput(ctx: RunContext) -> ThroughputSample:
    """send() ctx.events events with callbacks, then flush()."""
    encode = msgspec.json.Encoder().encode
    producer = _producer(ctx, 5)
    try:
        _warm_up(producer, ctx, encode)
        counts = [0, 0]

        def ok(_meta: Any) -> None:
            counts[0] += 1

        def err(_exc: Any) -> None:
            counts[1] += 1

        send, topic, pool, mask = producer.send, ctx.topic, ctx.pool, ctx.mask
        sw = Stopwatch()
        with profiled(ctx.profile_path):
            sw.start()
            for i in range(ctx.events):
                event = pool[i & mask]
                send(topic, encode(event), event.order_id.encode()).add_callback(ok).add_errback(
                    err
                )
            producer.flush(120)
            sw.stop()
    finally:
        producer.close(10)
    return ThroughputSample(counts[0], counts[1], sw.wall_s, sw.cpu_s, [NOTE])


def latency(ctx: RunContext) -> LatencySample:
    """send() at ctx.rate (linger 0); the ack time is taken in the success callback."""
    encode = msgspec.json.Encoder().encode
    clock = time.perf_counter_ns
    lat: list[int] = []
    failed = [0]
    producer = _producer(ctx, 0)
    try:
        _warm_up(producer, ctx, encode)
        pacer = Pacer(ctx.rate, ctx.duration_s)
        sw = Stopwatch()
        sw.start()
        pacer.begin()
        for i in range(pacer.count):
            delay = pacer.delay_s(i)
            if delay > 0:
                time.sleep(delay)
            event = ctx.pool[i & ctx.mask]
            sent_ns = clock()
            fut = producer.send(ctx.topic, encode(event), event.order_id.encode())
            fut.add_callback(lambda _m, t=sent_ns: lat.append(clock() - t))
            fut.add_errback(lambda _e: failed.__setitem__(0, failed[0] + 1))
        send_s = pacer.elapsed_s()
        producer.flush(30)
        sw.stop()
    finally:
        producer.close(10)
    return LatencySample(lat, failed[0], pacer.count, send_s, sw.cpu_s, [NOTE])
