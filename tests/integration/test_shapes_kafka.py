"""Events of every shape through the real broker: a msgspec Struct, a dataclass, an attrs
class and a pydantic model are published to one topic, read back by a plain consumer
and decoded typed with the codec (issue 16, item 1)."""

from __future__ import annotations

import pytest

from eventwire import Decoder, JsonCodec, MsgpackCodec, Publisher, Route
from eventwire_devkit.consume import read_topic

from ..shapes import SHAPES, make

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_every_shape_round_trips_through_kafka(
    kafka_bootstrap: str, kafka_topic: str, codec: str
) -> None:
    """Each shape lands keyed by its order id, with its ce_type and content-type; the codec
    decodes the bytes the broker returns into an equal instance of its class, and so does
    a consumer's ``Decoder`` (the class chosen by ce_type, the CloudEvents attributes read)."""
    routes = {
        order_cls: Route(topic=kafka_topic, key="order_id", type_name=f"test.{shape}")
        for shape, (order_cls, _) in SHAPES.items()
    }
    sent = {shape: make(shape, f"o-{shape}") for shape in SHAPES}
    with Publisher(kafka_bootstrap, routes=routes, codec=codec) as publisher:
        handles = [publisher.publish(event) for event in sent.values()]
        for handle in handles:
            handle.result(30)

    records = read_topic(kafka_bootstrap, kafka_topic, expected=len(sent), timeout=60, idle=0.5)
    assert len(records) == len(sent)
    decoder = {"json": JsonCodec(), "msgpack": MsgpackCodec()}[codec]
    for record in records:
        shape = (record.header("ce_type") or b"").decode().removeprefix("test.")
        assert record.key == f"o-{shape}".encode()
        assert record.header("content-type") == f"application/{codec}".encode()
        back = decoder.decode(record.value, SHAPES[shape][0])
        assert type(back) is SHAPES[shape][0]
        assert back == sent[shape]
        envelope = Decoder(routes=routes, codec=codec).decode(record)
        assert type(envelope.event) is SHAPES[shape][0]
        assert envelope.event == sent[shape]
        assert (envelope.type, envelope.topic, envelope.key) == (
            f"test.{shape}",
            kafka_topic,
            f"o-{shape}".encode(),
        )
