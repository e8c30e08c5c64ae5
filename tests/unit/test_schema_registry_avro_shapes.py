"""Avro schemas derived from dataclasses, attrs classes and pydantic v2 models, and the
AvroCodec on each shape, against confluent-kafka's MockSchemaRegistryClient and its own
AvroSerializer/AvroDeserializer (the real registry: tests/integration)."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from decimal import Decimal
from typing import Any, Literal

import attrs
import fastavro
import msgspec
import pydantic
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField
from confluent_kafka.serialization import SerializationContext as ConfluentContext

from eventwire import ConfigurationError, SerializationContext, SerializationError
from eventwire.schema_registry import AvroCodec, avro_schema


class Size(enum.Enum):
    S = "S"
    M = "M"


class Line(pydantic.BaseModel):
    sku: str
    quantity: int = 1
    size: Size = Size.M


class Invoice(pydantic.BaseModel):
    """Aliases, Optional, defaults, a nested model, an enum, a Literal, lists, maps, times,
    a UUID, a Decimal with a precision and a computed field."""

    model_config = pydantic.ConfigDict(populate_by_name=True)

    invoice_id: uuid.UUID = pydantic.Field(alias="invoiceId")
    issued_at: pydantic.AwareDatetime = pydantic.Field(alias="issuedAt")
    due: datetime.date
    amount: Decimal = pydantic.Field(max_digits=12, decimal_places=2)
    lines: list[Line]
    tags: dict[str, int] = {}
    note: str | None = None
    reviewer: str | None  # required, nullable
    channel: Literal["web", "shop"] = "web"
    paid: bool = False
    weight: float = 0.0
    raw: bytes = b""
    hidden: str = pydantic.Field(default="x", exclude=True)

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def line_count(self) -> int:
        return len(self.lines)


def invoice() -> Invoice:
    return Invoice(
        invoice_id=uuid.UUID(int=42),
        issued_at=datetime.datetime(2026, 12, 6, 9, 30, 0, 123456, tzinfo=datetime.UTC),
        due=datetime.date(2027, 1, 5),
        amount=Decimal("1234.50"),
        lines=[Line(sku="kb", quantity=2, size=Size.S), Line(sku="usb")],
        tags={"vip": 1},
        note="thanks",
        reviewer=None,
        channel="shop",
        paid=True,
        weight=1.5,
        raw=b"\x00\xff",
    )


class TreeNode(pydantic.BaseModel):
    name: str
    children: list[TreeNode] = []


@pytest.fixture
def mock_client() -> Any:
    return SchemaRegistryClient.new_client({"url": "mock://registry"})


def ctx(topic: str = "invoices") -> SerializationContext:
    return SerializationContext(topic)


class TestPydanticDerivation:
    def test_a_models_fields_map_as_pydantic_writes_them(self) -> None:
        """Fields by alias; Optional with a None default is ["null", T] default null, a required
        nullable field has no default; nested model, enum, Literal, list, map; logical types
        for datetime, date, UUID and a Decimal with max_digits/decimal_places."""
        schema = avro_schema(Invoice)
        fastavro.parse_schema(schema)
        assert schema["name"] == "Invoice" and schema["namespace"] == __name__
        fields = {f["name"]: f for f in schema["fields"]}
        assert fields["invoiceId"]["type"] == {"type": "string", "logicalType": "uuid"}
        assert fields["issuedAt"]["type"] == {"type": "long", "logicalType": "timestamp-micros"}
        assert fields["due"]["type"] == {"type": "int", "logicalType": "date"}
        assert fields["amount"]["type"] == {
            "type": "bytes",
            "logicalType": "decimal",
            "precision": 12,
            "scale": 2,
        }
        line = fields["lines"]["type"]["items"]
        assert line["type"] == "record" and line["name"] == "Line"
        line_fields = {f["name"]: f for f in line["fields"]}
        assert line_fields["quantity"] == {"name": "quantity", "type": "long", "default": 1}
        assert line_fields["size"]["type"]["symbols"] == ["S", "M"]
        assert line_fields["size"]["default"] == "M"
        assert fields["tags"] == {
            "name": "tags",
            "type": {"type": "map", "values": "long"},
            "default": {},
        }
        assert fields["note"] == {"name": "note", "type": ["null", "string"], "default": None}
        assert fields["reviewer"] == {"name": "reviewer", "type": ["null", "string"]}
        assert sorted(fields["channel"]["type"]["symbols"]) == ["shop", "web"]
        assert fields["channel"]["default"] == "web"
        assert fields["paid"]["type"] == "boolean" and fields["weight"]["type"] == "double"
        assert fields["raw"]["type"] == "bytes"
        # excluded and computed fields are not part of the record
        assert "hidden" not in fields and "line_count" not in fields
        assert "invoice_id" not in fields

    def test_a_recursive_model_refers_to_itself_by_name(self) -> None:
        schema = avro_schema(TreeNode)
        fastavro.parse_schema(schema)
        assert schema["fields"][1]["type"] == {"type": "array", "items": f"{__name__}.TreeNode"}

    def test_a_decimal_without_a_precision_names_the_field_and_what_to_add(self) -> None:
        class Loose(pydantic.BaseModel):
            amount: Decimal

        with pytest.raises(ConfigurationError, match=r"Loose\.amount.*max_digits.*schemas="):
            avro_schema(Loose)

    def test_something_that_is_not_an_event_class_is_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="not a msgspec.Struct, dataclass"):
            avro_schema(dict)


@dataclasses.dataclass(frozen=True)
class DcLine:
    sku: str
    quantity: int = 1


@dataclasses.dataclass(frozen=True)
class DcOrder:
    order_id: str
    lines: list[DcLine]
    placed_at: datetime.datetime
    note: str | None = None


@attrs.frozen
class AtLine:
    sku: str
    quantity: int = 1


@attrs.frozen
class AtOrder:
    order_id: str
    lines: list[AtLine]
    placed_at: datetime.datetime
    note: str | None = None


class StLine(msgspec.Struct, frozen=True):
    sku: str
    quantity: int = 1


class StOrder(msgspec.Struct, frozen=True):
    order_id: str
    lines: list[StLine]
    placed_at: datetime.datetime
    note: str | None = None


def test_dataclasses_and_attrs_classes_map_like_structs() -> None:
    """A dataclass and an attrs class get the record a Struct of the same fields gets."""

    def shape(schema: dict[str, Any]) -> list[Any]:
        return [
            (f["name"], f.get("default", "-"), str(f["type"]).replace("Dc", "").replace("At", ""))
            for f in schema["fields"]
        ]

    struct = shape(avro_schema(StOrder))
    struct = [(n, d, t.replace("St", "")) for n, d, t in struct]
    assert shape(avro_schema(DcOrder)) == struct
    assert shape(avro_schema(AtOrder)) == struct


PLACED = datetime.datetime(2026, 12, 6, 9, 0, tzinfo=datetime.UTC)
EVENTS = {
    "struct": StOrder("o-1", [StLine("a", 2)], PLACED, "n"),
    "dataclass": DcOrder("o-1", [DcLine("a", 2)], PLACED, "n"),
    "attrs": AtOrder("o-1", [AtLine("a", 2)], PLACED, "n"),
    "pydantic": invoice(),
}


@pytest.mark.parametrize("shape", list(EVENTS))
def test_every_shape_round_trips_and_confluents_deserializer_reads_it(
    shape: str, mock_client: Any
) -> None:
    """AvroCodec derives the schema of each shape, writes Confluent's wire format, reads it
    back as an equal event; confluent-kafka's AvroDeserializer reads the same bytes."""
    event = EVENTS[shape]
    codec = AvroCodec(mock_client)
    data = codec.encode_for(event, ctx())
    assert data[0] == 0
    assert codec.decode_from(data, type(event), ctx()) == event
    record = AvroDeserializer(mock_client)(data, ConfluentContext("invoices", MessageField.VALUE))
    if shape == "pydantic":
        assert record["invoiceId"] == uuid.UUID(int=42)
        assert record["amount"] == Decimal("1234.50")
        assert record["issuedAt"] == event.issued_at
        assert record["lines"][0] == {"sku": "kb", "quantity": 2, "size": "S"}
        assert record["reviewer"] is None
    else:
        assert record["order_id"] == "o-1"
        assert record["lines"] == [{"sku": "a", "quantity": 2}]


def test_a_record_written_by_confluents_serializer_is_read_into_the_model(
    mock_client: Any,
) -> None:
    """Interop the other way: a dict written by confluent-kafka's AvroSerializer with the
    derived schema decodes into the pydantic model (validators run)."""
    import json

    serializer = AvroSerializer(mock_client, json.dumps(avro_schema(Invoice)))
    written = invoice().model_dump(mode="python", by_alias=True)
    written["lines"] = [
        {**line, "size": line["size"].value} for line in written["lines"]
    ]  # Confluent's serializer takes the symbol
    data = serializer(written, ConfluentContext("invoices", MessageField.VALUE))
    assert AvroCodec(mock_client).decode_from(data, Invoice, ctx()) == invoice()


def test_a_decimal_with_more_places_than_the_scale_is_a_serialization_error(
    mock_client: Any,
) -> None:
    """A Decimal built past the model's validation (model_construct) that the schema's scale
    cannot hold is refused with a SerializationError naming the type, nothing sent."""
    bad = invoice().model_copy(update={"amount": Decimal("1.234")})
    with pytest.raises(SerializationError, match="Invoice"):
        AvroCodec(mock_client).encode_for(bad, ctx())
