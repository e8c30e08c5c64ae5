"""Low latency: the ``low_latency`` profile, one event at a time, publish-to-ack timing.

``profile="low_latency"`` sends at once (``linger.ms=0``, no compression) while
keeping acks=all and idempotence. Each ``await publisher.publish(event)`` resolves
when the broker acknowledges that event; the example times every one of them
and prints the p50 and p99 publish-to-ack latency. The numbers depend on the
machine and the cluster: this is a measurement, not a promise.

    python examples/09_low_latency.py [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from _common import bootstrap

from eventwire import AsyncPublisher, Route
from eventwire_devkit.demo.domain import make_orders
from eventwire_devkit.demo.messages import ORDER_ROUTE, OrderEventMessage
from eventwire_devkit.demo.translator import OrderEventTranslator


async def measure(servers: str, count: int) -> list[float]:
    translator = OrderEventTranslator()
    routes: dict[type, Route] = {OrderEventMessage: ORDER_ROUTE}
    latencies_ms: list[float] = []
    async with AsyncPublisher(servers, profile="low_latency", routes=routes) as publisher:
        await publisher.publish(translator.to_event_message(make_orders(1)[0]))  # warm-up
        for order in make_orders(count):
            event = translator.to_event_message(order)
            start = time.perf_counter()
            await publisher.publish(event)  # resolves at the broker's ack
            latencies_ms.append((time.perf_counter() - start) * 1000)
    return latencies_ms


def main() -> int:
    parser = argparse.ArgumentParser(description="time publish-to-ack with the low_latency profile")
    parser.add_argument("--events", type=int, default=1_000)
    args = parser.parse_args()
    with bootstrap() as servers:
        latencies = asyncio.run(measure(servers, args.events))
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    p50, p99 = cuts[49], cuts[98]
    print(f"published {len(latencies)} events one at a time, each awaited until acknowledged")
    print(
        f"publish-to-ack latency: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(latencies):.2f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
