"""``aiokafka``: ``AIOKafkaProducer`` (pure-Python protocol client on asyncio).

acks=all and ``enable_idempotence=True`` (supported). linger_ms=5 for throughput
(as eventwire's ``reliable``), 0 for latency. No compression: aiokafka's lz4
needs the ``lz4`` package, which the bench extra does not install. Throughput
uses the same batch window as ``eventwire-async``: ``await send()`` (returns the
delivery future once buffered) for batches of 1,000 events, 10 batches in flight,
the oldest batch's futures awaited in order.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from bench.contenders._context import RunContext
from bench.contenders._window import BATCH, BatchWindow
from bench.measure import LatencySample, Pacer, Stopwatch, ThroughputSample
from bench.profiling import profiled

__all__ = ["latency", "throughput"]

NOTE = "no compression (lz4 package not installed)"


def _producer(ctx: RunContext, linger_ms: int) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=ctx.bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
    )


async def _warm_up(producer: AIOKafkaProducer, ctx: RunContext, encode: Any) -> None:
    futures = []
    for i in range(ctx.warmup):
        event = ctx.pool[i & ctx.mask]
        futures.append(await producer.send(ctx.topic, encode(event), event.order_id.encode()))
    await asyncio.gather(*futures)


async def _throughput(ctx: RunContext) -> ThroughputSample:
    encode = msgspec.json.Encoder().encode
    producer = _producer(ctx, 5)
    await producer.start()
    try:
        await _warm_up(producer, ctx, encode)
        send, topic, pool, mask, n = producer.send, ctx.topic, ctx.pool, ctx.mask, ctx.events
        window = BatchWindow()
        sw = Stopwatch()
        with profiled(ctx.profile_path):
            sw.start()
            for start in range(0, n, BATCH):
                batch = []
                for i in range(start, min(n, start + BATCH)):
                    event = pool[i & mask]
                    batch.append(await send(topic, encode(event), event.order_id.encode()))
                await window.add(batch)
            await window.drain()
            sw.stop()
    finally:
        await producer.stop()
    return ThroughputSample(window.acked, window.failed, sw.wall_s, sw.cpu_s, [NOTE])


async def _latency(ctx: RunContext) -> LatencySample:
    encode = msgspec.json.Encoder().encode
    clock = time.perf_counter_ns
    lat: list[int] = []
    futures: list[Any] = []
    producer = _producer(ctx, 0)
    await producer.start()
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
            fut = await producer.send(ctx.topic, encode(event), event.order_id.encode())
            fut.add_done_callback(partial(done, sent_ns))
            futures.append(fut)
        send_s = pacer.elapsed_s()
        results = await asyncio.gather(*futures, return_exceptions=True)
        sw.stop()
    finally:
        await producer.stop()
    failed = sum(1 for r in results if isinstance(r, BaseException))
    return LatencySample(lat, failed, pacer.count, send_s, sw.cpu_s, [NOTE])


def throughput(ctx: RunContext) -> ThroughputSample:
    """Batched-window send loop on a fresh event loop."""
    return asyncio.run(_throughput(ctx))


def latency(ctx: RunContext) -> LatencySample:
    """Fixed-rate send loop on a fresh event loop."""
    return asyncio.run(_latency(ctx))
