"""Avro for every event shape against the real registry (the devkit's Apicurio) and broker.

A msgspec Struct, a dataclass, an attrs class and a pydantic v2 model are published with
``AvroCodec`` and the schema it derives from each; confluent-kafka's own
``AvroDeserializer`` reads what Kafka holds, and a consumer's ``Decoder`` gets the typed
events back. A pydantic model's next version registers under BACKWARD when its new field
has a default, and is refused when it has none.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField
from confluent_kafka.serialization import SerializationContext as ConfluentContext

from eventwire import Decoder, Publisher, Route
from eventwire.schema_registry import AvroCodec, SchemaIncompatibleError
from eventwire_devkit.consume import read_topic

from ..shapes import PLACED_AT, SHAPES, make

pytestmark = pytest.mark.schema_registry


def test_every_shape_published_as_avro_is_read_by_confluent_and_decoded_typed(
    schema_registry: str, kafka_bootstrap: str, kafka_topic: str
) -> None:
    """Each shape's derived schema is registered (topic_record: one subject per type); the
    records are Confluent-framed, AvroDeserializer reads them as the fields the shape writes
    (a pydantic model by alias), and Decoder decodes each into an equal instance."""
    routes = {
        order_cls: Route(topic=kafka_topic, key="order_id", type_name=f"test.{shape}")
        for shape, (order_cls, _) in SHAPES.items()
    }
    sent = {shape: make(shape, f"o-{shape}") for shape in SHAPES}
    codec = AvroCodec(schema_registry, subject_name_strategy="topic_record")
    with Publisher(kafka_bootstrap, routes=routes, codec=codec) as publisher:
        for handle in [publisher.publish(event) for event in sent.values()]:
            handle.result(30)

    records = read_topic(kafka_bootstrap, kafka_topic, expected=len(sent), timeout=60, idle=0.5)
    assert len(records) == len(sent)
    client = SchemaRegistryClient({"url": schema_registry})
    theirs = AvroDeserializer(client)
    decoder = Decoder(routes=routes, codec=codec)
    for record in records:
        shape = (record.header("ce_type") or b"").decode().removeprefix("test.")
        assert record.value[0] == 0
        assert record.header("content-type") == b"application/avro"
        value = theirs(
            record.value, ConfluentContext(kafka_topic, MessageField.VALUE, list(record.headers))
        )
        id_field, placed_field = (
            ("orderId", "placedAt") if shape == "pydantic" else ("order_id", "placed_at")
        )
        assert value[id_field] == f"o-{shape}"
        assert value[placed_field] == PLACED_AT
        assert value["items"] == [{"sku": "kb", "price": 89.99}, {"sku": "usb", "price": 9.99}]
        envelope = decoder.decode(record)
        assert type(envelope.event) is SHAPES[shape][0]
        assert envelope.event == sent[shape]
    subjects = set(client.get_subjects())
    for order_cls, _ in SHAPES.values():
        assert f"{kafka_topic}-{order_cls.__module__}.{order_cls.__qualname__}" in subjects


def invoice_version(**new_fields: Any) -> type[pydantic.BaseModel]:
    """A version of the model ``Invoice`` (each version is a class of that name, as when the
    class is edited: the Avro record name stays ``<module>.Invoice``)."""
    return pydantic.create_model(
        "Invoice",
        __module__=__name__,
        invoice_id=(str, pydantic.Field(alias="invoiceId")),
        amount=(Decimal, pydantic.Field(max_digits=10, decimal_places=2)),
        issued_at=(pydantic.AwareDatetime, pydantic.Field(alias="issuedAt")),
        note=(str | None, None),
        **new_fields,
    )


Invoice = invoice_version()
#: Compatible: the new field has a default (old records are read with it).
InvoiceV2 = invoice_version(currency=(str, "EUR"))
#: Incompatible: the new field has no default.
InvoiceV2Breaking = invoice_version(warehouse=(str, ...))

ISSUED = datetime.datetime(2026, 12, 6, 10, 0, tzinfo=datetime.UTC)


def _kw(**extra: Any) -> dict[str, Any]:
    return {"invoiceId": "i-1", "amount": Decimal("12.50"), "issuedAt": ISSUED, **extra}


def test_a_pydantic_models_next_version_is_judged_by_the_registry(
    schema_registry: str, kafka_bootstrap: str, kafka_topic: str
) -> None:
    """With the subject at BACKWARD, a v2 whose new field has a default is registered and
    published, and v1 records decode into it with the default; a v2 whose new field has none
    is refused with SchemaIncompatibleError before anything is enqueued."""
    client = SchemaRegistryClient({"url": schema_registry})
    subject = f"{kafka_topic}-value"
    route = Route(topic=kafka_topic, key="invoice_id", type_name="billing.invoice")
    codec = AvroCodec(schema_registry)
    with Publisher(kafka_bootstrap, codec=codec, routes={Invoice: route}) as publisher:
        publisher.publish(Invoice(**_kw())).result(30)
    client.set_compatibility(subject, "BACKWARD")

    with Publisher(
        kafka_bootstrap, codec=AvroCodec(schema_registry), routes={InvoiceV2Breaking: route}
    ) as publisher:
        with pytest.raises(SchemaIncompatibleError, match="BACKWARD"):
            publisher.publish(InvoiceV2Breaking(**_kw(invoiceId="i-3", warehouse="w")))
        publisher.flush(30)
    codec2 = AvroCodec(schema_registry)
    with Publisher(kafka_bootstrap, codec=codec2, routes={InvoiceV2: route}) as publisher:
        publisher.publish(InvoiceV2(**_kw(invoiceId="i-2", currency="USD"))).result(30)
    assert len(client.get_versions(subject)) == 2

    records = read_topic(kafka_bootstrap, kafka_topic, expected=2, timeout=60, idle=1.0)
    records.sort(key=lambda r: r.key or b"")  # two keys: maybe two partitions
    assert [r.key for r in records] == [b"i-1", b"i-2"]  # nothing of the refused v2
    decoder = Decoder(routes={InvoiceV2: route}, codec=codec2)
    old, new = (decoder.decode(r).event for r in records)
    assert old == InvoiceV2(**_kw())  # written by v1: currency gets its default
    assert old.currency == "EUR" and new.currency == "USD"  # type: ignore[attr-defined]
