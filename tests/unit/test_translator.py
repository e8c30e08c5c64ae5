"""eventwire._translator: domain objects in, event Structs out, through the user's translator."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from eventwire import Translator, translate_all


@dataclass
class Order:
    number: int
    customer: str


class OrderPlaced(msgspec.Struct, frozen=True):
    order_id: str


class OrderTranslator:
    def __init__(self) -> None:
        self.seen: list[Order] = []

    def to_event_message(self, order: Order, /) -> OrderPlaced:
        self.seen.append(order)
        return OrderPlaced(order_id=f"o-{order.number}")


class TestTranslateAll:
    def test_every_object_is_translated_in_order(self) -> None:
        """translate_all returns one event per domain object, in the objects' order."""
        orders = [Order(3, "a"), Order(1, "b"), Order(2, "c")]
        events = translate_all(OrderTranslator(), orders)
        assert events == [OrderPlaced("o-3"), OrderPlaced("o-1"), OrderPlaced("o-2")]

    def test_the_domain_objects_are_left_unchanged(self) -> None:
        """Translating does not mutate the domain objects, and each is translated once."""
        orders = [Order(1, "a"), Order(2, "b")]
        translator = OrderTranslator()
        translate_all(translator, iter(orders))
        assert orders == [Order(1, "a"), Order(2, "b")]
        assert translator.seen == orders

    def test_a_plain_class_is_a_translator(self) -> None:
        """Any object with to_event_message fits the Translator protocol (no base class)."""
        translator: Translator[Order, OrderPlaced] = OrderTranslator()
        assert translate_all(translator, []) == []
