"""The anti-corruption layer: domain ``Order`` -> ``OrderEventMessage``."""

from __future__ import annotations

from eventwire_devkit.demo.domain import Order
from eventwire_devkit.demo.messages import LineItemEventMessage, OrderEventMessage

__all__ = ["OrderEventTranslator"]


class OrderEventTranslator:
    """Translates a domain Order to its message schema (a ``Translator[Order, OrderEventMessage]``).

    Converts value objects to primitives (ids to str, Money to float) and
    datetimes to ISO 8601 strings; the domain object is never modified.
    """

    def to_event_message(self, order: Order, /) -> OrderEventMessage:
        """Return the event message for ``order``."""
        return OrderEventMessage(
            order_id=str(order.order_id),
            created_at=order.created_at.isoformat(),
            customer_name=order.customer_name,
            line_items=[
                LineItemEventMessage(
                    line_item_id=item.line_item_id,
                    product_id=str(item.product_id),
                    product_title=item.product_title,
                    quantity=item.quantity,
                    price=float(item.price.amount),
                )
                for item in order.line_items
            ],
            total_price=float(order.total_price.amount),
        )
