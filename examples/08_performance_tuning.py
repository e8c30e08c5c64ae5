"""Throughput tuning: the ``high_throughput`` profile plus explicit ``overrides``.

``profile="high_throughput"`` waits up to 100 ms to fill large lz4-compressed
batches; ``overrides`` sets any librdkafka property on top (here a larger local
queue, so a burst of events never waits for room). Idempotence and acks=all stay
on: faster does not mean less safe. Prints the measured rate; it depends on the
machine and the cluster, so it is a measurement, not a promise.

    python examples/08_performance_tuning.py [--events N]
"""

from __future__ import annotations

import argparse
import time

from _common import bootstrap

from eventwire import Publisher, Route, translate_all
from eventwire_devkit.demo.domain import make_orders
from eventwire_devkit.demo.messages import ORDER_ROUTE, OrderEventMessage
from eventwire_devkit.demo.translator import OrderEventTranslator

OVERRIDES = {
    "queue.buffering.max.messages": 500_000,  # room for the whole burst
    "queue.buffering.max.kbytes": 512 * 1024,  # 512 MB
    "linger.ms": 50,  # overrides win over the profile's settings (it says 100)
}


def main() -> int:
    parser = argparse.ArgumentParser(description="publish a burst with the high_throughput profile")
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    events = translate_all(OrderEventTranslator(), make_orders(args.events, customers=1_000))
    routes: dict[type, Route] = {OrderEventMessage: ORDER_ROUTE}

    with (
        bootstrap() as servers,
        Publisher(servers, profile="high_throughput", overrides=OVERRIDES, routes=routes) as pub,
    ):
        props = pub.config.redacted() if pub.config else {}
        shown = (*OVERRIDES, "batch.size", "compression.type", "acks", "enable.idempotence")
        print("producer: " + ", ".join(f"{key}={props.get(key)}" for key in shown))
        start = time.perf_counter()
        handles = pub.publish_many(events)
        enqueued = time.perf_counter() - start
        pub.flush(60)  # raises DeliveryError if any event failed
        elapsed = time.perf_counter() - start

    delivered = sum(h.done() and not h.failed() for h in handles)
    print(f"enqueued {len(handles):,} events in {enqueued:.2f} s")
    print(f"delivered {delivered:,} events in {elapsed:.2f} s: {delivered / elapsed:,.0f} events/s")
    return 0 if delivered == args.events else 1


if __name__ == "__main__":
    raise SystemExit(main())
