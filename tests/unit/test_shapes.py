"""Events of every common shape (issue 16, item 1): msgspec Structs, dataclasses (frozen,
slots), attrs classes and pydantic v2 models are published, keyed, checked and read
back alike, with either codec."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from typing import Any

import attrs
import msgspec
import pydantic
import pytest

from eventwire import (
    JsonCodec,
    MsgpackCodec,
    Route,
    RoutingError,
    SerializationContext,
    SerializationError,
    SerializerCodec,
    event,
)
from eventwire._shapes import Shape, from_builtins, json_schema, shape_of, to_builtins
from eventwire.testing import capture_events

from ..shapes import (
    SHAPES,
    AttrsOrder,
    DataclassOrder,
    PydanticOrder,
    StructOrder,
    make,
    routes_for,
)

every_shape = pytest.mark.parametrize("shape", list(SHAPES))
both_codecs = pytest.mark.parametrize("codec", ["json", "msgpack"])


# -- publishing ----------------------------------------------------------------------------


@every_shape
@both_codecs
def test_every_shape_is_published_keyed_with_cloudevents_headers_and_read_back_typed(
    shape: str, codec: str
) -> None:
    """Each shape goes to its route's topic under its key field, with the CloudEvents
    headers (ce_type = module.QualName), and capture_events(...).events(cls) decodes it
    back into an equal instance of the same class."""
    order = make(shape)
    cls = type(order)
    with capture_events(routes=routes_for(shape), codec=codec) as captured:
        captured.publisher.publish(order).result(1)
        [record] = captured.records("orders")
        assert record.key == b"o-1"
        assert record.header("ce_type") == f"{cls.__module__}.{cls.__qualname__}".encode()
        assert record.header("content-type") == f"application/{codec}".encode()
        [back] = captured.events(cls)
    assert type(back) is cls
    assert back == order


def test_structs_dataclasses_and_attrs_classes_write_the_same_json() -> None:
    """msgspec encodes the three native shapes alike: the same JSON value (a Struct and a
    dataclass byte for byte; msgspec writes a slotted attrs class's fields in name order)."""
    codec = JsonCodec()
    struct, dc, at = (codec.encode(make(s)) for s in ("struct", "dataclass", "attrs"))
    assert struct == dc
    assert struct.startswith(b'{"order_id":"o-1","placed_at":"2026-11-27T05:42:35Z"')
    assert msgspec.json.decode(at) == msgspec.json.decode(struct)


def test_a_pydantic_model_is_written_by_its_aliases_and_read_back_through_them() -> None:
    """pydantic's serializer writes the alias names (what model_validate_json reads), and
    the JSON is otherwise the native shapes' JSON."""
    data = JsonCodec().encode(make("pydantic"))
    assert msgspec.json.decode(data) == {
        "orderId": "o-1",
        "placedAt": "2026-11-27T05:42:35Z",
        "items": [{"sku": "kb", "price": 89.99}, {"sku": "usb", "price": 9.99}],
        "total": 99.98,
    }
    assert JsonCodec().decode(data, PydanticOrder) == make("pydantic")


@every_shape
def test_key_functions_type_names_and_the_routes_mapping_work_for_every_shape(
    shape: str,
) -> None:
    """A key function gets the event itself; type_name overrides ce_type; a class without
    @event is routed by routes=."""
    routes = routes_for(
        shape, topic="audit", key=lambda e: f"k-{e.order_id}", type_name="com.example.Order"
    )
    with capture_events(routes=routes, partitions=3) as captured:
        captured.publisher.publish(make(shape, "o-7")).result(1)
        [record] = captured.records("audit")
        assert record.key == b"k-o-7"
        assert record.header("ce_type") == b"com.example.Order"
        assert captured.events(SHAPES[shape][0]) == [make(shape, "o-7")]


def _declare(shape: str) -> type:
    """A fresh class of ``shape`` declared with @event (above the class decorators)."""
    if shape == "struct":

        @event(topic="orders", key="order_id")
        class S(msgspec.Struct, frozen=True):
            order_id: str

        return S
    if shape == "dataclass":

        @event(topic="orders", key="order_id")
        @dataclasses.dataclass(frozen=True, slots=True)
        class D:
            order_id: str

        return D
    if shape == "attrs":

        @event(topic="orders", key="order_id")
        @attrs.frozen
        class A:
            order_id: str

        return A

    @event(topic="orders", key="order_id")
    class P(pydantic.BaseModel):
        order_id: str = pydantic.Field(alias="orderId")

    return P


@every_shape
def test_event_decorates_every_shape(shape: str) -> None:
    """@event above @dataclass(frozen=True, slots=True), @attrs.frozen or on a BaseModel
    routes the class itself; its events are published by key field."""
    cls = _declare(shape)
    value = cls(orderId="o-9") if shape == "pydantic" else cls(order_id="o-9")
    with capture_events() as captured:
        captured.publisher.publish(value).result(1)
        assert [r.key for r in captured.records("orders")] == [b"o-9"]
        assert captured.events(cls) == [value]
    if shape == "dataclass":
        assert "__slots__" in cls.__dict__  # the slots class is what @event saw


@every_shape
def test_a_key_field_the_class_lacks_is_refused_naming_its_fields(shape: str) -> None:
    """The key field is checked against the class's fields when the route is bound."""
    with pytest.raises(RoutingError, match=r"'orderid' is not a field of .*\(fields: order_id"):
        Route(topic="orders", key="orderid").check_for(SHAPES[shape][0])


def test_a_pydantic_key_field_is_named_by_attribute_not_alias() -> None:
    """key="field" reads the attribute, so a pydantic field is named as in Python."""
    with pytest.raises(RoutingError, match="'orderId' is not a field of PydanticOrder"):
        Route(topic="orders", key="orderId").check_for(PydanticOrder)


def test_event_below_the_dataclass_decorator_says_to_move_it() -> None:
    """@event applied before @dataclass sees a plain class: the error says where it goes."""
    with pytest.raises(RoutingError, match=r"not an event class.*apply @event above"):

        @dataclasses.dataclass
        @event(topic="orders", key="order_id")
        class Late:
            order_id: str


def test_a_pydantic_v1_model_is_refused_naming_v2() -> None:
    """pydantic.v1 models have no v2 serializer: the error says to use v2's BaseModel."""
    from pydantic import v1

    class Old(v1.BaseModel):
        order_id: str

    with pytest.raises(RoutingError, match="pydantic v1 models .* are not supported"):
        Route(topic="orders", key="order_id").check_for(Old)


def test_an_incomplete_pydantic_model_is_refused_naming_model_rebuild() -> None:
    """A model with an unresolved forward reference cannot be serialized: caught at bind."""

    class Pending(pydantic.BaseModel):
        order_id: str
        later: Later  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(RoutingError, match=r"not fully defined.*Pending.model_rebuild\(\)"):
        Route(topic="orders", key="order_id").check_for(Pending)


# -- NaN and infinity ----------------------------------------------------------------------


@every_shape
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_json_refuses_nan_and_infinity_in_every_shape_naming_the_field(
    shape: str, bad: float
) -> None:
    """JSON writes a non-finite float as null (pydantic too, by default): refused before
    anything is sent, naming the nested field by its JSON path."""
    with capture_events(routes=routes_for(shape)) as captured:
        with pytest.raises(SerializationError, match=r"\$\.items\[1\]\.price is (nan|inf|-inf)"):
            captured.publisher.publish(make(shape, price=bad))
        assert captured.records() == []
    with pytest.raises(SerializationError, match="JSON has no NaN or infinity"):
        JsonCodec().encode(make(shape, price=bad))


@every_shape
def test_msgpack_keeps_nan_in_every_shape(shape: str) -> None:
    """MessagePack carries NaN; it is read back as NaN."""
    codec = MsgpackCodec()
    back = codec.decode(codec.encode(make(shape, price=math.nan)), SHAPES[shape][0])
    assert math.isnan(back.items[1].price)


def test_allow_non_finite_lets_pydantic_write_null_as_its_config_says() -> None:
    """With allow_non_finite=True nothing is refused; pydantic writes null (its default)."""
    data = JsonCodec(allow_non_finite=True).encode(make("pydantic", price=math.nan))
    assert b'"price":null' in data


def test_a_nan_in_an_excluded_pydantic_field_is_not_refused() -> None:
    """Only what is written is checked: a field excluded from serialization may hold NaN."""

    class WithScratch(pydantic.BaseModel):
        order_id: str
        scratch: float = pydantic.Field(default=0.0, exclude=True)

    assert (
        JsonCodec().encode(WithScratch(order_id="o-1", scratch=math.nan)) == b'{"order_id":"o-1"}'
    )


def test_nan_in_a_computed_field_or_an_extra_field_of_a_pydantic_model_is_refused() -> None:
    """What pydantic writes besides the declared fields is checked too: computed fields
    (from their return type) and extra fields of a model with extra="allow"."""

    class Ratio(pydantic.BaseModel):
        num: float
        den: float

        @pydantic.computed_field  # type: ignore[prop-decorator]
        @property
        def ratio(self) -> float:
            return self.num / self.den if self.den else math.nan

    class Open(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")
        order_id: str

    codec = JsonCodec()
    assert codec.encode(Ratio(num=1, den=2)) == b'{"num":1.0,"den":2.0,"ratio":0.5}'
    with pytest.raises(SerializationError, match=r"\$\.ratio is nan"):
        codec.encode(Ratio(num=1, den=0))
    with pytest.raises(SerializationError, match=r"\$\.score is inf"):
        codec.encode(Open(order_id="o-1", score=math.inf))


def test_a_pydantic_model_holding_lists_and_dicts_of_models_without_floats_is_written() -> None:
    """Regression: nested models in a list or dict whose fields hold no float (a str, an int)
    made the generated NaN check an empty loop, and JsonCodec.encode raised IndentationError.
    Found by tests/unit/test_contracts_property.py's pydantic property."""

    class Tag(pydantic.BaseModel):
        name: str

    class Post(pydantic.BaseModel):
        tags: list[Tag]
        by_name: dict[str, Tag] = {}
        nested: dict[str, list[Tag]] = {}
        score: float = 0.0

    codec = JsonCodec()
    post = Post(tags=[Tag(name="a")], by_name={"b": Tag(name="b")}, nested={"c": [Tag(name="c")]})
    written = codec.encode(post)
    assert codec.decode(written, Post) == post
    with pytest.raises(SerializationError, match=r"\$\.score is nan"):
        codec.encode(post.model_copy(update={"score": math.nan}))


# -- decoding, errors ----------------------------------------------------------------------


@every_shape
@pytest.mark.parametrize("codec", [JsonCodec(), MsgpackCodec()], ids=["json", "msgpack"])
def test_codec_decode_builds_every_shape(shape: str, codec: Any) -> None:
    """codec.decode(data, cls) returns an instance of cls (nested items of their class)."""
    order = make(shape)
    back = codec.decode(codec.encode(order), type(order))
    assert back == order
    assert type(back.items[0]) is SHAPES[shape][1]


@pytest.mark.parametrize("codec", [JsonCodec(), MsgpackCodec()], ids=["json", "msgpack"])
def test_a_pydantic_validator_runs_on_decode(codec: Any) -> None:
    """Bytes a model's validator refuses raise SerializationError naming the field (by its
    alias) and the error type; the validator's message quotes the value ('x-1'), which is
    payload data, so it is not shown."""
    wire = codec.encode(make("pydantic").model_copy(update={"order_id": "x-1"}))
    with pytest.raises(SerializationError) as info:
        codec.decode(wire, PydanticOrder)
    assert "orderId: the value is not valid [type=value_error]" in str(info.value)
    assert "x-1" not in str(info.value)


@pytest.mark.parametrize("codec", [JsonCodec(), MsgpackCodec()], ids=["json", "msgpack"])
def test_a_validators_message_without_the_value_is_shown(codec: Any) -> None:
    """A validator's own words that do not repeat the value are the reason given."""

    class Strict(pydantic.BaseModel):
        order_id: str

        @pydantic.field_validator("order_id")
        @classmethod
        def _prefixed(cls, value: str) -> str:
            if not value.startswith("o-"):
                raise ValueError("order ids start with 'o-'")
            return value

    wire = codec.encode({"order_id": "x-1"})
    with pytest.raises(SerializationError, match="order_id: Value error, order ids start with"):
        codec.decode(wire, Strict)


@every_shape
@pytest.mark.parametrize("codec", [JsonCodec(), MsgpackCodec()], ids=["json", "msgpack"])
def test_bytes_that_do_not_fit_the_shape_are_a_serialization_error(shape: str, codec: Any) -> None:
    """A missing field is refused as SerializationError naming the class, for every shape."""
    data = codec.encode({"order_id": "o-1"})
    with pytest.raises(SerializationError, match=f"as {SHAPES[shape][0].__qualname__}"):
        codec.decode(data, SHAPES[shape][0])


@pytest.mark.parametrize("codec", [JsonCodec(), MsgpackCodec()], ids=["json", "msgpack"])
def test_a_value_pydantic_cannot_serialize_is_a_serialization_error(codec: Any) -> None:
    """A model holding a value its serializer refuses raises SerializationError at publish."""

    class Loose(pydantic.BaseModel):
        order_id: str
        payload: Any

    with capture_events(routes={Loose: Route(topic="t", key="order_id")}, codec=codec) as cap:
        with pytest.raises(SerializationError, match=r"cannot encode \S*Loose as .* unknown type"):
            cap.publisher.publish(Loose(order_id="o-1", payload=object()))
        assert cap.records() == []


def test_a_pydantic_model_that_contains_itself_is_refused() -> None:
    """A cycle is named as such, as for a Struct."""

    class Node(pydantic.BaseModel):
        name: str
        next: Node | None = None

    a = Node(name="a")
    a.next = a
    with pytest.raises(SerializationError, match="contains itself"):
        JsonCodec().encode(a)


def test_the_struct_fast_path_is_msgspecs_own_encoder() -> None:
    """Structs, dataclasses and attrs classes get msgspec's bare encoder itself (no
    wrapper: no per-event cost); a pydantic model gets its serializer, made once."""
    codec = JsonCodec()
    assert codec.encoder_for(StructOrder) == codec.fast_encode
    assert codec.encoder_for(DataclassOrder) == codec.fast_encode
    assert codec.encoder_for(AttrsOrder) == codec.fast_encode
    assert codec.encoder_for(PydanticOrder) is codec.encoder_for(PydanticOrder)


# -- the helpers other code builds on ------------------------------------------------------


def test_shape_of_tells_the_shapes_apart() -> None:
    """Every shape is recognised; anything else is None."""
    assert [shape_of(SHAPES[s][0]) for s in SHAPES] == [
        Shape.STRUCT,
        Shape.DATACLASS,
        Shape.ATTRS,
        Shape.PYDANTIC,
    ]
    assert shape_of(dict) is None
    assert shape_of(make("struct")) is None  # an instance, not a class


@every_shape
def test_to_builtins_and_from_builtins_round_trip_every_shape(shape: str) -> None:
    """to_builtins gives JSON-compatible builtins (a pydantic model by alias), and
    from_builtins builds the class back from them."""
    order = make(shape)
    plain = to_builtins(order)
    assert msgspec.json.decode(msgspec.json.encode(plain)) == plain
    assert plain["items"][1] == {"sku": "usb", "price": 9.99}
    assert ("orderId" if shape == "pydantic" else "order_id") in plain
    assert from_builtins(plain, type(order)) == order


@every_shape
def test_json_schema_describes_the_written_fields_of_every_shape(shape: str) -> None:
    """json_schema(cls): msgspec's schema for native shapes, pydantic's (by alias) for models."""
    schema = json_schema(SHAPES[shape][0])
    text = msgspec.json.encode(schema).decode()
    assert ("orderId" if shape == "pydantic" else "order_id") in text
    assert "price" in text


def test_json_schema_of_something_else_is_a_routing_error() -> None:
    with pytest.raises(RoutingError, match="is not an event class"):
        json_schema(dict)


def test_a_serializer_codec_gets_a_pydantic_model_as_builtins_by_alias() -> None:
    """SerializerCodec hands Confluent-style serializers builtins for every shape, and
    converts what the deserializer returns into the model (validators run)."""
    seen: list[Any] = []

    def serializer(obj: Any, ctx: SerializationContext) -> bytes:
        seen.append(obj)
        return msgspec.json.encode(obj)

    def deserializer(data: bytes, ctx: SerializationContext) -> Any:
        return msgspec.json.decode(data)

    codec = SerializerCodec(serializer, deserializer, content_type="application/json")
    ctx = SerializationContext("orders")
    data = codec.encode_for(make("pydantic"), ctx)
    assert seen[0]["orderId"] == "o-1"
    assert codec.decode_from(data, PydanticOrder, ctx) == make("pydantic")


def test_eventwire_imports_and_publishes_without_pydantic() -> None:
    """pydantic is an optional extra: with it uninstallable, eventwire imports and
    publishes Structs and dataclasses, and never tries to import it."""
    code = """
import sys, dataclasses
sys.modules["pydantic"] = None  # import pydantic -> ImportError
sys.modules["pydantic_core"] = None
import msgspec
from eventwire import Route
from eventwire.testing import capture_events

class S(msgspec.Struct):
    k: str

@dataclasses.dataclass
class D:
    k: str

routes = {S: Route(topic="t", key="k"), D: Route(topic="t", key="k")}
for codec in ("json", "msgpack"):
    with capture_events(routes=routes, codec=codec) as captured:
        captured.publisher.publish(S("a")).result(1)
        captured.publisher.publish(D("b")).result(1)
        assert captured.events(S) == [S("a")] and captured.events(D) == [D("b")]
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
