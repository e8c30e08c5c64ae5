"""``confluent-aio``: ``confluent_kafka.aio.AIOProducer`` (librdkafka behind a thread pool).

Same librdkafka properties as eventwire's ``reliable`` profile (acks=all,
idempotence, lz4, linger 5 ms). ``await produce()`` buffers the message in
AIOProducer's own batch (1,000 by default; flushed through ``produce_batch`` in
a worker thread) and returns the delivery future; the same batch window as the
other asyncio contenders is used. AIOProducer cannot carry headers (it raises on
``headers=``), so these records have none, unlike eventwire's CloudEvents ones.
Latency mode: low_latency properties; note AIOProducer also holds messages in
its buffer until 1,000 accumulate or ``buffer_timeout`` (1 s) passes.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

import msgspec
from confluent_kafka.aio import AIOProducer

from bench.contenders._context import RunContext
from bench.contenders._window import BATCH, BatchWindow
from bench.measure import LatencySample, Pacer, Stopwatch, ThroughputSample
from bench.profiling import profiled
from eventwire import PROFILES

__all__ = ["latency", "throughput"]

NOTE = "no headers (AIOProducer cannot send them)"


def _props(ctx: RunContext, profile: str) -> dict[str, Any]:
    props: dict[str, Any] = dict(PROFILES[profile])  # type: ignore[index]
    props["bootstrap.servers"] = ctx.bootstrap
    return props


async def _warm_up(producer: AIOProducer, ctx: RunContext, encode: Any) -> None:
    futures = []
    for i in range(ctx.warmup):
        event = ctx.pool[i & ctx.mask]
        futures.append(await producer.produce(ctx.topic, encode(event), event.order_id.encode()))
    await producer.flush()
    await asyncio.gather(*futures)


async def _throughput(ctx: RunContext) -> ThroughputSample:
    encode = msgspec.json.Encoder().encode
    producer = AIOProducer(_props(ctx, "reliable"))
    try:
        await _warm_up(producer, ctx, encode)
        produce, topic, pool, mask, n = producer.produce, ctx.topic, ctx.pool, ctx.mask, ctx.events
        window = BatchWindow()
        sw = Stopwatch()
        with profiled(ctx.profile_path):
            sw.start()
            for start in range(0, n, BATCH):
                batch = []
                for i in range(start, min(n, start + BATCH)):
                    event = pool[i & mask]
                    batch.append(await produce(topic, encode(event), event.order_id.encode()))
                await window.add(batch)
            await producer.flush()
            await window.drain()
            sw.stop()
    finally:
        await producer.close()
    return ThroughputSample(window.acked, window.failed, sw.wall_s, sw.cpu_s, [NOTE])


async def _latency(ctx: RunContext) -> LatencySample:
    encode = msgspec.json.Encoder().encode
    clock = time.perf_counter_ns
    lat: list[int] = []
    futures: list[Any] = []
    producer = AIOProducer(_props(ctx, "low_latency"))
    try:
        await _warm_up(producer, ctx, encode)

        def done(sent_ns: int, fut: Any) -> None:
            if not fut.cancelled() and fut.exception() is None:
                lat.append(clock() - sent_ns)

        pacer = Pacer(ctx.rate, ctx.duration_s)
        sw = Stopwatch()
        sw.start()
        pacer.begin()
        for i in range(pacer.count):
            delay = pacer.delay_s(i)
            if delay > 0:
                await asyncio.sleep(delay)
            event = ctx.pool[i & ctx.mask]
            sent_ns = clock()
            fut = await producer.produce(ctx.topic, encode(event), event.order_id.encode())
            fut.add_done_callback(partial(done, sent_ns))
            futures.append(fut)
        send_s = pacer.elapsed_s()
        await producer.flush()
        results = await asyncio.gather(*futures, return_exceptions=True)
        sw.stop()
    finally:
        await producer.close()
    failed = sum(1 for r in results if isinstance(r, BaseException))
    return LatencySample(lat, failed, pacer.count, send_s, sw.cpu_s, [NOTE])


def throughput(ctx: RunContext) -> ThroughputSample:
    """Batched-window produce loop on a fresh event loop."""
    return asyncio.run(_throughput(ctx))


def latency(ctx: RunContext) -> LatencySample:
    """Fixed-rate produce loop on a fresh event loop."""
    return asyncio.run(_latency(ctx))
