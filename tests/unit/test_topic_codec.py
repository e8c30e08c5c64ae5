"""TopicCodec and SerializerCodec: codecs told where each value goes (issue 16, item 2)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from eventwire import (
    Publisher,
    SerializationContext,
    SerializationError,
    SerializerCodec,
    TopicCodec,
)
from eventwire.testing import capture_events
from eventwire.transports.memory import MemoryTransport

from .conftest import OrderPlaced, order


class Recording:
    """A Confluent-style serializer: ``(obj, ctx) -> bytes``; notes each context it got."""

    def __init__(self) -> None:
        self.contexts: list[tuple[str, str]] = []

    def __call__(self, obj: Any, ctx: SerializationContext) -> bytes:
        self.contexts.append((ctx.topic, ctx.field))
        ctx.headers.append(("ce_dataschema", f"urn:schema:{ctx.topic}".encode()))
        return b"\x00" + json.dumps(obj, sort_keys=True).encode()


def deserialize(data: bytes, ctx: SerializationContext) -> Any:
    assert data[:1] == b"\x00"
    return json.loads(data[1:])


def test_a_serializer_is_told_the_topic_and_its_headers_are_written() -> None:
    """The serializer gets topic and field; the header it adds follows the CloudEvents ones."""
    serializer = Recording()
    transport = MemoryTransport()
    codec = SerializerCodec(serializer, deserialize, content_type="application/x-test")
    assert isinstance(codec, TopicCodec)
    with Publisher(transport=transport, source="urn:test", codec=codec) as pub:
        pub.publish(order(1), headers=[("tenant", b"acme")]).result(1)
    [record] = transport.records("orders")
    assert serializer.contexts == [("orders", "value")]
    names = [name for name, _ in record.headers]
    assert names[:6] == [
        "ce_specversion",
        "ce_id",
        "ce_type",
        "ce_source",
        "ce_time",
        "content-type",
    ]
    assert names[6:] == ["ce_dataschema", "tenant"]
    assert record.header("content-type") == b"application/x-test"
    assert record.header("ce_dataschema") == b"urn:schema:orders"
    assert json.loads(record.value[1:]) == msgspec.to_builtins(order(1))


def test_capture_events_decodes_with_a_topic_codec() -> None:
    """capture_events reads back typed events written by a TopicCodec."""
    codec = SerializerCodec(Recording(), deserialize)
    with capture_events(codec=codec) as captured:
        captured.publisher.publish(order(7))
        captured.publisher.flush(1)
        assert captured.events(OrderPlaced) == [order(7)]


def test_a_failing_serializer_is_a_serialization_error_and_nothing_is_sent() -> None:
    """A serializer that raises (e.g. a registry refusing the schema): typed error, nothing enqueued."""

    def refuse(obj: Any, ctx: SerializationContext) -> bytes:
        raise RuntimeError("Schema being registered is incompatible with an earlier schema")

    transport = MemoryTransport()
    with Publisher(transport=transport, source="urn:test", codec=SerializerCodec(refuse)) as pub:
        with pytest.raises(SerializationError, match="incompatible.*") as caught:
            pub.publish(order(1))
        assert "orders" in str(caught.value)
        assert pub.in_flight == 0
    assert transport.records() == []


def test_a_serializer_returning_no_bytes_is_refused() -> None:
    """A serializer that returns None (Confluent's do for a None object) is a SerializationError."""
    codec = SerializerCodec(lambda obj, ctx: None)
    with Publisher(transport=MemoryTransport(), source="urn:test", codec=codec) as pub:
        with pytest.raises(SerializationError, match="not bytes"):
            pub.publish(order(1))


def test_a_resent_event_keeps_the_codecs_headers() -> None:
    """After a fatal error the replacement re-sends the event with the codec's headers."""
    transport = MemoryTransport()
    codec = SerializerCodec(Recording(), deserialize)
    with Publisher(transport=transport, source="urn:test", codec=codec) as pub:
        transport.pause()
        handle = pub.publish(order(1))
        transport.set_fatal()
        handle.result(5)
    copies = [
        r for r in transport.records("orders") if r.header("ce_id") == handle.event_id.encode()
    ]
    assert copies and all(r.header("ce_dataschema") == b"urn:schema:orders" for r in copies)
