"""Basic publisher: declare an event with ``@event``, publish it, read its DeliveryResult.

``@event`` puts the topic and the partition key on the class itself. ``publish()``
returns at once with a DeliveryHandle; ``handle.result()`` waits for the broker's
acknowledgement and says where the event was stored. Leaving the ``with`` block
flushes, so nothing published is silently dropped.

    python examples/01_basic.py
"""

from __future__ import annotations

import msgspec
from _common import bootstrap

from eventwire import Publisher, event


@event(topic="orders", key="order_id", type_name="com.example.orders.OrderPlaced")
class OrderPlaced(msgspec.Struct, frozen=True):
    order_id: str
    customer_name: str
    total_price: float


def main() -> int:
    with bootstrap() as servers, Publisher(servers, source="urn:example:shop") as publisher:
        handle = publisher.publish(
            OrderPlaced(order_id="order-1", customer_name="Ada Lovelace", total_price=19.98)
        )
        result = handle.result(timeout=30)
    print(f"published {result.event_type} {result.event_id}")
    print(f"stored at {result.topic}[{result.partition}] offset {result.offset}")
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
