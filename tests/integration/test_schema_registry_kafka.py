"""Schema Registry codecs against a real registry (the devkit's Apicurio) and a real broker.

Interop both ways with confluent-kafka's own serializers, the schema-id cache (HTTP requests
counted by a proxy in front of the registry), an incompatible schema refused, and the
registry down: a typed error, nothing enqueued or stored.
"""

from __future__ import annotations

import enum
import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField
from confluent_kafka.serialization import SerializationContext as ConfluentContext

from eventwire import Publisher, Route, SerializationContext
from eventwire.outbox import SQLiteOutbox
from eventwire.schema_registry import (
    AvroCodec,
    JsonSchemaCodec,
    SchemaIncompatibleError,
    SchemaRegistryConfig,
    SchemaRegistryUnavailableError,
)
from eventwire.transports.memory import MemoryTransport
from eventwire_devkit.consume import read_topic
from eventwire_devkit.registry import LocalSchemaRegistry

pytestmark = pytest.mark.schema_registry

CODECS = {"json": JsonSchemaCodec, "avro": AvroCodec}


class Status(enum.Enum):
    placed = "placed"
    paid = "paid"


class Line(msgspec.Struct, frozen=True):
    sku: str
    quantity: int


class OrderPlaced(msgspec.Struct, frozen=True):
    order_id: str
    total: float
    lines: list[Line]
    status: Status = Status.placed
    note: str | None = None
    tags: dict[str, str] = {}


class OrderV2Incompatible(msgspec.Struct, frozen=True):
    order_id: str
    total: float
    lines: list[Line]
    warehouse: str  # a new field without a default: readers of v1 data cannot fill it


class Other(msgspec.Struct, frozen=True):
    id: str


def order(n: int) -> OrderPlaced:
    return OrderPlaced(
        order_id=f"o-{n}",
        total=10.5 + n,
        lines=[Line("sku-1", n), Line("sku-2", 1)],
        status=Status.paid if n % 2 else Status.placed,
        note=None if n % 3 else f"note {n}",
        tags={"n": str(n)},
    )


def routes(topic: str) -> dict[type, Route]:
    return {
        cls: Route(topic=topic, key="order_id") for cls in (OrderPlaced, OrderV2Incompatible)
    } | {Other: Route(topic=topic, key="id")}


def confluent_deserializer(kind: str, client: SchemaRegistryClient) -> Any:
    if kind == "json":
        return JSONDeserializer(None, schema_registry_client=client)
    return AvroDeserializer(client)


class CountingProxy:
    """An HTTP proxy in front of the registry that counts the requests it forwards."""

    def __init__(self, target: str) -> None:
        self.count = 0
        #: The Authorization header of each request forwarded (None: there was none).
        self.authorization: list[str | None] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                proxy.count += 1
                proxy.authorization.append(self.headers.get("Authorization"))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = urllib.request.Request(
                    target + self.path,
                    data=body or None,
                    method=self.command,
                    headers={k: v for k, v in self.headers.items() if k.lower() not in {"host"}},
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, data = response.status, response.read()
                        ctype = response.headers.get("Content-Type", "application/json")
                except urllib.error.HTTPError as exc:
                    status, data = exc.code, exc.read()
                    ctype = exc.headers.get("Content-Type", "application/json")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def counting(schema_registry: str) -> Iterator[CountingProxy]:
    proxy = CountingProxy(schema_registry)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.mark.parametrize("kind", ["json", "avro"])
def test_what_eventwire_publishes_confluent_reads(
    kind: str, schema_registry: str, kafka_bootstrap: str, kafka_topic: str
) -> None:
    """Events published with the codec reach Kafka in Confluent's wire format; confluent-kafka's
    own deserializer reads them, and ce_dataschema names the schema on the registry."""
    events = [order(n) for n in range(1, 6)]
    codec = CODECS[kind](schema_registry)
    with Publisher(kafka_bootstrap, codec=codec, routes=routes(kafka_topic)) as publisher:
        for handle in [publisher.publish(e) for e in events]:
            handle.result(timeout=30)
    records = read_topic(kafka_bootstrap, kafka_topic, expected=len(events), idle=0.5)
    assert len(records) == len(events)
    client = SchemaRegistryClient({"url": schema_registry})
    deserializer = confluent_deserializer(kind, client)
    by_key = {r.key: r for r in records}
    for event in events:
        record = by_key[event.order_id.encode()]
        assert record.value[0] == 0  # magic byte, then the 4-byte schema id
        schema_id = int.from_bytes(record.value[1:5], "big")
        dataschema = record.header("ce_dataschema")
        assert dataschema == f"{schema_registry}/schemas/ids/{schema_id}".encode()
        assert record.header("content-type") == codec.content_type.encode()
        ctx = ConfluentContext(kafka_topic, MessageField.VALUE, list(record.headers))
        assert deserializer(record.value, ctx) == msgspec.to_builtins(event)
        # what eventwire's own decode gives back is the typed event
        ours = codec.decode_from(record.value, OrderPlaced, SerializationContext(kafka_topic))
        assert ours == event
    with urllib.request.urlopen(dataschema.decode(), timeout=10) as response:
        registered = json.loads(response.read())
    assert json.loads(registered["schema"]) == json.loads(codec.schema_of(OrderPlaced))


@pytest.mark.parametrize("kind", ["json", "avro"])
def test_what_confluent_writes_eventwire_decodes(
    kind: str, schema_registry: str, kafka_bootstrap: str, kafka_topic: str
) -> None:
    """Records written to Kafka by confluent-kafka's JSONSerializer/AvroSerializer (with a
    schema of their own) decode with the codec into the typed event."""
    client = SchemaRegistryClient({"url": schema_registry})
    if kind == "json":
        schema = json.dumps(
            {
                "title": "theirs.Order",
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "total": {"type": "number"},
                    "lines": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "sku": {"type": "string"},
                                "quantity": {"type": "integer"},
                            },
                        },
                    },
                    "status": {"enum": ["placed", "paid"]},
                    "note": {"type": ["string", "null"]},
                    "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                    "extra_field_we_ignore": {"type": "string"},
                },
                "required": ["order_id", "total", "lines"],
            }
        )
        serializer: Any = JSONSerializer(schema, client)
    else:
        schema = json.dumps(
            {
                "type": "record",
                "name": "Order",
                "namespace": "theirs",
                "fields": [
                    {"name": "order_id", "type": "string"},
                    {"name": "total", "type": "double"},
                    {
                        "name": "lines",
                        "type": {
                            "type": "array",
                            "items": {
                                "type": "record",
                                "name": "Line",
                                "fields": [
                                    {"name": "sku", "type": "string"},
                                    {"name": "quantity", "type": "long"},
                                ],
                            },
                        },
                    },
                    {
                        "name": "status",
                        "type": {"type": "enum", "name": "Status", "symbols": ["placed", "paid"]},
                    },
                    {"name": "note", "type": ["null", "string"], "default": None},
                    {"name": "tags", "type": {"type": "map", "values": "string"}},
                    {"name": "extra_field_we_ignore", "type": "string", "default": ""},
                ],
            }
        )
        serializer = AvroSerializer(client, schema)
    events = [order(n) for n in range(1, 4)]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for event in events:
        value = msgspec.to_builtins(event) | {"extra_field_we_ignore": "x"}
        producer.produce(
            kafka_topic,
            key=event.order_id,
            value=serializer(value, ConfluentContext(kafka_topic, MessageField.VALUE)),
        )
    assert producer.flush(30) == 0
    records = read_topic(kafka_bootstrap, kafka_topic, expected=len(events), idle=0.5)
    codec = CODECS[kind](schema_registry)
    decoded = [
        codec.decode_from(r.value, OrderPlaced, SerializationContext(kafka_topic)) for r in records
    ]
    assert sorted(decoded, key=lambda e: e.order_id) == events


@pytest.mark.parametrize("kind", ["json", "avro"])
def test_schema_id_is_cached_no_registry_call_per_event(
    kind: str, counting: CountingProxy, kafka_topic: str
) -> None:
    """After the first event of a type, publishing more costs no request to the registry."""
    codec = CODECS[kind](counting.url)
    transport = MemoryTransport()
    with Publisher(transport=transport, codec=codec, routes=routes(kafka_topic)) as publisher:
        publisher.publish(order(0)).result(timeout=10)
        after_first = counting.count
        assert 1 <= after_first <= 3  # register (and nothing else per event)
        for n in range(1, 301):
            publisher.publish(order(n))
        publisher.flush(10)
        assert counting.count == after_first
        publisher.publish(Other("x")).result(timeout=10)  # a new type: its own registration
        assert counting.count > after_first
    assert len(transport.records(kafka_topic)) == 302


def test_url_credentials_are_sent_as_basic_auth_and_never_logged(
    counting: CountingProxy, kafka_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A registry URL with user:password in it: the codec's requests carry them as HTTP
    basic auth, and no log line (the HTTP client logs each URL it calls, at INFO) holds
    the password."""
    import base64
    import logging

    url = counting.url.replace("http://", "http://alice:hunter22@")
    codec = JsonSchemaCodec(url)
    transport = MemoryTransport()
    with caplog.at_level(logging.DEBUG):
        with Publisher(transport=transport, codec=codec, routes=routes(kafka_topic)) as publisher:
            publisher.publish(order(1)).result(timeout=10)
    assert counting.count >= 1
    expected = "Basic " + base64.b64encode(b"alice:hunter22").decode()
    assert set(counting.authorization) == {expected}
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert counting.url.removeprefix("http://") in logged  # the client did log its calls
    assert "hunter22" not in logged


@pytest.mark.parametrize("kind", ["json", "avro"])
def test_incompatible_schema_is_refused_before_anything_is_enqueued(
    kind: str, schema_registry: str, kafka_bootstrap: str, kafka_topic: str
) -> None:
    """With the subject at BACKWARD, a v2 that breaks v1 raises SchemaIncompatibleError from
    publish() naming the subject and mode; Kafka holds only the v1 events."""
    client = SchemaRegistryClient({"url": schema_registry})
    codec = CODECS[kind](schema_registry)
    subject = f"{kafka_topic}-value"
    with Publisher(kafka_bootstrap, codec=codec, routes=routes(kafka_topic)) as publisher:
        publisher.publish(order(1)).result(timeout=30)
        client.set_compatibility(subject, "BACKWARD")
        v2 = OrderV2Incompatible("o-2", 1.0, [], warehouse="w1")
        with pytest.raises(SchemaIncompatibleError) as caught:
            publisher.publish(v2)
        publisher.flush(30)
    error = caught.value
    assert error.subject == subject
    assert error.compatibility == "BACKWARD"
    assert subject in str(error) and "BACKWARD" in str(error)
    assert "Nothing was sent" in str(error)
    records = read_topic(kafka_bootstrap, kafka_topic, expected=1, idle=1.0)
    assert [r.key for r in records] == [b"o-1"]


@pytest.mark.parametrize("kind", ["json", "avro"])
def test_registry_down_is_a_typed_error_and_nothing_is_enqueued_or_stored(
    kind: str, local_schema_registry: LocalSchemaRegistry, tmp_path: Path
) -> None:
    """With the registry killed, a type whose schema id is cached still publishes; a new type
    raises SchemaRegistryUnavailableError, and neither the transport nor the outbox has it."""
    codec = CODECS[kind](SchemaRegistryConfig(url=local_schema_registry.url, timeout=5))
    transport = MemoryTransport()
    with Publisher(transport=transport, codec=codec, routes=routes("orders")) as publisher:
        publisher.publish(order(1)).result(timeout=10)
        local_schema_registry.kill()
        publisher.publish(order(2)).result(timeout=10)  # cached: no registry needed
        with pytest.raises(SchemaRegistryUnavailableError) as caught:
            publisher.publish(Other("x"))
        assert isinstance(caught.value, ConnectionError)
        assert "could not be reached" in str(caught.value)
    assert [r.key for r in transport.records("orders")] == [b"o-1", b"o-2"]

    store = SQLiteOutbox(tmp_path / "outbox.db")
    with Publisher(
        transport=MemoryTransport(), codec=codec, routes=routes("orders"), outbox=store, relay=False
    ) as publisher:
        publisher.publish(order(3))  # cached: stored
        with pytest.raises(SchemaRegistryUnavailableError):
            publisher.publish(Other("y"))
        assert store.status().pending == 1


@pytest.mark.parametrize("kind", ["json", "avro"])
def test_registry_unreachable_at_start_is_a_typed_error(kind: str) -> None:
    """A registry URL where nothing listens: the first publish raises
    SchemaRegistryUnavailableError, nothing is enqueued."""
    codec = CODECS[kind](SchemaRegistryConfig(url="http://127.0.0.1:9", timeout=2))
    transport = MemoryTransport()
    with Publisher(transport=transport, codec=codec, routes=routes("orders")) as publisher:
        with pytest.raises(SchemaRegistryUnavailableError):
            publisher.publish(order(1))
    assert transport.records() == []
