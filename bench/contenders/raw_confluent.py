"""``raw-confluent``: the ceiling. A bare ``Producer.produce()`` + ``poll(0)`` loop.

msgspec-encoded value, ``order_id`` key, one module-level delivery callback, no
headers, and exactly the librdkafka properties of eventwire's profile
(``reliable`` for throughput, ``low_latency`` for latency): acks=all,
idempotence, murmur2_random partitioner, and that profile's linger/compression.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import msgspec
from confluent_kafka import Producer

from bench.contenders._context import RunContext
from bench.measure import LatencySample, Pacer, Stopwatch, ThroughputSample
from bench.profiling import profiled
from eventwire import PROFILES

__all__ = ["latency", "throughput"]


def _producer(ctx: RunContext, profile: str) -> Producer:
    props: dict[str, Any] = dict(PROFILES[profile])  # type: ignore[index]
    props["bootstrap.servers"] = ctx.bootstrap
    return Producer(props)


def _warm_up(producer: Producer, ctx: RunContext, encode: Any) -> None:
    for i in range(ctx.warmup):
        event = ctx.pool[i & ctx.mask]
        producer.produce(ctx.topic, encode(event), event.order_id.encode())
    producer.flush(30)


def throughput(ctx: RunContext) -> ThroughputSample:
    """Publish ctx.events as fast as produce() takes them; wait for every ack."""
    producer = _producer(ctx, "reliable")
    encode = msgspec.json.Encoder().encode
    _warm_up(producer, ctx, encode)
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
    sw = Stopwatch()
    with profiled(ctx.profile_path):
        sw.start()
        for i in range(ctx.events):
            event = pool[i & mask]
            value = encode(event)
            key = event.order_id.encode()
            while True:
                try:
                    produce(topic, value, key, on_delivery=on_delivery)
                    break
                except BufferError:
                    poll(0.005)
            poll(0)
        left = producer.flush(120)
        sw.stop()
    notes = [f"{left} still queued after flush(120)"] if left else []
    return ThroughputSample(counts[0], counts[1] + left, sw.wall_s, sw.cpu_s, notes)


def latency(ctx: RunContext) -> LatencySample:
    """Send at ctx.rate with the low_latency properties; poll() (serving acks) while waiting."""
    producer = _producer(ctx, "low_latency")
    encode = msgspec.json.Encoder().encode
    _warm_up(producer, ctx, encode)
    lat: list[int] = []
    failed = [0]
    clock = time.perf_counter_ns

    def on_delivery(sent_ns: int, err: Any, msg: Any) -> None:
        if err is None:
            lat.append(clock() - sent_ns)
        else:
            failed[0] += 1

    pacer = Pacer(ctx.rate, ctx.duration_s)
    sw = Stopwatch()
    sw.start()
    pacer.begin()
    for i in range(pacer.count):
        delay = pacer.delay_s(i)
        while delay > 0:
            # poll() takes whole milliseconds: a shorter wait would spin, so sleep instead.
            producer.poll(delay) if delay >= 0.001 else time.sleep(delay)
            delay = pacer.delay_s(i)
        event = ctx.pool[i & ctx.mask]
        value, key = encode(event), event.order_id.encode()
        producer.produce(ctx.topic, value, key, on_delivery=partial(on_delivery, clock()))
        producer.poll(0)
    send_s = pacer.elapsed_s()
    producer.flush(30)
    sw.stop()
    return LatencySample(lat, failed[0], pacer.count, send_s, sw.cpu_s)
