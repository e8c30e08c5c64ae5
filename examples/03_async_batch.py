"""Async batch publishing: ``AsyncPublisher.publish_many`` with per-event results.

``publish_many`` enqueues the whole batch without blocking the event loop and
returns, in order, a DeliveryResult or the error for *each* event. One bad event
does not cancel the others: here the batch holds an order whose id is missing
(it cannot be routed, so it gets a RoutingError) and the rest are delivered.

    python examples/03_async_batch.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from _common import bootstrap

from eventwire import AsyncPublisher, DeliveryResult, EventwireError, translate_all
from eventwire_devkit.demo.domain import make_orders
from eventwire_devkit.demo.messages import ORDER_ROUTE, OrderEventMessage
from eventwire_devkit.demo.translator import OrderEventTranslator

BATCH = 10


async def publish_batch(servers: str) -> int:
    events: list[Any] = translate_all(OrderEventTranslator(), make_orders(BATCH, customers=BATCH))
    # Upstream data with no order id: msgspec does not validate on construction,
    # so this Struct exists, but it has no partition key and cannot be published.
    broken = OrderEventMessage(
        order_id=None,  # type: ignore[arg-type]
        created_at="2026-11-27T09:00:00+00:00",
        customer_name="Nobody",
        line_items=[],
        total_price=0.0,
    )
    events.insert(3, broken)

    async with AsyncPublisher(servers, routes={OrderEventMessage: ORDER_ROUTE}) as publisher:
        results = await publisher.publish_many(events)

    for event, result in zip(events, results, strict=True):
        if isinstance(result, DeliveryResult):
            print(f"ok      {event.order_id}: {result.topic}[{result.partition}]@{result.offset}")
        else:
            print(f"failed  {event.order_id}: {type(result).__name__}: {result}")
    delivered = sum(isinstance(r, DeliveryResult) for r in results)
    failed = sum(isinstance(r, EventwireError) for r in results)
    print(f"batch of {len(events)}: {delivered} delivered, {failed} failed")
    return 0 if (delivered, failed) == (BATCH, 1) else 1


def main() -> int:
    with bootstrap() as servers:
        return asyncio.run(publish_batch(servers))


if __name__ == "__main__":
    raise SystemExit(main())
