"""The anti-corruption layer seam: domain objects in, event Structs out.

eventwire does no magic mapping: a translator is your code, typed by this
protocol, so the domain model never imports eventwire or msgspec.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

__all__ = ["Translator", "translate_all"]

D_contra = TypeVar("D_contra", contravariant=True)
E_co = TypeVar("E_co", covariant=True)


class Translator(Protocol[D_contra, E_co]):
    """Turns one domain object into one event message.

    Example::

        class OrderEventTranslator:
            def to_event_message(self, order: Order) -> OrderEventMessage:
                return OrderEventMessage(order_id=str(order.order_id), ...)

        translator: Translator[Order, OrderEventMessage] = OrderEventTranslator()
    """

    def to_event_message(self, domain_object: D_contra, /) -> E_co:
        """Return the event message for ``domain_object``; never mutate it."""
        ...


D = TypeVar("D")
E = TypeVar("E")


def translate_all(translator: Translator[D, E], domain_objects: Iterable[D]) -> list[E]:
    """Translate every object, in order."""
    return [translator.to_event_message(obj) for obj in domain_objects]
