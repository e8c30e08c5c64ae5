"""``faststream-aiokafka`` and ``faststream-confluent``: FastStream 0.7's ``KafkaBroker``.

The way FastStream's docs publish: ``await broker.publish(body, topic, key=...,
headers=...)``, awaiting each publish (FastStream waits for the broker's
confirmation unless ``no_confirm=True``), with the same event bytes (msgspec
JSON), the same key and the six CloudEvents headers with a fresh UUIDv7
``ce_id`` per event (FastStream takes headers as ``dict[str, str]`` and adds its
own ``correlation_id``). Broker: ``acks="all"``, ``enable_idempotence=True``,
the library's other defaults. Variant ``aiokafka`` uses ``faststream.kafka``
(aiokafka inside), ``confluent`` uses ``faststream.confluent`` (confluent-kafka).

Not measured: ``publish_batch``. It takes ONE ``headers`` dict (and no per-message
key) for the whole batch, so it cannot write a per-event ``ce_id``: it would not
be the same wire contract.

One event in flight at a time makes these latency-bound: a run publishes at most
:data:`MAX_EVENTS` events (noted), so a round stays short.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec

from bench.contenders._context import RunContext
from bench.events import TYPE_NAME
from bench.measure import LatencySample, Pacer, Stopwatch, ThroughputSample
from bench.profiling import profiled
from eventwire._cloudevents import rfc3339_millis, uuid7

__all__ = ["MAX_EVENTS", "latency", "throughput"]

#: Events per throughput run at most (each publish waits for its ack).
MAX_EVENTS = 20_000


def _broker(ctx: RunContext) -> Any:
    quiet = logging.getLogger("faststream.bench")
    quiet.setLevel(logging.WARNING)
    if ctx.variant == "aiokafka":
        from faststream.kafka import KafkaBroker  # noqa: PLC0415
    elif ctx.variant == "confluent":
        from faststream.confluent import KafkaBroker  # type: ignore[assignment]  # noqa: PLC0415
    else:
        raise ValueError(f"unknown faststream variant {ctx.variant!r}")
    return KafkaBroker(ctx.bootstrap, acks="all", enable_idempotence=True, logger=quiet)


def _headers() -> dict[str, str]:
    return {
        "ce_specversion": "1.0",
        "ce_id": str(uuid7()),
        "ce_type": TYPE_NAME,
        "ce_source": "eventwire",
        "ce_time": rfc3339_millis(time.time_ns() // 1_000_000),
        "content-type": "application/json",
    }


async def _throughput(ctx: RunContext) -> ThroughputSample:
    encode = msgspec.json.Encoder().encode
    broker = _broker(ctx)
    await broker.start()
    n = min(ctx.events, MAX_EVENTS)
    acked = failed = 0
    try:
        publish, topic, pool, mask = broker.publish, ctx.topic, ctx.pool, ctx.mask
        for i in range(min(ctx.warmup, 200)):
            event = pool[i & mask]
            await publish(encode(event), topic, key=event.order_id.encode(), headers=_headers())
        sw = Stopwatch()
        with profiled(ctx.profile_path):
            sw.start()
            for i in range(n):
                event = pool[i & mask]
                try:
                    await publish(
                        encode(event), topic, key=event.order_id.encode(), headers=_headers()
                    )
                    acked += 1
                except Exception:  # counted as a failed delivery
                    failed += 1
            sw.stop()
    finally:
        await broker.stop()
    notes = [f"awaits each publish; {n:,} events (cap {MAX_EVENTS:,})"]
    return ThroughputSample(acked, failed, sw.wall_s, sw.cpu_s, notes)


async def _latency(ctx: RunContext) -> LatencySample:
    encode = msgspec.json.Encoder().encode
    clock = time.perf_counter_ns
    lat: list[int] = []
    failed = 0
    broker = _broker(ctx)
    await broker.start()
    try:
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
            try:
                await broker.publish(
                    encode(event), ctx.topic, key=event.order_id.encode(), headers=_headers()
                )
                lat.append(clock() - sent_ns)
            except Exception:  # counted as a failed delivery
                failed += 1
        send_s = pacer.elapsed_s()
        sw.stop()
    finally:
        await broker.stop()
    return LatencySample(lat, failed, pacer.count, send_s, sw.cpu_s)


def throughput(ctx: RunContext) -> ThroughputSample:
    """Await each publish on a fresh event loop."""
    return asyncio.run(_throughput(ctx))


def latency(ctx: RunContext) -> LatencySample:
    """Fixed-rate publishes, each awaited, on a fresh event loop."""
    return asyncio.run(_latency(ctx))
