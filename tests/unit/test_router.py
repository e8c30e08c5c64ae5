"""The router: classes to topics, keys and type names."""

from __future__ import annotations

import enum
import uuid

import msgspec
import pytest

from eventwire import Route, RoutingError
from eventwire._router import Router

from .conftest import OrderPlaced, PaymentTaken, Unrouted


def _router(**routes: Route) -> Router:
    return Router(None, source="s", content_type="application/json")


class TestRouter:
    def test_type_name_defaults_to_qualified_name(self) -> None:
        """Without type_name, ce_type is the class's module-qualified name."""
        bound = _router().resolve(OrderPlaced)
        assert bound.type_name == f"{OrderPlaced.__module__}.OrderPlaced"

    def test_explicit_type_name_wins(self) -> None:
        """An explicit type_name is used verbatim."""
        assert _router().resolve(PaymentTaken).type_name == "com.example.PaymentTaken"

    def test_routes_argument_routes_structs_you_do_not_own(self) -> None:
        """A Struct without @event is routed through routes={cls: Route(...)}."""
        router = Router(
            {Unrouted: Route(topic="other", key="order_id")}, source="s", content_type="x"
        )
        assert router.resolve(Unrouted).topic == "other"

    def test_unregistered_type_is_a_routing_error(self) -> None:
        """An undecorated Struct with no explicit route names both ways to fix it."""
        with pytest.raises(RoutingError, match=r"has no route: decorate it with @event"):
            _router().resolve(Unrouted)

    def test_non_struct_is_a_routing_error(self) -> None:
        """Publishing a dict (or anything not an event class) is a RoutingError."""
        with pytest.raises(RoutingError, match="cannot publish a dict: .* is not an event class"):
            _router().resolve(dict)

    def test_int_key_is_encoded_as_decimal_text(self) -> None:
        """Integer keys become their decimal UTF-8 text."""
        assert (
            _router().resolve(PaymentTaken).key_of(PaymentTaken(payment_id=42, amount=1)) == b"42"
        )

    def test_none_key_is_a_routing_error(self) -> None:
        """A key field holding None is refused, naming the field and the event type."""

        class MaybeKeyed(msgspec.Struct):
            order_id: str | None

        router = Router(
            {MaybeKeyed: Route(topic="t", key="order_id")}, source="s", content_type="x"
        )
        with pytest.raises(RoutingError, match=r"key field 'order_id' of .*MaybeKeyed is None"):
            router.resolve(MaybeKeyed).key_of(MaybeKeyed(order_id=None))

    def test_key_without_canonical_text_is_a_routing_error(self) -> None:
        """A float key is refused: it has no canonical text form."""

        class FloatKeyed(msgspec.Struct):
            k: float

        router = Router({FloatKeyed: Route(topic="t", key="k")}, source="s", content_type="x")
        with pytest.raises(RoutingError, match="no canonical text form"):
            router.resolve(FloatKeyed).key_of(FloatKeyed(k=1.5))

    def test_key_function_uuid_and_enum_keys(self) -> None:
        """Key functions, UUID and str-Enum keys are encoded as their text."""

        class Color(enum.Enum):
            RED = "red"

        class E(msgspec.Struct):
            u: uuid.UUID
            c: Color

        u = uuid.uuid4()
        r1 = Router({E: Route(topic="t", key="u")}, source="s", content_type="x").resolve(E)
        r2 = Router({E: Route(topic="t", key="c")}, source="s", content_type="x").resolve(E)
        r3 = Router(
            {E: Route(topic="t", key=lambda e: f"{e.c.value}-x")}, source="s", content_type="x"
        ).resolve(E)
        event = E(u=u, c=Color.RED)
        assert (r1.key_of(event), r2.key_of(event), r3.key_of(event)) == (
            str(u).encode(),
            b"red",
            b"red-x",
        )

    def test_an_int_mixin_enum_key_is_its_number_as_an_intenum_is(self) -> None:
        """A ``class Region(int, Enum)`` member keys as b"1", like an IntEnum or a plain int
        (not str()'s "Region.EU": the same key would land on another partition)."""

        class Region(int, enum.Enum):
            EU = 1

        class Level(enum.IntEnum):
            HIGH = 1

        class E(msgspec.Struct):
            r: Region
            lv: Level
            n: int

        event = E(r=Region.EU, lv=Level.HIGH, n=1)
        keys = [
            Router({E: Route(topic="t", key=field)}, source="s", content_type="x")
            .resolve(E)
            .key_of(event)
            for field in ("r", "lv", "n")
        ]
        assert keys == [b"1", b"1", b"1"]

    def test_a_key_without_text_form_is_refused_without_showing_its_value(self) -> None:
        """The error names the key's type, never its value (it may be personal data)."""

        class E(msgspec.Struct):
            k: dict[str, str]

        router = Router({E: Route(topic="t", key="k")}, source="s", content_type="x")
        with pytest.raises(RoutingError) as info:
            router.resolve(E).key_of(E(k={"card": "4111111111111111"}))
        assert "is a dict" in str(info.value)
        assert "4111" not in str(info.value)

    def test_failing_key_function_is_a_routing_error(self) -> None:
        """An exception in a key function becomes a RoutingError naming the function."""

        def boom(e: object) -> str:
            raise KeyError("nope")

        r = Router({Unrouted: Route(topic="t", key=boom)}, source="s", content_type="x").resolve(
            Unrouted
        )
        with pytest.raises(RoutingError, match="key function"):
            r.key_of(Unrouted(order_id="x"))
