"""Routing declarations: where an event type goes, and under which key.

``@event(topic=..., key=...)`` stores a :class:`Route` on the class itself; there
is no global registry. An event class you do not own is routed by passing
``routes={ThatClass: Route(...)}`` to the publisher instead. Event classes are
msgspec Structs, dataclasses, attrs classes or pydantic v2 models (see
:mod:`eventwire._shapes`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from eventwire._errors import RoutingError
from eventwire._shapes import check_round_trip, field_names
from eventwire._text import first_unsafe

__all__ = ["ROUTE_ATTRIBUTE", "Route", "check_text", "event", "validate_topic_name"]

#: Name of the class attribute where ``@event`` stores the route.
ROUTE_ATTRIBUTE = "__eventwire_route__"

# Kafka's own rule (org.apache.kafka.common.internals.Topic): legal characters
# [a-zA-Z0-9._-], length 1..249, and not "." or "..".
_TOPIC_RE = re.compile(r"[a-zA-Z0-9._-]{1,249}")

#: A key function takes the event and returns its routing key.
KeyFunction = Callable[[Any], "str | bytes | int"]

S = TypeVar("S", bound=type[Any])


def validate_topic_name(topic: object, *, what: str = "topic") -> str:
    """Return ``topic`` if it is a legal Kafka topic name, else raise RoutingError.

    librdkafka accepts illegal names and only fails after ``message.timeout.ms``
    (five minutes by default), so eventwire checks Kafka's rule up front.
    """
    if not isinstance(topic, str):
        raise RoutingError(f"{what} must be a str, got {type(topic).__name__} {topic!r}")
    if not _TOPIC_RE.fullmatch(topic) or topic in {".", ".."}:
        problem = "is empty" if not topic else "is not a legal Kafka topic name"
        raise RoutingError(
            f"{what} {topic!r} {problem}: Kafka topic names are 1-249 characters of "
            "ASCII letters, digits, '.', '_' and '-' (and not '.' or '..'). Rename the topic."
        )
    return topic


def check_text(text: str, what: str) -> str:
    """Return ``text`` if it can be sent as UTF-8 (no lone surrogate), else raise RoutingError.

    For the text eventwire sends in its CloudEvents headers (``ce_type``, ``ce_source``):
    no control character either (see :mod:`eventwire._text`), which consumers refuse.
    """
    unsafe = first_unsafe(text)
    if unsafe is not None:
        raise RoutingError(
            f"{what} {text!r} holds the control character {unsafe!r}, which CloudEvents "
            "does not allow in an attribute (consumers refuse it). Fix the name."
        )
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raise RoutingError(
                f"{what} {text!r} is not valid text ({exc.reason} at position {exc.start}): "
                "it is sent as UTF-8 in a Kafka header. Fix the name."
            ) from None
    return text


@dataclass(frozen=True, slots=True)
class Route:
    """Where events of one type go.

    Args:
        topic: the Kafka topic; validated against Kafka's naming rule at once.
        key: the name of a field whose value is the routing key, or a function
            ``event -> str | bytes | int``. Events with the same key go to the
            same partition, in order. ``None`` means no key (spread over partitions,
            no ordering): it must be chosen explicitly.
        type_name: the CloudEvents ``ce_type``; defaults to the class's
            qualified name (``module.QualName``).

    Raises:
        RoutingError: the topic name is illegal, ``key`` is neither a field
            name, a callable nor ``None``, or ``type_name`` is not valid text.
    """

    topic: str
    key: str | KeyFunction | None
    type_name: str | None = None

    def __post_init__(self) -> None:
        validate_topic_name(self.topic)
        if not (self.key is None or isinstance(self.key, str) or callable(self.key)):
            raise RoutingError(
                f"key for topic {self.topic!r} must be a field name, a function or None, "
                f"got {type(self.key).__name__}"
            )
        if isinstance(self.key, str) and not self.key:
            raise RoutingError(f"key for topic {self.topic!r} is an empty field name")
        if self.type_name is not None and (
            not isinstance(self.type_name, str) or not self.type_name
        ):
            raise RoutingError(f"type_name for topic {self.topic!r} must be a non-empty str")
        if self.type_name is not None:
            check_text(self.type_name, f"type_name for topic {self.topic!r}")

    def check_for(self, cls: type) -> None:
        """Raise RoutingError unless this route can serve ``cls``.

        ``cls`` must be an event class -- a ``msgspec.Struct``, dataclass, attrs
        class or pydantic v2 model -- and a key given as a field name must be one
        of its fields (by attribute name; for pydantic, not the alias). Its events
        must keep every field's value and decode back (see
        :func:`eventwire._shapes.check_round_trip`): no attrs field named ``_x``, no
        pydantic secret field without a serializer, no pydantic field written under
        a name its validator does not read, no required excluded one.
        """
        fields = field_names(cls)  # raises unless cls is an event class
        check_round_trip(cls)
        if isinstance(self.key, str) and self.key not in fields:
            raise RoutingError(
                f"key field {self.key!r} is not a field of {cls.__qualname__} "
                f"(fields: {', '.join(fields)}). Name an existing field "
                "or pass a key function."
            )


def event(
    *, topic: str, key: str | KeyFunction | None, type_name: str | None = None
) -> Callable[[S], S]:
    """Class decorator: declare the topic, key and type name of an event class.

    The class is a msgspec Struct, a dataclass, an attrs class or a pydantic v2
    model; apply ``@event`` above (after) ``@dataclass`` / ``@attrs.define``.

    Example::

        @event(topic="orders", key="order_id")
        class OrderPlaced(msgspec.Struct, frozen=True):
            order_id: str
            total_price: float

    Raises:
        RoutingError: the topic is illegal, the class is not an event class, the key
            field does not exist, or its events would lose a field or never decode
            (see :meth:`Route.check_for`) -- at import time, before anything is sent.
    """
    route = Route(topic=topic, key=key, type_name=type_name)

    def decorate(cls: S) -> S:
        route.check_for(cls)
        setattr(cls, ROUTE_ATTRIBUTE, route)
        return cls

    return decorate
