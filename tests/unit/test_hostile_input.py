"""Hostile input: every bad header, key, event id or value is a typed error, nothing sent.

A header name that is not valid UTF-8 crashed the process inside librdkafka's
``produce()``; a caller's ``ce_id`` header forged the event id for a last-wins
reader; NaN went out as a JSON ``null`` that eventwire's own codec cannot decode;
a surrogate key or id, or an event that contains itself, raised bare Python
errors. Each case is checked on every way in: ``publish``, ``publish_many``,
``AsyncPublisher`` and outbox mode.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import eventwire
from eventwire import (
    AsyncPublisher,
    ConfigurationError,
    DeliveryResult,
    EventwireError,
    JsonCodec,
    MsgpackCodec,
    Publisher,
    Route,
    RoutingError,
    SerializationError,
    event,
)
from eventwire.outbox import SQLiteOutbox
from eventwire.transports.memory import MemoryTransport

from .conftest import order

SURROGATE = "\ud800"

#: Header names eventwire writes or reserves, with the NUL-cut and case variants.
RESERVED = [
    "ce_id",
    "ce_type",
    "ce_source",
    "ce_specversion",
    "ce_time",
    "content-type",
    "CE_ID",
    "Ce_Type",
    "Content-Type",
    "ce_subject",  # a CloudEvents attribute eventwire does not write: still reserved
    "traceparent",  # the W3C trace context: eventwire's tracing writes it
    "tracestate",
    "baggage",
    "TraceParent",
]


class LineItem(msgspec.Struct):
    sku: str
    price: float


class DiscountedItem(LineItem):
    discount: float = 0.0


@event(topic="baskets", key="basket_id")
class Basket(msgspec.Struct):
    basket_id: str
    items: list[LineItem]
    total: float
    note: str | None = None
    extra: Any = None
    parent: Any = None


def basket(**changes: Any) -> Basket:
    fields: dict[str, Any] = {
        "basket_id": "b-1",
        "items": [LineItem("a", 1.5), LineItem("b", 2.5)],
        "total": 4.0,
    }
    fields.update(changes)
    return Basket(**fields)


# -- the ways in -------------------------------------------------------------------------


class Way:
    """One way to publish one event, with what it left behind afterwards."""

    def __init__(self, name: str, tmp_path: Path) -> None:
        self.name = name
        self.transport = MemoryTransport()
        self.store = SQLiteOutbox(tmp_path / "outbox.db") if "outbox" in name else None
        self.publisher = Publisher(
            transport=self.transport, outbox=self.store, relay=False, source="urn:test"
        )

    def publish(self, evt: Any, *, event_id: str | None = None, headers: Any = None) -> None:
        pub = self.publisher
        if self.name.endswith("publish_many"):
            assert headers is None
            ids = None if event_id is None else ["ok-1", event_id]
            pub.publish_many([order(1), evt], event_ids=ids)
        elif self.name == "async":
            asyncio.run(_async_publish(evt, event_id, headers))
        else:
            pub.publish(evt, event_id=event_id, headers=headers)

    def left_behind(self) -> tuple[int, int, int]:
        """(records sent, events in flight, outbox rows pending): all 0 after a refusal."""
        pending = self.store.status().pending if self.store is not None else 0
        return len(self.transport.records()), self.publisher.in_flight, pending

    def close(self) -> None:
        self.publisher.close(1)


async def _async_publish(evt: Any, event_id: str | None, headers: Any) -> None:
    transport = MemoryTransport()
    async with AsyncPublisher(transport=transport) as pub:
        try:
            pub.publish_nowait(evt, event_id=event_id, headers=headers)
        finally:
            assert transport.records() == [], "a refused event must not be sent"
            assert pub.in_flight == 0


WAYS = ["publish", "publish_many", "async", "outbox", "outbox-publish_many"]
WAYS_WITH_HEADERS = ["publish", "async", "outbox"]


@pytest.fixture
def way(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Way]:
    w = Way(request.param, tmp_path)
    yield w
    w.close()


def refused(
    way: Way, error: type[EventwireError], match: str, **kwargs: Any
) -> Callable[[Any], None]:
    def attempt(evt: Any) -> None:
        with pytest.raises(error, match=match):
            way.publish(evt, **kwargs)
        assert way.left_behind() == (0, 0, 0), "nothing is sent, held or stored"

    return attempt


# -- 10: header names librdkafka cannot take -----------------------------------------


_CRASH_SCRIPT = """
import json, sys
import msgspec
from eventwire import Publisher, event

@event(topic="t", key="k")
class E(msgspec.Struct):
    k: str

pub = Publisher("127.0.0.1:9", connect_timeout=None)  # a real librdkafka producer
pub.publish(E(k="first"))
try:
    pub.publish(E(k="second"), headers=[("\\ud800", b"x")])
    outcome = "accepted"
except Exception as exc:
    outcome = type(exc).__name__ + ": " + str(exc)
print(json.dumps({"outcome": outcome, "in_flight": pub.in_flight}), flush=True)
try:
    pub.close(0)
except Exception:
    pass  # the first event was never delivered (no broker): reported, expected
"""


def test_a_surrogate_header_name_is_refused_before_librdkafka_instead_of_crashing() -> None:
    """A header name with a lone surrogate raises SerializationError; the process and the events already queued survive."""
    src = Path(eventwire.__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CRASH_SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, (
        f"the process died (signal {-proc.returncode}): {proc.stderr[-2000:]}"
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["outcome"].startswith("SerializationError: header name '\\ud800'")
    assert "not valid text" in result["outcome"]
    assert result["in_flight"] == 1, "only the first event is queued"


@pytest.mark.parametrize("way", WAYS_WITH_HEADERS, indirect=True)
@pytest.mark.parametrize(
    ("name", "problem"),
    [(SURROGATE, "not valid text"), ("tenant\x00id", "NUL"), ("ce_id\x00x", "NUL")],
)
def test_a_header_name_kafka_cannot_carry_is_refused(way: Way, name: str, problem: str) -> None:
    """A header name with a lone surrogate or a NUL (which the wire would cut short) is a SerializationError naming it."""
    refused(
        way,
        SerializationError,
        f"header name {re.escape(repr(name))}.*{problem}",
        headers=[(name, b"x")],
    )(order(1))


@pytest.mark.parametrize(
    "header",
    [("tenant", "acme"), ("tenant",), (b"tenant", b"acme"), ["tenant", b"acme"], ([], b"x")],
)
def test_a_header_that_is_not_a_str_bytes_pair_is_refused(
    publisher: Publisher, transport: MemoryTransport, header: Any
) -> None:
    """A header that is not a (str, bytes) tuple is a SerializationError, not a crash."""
    with pytest.raises(SerializationError, match="header"):
        publisher.publish(order(1), headers=[header])
    assert transport.records() == []


def test_a_header_value_that_is_not_bytes_is_refused_by_name_without_showing_it(
    publisher: Publisher,
) -> None:
    """A token passed as str is named by its header and type, never quoted."""
    with pytest.raises(SerializationError) as info:
        publisher.publish(order(1), headers=[("authorization", "Bearer eyJ.SECRET")])
    assert "header 'authorization' has a str value, not bytes" in str(info.value)
    assert "SECRET" not in str(info.value)
    with pytest.raises(SerializationError) as info:
        publisher.publish(order(1), headers=[("authorization", "Bearer eyJ.SECRET", "x")])
    assert "tuple of 3 items" in str(info.value)
    assert "SECRET" not in str(info.value)


def test_headers_given_as_a_generator_are_all_sent(
    publisher: Publisher, transport: MemoryTransport
) -> None:
    """Headers from a generator are checked and sent, not used up by the check."""
    publisher.publish(order(1), headers=(h for h in [("tenant", b"acme"), ("x-n", b"1")]))
    [record] = transport.records()
    assert list(record.headers[-2:]) == [("tenant", b"acme"), ("x-n", b"1")]


# -- 11: reserved header names --------------------------------------------------------


@pytest.mark.parametrize("way", WAYS_WITH_HEADERS, indirect=True)
@pytest.mark.parametrize("name", RESERVED)
def test_a_reserved_header_name_is_refused(way: Way, name: str) -> None:
    """A caller's ce_* or content-type header (any case) is a SerializationError naming it, not a duplicate."""
    refused(way, SerializationError, f"header {name!r} is reserved", headers=[(name, b"forged")])(
        order(1)
    )


def test_a_ce_id_header_is_refused_pointing_at_event_id(publisher: Publisher) -> None:
    """The refusal of a ce_id header says to pass the id as event_id= instead."""
    with pytest.raises(SerializationError, match=r"event_id=\.\.\."):
        publisher.publish(order(1), headers=[("tenant", b"a"), ("ce_id", b"forged")])


def test_a_traceparent_header_is_refused_pointing_at_the_current_context(
    publisher: Publisher,
) -> None:
    """A caller's own traceparent (which a consumer could take for eventwire's) is refused,
    saying to make the span current instead."""
    with pytest.raises(SerializationError, match="start_as_current_span"):
        publisher.publish(order(1), headers=[("traceparent", b"00-" + b"1" * 32 + b"-01")])


def test_a_refused_header_name_is_refused_every_time(publisher: Publisher) -> None:
    """The cache of checked names never admits a bad one: a second attempt is refused too."""
    for _ in range(2):
        with pytest.raises(SerializationError, match="reserved"):
            publisher.publish(order(1), headers=[("ce_type", b"x")])


def test_ordinary_headers_follow_the_cloudevents_ones_unchanged(
    publisher: Publisher, transport: MemoryTransport
) -> None:
    """Names merely containing ce_ or content, non-ASCII names and any bytes values are sent as given."""
    extra = [("x-ce_id", b"a"), ("tenant", b"\x00\xff"), ("größe", b""), ("content-length", b"1")]
    handle = publisher.publish(order(1), headers=extra)
    [record] = transport.records()
    assert list(record.headers[-len(extra) :]) == extra
    assert [v for k, v in record.headers if k == "ce_id"] == [handle.event_id.encode()]


def test_a_stage_with_a_reserved_header_writes_nothing(tmp_path: Path) -> None:
    """stage() refuses a reserved header before anything is written in the caller's transaction."""
    store = SQLiteOutbox(tmp_path / "outbox.db")
    conn = sqlite3.connect(store.path)
    with Publisher(transport=MemoryTransport(), outbox=store, relay=False) as pub:
        with pytest.raises(SerializationError, match="'content-type' is reserved"):
            pub.stage(order(1), connection=conn, headers=[("content-type", b"text/plain")])
        conn.commit()
        assert store.status().pending == 0
    conn.close()


# -- 12: NaN and infinity -------------------------------------------------------------


@pytest.mark.parametrize("way", WAYS, indirect=True)
@pytest.mark.parametrize(
    ("evt", "where"),
    [
        (basket(total=math.nan), r"\$\.total is nan"),
        (
            basket(items=[LineItem("a", 1.0), LineItem("b", -math.inf)]),
            r"\$\.items\[1\]\.price is -inf",
        ),
        (basket(items=[DiscountedItem("a", 1.0, math.inf)]), r"\$\.items\[0\]\.discount is inf"),
        (basket(extra={"rates": [1.0, math.nan]}), r"\$\.extra\.rates\[1\] is nan"),
    ],
    ids=["field", "nested", "subclass-in-list", "any-typed"],
)
def test_a_non_finite_float_is_refused_naming_its_field(way: Way, evt: Basket, where: str) -> None:
    """NaN or infinity anywhere in a JSON event is a SerializationError naming its JSON path; nothing is sent."""
    refused(way, SerializationError, where)(evt)


def test_none_and_finite_floats_still_publish(
    publisher: Publisher, transport: MemoryTransport
) -> None:
    """A JSON null from None (not from NaN) is not refused, and the event decodes back."""
    evt = basket(note=None, extra={"rate": 1e308, "n": None})
    publisher.publish(evt)
    [record] = transport.records()
    assert b"null" in record.value
    assert JsonCodec().decode(record.value, Basket) == evt


def test_allow_non_finite_writes_null_when_asked() -> None:
    """JsonCodec(allow_non_finite=True) writes NaN as null, as chosen explicitly."""
    transport = MemoryTransport()
    with Publisher(transport=transport, codec=JsonCodec(allow_non_finite=True)) as pub:
        pub.publish(basket(total=math.nan))
    assert b'"total":null' in transport.records()[0].value


def test_msgpack_keeps_nan_and_infinity() -> None:
    """The msgpack codec carries NaN and infinity and decodes them back, so it refuses neither."""
    transport = MemoryTransport()
    with Publisher(transport=transport, codec="msgpack") as pub:
        pub.publish(basket(total=math.inf, items=[LineItem("a", math.nan)]))
    back = MsgpackCodec().decode(transport.records()[0].value, Basket)
    assert back.total == math.inf and math.isnan(back.items[0].price)


def test_json_codec_encode_refuses_nan_too() -> None:
    """JsonCodec.encode (not only the publisher's fast path) refuses NaN, naming the field."""
    with pytest.raises(SerializationError, match=r"\$\.total is nan"):
        JsonCodec().encode(basket(total=math.nan))


# -- 13: typed errors for every bad input ---------------------------------------------


@pytest.mark.parametrize("way", WAYS, indirect=True)
def test_a_key_that_is_not_valid_text_is_a_routing_error(way: Way) -> None:
    """A routing key with a lone surrogate is a RoutingError naming the key field; nothing is sent."""
    refused(way, RoutingError, "key field 'order_id'.*not valid text")(
        order(1, key="o-" + SURROGATE)
    )


@pytest.mark.parametrize("way", WAYS, indirect=True)
@pytest.mark.parametrize(
    ("event_id", "match"),
    [
        ("id-" + SURROGATE, "event_id 'id-\\\\ud800' is not valid text"),
        ("id\x00x", "event_id 'id\\\\x00x' holds a NUL"),
        ("", "event_id is empty"),
        ("id\nFORGED log line", "holds a control character"),
        ("id\x1b[31m", "holds a control character"),
        ("id\u202eexe.txt", "holds a control character"),
    ],
    ids=["surrogate", "nul", "empty", "newline", "escape", "bidi-override"],
)
def test_an_event_id_kafka_cannot_carry_is_a_serialization_error(
    way: Way, event_id: str, match: str
) -> None:
    """A given event_id that is empty, holds a lone surrogate, a NUL or a control character
    is a SerializationError naming it; nothing is sent. (An empty id was replaced by a new
    one: a re-send under it could not be de-duplicated. A newline forged log lines.)"""
    refused(way, SerializationError, match, event_id=event_id)(order(2))


@pytest.mark.parametrize("way", ["publish", "async", "outbox"], indirect=True)
def test_an_event_id_that_is_not_a_str_is_a_serialization_error(way: Way) -> None:
    """A UUID object as event_id is a SerializationError saying to pass a str."""
    given: Any = uuid.UUID("0191d3e4-7c2a-7b3e-8f00-0123456789ab")
    refused(way, SerializationError, r"event_id .* is a UUID, not a str", event_id=given)(order(1))


@pytest.mark.parametrize("way", WAYS, indirect=True)
def test_an_event_that_contains_itself_is_a_serialization_error(way: Way) -> None:
    """An event whose field refers back to it is a SerializationError (not a RecursionError)."""
    evt = basket()
    evt.parent = [evt]
    refused(way, SerializationError, "contains itself")(evt)


def test_async_publish_many_reports_a_bad_event_in_its_slot() -> None:
    """AsyncPublisher.publish_many returns the bad event's typed error in its slot; the others are sent."""

    async def main() -> list[DeliveryResult | EventwireError]:
        async with AsyncPublisher(transport=MemoryTransport()) as pub:
            return await pub.publish_many([order(1), order(2, key=SURROGATE), order(3)])

    first, bad, third = asyncio.run(main())
    assert isinstance(first, DeliveryResult) and isinstance(third, DeliveryResult)
    assert isinstance(bad, RoutingError)


def test_a_type_name_that_is_not_valid_text_is_refused_at_declaration() -> None:
    """A route's type_name (ce_type) with a lone surrogate is a RoutingError when the Route is made."""
    with pytest.raises(RoutingError, match="type_name for topic 'orders'.*not valid text"):
        Route(topic="orders", key="order_id", type_name="Order" + SURROGATE)


def test_a_source_that_is_not_valid_text_is_a_configuration_error() -> None:
    """A source (ce_source) with a lone surrogate is a ConfigurationError when the publisher is made."""
    with pytest.raises(ConfigurationError, match="source .*not valid text"):
        Publisher(transport=MemoryTransport(), source="urn:" + SURROGATE)


class TestPublishManyEventIds:
    """``publish_many(event_ids=)``: one id per event, any iterable, no id twice."""

    @pytest.fixture
    def pub(self) -> Iterator[Publisher]:
        pub = Publisher(transport=MemoryTransport(), source="urn:test")
        yield pub
        pub.close(1)

    def test_a_str_is_one_id_not_a_sequence_of_them(self, pub: Publisher) -> None:
        with pytest.raises(ConfigurationError, match="event_ids must be a sequence of ids"):
            pub.publish_many([order(1), order(2)], event_ids="ab")  # type: ignore[arg-type]
        assert pub.in_flight == 0

    def test_an_id_given_twice_is_refused_before_anything_is_sent(self, pub: Publisher) -> None:
        """Consumers de-duplicate on ce_id: the second of two events sharing one would be lost."""
        with pytest.raises(ConfigurationError, match=r"holds 'x-1' twice \(events 0 and 2\)"):
            pub.publish_many([order(1), order(2), order(3)], event_ids=["x-1", None, "x-1"])
        assert pub.in_flight == 0

    def test_a_generator_of_ids_is_taken(self, pub: Publisher) -> None:
        handles = pub.publish_many([order(1), order(2)], event_ids=(f"g-{n}" for n in range(2)))
        assert [h.event_id for h in handles] == ["g-0", "g-1"]


@pytest.mark.parametrize("cls", [Publisher, AsyncPublisher])
def test_relay_options_without_an_outbox_are_refused_not_ignored(cls: type[Any]) -> None:
    """Ignored, they let an application believe its dead-letter policy is in place."""
    with pytest.raises(
        ConfigurationError, match=r"relay_options \(dead_letter\) apply to the outbox"
    ):
        cls(transport=MemoryTransport(), relay_options={"dead_letter": None})


class TestEveryBadSettingIsAConfigurationError:
    """Each of these escaped as a bare TypeError, AttributeError, ValueError or SystemError
    (from inside confluent-kafka), or was accepted and failed later with a misleading error."""

    @pytest.mark.parametrize(
        ("options", "says"),
        [
            ({"circuit_breaker": "yes"}, "circuit_breaker must be True, False or a CircuitBreaker"),
            ({"routes": [object]}, "routes must be a mapping of event class -> Route"),
            ({"connect_timeout": "3"}, r"connect_timeout .* must be a number of seconds"),
        ],
    )
    def test_a_publisher_option_of_the_wrong_type(self, options: dict[str, Any], says: str) -> None:
        with pytest.raises(ConfigurationError, match=says):
            Publisher(transport=MemoryTransport(), **options)

    def test_a_bootstrap_list_holding_a_non_str(self) -> None:
        with pytest.raises(ConfigurationError, match=r"not a list of int, str"):
            Publisher(["127.0.0.1:9092", 5], connect_timeout=None)  # type: ignore[list-item]

    def test_a_bootstrap_that_is_not_a_str_is_not_called_empty(self) -> None:
        with pytest.raises(ConfigurationError, match="bootstrap_servers must be a str"):
            eventwire.KafkaConfig(9092)  # type: ignore[arg-type]

    def test_a_port_of_non_ascii_digits_is_refused(self) -> None:
        """str.isdigit() says yes to '٤٠٦٥٩'; librdkafka then connected to port 0."""
        with pytest.raises(ConfigurationError, match="is not 'host:port' with a port in 1..65535"):
            eventwire.KafkaConfig("127.0.0.1:\u0664\u0660\u0666\u0665\u0669")

    @pytest.mark.parametrize(
        "config",
        [
            {"client_id": "app\udcff"},
            {"overrides": {"sasl.oauthbearer.config": "x\udcff"}},
            {"overrides": {"client.rack": "a\x00b"}},
        ],
        ids=["client_id", "override", "nul"],
    )
    def test_text_librdkafka_cannot_take_is_refused_naming_the_property(
        self, config: dict[str, Any]
    ) -> None:
        with pytest.raises(ConfigurationError, match=r"the value of '[a-z.]+' is not valid text"):
            eventwire.KafkaConfig("127.0.0.1:9092", **config)


def test_an_int_key_too_long_for_text_is_a_routing_error(publisher: Publisher) -> None:
    @eventwire.event(topic="t", key="k")
    class Huge(msgspec.Struct):
        k: int

    with pytest.raises(RoutingError, match="an int of more than 4300 digits"):
        publisher.publish(Huge(k=10**5000))
    assert publisher.in_flight == 0


@pytest.mark.parametrize("headers", [5, "tenant=acme", {"tenant": b"acme"}])
def test_headers_that_are_not_a_list_of_pairs_are_refused(
    publisher: Publisher, headers: Any
) -> None:
    with pytest.raises(SerializationError, match="headers must be a list of"):
        publisher.publish(order(1), headers=headers)


def test_a_mistyped_override_gets_the_property_it_looks_like() -> None:
    """As a config file or an EVENTWIRE_KAFKA_* variable already did."""
    with pytest.raises(ConfigurationError, match=r"\"linger_ms\"; did you mean 'linger.ms'\?"):
        Publisher("127.0.0.1:9092", overrides={"linger_ms": 10}, connect_timeout=None)


def test_a_source_with_a_control_character_is_refused_when_the_publisher_is_made() -> None:
    """ce_source is checked like ce_id: consumers refuse control characters in it, so the
    publisher does not write them."""
    with pytest.raises(ConfigurationError, match="control character"):
        Publisher(transport=MemoryTransport(), source="svc\u202e")
