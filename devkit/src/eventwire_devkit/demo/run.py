"""The main job: translate domain orders, publish them, read them back, verify.

Used by ``eventwire demo`` (and so ``make demo``). It runs against a real Kafka
cluster -- one given, or a local 1-node cluster it starts -- and falls back to
the in-memory transport only when no Java is available, saying so.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from eventwire import DeliveryHandle, Publisher, Route
from eventwire_devkit.demo.domain import make_orders
from eventwire_devkit.demo.messages import ORDER_ROUTE, OrderEventMessage
from eventwire_devkit.demo.translator import OrderEventTranslator
from eventwire_devkit.demo.verify import Verification, verify_records

__all__ = ["DemoReport", "run_demo"]

SOURCE = "urn:eventwire:demo"


@dataclass
class DemoReport:
    """What the demo did and measured."""

    backend: str
    topic: str
    events: int
    publish_seconds: float
    ack_latencies_ms: list[float]
    failures: int
    verification: Verification

    @property
    def events_per_second(self) -> float:
        """Published and acknowledged events per second (publish + flush)."""
        return self.events / self.publish_seconds if self.publish_seconds else 0.0

    def latency_percentile(self, q: float) -> float:
        """Publish-to-ack latency percentile ``q`` (0-100), in milliseconds."""
        data = sorted(self.ack_latencies_ms)
        if not data:
            return float("nan")
        if len(data) == 1:
            return data[0]
        return statistics.quantiles(data, n=1000, method="inclusive")[int(q * 10) - 1]

    @property
    def ok(self) -> bool:
        """True when nothing failed and the log matches what was published."""
        return self.failures == 0 and self.verification.ok


def run_demo(  # noqa: PLR0915 - one linear story: publish, flush, read back, verify
    *,
    bootstrap: str | None,
    events: int,
    backend_label: str,
    create_topic: Callable[[str], None] | None = None,
    advance: Callable[[int], None] = lambda n: None,
) -> DemoReport:
    """Publish ``events`` translated orders and verify them from the log.

    With ``bootstrap`` None the in-memory transport is used (the no-Java fallback).
    """
    topic = f"eventwire-demo-{uuid.uuid4().hex[:8]}"
    if create_topic is not None:
        create_topic(topic)
    route = Route(topic=topic, key=ORDER_ROUTE.key, type_name=ORDER_ROUTE.type_name)
    translator = OrderEventTranslator()
    orders = make_orders(events)
    latencies: list[float] = []
    published: dict[str, OrderEventMessage] = {}

    def on_done(handle: DeliveryHandle) -> None:
        if not handle.failed():
            latencies.append((time.time_ns() - handle.sent_at_ns) / 1e6)

    transport = None
    if bootstrap is None:
        from eventwire.testing import MemoryTransport  # noqa: PLC0415

        transport = MemoryTransport(partitions=6)
    publisher = Publisher(
        bootstrap, transport=transport, routes={OrderEventMessage: route}, source=SOURCE
    )
    failures = 0
    # Warm-up (counted): the first event waits for the idempotent producer id,
    # so the timed run measures steady-state publishing, not broker start-up.
    first = translator.to_event_message(orders[0])
    handle = publisher.publish(first)
    published[handle.event_id] = first
    handle.result(timeout=60)
    advance(1)
    reported = 1
    start = time.perf_counter()
    try:
        for n, order in enumerate(orders[1:], 2):
            event = translator.to_event_message(order)
            handle = publisher.publish(event)
            published[handle.event_id] = event
            handle.add_done_callback(on_done)
            if n % 1000 == 0:
                advance(n - reported)
                reported = n
        advance(len(orders) - reported)
        publisher.flush(60)
    except Exception as exc:  # reported in the table, and makes the run fail
        failures = len(getattr(exc, "failures", ())) or 1
    finally:
        elapsed = time.perf_counter() - start
        try:
            publisher.close(10)
        except Exception:
            failures += 1
    if transport is not None:
        records = list(transport.records(topic))
    else:
        from eventwire_devkit.consume import read_topic  # noqa: PLC0415

        assert bootstrap is not None
        records = list(read_topic(bootstrap, topic, expected=len(published), idle=1.0))  # type: ignore[arg-type]
    verification = verify_records(
        published, records, ce_type=route.type_name or "", ce_source=SOURCE
    )
    return DemoReport(backend_label, topic, len(orders), elapsed, latencies, failures, verification)
