"""``eventwire-async``: ``AsyncPublisher`` on the default asyncio loop.

Throughput: ``publish_nowait`` for a batch of 1,000 events, up to 10 batches in
flight, the oldest batch's futures awaited in order (:mod:`bench.contenders._window`).
Latency: ``publish_nowait`` at the fixed rate (``low_latency`` profile), the
ack time taken in the future's done-callback, i.e. when the loop sees it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

from bench.contenders._context import RunContext
from bench.contenders._window import BATCH, BatchWindow
from bench.events import route_for
from bench.measure import LatencySample, Pacer, Stopwatch, ThroughputSample
from bench.profiling import profiled
from eventwire import AsyncPublisher
from eventwire_devkit.demo.messages import OrderEventMessage

__all__ = ["latency", "throughput"]


def _quiet_logs() -> None:
    # eventwire logs through stdlib logging: warnings and errors only, to stderr
    # (Python's last-resort handler; stdout stays the harness's).
    logging.getLogger("eventwire").setLevel(logging.WARNING)


async def _warm_up(publisher: AsyncPublisher, ctx: RunContext) -> None:
    await asyncio.gather(
        *[publisher.publish_nowait(ctx.pool[i & ctx.mask]) for i in range(ctx.warmup)]
    )


async def _throughput(ctx: RunContext) -> ThroughputSample:
    routes: dict[type, Any] = {OrderEventMessage: route_for(ctx.topic)}
    async with AsyncPublisher(ctx.bootstrap, routes=routes) as publisher:
        await _warm_up(publisher, ctx)
        nowait, pool, mask, n = publisher.publish_nowait, ctx.pool, ctx.mask, ctx.events
        window = BatchWindow()
        sw = Stopwatch()
        with profiled(ctx.profile_path):
            sw.start()
            for start in range(0, n, BATCH):
                await window.add(
                    [nowait(pool[i & mask]) for i in range(start, min(n, start + BATCH))]
                )
            await window.drain()
            sw.stop()
    return ThroughputSample(window.acked, window.failed, sw.wall_s, sw.cpu_s)


async def _latency(ctx: RunContext) -> LatencySample:
    routes: dict[type, Any] = {OrderEventMessage: route_for(ctx.topic)}
    clock = time.perf_counter_ns
    lat: list[int] = []
    futures: list[Any] = []
    async with AsyncPublisher(ctx.bootstrap, routes=routes, profile="low_latency") as publisher:
        await _warm_up(publisher, ctx)

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
            sent_ns = clock()
            fut = publisher.publish_nowait(ctx.pool[i & ctx.mask])
            fut.add_done_callback(partial(done, sent_ns))
            futures.append(fut)
        send_s = pacer.elapsed_s()
        results = await asyncio.gather(*futures, return_exceptions=True)
        sw.stop()
    failed = sum(1 for r in results if isinstance(r, BaseException))
    return LatencySample(lat, failed, pacer.count, send_s, sw.cpu_s)


def throughput(ctx: RunContext) -> ThroughputSample:
    """Run the batched-window publish loop on a fresh event loop."""
    _quiet_logs()
    return asyncio.run(_throughput(ctx))


def latency(ctx: RunContext) -> LatencySample:
    """Run the fixed-rate loop on a fresh event loop."""
    _quiet_logs()
    return asyncio.run(_latency(ctx))
