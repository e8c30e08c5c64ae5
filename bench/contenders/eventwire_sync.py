"""``eventwire``, ``eventwire-traced-100``, ``eventwire-traced-1``: the sync ``Publisher``.

Default ``Publisher`` (``reliable`` profile; ``low_latency`` in latency mode),
the guide's ``OrderEventMessage`` routed by ``order_id``, one ``publish()`` per
event, then ``flush()``. Variants (``ctx.variant``):

* ``""``: OpenTelemetry API importable, no SDK installed (the no-op tracer).
* ``traced-100``: SDK TracerProvider + BatchSpanProcessor + counting no-op
  exporter, ALWAYS_ON sampler.
* ``traced-1``: the same with ``ParentBased(TraceIdRatioBased(0.01))``.
* ``batch-traced-100``: as ``traced-100``, but ``publish_many()`` of
  :data:`BATCH` events at a time: one ``send`` span per batch, every record
  carrying its traceparent (the semantic conventions' batch send).

The run notes how many spans the SDK exported: 0 means eventwire created no
spans (its tracing did not exist yet), so the run measured eventwire with an SDK
merely installed.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

from bench.contenders._context import RunContext
from bench.events import route_for
from bench.measure import LatencySample, Pacer, Stopwatch, ThroughputSample
from bench.profiling import profiled
from eventwire import DeliveryError, DeliveryHandle, Publisher, Route
from eventwire_devkit.demo.messages import OrderEventMessage

__all__ = ["BATCH", "latency", "throughput"]

#: Events per publish_many() call of the ``batch-traced-100`` variant.
BATCH = 500


def _setup(ctx: RunContext) -> Any:
    # eventwire logs through stdlib logging: warnings and errors only, to stderr
    # (Python's last-resort handler; stdout stays the harness's).
    logging.getLogger("eventwire").setLevel(logging.WARNING)
    if not ctx.variant:
        return None  # the SDK is not even imported
    from bench.otel import install_sdk  # noqa: PLC0415

    if ctx.variant in ("traced-100", "batch-traced-100"):
        return install_sdk("all")
    if ctx.variant == "traced-1":
        return install_sdk("1%")
    raise ValueError(f"unknown eventwire variant {ctx.variant!r}")


def _routes(ctx: RunContext) -> dict[type, Route]:
    return {OrderEventMessage: route_for(ctx.topic)}


def _span_note(sdk: Any, warmup: int) -> list[str]:
    if sdk is None:
        return []
    from bench.otel import finish  # noqa: PLC0415

    spans = finish(*sdk)
    if spans == 0:
        return ["SDK installed but eventwire exported 0 spans: no tracing in eventwire yet"]
    return [f"{spans} spans exported (incl. warm-up of {warmup})"]


def throughput(ctx: RunContext) -> ThroughputSample:
    """publish() ctx.events events, then flush(); all must be acknowledged."""
    sdk = _setup(ctx)
    failed = 0
    with Publisher(ctx.bootstrap, routes=_routes(ctx)) as publisher:
        for i in range(ctx.warmup):
            publisher.publish(ctx.pool[i & ctx.mask])
        publisher.flush(30)
        publish, pool, mask = publisher.publish, ctx.pool, ctx.mask
        sw = Stopwatch()
        with profiled(ctx.profile_path):
            sw.start()
            if ctx.variant == "batch-traced-100":
                publish_many = publisher.publish_many
                for start in range(0, ctx.events, BATCH):
                    publish_many(
                        [pool[i & mask] for i in range(start, min(start + BATCH, ctx.events))]
                    )
            else:
                for i in range(ctx.events):
                    publish(pool[i & mask])
            try:
                publisher.flush(120)
            except DeliveryError as exc:
                failed = len(exc.failures)
            sw.stop()
    return ThroughputSample(
        ctx.events - failed, failed, sw.wall_s, sw.cpu_s, _span_note(sdk, ctx.warmup)
    )


def latency(ctx: RunContext) -> LatencySample:
    """publish() at ctx.rate (low_latency profile); the ack time is taken in a done-callback."""
    sdk = _setup(ctx)
    clock = time.perf_counter_ns
    lat: list[int] = []
    failed = 0
    with Publisher(ctx.bootstrap, routes=_routes(ctx), profile="low_latency") as publisher:
        for i in range(ctx.warmup):
            publisher.publish(ctx.pool[i & ctx.mask])
        publisher.flush(30)

        def done(sent_ns: int, handle: DeliveryHandle) -> None:
            if not handle.failed():
                lat.append(clock() - sent_ns)

        pacer = Pacer(ctx.rate, ctx.duration_s)
        sw = Stopwatch()
        sw.start()
        pacer.begin()
        for i in range(pacer.count):
            delay = pacer.delay_s(i)
            if delay > 0:
                time.sleep(delay)
            sent_ns = clock()
            handle = publisher.publish(ctx.pool[i & ctx.mask])
            handle.add_done_callback(partial(done, sent_ns))
        send_s = pacer.elapsed_s()
        try:
            publisher.flush(30)
        except DeliveryError as exc:
            failed = len(exc.failures)
        sw.stop()
    return LatencySample(lat, failed, pacer.count, send_s, sw.cpu_s, _span_note(sdk, ctx.warmup))
