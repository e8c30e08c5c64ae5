"""Routing declarations: @event, Route and topic-name validation."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventwire import Route, RoutingError, event
from eventwire._event import ROUTE_ATTRIBUTE, validate_topic_name

from .conftest import OrderPlaced


class TestEventDecorator:
    def test_stores_route_on_the_class(self) -> None:
        """@event stores the route on the class itself, not in a global registry."""
        route = getattr(OrderPlaced, ROUTE_ATTRIBUTE)
        assert route == Route(topic="orders", key="order_id")

    def test_missing_key_field_fails_at_decoration(self) -> None:
        """A key naming a field the Struct lacks raises RoutingError at import time."""
        with pytest.raises(RoutingError, match="'orderid' is not a field of"):

            @event(topic="orders", key="orderid")
            class Bad(msgspec.Struct):
                order_id: str

    def test_non_struct_fails_at_decoration(self) -> None:
        """Decorating a plain class (not a Struct, dataclass, attrs or pydantic class) raises
        RoutingError naming what an event class must be."""
        with pytest.raises(RoutingError, match="is not an event class: .*msgspec.Struct"):

            @event(topic="orders", key="order_id")  # type: ignore[type-var]
            class Plain:
                order_id: str

    @pytest.mark.parametrize("topic", ["", "has space", "bang!", ".", "..", "x" * 250, "ü"])
    def test_illegal_topic_names_are_rejected(self, topic: str) -> None:
        """Topics that Kafka would reject (and librdkafka would accept) fail fast."""
        with pytest.raises(RoutingError, match="topic"):
            Route(topic=topic, key="k")

    def test_key_must_be_chosen_explicitly(self) -> None:
        """A key of the wrong kind is rejected; None (no ordering) is allowed."""
        with pytest.raises(RoutingError, match="field name, a function or None"):
            Route(topic="t", key=42)  # type: ignore[arg-type]
        assert Route(topic="t", key=None).key is None


_LEGAL = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
    min_size=1,
    max_size=249,
).filter(lambda t: t not in {".", ".."})


class TestTopicNameRule:
    @given(_LEGAL)
    def test_every_legal_name_is_accepted(self, topic: str) -> None:
        """Any 1-249 character name of [a-zA-Z0-9._-] passes (except '.' and '..')."""
        assert validate_topic_name(topic) == topic

    @given(
        st.text(min_size=1, max_size=40).filter(
            lambda t: any(not (c.isascii() and (c.isalnum() or c in "._-")) for c in t)
        )
    )
    def test_any_other_character_is_rejected(self, topic: str) -> None:
        """A name with any character outside Kafka's alphabet is rejected."""
        with pytest.raises(RoutingError):
            validate_topic_name(topic)
