"""The guide's event messages: msgspec Structs with primitive fields.

They are deliberately *not* decorated with ``@event``: the guide's
``OrderEventMessage`` is a Struct you may not own, routed with
``routes={OrderEventMessage: ORDER_ROUTE}``.
"""

from __future__ import annotations

import msgspec

from eventwire import Route

__all__ = ["ORDER_ROUTE", "LineItemEventMessage", "OrderEventMessage"]


class LineItemEventMessage(msgspec.Struct, frozen=True):
    """One line item as it travels on the wire."""

    line_item_id: str
    product_id: str
    product_title: str
    quantity: int
    price: float


class OrderEventMessage(msgspec.Struct, frozen=True):
    """An order event (about 300 bytes of JSON with two line items)."""

    order_id: str
    created_at: str  # ISO 8601
    customer_name: str
    line_items: list[LineItemEventMessage]
    total_price: float


#: The route the demo and examples use: topic "orders", keyed by order id.
ORDER_ROUTE = Route(topic="orders", key="order_id", type_name="com.example.orders.OrderPlaced")
