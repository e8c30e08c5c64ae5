"""Event classes whose events would lose a field's value, or never decode, are refused when
their route is bound (codec review 2); a strict pydantic model round-trips under msgpack."""

from __future__ import annotations

import dataclasses
import decimal
import enum
import uuid
from datetime import datetime
from typing import Annotated, Any

import attrs
import msgspec
import pydantic
import pytest

from eventwire import Decoder, Publisher, Route, RoutingError, event
from eventwire.testing import MemoryTransport, capture_events


def bind(cls: type) -> None:
    """Bind a route to ``cls`` as ``routes=`` does (and publish nothing)."""
    Publisher(transport=MemoryTransport(), routes={cls: Route(topic="t", key=None)}).close(1)


# -- attrs fields named _x ------------------------------------------------------------------


@attrs.define
class PaymentCaptured:
    payment_id: str
    _amount_cents: int = 0


def test_an_attrs_field_named_with_a_leading_underscore_is_refused_naming_it() -> None:
    """msgspec never writes an attrs field whose name starts with '_' (the value was lost,
    consumers got the default): binding a route refuses the class, naming class and field."""
    with pytest.raises(RoutingError) as info:
        bind(PaymentCaptured)
    text = str(info.value)
    assert "PaymentCaptured" in text and "'_amount_cents'" in text
    assert "never writes" in text and "Rename" in text


def test_event_refuses_an_attrs_class_with_a_private_field_at_import() -> None:
    with pytest.raises(RoutingError, match="'_secret_level'"):

        @event(topic="t", key="k")
        @attrs.frozen
        class Classified:
            k: str
            _secret_level: int


@attrs.define
class Line:
    sku: str
    _cost: int = 0


class Order(msgspec.Struct):
    order_id: str
    lines: list[Line]


def test_an_attrs_class_with_a_private_field_nested_in_a_struct_is_refused() -> None:
    with pytest.raises(RoutingError, match=r"'_cost' of the attrs class Line \(in Order\)"):
        bind(Order)


def test_a_dataclass_or_struct_field_named_with_an_underscore_is_still_published() -> None:
    """msgspec writes such fields of dataclasses and Structs: they are not refused."""

    @dataclasses.dataclass
    class D:
        k: str
        _n: int = 0

    class S(msgspec.Struct):
        k: str
        _n: int = 0

    routes = {D: Route(topic="t", key="k"), S: Route(topic="t", key="k")}
    with capture_events(routes=routes) as captured:
        captured.publisher.publish(D("a", 1)).result(1)
        captured.publisher.publish(S("b", 2)).result(1)
        assert captured.events(D) == [D("a", 1)] and captured.events(S) == [S("b", 2)]


# -- pydantic: secrets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "annotation",
    [
        pydantic.SecretStr,
        pydantic.SecretBytes | None,
        *([pydantic.Secret[int]] if hasattr(pydantic, "Secret") else []),  # pydantic >= 2.7
    ],
)
def test_a_pydantic_secret_field_is_refused_naming_it(annotation: Any) -> None:
    """pydantic writes a secret as '**********' (the value was lost): refused at binding."""
    model = pydantic.create_model("Token", k=(str, ...), token=(annotation, ...))
    with pytest.raises(RoutingError) as info:
        bind(model)
    text = str(info.value)
    assert "'token' of Token" in text and "'**********'" in text
    assert "field_serializer" in text


def test_a_secret_inside_a_nested_model_is_refused() -> None:
    class Card(pydantic.BaseModel):
        pin: pydantic.SecretStr

    class Paid(pydantic.BaseModel):
        k: str
        cards: list[Card]

    with pytest.raises(RoutingError, match=r"'pin' of .*Card \(in .*Paid\)"):
        bind(Paid)


def test_a_secret_with_a_field_serializer_is_published_as_the_user_decided() -> None:
    class Handover(pydantic.BaseModel):
        k: str
        token: pydantic.SecretStr
        other: Annotated[
            pydantic.SecretStr, pydantic.PlainSerializer(lambda v: v.get_secret_value())
        ]

        @pydantic.field_serializer("token")
        def _reveal(self, value: pydantic.SecretStr) -> str:
            return value.get_secret_value()

    routes = {Handover: Route(topic="t", key="k")}
    with capture_events(routes=routes) as captured:
        captured.publisher.publish(
            Handover(k="x", token=pydantic.SecretStr("t0k"), other=pydantic.SecretStr("o"))
        ).result(1)
        assert captured.records()[0].value == b'{"k":"x","token":"t0k","other":"o"}'


# -- pydantic: names the validator does not read, required excluded fields -------------------


def test_a_serialization_alias_the_validator_does_not_read_is_refused() -> None:
    """Written as "amt", read as "amount": no event would decode."""

    class AliasOnlySer(pydantic.BaseModel):
        k: str
        amount: int = pydantic.Field(serialization_alias="amt")

    with pytest.raises(RoutingError) as info:
        bind(AliasOnlySer)
    text = str(info.value)
    assert "'amount'" in text and "written as 'amt'" in text and "'amount'" in text
    assert "AliasChoices" in text


def test_names_the_validator_reads_are_accepted() -> None:
    """An alias both ways, a validation alias listing the written name, populate_by_name,
    an alias generator: each event decodes, so none is refused."""

    class Read(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(populate_by_name=True)
        k: str = pydantic.Field(alias="K")
        a: int = pydantic.Field(
            validation_alias=pydantic.AliasChoices("a_new", "a"), serialization_alias="a"
        )
        b: int = pydantic.Field(serialization_alias="b", validation_alias="bb")

    class Generated(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(alias_generator=str.upper)
        k: str

    routes = {Read: Route(topic="t", key="k"), Generated: Route(topic="g", key="k")}
    with capture_events(routes=routes) as captured:
        captured.publisher.publish(Read(K="x", a_new=1, bb=2)).result(1)
        captured.publisher.publish(Generated(K="y")).result(1)
        assert captured.events(Read) == [Read(K="x", a=1, bb=2)]
        assert captured.events(Generated) == [Generated(K="y")]


def test_a_required_excluded_field_is_refused_a_defaulted_one_is_not() -> None:
    class Excl(pydantic.BaseModel):
        k: str
        internal: int = pydantic.Field(exclude=True)

    class Scratch(pydantic.BaseModel):
        k: str
        scratch: int = pydantic.Field(default=0, exclude=True)

    with pytest.raises(RoutingError, match=r"'internal' of .*Excl is required but excluded"):
        bind(Excl)
    bind(Scratch)


# -- msgpack and strict pydantic models -----------------------------------------------------


class Colour(enum.Enum):
    RED = "red"


class StrictAll(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True)
    k: str
    i: uuid.UUID
    d: decimal.Decimal
    c: Colour
    t: tuple[int, int]
    when: datetime


class StrictField(pydantic.BaseModel):
    k: str
    c: Colour = pydantic.Field(strict=True)
    i: Annotated[uuid.UUID, pydantic.Strict()]


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_msgpack_decodes_the_strict_pydantic_models_it_encodes(codec: str) -> None:
    """msgpack carries UUIDs, enums, decimals and tuples as strings and arrays, which
    strict Python-mode validation refused: every record failed as malformed_value."""
    events: list[Any] = [
        StrictAll(
            k="a",
            i=uuid.UUID(int=1),
            d=decimal.Decimal("1.10"),
            c=Colour.RED,
            t=(1, 2),
            when=datetime(2026, 3, 2, 9, 0),  # naive: written as text
        ),
        StrictField(k="b", c=Colour.RED, i=uuid.UUID(int=2)),
    ]
    routes = {StrictAll: Route(topic="t", key="k"), StrictField: Route(topic="t", key="k")}
    transport = MemoryTransport()
    with Publisher(transport=transport, routes=routes, codec=codec) as publisher:
        for item in events:
            publisher.publish(item)
    decoder = Decoder(routes=routes, codec=codec)
    assert [decoder.decode(r).event for r in transport.records("t")] == events
