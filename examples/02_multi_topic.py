"""Several event types on several topics, through one publisher.

* ``PaymentCaptured`` and ``ShipmentDispatched`` are your own events: ``@event``
  declares their topic and key.
* ``OrderEventMessage`` comes from another package (here the guide's message in
  ``eventwire_devkit.demo``), so you cannot decorate it: it is routed with
  ``routes={OrderEventMessage: Route(...)}`` when the publisher is created.

Every event is keyed by its order id, so within each topic all events of one
order land on the same partition, in order.

    python examples/02_multi_topic.py
"""

from __future__ import annotations

import msgspec
from _common import bootstrap

from eventwire import DeliveryHandle, Publisher, Route, event
from eventwire_devkit.demo.domain import make_orders
from eventwire_devkit.demo.messages import OrderEventMessage
from eventwire_devkit.demo.translator import OrderEventTranslator


@event(topic="payments", key="order_id", type_name="com.example.payments.PaymentCaptured")
class PaymentCaptured(msgspec.Struct, frozen=True):
    order_id: str
    amount: float
    currency: str = "USD"


@event(topic="shipments", key="order_id", type_name="com.example.shipments.ShipmentDispatched")
class ShipmentDispatched(msgspec.Struct, frozen=True):
    order_id: str
    carrier: str
    tracking_number: str


# A Struct we do not own: route it here instead of decorating it.
ROUTES: dict[type, Route] = {
    OrderEventMessage: Route(
        topic="orders", key="order_id", type_name="com.example.orders.OrderPlaced"
    ),
}


def main() -> int:
    translator = OrderEventTranslator()
    handles: dict[str, list[DeliveryHandle]] = {}
    with bootstrap() as servers, Publisher(servers, routes=ROUTES) as publisher:
        for n, order in enumerate(make_orders(5, customers=5)):
            message = translator.to_event_message(order)
            handles[message.order_id] = [
                publisher.publish(message),
                publisher.publish(
                    PaymentCaptured(order_id=message.order_id, amount=message.total_price)
                ),
                publisher.publish(
                    ShipmentDispatched(
                        order_id=message.order_id, carrier="DHL", tracking_number=f"JD{n:08d}"
                    )
                ),
            ]
    # Leaving the block flushed: every handle is settled, and none failed
    # (a failure would have raised DeliveryError there).
    topics: set[str] = set()
    for order_id, order_handles in handles.items():
        results = [h.result(timeout=0) for h in order_handles]
        topics.update(r.topic for r in results)
        places = "  ".join(f"{r.topic}[{r.partition}]@{r.offset}" for r in results)
        print(f"{order_id}: {places}")
    total = sum(len(h) for h in handles.values())
    print(
        f"delivered {total} events of 3 types to {len(topics)} topics: {', '.join(sorted(topics))}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
