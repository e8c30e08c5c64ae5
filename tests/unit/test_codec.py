"""eventwire._codec: events to bytes and back with msgspec (json, msgpack, custom)."""

from __future__ import annotations

import datetime as dt
import enum
import traceback
import uuid
from typing import Any

import msgspec
import pytest

from eventwire import (
    ConfigurationError,
    JsonCodec,
    MsgpackCodec,
    SerializationContext,
    SerializationError,
    SerializerCodec,
)
from eventwire._codec import ENCODE_ERRORS, Codec, resolve_codec


class Line(msgspec.Struct, frozen=True):
    sku: str
    qty: int


class Order(msgspec.Struct, frozen=True):
    order_id: uuid.UUID
    at: dt.datetime
    lines: list[Line]
    total: float
    note: str | None = None


class Loose(msgspec.Struct):
    payload: Any


class Opaque:
    """Not something msgspec can encode."""


ORDER = Order(
    order_id=uuid.UUID("0191d3e4-7c2a-7b3e-8f00-0123456789ab"),
    at=dt.datetime(2026, 11, 30, 8, 0, 0, 123000, tzinfo=dt.UTC),
    lines=[Line("a", 1), Line("b", 2)],
    total=19.98,
)


@pytest.fixture(params=[JsonCodec, MsgpackCodec], ids=["json", "msgpack"])
def codec(request: pytest.FixtureRequest) -> Any:
    return request.param()


class TestRoundTrip:
    def test_an_event_decodes_to_an_equal_event(self, codec: Any) -> None:
        """encode then decode gives back an equal event (UUID, aware datetime, nested Structs)."""
        assert codec.decode(codec.encode(ORDER), Order) == ORDER

    def test_a_codec_decodes_many_types(self, codec: Any) -> None:
        """One codec instance decodes several event types, each as its own type."""
        assert codec.decode(codec.encode(Line("x", 3)), Line) == Line("x", 3)
        assert codec.decode(codec.encode(ORDER), Order) == ORDER
        assert codec.decode(codec.encode(Line("y", 4)), Line) == Line("y", 4)

    def test_json_is_plain_json_with_its_content_type(self) -> None:
        """JsonCodec writes JSON any consumer can read, as application/json."""
        codec = JsonCodec()
        assert codec.content_type == "application/json"
        assert msgspec.json.decode(codec.encode(Line("a", 1))) == {"sku": "a", "qty": 1}

    def test_msgpack_is_plain_msgpack_with_its_content_type(self) -> None:
        """MsgpackCodec writes MessagePack any consumer can read, as application/msgpack."""
        codec = MsgpackCodec()
        assert codec.content_type == "application/msgpack"
        assert msgspec.msgpack.decode(codec.encode(Line("a", 1))) == {"sku": "a", "qty": 1}


class TestErrors:
    def test_an_unencodable_value_raises_serialization_error_naming_the_type(
        self, codec: Any
    ) -> None:
        """Encoding a value msgspec cannot encode raises SerializationError naming the event
        type and the content type."""
        with pytest.raises(SerializationError) as info:
            codec.encode(Loose(payload=Opaque()))
        assert "Loose" in str(info.value)
        assert codec.content_type in str(info.value)
        assert isinstance(info.value.__cause__, ENCODE_ERRORS)

    def test_bytes_of_another_shape_raise_serialization_error_naming_the_type(
        self, codec: Any
    ) -> None:
        """Decoding bytes that do not fit the type raises SerializationError naming the type."""
        data = codec.encode(Line("a", 1))
        with pytest.raises(SerializationError, match="Order"):
            codec.decode(data, Order)

    def test_garbage_bytes_raise_serialization_error(self, codec: Any) -> None:
        """Decoding bytes that are not the codec's format raises SerializationError."""
        with pytest.raises(SerializationError):
            codec.decode(b"\xc1not-a-document", Line)


class TestFastEncoder:
    def test_the_fast_encoder_gives_the_same_bytes(self, codec: Any) -> None:
        """fast_encode (the publish hot path) encodes to exactly the bytes of encode()."""
        assert codec.fast_encode(ORDER) == codec.encode(ORDER)

    def test_the_fast_encoder_raises_msgspecs_own_error(self, codec: Any) -> None:
        """fast_encode raises one of ENCODE_ERRORS (not SerializationError), for the caller
        to call encode() again and get the explanatory error."""
        with pytest.raises(ENCODE_ERRORS) as info:
            codec.fast_encode(Loose(payload=Opaque()))
        assert not isinstance(info.value, SerializationError)


class _Upper:
    """A custom codec: anything with content_type, encode and decode."""

    content_type = "text/plain"

    def encode(self, event: Any) -> bytes:
        return str(event).upper().encode()

    def decode(self, data: bytes, type: type[Any]) -> Any:
        return type(data.decode())


class TestResolve:
    @pytest.mark.parametrize(("name", "cls"), [("json", JsonCodec), ("msgpack", MsgpackCodec)])
    def test_a_name_resolves_to_a_new_codec(self, name: str, cls: type) -> None:
        """'json' and 'msgpack' resolve to a fresh instance of their codec."""
        first, second = resolve_codec(name), resolve_codec(name)
        assert isinstance(first, cls) and isinstance(second, cls)
        assert first is not second

    def test_a_codec_object_is_used_as_it_is(self) -> None:
        """An object with content_type/encode/decode is a Codec and is used unchanged."""
        custom = _Upper()
        assert isinstance(custom, Codec)
        assert resolve_codec(custom) is custom

    def test_an_unknown_name_is_a_configuration_error(self) -> None:
        """An unknown codec name raises ConfigurationError listing the valid names."""
        with pytest.raises(ConfigurationError, match="'avro'.*json.*msgpack"):
            resolve_codec("avro")

    def test_an_object_that_is_no_codec_is_a_configuration_error(self) -> None:
        """An object without content_type/encode/decode raises ConfigurationError naming its type."""
        with pytest.raises(ConfigurationError, match="Opaque"):
            resolve_codec(Opaque())  # type: ignore[arg-type]


class _Plan(enum.Enum):
    FREE = "free"


class _Subscribed(msgspec.Struct):
    plan: _Plan


def test_a_serializer_codec_decode_error_does_not_quote_the_value() -> None:
    """SerializerCodec converts what its deserializer returns to the event type: the
    ValidationError of that step quotes the value it refused, which is left out (text
    and cause chain) while the path stays."""
    codec = SerializerCodec(
        lambda obj, ctx: msgspec.json.encode(obj),
        lambda data, ctx: msgspec.json.decode(data),
    )
    data = msgspec.json.encode({"plan": "SSN-123-45-6789"})
    with pytest.raises(SerializationError) as info:
        codec.decode_from(data, _Subscribed, SerializationContext("t"))
    assert "SSN" not in "".join(traceback.format_exception(info.value))
    assert "Invalid enum value (not shown) - at `$.plan`" in str(info.value)
