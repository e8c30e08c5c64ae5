"""Typed decode for consumers: records of both client shapes, every error path, process spans.

Records are made by a real Publisher on the memory transport (so the headers are
exactly what eventwire writes), then presented as a confluent-kafka ``Message``
(methods) or an aiokafka ``ConsumerRecord`` (attributes). Every tracing test passes
its own TracerProvider; no global is set.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import msgspec
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

import eventwire._decode as decode_module
from eventwire import (
    ConfigurationError,
    DecodeError,
    Decoder,
    Envelope,
    EventwireError,
    Publisher,
    Route,
    SerializationError,
    decode,
    event,
)
from eventwire.observability.logging import capture_logs
from eventwire.testing import MemoryRecord, capture_events
from eventwire.transports.memory import MemoryTransport

from .conftest import OrderPlaced, PaymentTaken, order

Headers = list[tuple[str, bytes | None]]


class FakeConfluentMessage:
    """A confluent_kafka.Message look-alike: every field behind a method."""

    def __init__(
        self,
        topic: str | None,
        partition: int | None,
        offset: int | None,
        key: Any,
        value: Any,
        headers: Headers | None,
        timestamp: tuple[int, int] = (1, 1_700_000_000_123),
        error: object = None,
    ) -> None:
        self._fields = (topic, partition, offset, key, value, headers, timestamp, error)

    def topic(self) -> str | None:
        return self._fields[0]

    def partition(self) -> int | None:
        return self._fields[1]

    def offset(self) -> int | None:
        return self._fields[2]

    def key(self) -> Any:
        return self._fields[3]

    def value(self) -> Any:
        return self._fields[4]

    def headers(self) -> Headers | None:
        return self._fields[5]

    def timestamp(self) -> tuple[int, int]:
        return self._fields[6]

    def error(self) -> object:
        return self._fields[7]


@dataclasses.dataclass
class FakeAiokafkaRecord:
    """An aiokafka ConsumerRecord look-alike: plain attributes, headers a tuple."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: int
    key: Any
    value: Any
    checksum: int | None
    serialized_key_size: int
    serialized_value_size: int
    headers: tuple[tuple[str, bytes], ...]


Make = Callable[..., Any]


def as_confluent(
    record: MemoryRecord,
    *,
    headers: Sequence[tuple[str, bytes | None]] | None = None,
    value: Any = ...,
    **overrides: Any,
) -> FakeConfluentMessage:
    return FakeConfluentMessage(
        overrides.get("topic", record.topic),
        overrides.get("partition", record.partition),
        overrides.get("offset", record.offset),
        overrides.get("key", record.key),
        record.value if value is ... else value,
        list(record.headers if headers is None else headers),
        timestamp=overrides.get("timestamp", (1, record.timestamp_ms)),
        error=overrides.get("error"),
    )


def as_aiokafka(
    record: MemoryRecord,
    *,
    headers: Sequence[tuple[str, bytes | None]] | None = None,
    value: Any = ...,
    **overrides: Any,
) -> FakeAiokafkaRecord:
    return FakeAiokafkaRecord(
        topic=overrides.get("topic", record.topic),
        partition=overrides.get("partition", record.partition),
        offset=overrides.get("offset", record.offset),
        timestamp=overrides.get("timestamp", record.timestamp_ms),
        timestamp_type=0,
        key=overrides.get("key", record.key),
        value=record.value if value is ... else value,
        checksum=None,
        serialized_key_size=len(record.key or b""),
        serialized_value_size=len(record.value),
        headers=tuple(record.headers if headers is None else headers),  # type: ignore[arg-type]
    )


@pytest.fixture(params=["confluent", "aiokafka"])
def make(request: pytest.FixtureRequest) -> Make:
    """Present a MemoryRecord as either client's message shape."""
    return as_confluent if request.param == "confluent" else as_aiokafka  # type: ignore[return-value]


def published(*events: Any, codec: str = "json", **options: Any) -> list[MemoryRecord]:
    """Publish ``events`` on the memory transport; the records, in send order."""
    with capture_events(codec=codec, source="urn:shop", **options) as captured:
        for item in events:
            captured.publisher.publish(item)
    return sorted(captured.records(), key=lambda r: r.sequence)


def moved(record: MemoryRecord, partition: int = 2, offset: int = 17) -> MemoryRecord:
    """The same record at a given position (so messages can name it)."""
    return dataclasses.replace(record, partition=partition, offset=offset)


def replaced(
    record: MemoryRecord, name: str, value: bytes | None
) -> list[tuple[str, bytes | None]]:
    """The record's headers with ``name`` set to ``value`` (None: removed)."""
    out: list[tuple[str, bytes | None]] = [(k, v) for k, v in record.headers if k != name]
    if value is not None:
        out.append((name, value))
    return out


DECODER = Decoder(types=[OrderPlaced, PaymentTaken])


# -- the happy path -----------------------------------------------------------------------


class TestDecode:
    def test_decode_returns_the_typed_event_and_every_attribute(self, make: Make) -> None:
        """A published event decodes into its class with its CloudEvents attributes, key, position and headers."""
        record = moved(published(order(7))[0])
        envelope = DECODER.decode(make(record))
        assert isinstance(envelope, Envelope)
        assert envelope.event == order(7)
        headers = dict(record.headers)
        assert envelope.id == headers["ce_id"].decode()
        assert envelope.type == "tests.unit.conftest.OrderPlaced"
        assert envelope.source == "urn:shop"
        assert envelope.specversion == "1.0"
        assert envelope.datacontenttype == "application/json"
        assert envelope.time is not None
        assert envelope.time.tzinfo is not None
        assert envelope.time.isoformat(timespec="milliseconds").replace("+00:00", "Z") == (
            headers["ce_time"].decode()
        )
        assert envelope.dataschema is None
        assert envelope.subject is None
        assert envelope.extensions == {}
        assert (envelope.topic, envelope.partition, envelope.offset) == ("orders", 2, 17)
        assert envelope.key == b"o-7"
        assert envelope.timestamp == dt.datetime.fromtimestamp(record.timestamp_ms / 1000, dt.UTC)
        assert envelope.headers == record.headers
        assert envelope.header("ce_type") == b"tests.unit.conftest.OrderPlaced"
        assert envelope.header("nope") is None
        assert envelope.trace_context is None
        assert envelope.span_context is None

    def test_the_class_is_chosen_by_ce_type(self, make: Make) -> None:
        """Records of two types on their topics decode into their own classes (type_name included)."""
        payment = PaymentTaken(payment_id=5, amount=2.5)
        records = published(order(1), payment, order(2))
        events = [DECODER.decode(make(r)).event for r in records]
        assert events == [order(1), payment, order(2)]
        assert DECODER.decode(make(records[1])).type == "com.example.PaymentTaken"
        assert set(DECODER.type_names) == {
            "tests.unit.conftest.OrderPlaced",
            "com.example.PaymentTaken",
        }

    def test_a_struct_routed_at_the_publisher_decodes_with_the_same_routes(
        self, make: Make
    ) -> None:
        """routes= takes the mapping the publisher got, type_name included."""

        class Shipped(msgspec.Struct, frozen=True):
            shipment_id: str

        routes = {Shipped: Route(topic="shipments", key="shipment_id", type_name="shop.Shipped")}
        record = published(Shipped("s-1"), routes=routes)[0]
        envelope = Decoder(routes=routes).decode(make(record))
        assert envelope.event == Shipped("s-1")
        assert envelope.type == "shop.Shipped"

    def test_routes_override_a_class_s_own_route(self, make: Make) -> None:
        """A class in both types= and routes= is matched by the routes= type name, as at the publisher."""
        routes = {OrderPlaced: Route(topic="orders", key="order_id", type_name="v2.Order")}
        record = published(order(1), routes=routes)[0]
        decoder = Decoder(types=[OrderPlaced], routes=routes)
        assert decoder.decode(make(record)).event == order(1)
        assert set(decoder.type_names) == {"v2.Order"}

    def test_an_undecorated_struct_matches_its_default_type_name(self, make: Make) -> None:
        """A Struct without @event in types= is matched by module.QualName, the publisher's default."""

        class Plain(msgspec.Struct, frozen=True):
            n: int

        record = published(Plain(3), routes={Plain: Route(topic="plain", key=None)})[0]
        assert Decoder(types=[Plain]).decode(make(record)).event == Plain(3)

    def test_msgpack_and_several_codecs_chosen_by_content_type(self, make: Make) -> None:
        """codec='msgpack' decodes MessagePack; a list of codecs picks one per record's content-type."""
        as_json = published(order(1))[0]
        as_msgpack = published(order(2), codec="msgpack")[0]
        assert Decoder(types=[OrderPlaced], codec="msgpack").decode(make(as_msgpack)).event == (
            order(2)
        )
        both = Decoder(types=[OrderPlaced], codec=["json", "msgpack"])
        assert both.decode(make(as_json)).event == order(1)
        envelope = both.decode(make(as_msgpack))
        assert envelope.event == order(2)
        assert envelope.datacontenttype == "application/msgpack"

    def test_a_topic_codec_is_told_the_topic(self, make: Make) -> None:
        """A TopicCodec's decode_from gets the record's topic in its context."""
        seen: list[str] = []

        class Recording:
            content_type = "application/json"

            def encode_for(self, event: Any, ctx: Any) -> bytes:
                return msgspec.json.encode(event)

            def decode_from(self, data: bytes, type: Any, ctx: Any) -> Any:
                seen.append(ctx.topic)
                return msgspec.json.decode(data, type=type)

        record = published(order(1))[0]
        assert Decoder(types=[OrderPlaced], codec=Recording()).decode(make(record)).event == order(
            1
        )
        assert seen == ["orders"]

    def test_optional_attributes_and_extensions_are_read(self, make: Make) -> None:
        """ce_dataschema and ce_subject fill their fields; other ce_* headers are extensions; trace headers are not."""
        record = published(order(1))[0]
        headers = [
            *record.headers,
            ("ce_dataschema", b"https://schemas.example/order/1"),
            ("ce_subject", b"o-1"),
            ("ce_tenant", b"acme"),
            ("ce_partitionkey", b"o-1"),
            ("tenant", b"not-an-extension"),
        ]
        envelope = DECODER.decode(make(record, headers=headers))
        assert envelope.dataschema == "https://schemas.example/order/1"
        assert envelope.subject == "o-1"
        assert envelope.extensions == {"tenant": "acme", "partitionkey": "o-1"}
        assert envelope.header("tenant") == b"not-an-extension"

    def test_header_names_are_matched_case_insensitively(self, make: Make) -> None:
        """CE_ID / Content-Type written by another producer are still read."""
        record = published(order(1))[0]
        headers = [
            (k.upper() if k != "content-type" else "Content-Type", v) for k, v in record.headers
        ]
        envelope = DECODER.decode(make(record, headers=headers))
        assert envelope.event == order(1)
        assert envelope.id == dict(record.headers)["ce_id"].decode()

    def test_a_repeated_header_with_the_same_value_is_fine(self, make: Make) -> None:
        """Two identical copies of a CloudEvents header are not ambiguous."""
        record = published(order(1))[0]
        headers = [*record.headers, ("ce_type", dict(record.headers)["ce_type"])]
        assert DECODER.decode(make(record, headers=headers)).event == order(1)

    def test_content_type_parameters_are_ignored(self, make: Make) -> None:
        """application/json; charset=utf-8 is decoded by the JSON codec."""
        record = published(order(1))[0]
        headers = replaced(record, "content-type", b"Application/JSON; charset=utf-8")
        envelope = DECODER.decode(make(record, headers=headers))
        assert envelope.event == order(1)
        assert envelope.datacontenttype == "Application/JSON; charset=utf-8"

    def test_no_content_type_uses_the_first_codec_and_no_time_is_none(self, make: Make) -> None:
        """content-type and ce_time are optional in CloudEvents: decoded with the default codec, time None."""
        record = published(order(1))[0]
        headers = [(k, v) for k, v in record.headers if k not in {"content-type", "ce_time"}]
        envelope = DECODER.decode(make(record, headers=headers))
        assert envelope.event == order(1)
        assert envelope.datacontenttype is None
        assert envelope.time is None

    def test_str_key_and_value_from_a_deserializing_consumer_are_accepted(self) -> None:
        """A confluent consumer with string deserializers hands str; it is read as UTF-8."""
        record = published(order(1))[0]
        message = as_confluent(record, key="o-1", value=record.value.decode())
        envelope = DECODER.decode(message)
        assert envelope.event == order(1)
        assert envelope.key == b"o-1"

    def test_a_confluent_message_without_a_timestamp(self) -> None:
        """TIMESTAMP_NOT_AVAILABLE (type 0) gives timestamp None."""
        record = published(order(1))[0]
        assert DECODER.decode(as_confluent(record, timestamp=(0, 0))).timestamp is None

    def test_an_aiokafka_record_without_a_timestamp(self) -> None:
        """aiokafka's -1 timestamp gives timestamp None."""
        record = published(order(1))[0]
        assert DECODER.decode(as_aiokafka(record, timestamp=-1)).timestamp is None

    def test_a_null_header_value_is_kept(self, make: Make) -> None:
        """A header with a null value (Kafka allows it) is kept as None in headers."""
        record = published(order(1))[0]
        envelope = DECODER.decode(make(record, headers=[*record.headers, ("trace-note", None)]))
        assert envelope.header("trace-note") is None
        assert ("trace-note", None) in envelope.headers

    def test_memory_records_decode_too(self) -> None:
        """eventwire's own MemoryRecord (timestamp_ms) is a record like any other."""
        record = published(order(1))[0]
        envelope = DECODER.decode(record)
        assert envelope.event == order(1)
        assert envelope.timestamp is not None

    def test_module_level_decode_caches_its_decoder(self, make: Make) -> None:
        """decode(message, types=...) decodes, and reuses one Decoder for the same types and codec."""
        record = published(order(1))[0]
        assert decode(make(record), types=[OrderPlaced]).event == order(1)
        cached = decode_module._CACHE[((OrderPlaced,), "json")]
        assert decode(make(record), types=[OrderPlaced]).event == order(1)
        assert decode_module._CACHE[((OrderPlaced,), "json")] is cached

    def test_module_level_decode_with_routes(self, make: Make) -> None:
        """decode(message, routes=...) takes the publisher's routes."""

        class Shipped(msgspec.Struct, frozen=True):
            shipment_id: str

        routes = {Shipped: Route(topic="shipments", key="shipment_id")}
        record = published(Shipped("s-9"), routes=routes)[0]
        assert decode(make(record), routes=routes).event == Shipped("s-9")

    def test_not_a_record_is_a_type_error(self) -> None:
        """Passing something that is not a Kafka record is a programming error: TypeError, named."""
        with pytest.raises(TypeError, match="cannot decode a int: pass a Kafka record"):
            DECODER.decode(42)


# -- every error path ---------------------------------------------------------------------


def failure(message: Any, decoder: Decoder[Any] = DECODER) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decoder.decode(message)
    err = info.value
    assert isinstance(err, EventwireError)
    assert err.record is message
    return err


class TestDecodeErrors:
    def check(self, err: DecodeError, kind: str, reason: str) -> None:
        assert err.kind == kind
        assert (err.topic, err.partition, err.offset) == ("orders", 2, 17)
        assert reason in err.reason, err.reason
        assert str(err).startswith("cannot decode the record at orders[2]@17: "), str(err)
        assert reason in str(err)

    def test_a_kafka_error_event(self) -> None:
        """A confluent message whose error() is set is refused as kind kafka_error."""
        record = moved(published(order(1))[0])
        err = failure(as_confluent(record, error="KafkaError{code=_PARTITION_EOF}"))
        self.check(
            err, "kafka_error", "the consumer returned an error: KafkaError{code=_PARTITION_EOF}"
        )
        assert "check message.error() before decoding" in str(err)

    def test_an_error_event_without_a_topic(self) -> None:
        """An error event with no topic (a client-wide error) is named as 'a record'."""
        record = published(order(1))[0]
        message = as_confluent(record, topic=None, partition=None, offset=None, error="_TRANSPORT")
        err = failure(message)
        assert (err.kind, err.topic, err.partition, err.offset) == ("kafka_error", None, None, None)
        assert str(err).startswith(
            "cannot decode a record: the consumer returned an error: _TRANSPORT"
        )

    def test_a_tombstone(self, make: Make) -> None:
        """A record without a value is kind no_value, with advice to skip it."""
        record = moved(published(order(1))[0])
        err = failure(make(record, value=None))
        self.check(err, "no_value", "the record has no value")
        assert "tombstone" in str(err)
        assert err.event_id == dict(record.headers)["ce_id"].decode()

    @pytest.mark.parametrize("name", ["ce_specversion", "ce_id", "ce_type", "ce_source"])
    def test_a_missing_required_header(self, make: Make, name: str) -> None:
        """Each required CloudEvents header missing is kind missing_header, naming it."""
        record = moved(published(order(1))[0])
        err = failure(make(record, headers=replaced(record, name, None)))
        self.check(err, "missing_header", f"the CloudEvents header {name} is missing or empty")
        assert "Dead-letter it" in str(err)

    def test_no_headers_at_all(self, make: Make) -> None:
        """A record from a plain producer (no headers) names all four missing headers."""
        record = moved(published(order(1))[0])
        err = failure(make(record, headers=[]))
        self.check(
            err,
            "missing_header",
            "headers ce_specversion, ce_id, ce_type, ce_source are missing or empty",
        )
        assert err.event_id is None

    def test_confluent_headers_none(self) -> None:
        """confluent's headers() is None for a record without headers: missing_header too."""
        record = moved(published(order(1))[0])
        message = as_confluent(record)
        message._fields = (*message._fields[:5], None, *message._fields[6:])
        self.check(failure(message), "missing_header", "are missing or empty")

    def test_an_empty_required_header(self, make: Make) -> None:
        """An empty ce_type counts as missing."""
        record = moved(published(order(1))[0])
        err = failure(make(record, headers=replaced(record, "ce_type", b"")))
        self.check(err, "missing_header", "ce_type is missing or empty")

    def test_a_header_that_is_not_utf8(self, make: Make) -> None:
        """A ce_ header that is not UTF-8 is kind bad_header."""
        record = moved(published(order(1))[0])
        err = failure(make(record, headers=replaced(record, "ce_source", b"\xff\xfe")))
        self.check(err, "bad_header", "header 'ce_source' is not valid UTF-8 text")

    def test_a_conflicting_duplicate_header(self, make: Make) -> None:
        """Two different ce_id values are ambiguous: kind bad_header naming both."""
        record = moved(published(order(1))[0])
        headers = [*record.headers, ("ce_id", b"another-id")]
        err = failure(make(record, headers=headers))
        self.check(err, "bad_header", "header 'ce_id' appears twice with different values")
        assert "another-id" in err.reason

    def test_an_unsupported_specversion(self, make: Make) -> None:
        """ce_specversion 0.3 is refused as bad_header."""
        record = moved(published(order(1))[0])
        err = failure(make(record, headers=replaced(record, "ce_specversion", b"0.3")))
        self.check(err, "bad_header", "ce_specversion is '0.3'; this decoder reads CloudEvents 1.x")

    @pytest.mark.parametrize(
        "value", [b"yesterday", b"2026-11-27T05:42:35", b"2026-13-01T00:00:00Z"]
    )
    def test_a_bad_time(self, make: Make, value: bytes) -> None:
        """A ce_time that is not RFC 3339 with an offset is bad_header."""
        record = moved(published(order(1))[0])
        err = failure(make(record, headers=replaced(record, "ce_time", value)))
        self.check(err, "bad_header", f"ce_time {value.decode()!r} is not an RFC 3339 timestamp")
        assert err.event_type == "tests.unit.conftest.OrderPlaced"

    def test_an_unknown_type(self, make: Make) -> None:
        """A ce_type this decoder does not know is unknown_type, listing the known ones."""
        record = moved(published(order(1))[0])
        err = failure(make(record), Decoder(types=[PaymentTaken]))
        self.check(
            err,
            "unknown_type",
            "ce_type 'tests.unit.conftest.OrderPlaced' is not one of this decoder's types "
            "(com.example.PaymentTaken)",
        )
        assert "Pass its class in types=" in str(err)
        assert err.event_type == "tests.unit.conftest.OrderPlaced"

    def test_a_content_type_no_codec_reads(self, make: Make) -> None:
        """A msgpack record for a JSON-only decoder is kind content_type, naming the codecs."""
        record = moved(published(order(1), codec="msgpack")[0])
        err = failure(make(record))
        self.check(
            err,
            "content_type",
            "content-type 'application/msgpack' has no codec here (codecs for: application/json)",
        )
        assert "codec=[..., ...]" in str(err)

    def test_structured_mode_is_named(self, make: Make) -> None:
        """application/cloudevents+json is explained as structured mode."""
        record = moved(published(order(1))[0])
        headers = replaced(record, "content-type", b"application/cloudevents+json")
        err = failure(make(record, headers=headers))
        self.check(err, "content_type", "is CloudEvents structured mode")

    def test_malformed_bytes(self, make: Make) -> None:
        """A value that is not JSON at all is malformed_value."""
        record = moved(published(order(1))[0])
        err = failure(make(record, value=b"{not json"))
        self.check(err, "malformed_value", "the value is not a valid OrderPlaced")
        assert "broke the schema contract" in str(err)

    def test_a_value_that_does_not_fit_the_class(self, make: Make) -> None:
        """Valid JSON missing a required field is malformed_value naming the field."""
        record = moved(published(order(1))[0])
        err = failure(make(record, value=b'{"order_id": "o-1"}'))
        self.check(err, "malformed_value", "missing required field `customer_name`")

    def test_a_custom_codec_raising_anything_is_still_a_decode_error(self, make: Make) -> None:
        """A codec raising ValueError (not SerializationError) still gives a typed DecodeError."""

        class Broken:
            content_type = "application/json"

            def encode(self, event: Any) -> bytes:
                return b""

            def decode(self, data: bytes, type: Any) -> Any:
                raise ValueError("boom")

        record = moved(published(order(1))[0])
        err = failure(make(record), Decoder(types=[OrderPlaced], codec=Broken()))
        self.check(err, "malformed_value", "raised ValueError: boom")

    def test_an_unreadable_value(self) -> None:
        """A value of a type that is not bytes or str is a bad record, not a crash."""
        record = moved(published(order(1))[0])
        err = failure(as_confluent(record, value=12345))
        self.check(err, "bad_header", "unreadable")

    def test_the_error_pickles(self) -> None:
        """A DecodeError survives pickling (e.g. crossing a process pool), record included."""
        record = moved(published(order(1))[0])
        err = failure(record.__class__(**{**dataclasses.asdict(record), "value": b"x"}))
        copy = pickle.loads(pickle.dumps(err))
        assert (copy.kind, copy.topic, copy.partition, copy.offset, str(copy)) == (
            err.kind,
            err.topic,
            err.partition,
            err.offset,
            str(err),
        )


class TestDecodeOrNone:
    def test_returns_the_envelope_when_it_decodes(self, make: Make) -> None:
        """decode_or_none is decode for a good record."""
        record = published(order(1))[0]
        envelope = DECODER.decode_or_none(make(record))
        assert envelope is not None
        assert envelope.event == order(1)

    def test_hands_the_error_to_on_error_and_returns_none(self, make: Make) -> None:
        """A bad record gives None and on_error gets the DecodeError, whose record can be dead-lettered."""
        record = moved(published(order(1))[0])
        errors: list[DecodeError] = []
        decoder = Decoder(types=[OrderPlaced], on_error=errors.append)
        message = make(record, value=b"garbage")
        assert decoder.decode_or_none(message) is None
        assert [e.kind for e in errors] == ["malformed_value"]
        assert errors[0].record is message

    def test_logs_decode_failed_without_on_error(self, make: Make) -> None:
        """Without on_error the failure is logged as decode_failed on eventwire.consumer."""
        record = moved(published(order(1))[0])
        with capture_logs("eventwire.consumer") as logs:
            assert DECODER.decode_or_none(make(record, headers=[])) is None
        assert len(logs) == 1
        entry = logs[0]
        assert entry["event"] == "decode_failed"
        assert entry["log_level"] == "warning"
        assert (entry["topic"], entry["partition"], entry["offset"], entry["kind"]) == (
            "orders",
            2,
            17,
            "missing_header",
        )

    def test_a_loop_survives_poison_records(self, make: Make) -> None:
        """A loop over good and poison records decodes every good one and reports every bad one."""
        good = published(order(1), order(2), order(3))
        messages = [
            make(good[0]),
            make(good[0], value=b"\x00"),
            make(good[1], headers=[]),
            make(good[1]),
            make(good[2], headers=replaced(good[2], "ce_type", b"x.Unknown")),
            make(good[2]),
        ]
        bad: list[str] = []
        decoder = Decoder(types=[OrderPlaced], on_error=lambda e: bad.append(e.kind))
        decoded = [e.event for m in messages if (e := decoder.decode_or_none(m)) is not None]
        assert decoded == [order(1), order(2), order(3)]
        assert bad == ["malformed_value", "missing_header", "unknown_type"]


class TestDecoderConfiguration:
    def test_no_types(self) -> None:
        """A decoder with nothing to decode is a ConfigurationError."""
        with pytest.raises(ConfigurationError, match=r"Decoder needs the event classes"):
            Decoder()

    def test_not_an_event_class(self) -> None:
        """A class that is no event shape (not a Struct, dataclass, attrs or pydantic class) is refused."""

        class NotAnEvent:
            n: int

        with pytest.raises(ConfigurationError, match="types must be event classes"):
            Decoder(types=[NotAnEvent])

    def test_two_classes_with_one_type_name(self) -> None:
        """Two classes claiming one ce_type are refused, naming both."""

        @event(topic="orders", key="order_id", type_name="shop.Order")
        class A(msgspec.Struct):
            order_id: str

        @event(topic="orders", key="order_id", type_name="shop.Order")
        class B(msgspec.Struct):
            order_id: str

        with pytest.raises(
            ConfigurationError,
            match=r"<locals>\.A and .*<locals>\.B both have ce_type .shop\.Order.",
        ):
            Decoder(types=[A, B])

    def test_a_route_that_is_not_a_route(self) -> None:
        """routes= values must be Route objects."""
        with pytest.raises(ConfigurationError, match="must be a Route"):
            Decoder(routes={OrderPlaced: "orders"})  # type: ignore[dict-item]

    def test_an_unknown_codec(self) -> None:
        """An unknown codec name is a ConfigurationError."""
        with pytest.raises(ConfigurationError, match="codec 'avro' is unknown"):
            Decoder(types=[OrderPlaced], codec="avro")

    def test_an_empty_codec_list(self) -> None:
        """codec=[] is refused."""
        with pytest.raises(ConfigurationError, match="at least one codec"):
            Decoder(types=[OrderPlaced], codec=[])

    def test_decode_error_is_not_a_serialization_error(self) -> None:
        """DecodeError is its own EventwireError (and a ValueError), not the publisher's SerializationError."""
        assert issubclass(DecodeError, EventwireError)
        assert issubclass(DecodeError, ValueError)
        assert not issubclass(DecodeError, SerializationError)


# -- tracing --------------------------------------------------------------------------------


class Spans:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith(prefix)]


@pytest.fixture
def spans() -> Iterator[Spans]:
    s = Spans()
    yield s
    s.provider.shutdown()


def ids(ctx: Any) -> tuple[int, int]:
    return ctx.trace_id, ctx.span_id


def traced_records(spans: Spans, *events: Any) -> list[MemoryRecord]:
    transport = MemoryTransport()
    with Publisher(transport=transport, source="urn:shop", tracer_provider=spans.provider) as pub:
        for item in events:
            pub.publish(item).result(1)
    return sorted(transport.records(), key=lambda r: r.sequence)


class TestProcessSpan:
    def test_process_span_links_to_the_producer_span(self, spans: Spans, make: Make) -> None:
        """process() makes a CONSUMER `process <topic>` span linked to the producer's span, with the semconv attributes."""
        record = moved(traced_records(spans, order(4))[0], partition=1, offset=9)
        (producer,) = spans.named("send ")
        decoder = Decoder(
            types=[OrderPlaced], tracer_provider=spans.provider, consumer_group="billing"
        )
        with decoder.process(make(record)) as envelope:
            assert envelope.event == order(4)
            current = trace.get_current_span().get_span_context()
        (span,) = spans.named("process ")
        assert span.name == "process orders"
        assert span.kind is SpanKind.CONSUMER
        assert span.parent is None  # no ambient span: a new trace, linked to the producer's
        assert current == span.context
        assert [ids(link.context) for link in span.links] == [ids(producer.context)]
        assert ids(envelope.span_context) == ids(producer.context)
        assert envelope.span_context.is_remote
        attrs = dict(span.attributes or {})
        assert attrs == {
            "messaging.system": "kafka",
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": "orders",
            "messaging.destination.partition.id": "1",
            "messaging.kafka.offset": 9,
            "messaging.message.id": envelope.id,
            "cloudevents.event_id": envelope.id,
            "messaging.kafka.message.key": "o-4",
            "messaging.message.body.size": len(record.value),
            "messaging.consumer.group.name": "billing",
            "cloudevents.event_type": "tests.unit.conftest.OrderPlaced",
            "cloudevents.event_source": "urn:shop",
        }
        assert span.status.status_code is StatusCode.UNSET

    def test_the_ambient_span_is_the_parent(self, spans: Spans) -> None:
        """Inside the caller's span, the process span is its child (and still linked to the producer)."""
        record = traced_records(spans, order(1))[0]
        decoder = Decoder(types=[OrderPlaced], tracer_provider=spans.provider)
        with spans.provider.get_tracer("app").start_as_current_span("poll-loop") as loop:
            with decoder.process(record):
                pass
        (span,) = spans.named("process ")
        assert span.parent is not None
        assert span.parent.span_id == loop.get_span_context().span_id
        assert len(span.links) == 1

    def test_an_event_published_in_the_handler_continues_the_process_trace(
        self, spans: Spans
    ) -> None:
        """The process span is current in the block: a publish there is its child."""
        record = traced_records(spans, order(1))[0]
        decoder = Decoder(types=[OrderPlaced], tracer_provider=spans.provider)
        transport = MemoryTransport()
        with Publisher(transport=transport, source="urn:x", tracer_provider=spans.provider) as pub:
            with decoder.process(record):
                pub.publish(PaymentTaken(payment_id=1, amount=1.0)).result(1)
        (process,) = spans.named("process ")
        (follow_up,) = spans.named("send payments")
        assert follow_up.parent is not None
        assert follow_up.parent.span_id == process.context.span_id

    def test_a_handler_exception_ends_the_span_in_error(self, spans: Spans) -> None:
        """An exception in the block sets ERROR, error.type and an exception event, and propagates."""
        record = traced_records(spans, order(1))[0]
        decoder = Decoder(types=[OrderPlaced], tracer_provider=spans.provider)
        with pytest.raises(KeyError), decoder.process(record):
            raise KeyError("no such customer")
        (span,) = spans.named("process ")
        assert span.status.status_code is StatusCode.ERROR
        assert (span.attributes or {})["error.type"] == "KeyError"
        assert [e.name for e in span.events] == ["exception"]
        assert trace.get_current_span() is trace.INVALID_SPAN  # detached again

    def test_a_decode_error_is_recorded_on_the_span(self, spans: Spans) -> None:
        """An undecodable record still gets its span, ended with error.type eventwire.DecodeError."""
        record = traced_records(spans, order(1))[0]
        decoder = Decoder(types=[PaymentTaken], tracer_provider=spans.provider)
        with (
            pytest.raises(DecodeError, match="unknown_type|is not one of"),
            decoder.process(record),
        ):
            pytest.fail("the block must not run")
        (span,) = spans.named("process ")
        attrs = dict(span.attributes or {})
        assert attrs["error.type"] == "eventwire.DecodeError"
        assert attrs["messaging.message.id"] == dict(record.headers)["ce_id"].decode()
        assert "cloudevents.event_type" not in attrs
        assert len(span.links) == 1

    def test_a_record_without_trace_headers_has_no_link(self, spans: Spans) -> None:
        """A record from an untraced producer gets a process span with no link."""
        record = published(order(1))[0]
        decoder = Decoder(types=[OrderPlaced], tracer_provider=spans.provider)
        with decoder.process(record) as envelope:
            assert envelope.trace_context is None
        (span,) = spans.named("process ")
        assert span.links == ()

    def test_without_an_sdk_no_span_and_the_block_still_runs(self) -> None:
        """With a no-op provider process() only decodes; nothing becomes current."""
        spans = Spans()
        record = traced_records(spans, order(1))[0]
        decoder = Decoder(types=[OrderPlaced], tracer_provider=NoOpTracerProvider())
        with decoder.process(record) as envelope:
            assert envelope.event == order(1)
            assert trace.get_current_span() is trace.INVALID_SPAN
        assert envelope.span_context is not None  # the context is still extracted
        with pytest.raises(DecodeError), decoder.process(as_confluent(record, value=None)):
            pass


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_every_event_shape_decodes_typed(codec: str) -> None:
    """Structs, dataclasses, attrs classes and pydantic models decode to their own class."""
    from eventwire import Publisher, Route
    from eventwire.transports.memory import MemoryTransport

    from ..shapes import SHAPES, make

    routes = {
        c: Route(topic="t", key="order_id", type_name=f"test.{s}") for s, (c, _) in SHAPES.items()
    }
    transport = MemoryTransport()
    sent = {shape: make(shape, f"o-{shape}") for shape in SHAPES}
    with Publisher(transport=transport, source="urn:test", routes=routes, codec=codec) as pub:
        for event in sent.values():
            pub.publish(event)
    decoder = Decoder(routes=routes, codec=codec)
    records = transport.records("t")
    assert len(records) == len(SHAPES)
    for record in records:
        envelope = decoder.decode(record)
        shape = envelope.type.removeprefix("test.")
        assert type(envelope.event) is SHAPES[shape][0]
        assert envelope.event == sent[shape]


class TestAsyncProcess:
    """Decoder.process_async / Decoder.handler without a broker (aiokafka on the real broker:
    integration/test_decode_async_kafka.py)."""

    def test_handler_refuses_a_plain_function_naming_process(self) -> None:
        decoder = Decoder(types=[OrderPlaced])

        def plain(envelope: Any) -> None:
            pass

        with pytest.raises(ConfigurationError, match=r"async def.*decoder\.process\(record\)"):
            decoder.handler(plain)  # type: ignore[arg-type]

    def test_a_record_that_does_not_decode_raises_decode_error_from_the_handler(self) -> None:
        """The handler is not called for a record of an unknown type: DecodeError instead."""
        import asyncio

        [record] = published(PaymentTaken(1, 5.0))
        decoder = Decoder(types=[OrderPlaced])
        called: list[Any] = []

        @decoder.handler
        async def on_event(envelope: Any) -> None:
            called.append(envelope)

        with pytest.raises(DecodeError, match="unknown_type|not one of this decoder"):
            asyncio.run(on_event(record))
        assert called == []

    def test_process_async_gives_the_envelope_and_returns_the_handlers_result(self) -> None:
        import asyncio

        [record] = published(order())
        decoder = Decoder(types=[OrderPlaced])

        @decoder.handler
        async def on_event(envelope: Any) -> str:
            await asyncio.sleep(0)
            return str(envelope.event.order_id)

        async def main() -> tuple[Any, str]:
            async with decoder.process_async(record) as envelope:
                event = envelope.event
            return event, await on_event(record)

        event, result = asyncio.run(main())
        assert event == order() and result == order().order_id


class TestHostileRecords:
    """Records any producer can write: each is a typed DecodeError or a decoded event,
    never a bare Python error out of decode(), and nothing unsafe reaches a message."""

    @pytest.mark.parametrize("stamp", [10**15, 2**63 - 1, -(2**62)])
    def test_a_kafka_timestamp_out_of_datetimes_range_decodes_with_none(
        self, make: Make, stamp: int
    ) -> None:
        record = moved(published(order(1))[0])
        envelope = DECODER.decode(
            make(record, timestamp=stamp if make is as_aiokafka else (1, stamp))
        )
        assert envelope.event == order(1) and envelope.timestamp is None

    @pytest.mark.parametrize("headers", [[], [("ce_type", b"someone.Else")]])
    def test_a_tombstone_without_cloudevents_headers_is_no_value(
        self, make: Make, headers: Headers
    ) -> None:
        """Compaction's delete marker usually has no headers: it is no_value (skip it),
        not missing_header or unknown_type (dead-letter it)."""
        record = moved(published(order(1))[0])
        err = failure(make(record, value=None, headers=headers))
        assert err.kind == "no_value" and "tombstone" in err.reason

    @pytest.mark.parametrize("name", ["ce_id", "ce_type", "ce_source"])
    @pytest.mark.parametrize("bad", ["a\x00b", "a\x1b[2Jb", "a\nb", "a\x08b", "a\u202eb"])
    def test_control_characters_in_an_identifying_header_are_refused(
        self, make: Make, name: str, bad: str
    ) -> None:
        record = moved(published(order(1))[0])
        headers = [(k, bad.encode() if k == name else v) for k, v in record.headers]
        err = failure(make(record, headers=headers))
        assert err.kind == "bad_header" and name in err.reason
        assert err.event_id == (bad if name == "ce_id" else dict(record.headers)["ce_id"].decode())
        with capture_logs() as logs:
            assert DECODER.decode_or_none(make(record, headers=headers)) is None
        assert bad not in "".join(str(entry) for entry in logs)

    def test_unicode_that_cloudevents_allows_round_trips(self, make: Make) -> None:
        """Non-ASCII text the spec allows in attributes (a zero-width non-joiner in Persian,
        a no-break space, an emoji sequence) is published and decoded back."""
        source = "https://example.ir/\u0633\u0641\u0627\u0631\u0634\u200c\u0647\u0627"

        @event(topic="orders", key="order_id")
        class Placed(msgspec.Struct, frozen=True):
            order_id: str

        transport = MemoryTransport()
        with Publisher(transport=transport, source=source) as pub:
            pub.publish(Placed("o\xa01"), event_id="order-\U0001f469\u200d\U0001f4bb-1")
        envelope = decode(make(moved(transport.records()[0])), types=[Placed])
        assert envelope.source == source
        assert envelope.id == "order-\U0001f469\u200d\U0001f4bb-1"

    def test_a_log_line_escapes_control_characters(self) -> None:
        from eventwire.observability.logging import _show

        assert _show("x\x1b[1Ahidden") == repr("x\x1b[1Ahidden")
        assert _show("plain-id") == "plain-id"
        assert _show("Mehdi\u200cpour") == "Mehdi\u200cpour"  # allowed text: as is

    @pytest.mark.parametrize("version", ["1", "1.", "1..", "1.garbage", "1.0\x00", "1.0.0.0-evil"])
    def test_a_specversion_that_is_not_1_x_is_refused(self, make: Make, version: str) -> None:
        record = moved(published(order(1))[0])
        headers = [(k, version.encode() if k == "ce_specversion" else v) for k, v in record.headers]
        assert failure(make(record, headers=headers)).kind == "bad_header"

    def test_a_huge_header_is_quoted_cut_short(self, make: Make) -> None:
        record = moved(published(order(1))[0])
        huge = "x" * 1_000_000
        headers = [(k, huge.encode() if k == "ce_type" else v) for k, v in record.headers]
        err = failure(make(record, headers=headers))
        assert err.kind == "unknown_type" and len(str(err)) < 2_000

    def test_a_value_nested_too_deeply_is_malformed_not_a_recursion_error(self) -> None:
        """The built-in codecs turn a crafted deep nesting into SerializationError."""
        from eventwire import JsonCodec

        class Loose(msgspec.Struct):
            data: Any

        deep = b'{"data":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        with pytest.raises(SerializationError, match="nested too deeply"):
            JsonCodec().decode(deep, Loose)

    @pytest.mark.parametrize("codec", ["json", "msgpack"])
    def test_a_pydantic_model_that_does_not_fit_names_fields_not_payload_values(
        self, codec: str
    ) -> None:
        """pydantic's own error text quotes the input (``input_value='...'``), which is
        payload data: the DecodeError names the field, the problem and its type only,
        and carries no cause that quotes it either."""
        import traceback

        pydantic = pytest.importorskip("pydantic")

        class Sent(pydantic.BaseModel):  # type: ignore[name-defined,misc]
            order_id: str
            card: str

        class Expected(pydantic.BaseModel):  # type: ignore[name-defined,misc]
            order_id: str
            card: int

        route = Route(topic="t", key="order_id", type_name="test.Card")
        transport = MemoryTransport()
        with Publisher(
            transport=transport, source="urn:test", routes={Sent: route}, codec=codec
        ) as pub:
            pub.publish(Sent(order_id="o-1", card="4111-1111-1111-1111"))
        decoder = Decoder(routes={Expected: route}, codec=codec)
        with pytest.raises(DecodeError) as info:
            decoder.decode(transport.records("t")[0])
        err = info.value
        assert err.kind == "malformed_value"
        assert "card: Input should be a valid integer" in err.reason
        assert "[type=int_parsing]" in err.reason
        whole = "".join(traceback.format_exception(err))
        assert "4111" not in whole

    def test_pydantic_errors_leave_out_dict_keys_and_quoted_inputs(self) -> None:
        """Data also hides in pydantic's error locations (a dict key) and in messages it
        builds from the input (a discriminator's tag): shown as [...] and "the value is not
        valid"; field names, list indexes and schema-made messages stay."""
        from typing import Annotated

        pydantic = pytest.importorskip("pydantic")
        from eventwire import JsonCodec

        class A(pydantic.BaseModel):  # type: ignore[name-defined,misc]
            kind: Literal["a"]

        class B(pydantic.BaseModel):  # type: ignore[name-defined,misc]
            kind: Literal["b"]

        class Scores(pydantic.BaseModel):  # type: ignore[name-defined,misc]
            scores: dict[str, int]
            items: list[int]
            item: Annotated[A | B, pydantic.Field(discriminator="kind")]

        data = (
            b'{"scores": {"alice@example.com": "x"}, "items": [1, "2x"],'
            b' "item": {"kind": "ssn-123-45-6789"}}'
        )
        with pytest.raises(SerializationError) as info:
            JsonCodec().decode(data, Scores)
        text = str(info.value)
        assert "alice" not in text and "ssn-123" not in text and "2x" not in text
        assert "scores[...]: Input should be a valid integer" in text
        assert "items[1]: Input should be a valid integer" in text
        assert "item: the value is not valid [type=union_tag_invalid]" in text


class _Plan(enum.Enum):
    FREE = "free"


class _Card(msgspec.Struct, tag="card"):
    number: str


class _Bank(msgspec.Struct, tag="bank"):
    iban: str


class _Subscribed(msgspec.Struct, forbid_unknown_fields=True):
    account: str
    plan: _Plan = _Plan.FREE
    kind: Literal["a", "b"] = "a"
    level: Literal[1, 2] = 1
    payment: _Card | _Bank | None = None


@dataclasses.dataclass
class _Checked:
    account: str

    def __post_init__(self) -> None:
        if not self.account.startswith("acc-"):
            raise ValueError(f"account must start with acc-, got {self.account!r} (rule 42)")


@pytest.mark.parametrize("codec", ["json", "msgpack"])
@pytest.mark.parametrize(
    ("cls", "payload", "shown"),
    [
        (_Subscribed, {"account": "a", "plan": "SSN-123-45-6789"}, "Invalid enum value"),
        (_Subscribed, {"account": "a", "kind": "SSN-123-45-6789"}, "Invalid enum value"),
        (_Subscribed, {"account": "a", "level": 123456789}, "Invalid enum value"),
        (_Subscribed, {"account": "a", "payment": {"type": "SSN-123-45-6789"}}, "Invalid value"),
        (_Subscribed, {"account": "a", "SSN-123-45-6789": 1}, "unknown field"),
        (_Checked, {"account": "SSN-123-45-6789"}, "account must start with acc-, got"),
    ],
)
def test_msgspec_errors_name_the_path_but_never_the_value(
    codec: str, cls: type, payload: dict[str, Any], shown: str
) -> None:
    """msgspec's ValidationError quotes the enum, Literal or tag value it did not know,
    an unknown field's name, and what the class's own code put in its error: none of it
    reaches DecodeError (its text, reason, cause chain) or the decode_failed log; the path
    and what was expected stay."""
    import traceback

    encode = msgspec.json.encode if codec == "json" else msgspec.msgpack.encode
    route = Route(topic="t", key=None, type_name="test.leak")
    transport = MemoryTransport()

    @dataclasses.dataclass
    class Placeholder:
        account: str

    with Publisher(transport=transport, routes={Placeholder: route}, codec=codec) as pub:
        pub.publish(Placeholder(account="a"))
    record = transport.records("t")[0]
    poisoned = dataclasses.replace(record, value=encode(payload))
    decoder = Decoder(routes={cls: route}, codec=codec)
    with pytest.raises(DecodeError) as info:
        decoder.decode(poisoned)
    whole = "".join(traceback.format_exception(info.value))
    assert "SSN" not in whole and "123456789" not in whole and "rule 42" not in whole
    assert shown in info.value.reason
    if "unknown" not in shown and cls is _Subscribed:
        assert " - at `$." in info.value.reason
    with capture_logs("eventwire.consumer") as logs:
        assert Decoder(routes={cls: route}, codec=codec).decode_or_none(poisoned) is None
    assert logs and "SSN" not in repr(logs) and "123456789" not in repr(logs)
