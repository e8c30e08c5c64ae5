"""The synchronous Publisher on the memory transport."""

from __future__ import annotations

import os
import threading
import uuid

import msgspec
import pytest

from eventwire import (
    BackpressureError,
    DeliveryError,
    ErrorClass,
    ProducerFatalError,
    Publisher,
    PublisherStateError,
    Route,
    RoutingError,
    SerializationError,
)
from eventwire.transports.memory import MemoryTransport

from .conftest import OrderPlaced, Unrouted, order


class TestPublish:
    def test_returns_a_handle_that_resolves_to_where_kafka_stored_it(
        self, publisher: Publisher, transport: MemoryTransport
    ) -> None:
        """publish() returns a handle whose result names topic, partition, offset and id."""
        handle = publisher.publish(order(1))
        result = handle.result(timeout=1)
        [record] = transport.records("orders")
        assert (result.topic, result.partition, result.offset) == (
            "orders",
            record.partition,
            record.offset,
        )
        assert result.event_id == record.header("ce_id").decode()  # type: ignore[union-attr]

    def test_record_carries_key_value_and_cloudevents_headers(
        self, publisher: Publisher, transport: MemoryTransport
    ) -> None:
        """The record's key is the UTF-8 key, the value JSON, the headers CloudEvents."""
        publisher.publish(order(1, key="o-42"))
        [record] = transport.records("orders")
        assert record.key == b"o-42"
        assert msgspec.json.decode(record.value, type=OrderPlaced) == order(1, key="o-42")
        assert record.header("ce_specversion") == b"1.0"
        assert record.header("ce_source") == b"urn:test"
        assert record.header("content-type") == b"application/json"
        assert uuid.UUID(record.header("ce_id").decode()).version == 7  # type: ignore[union-attr]

    def test_explicit_event_id_is_kept(
        self, publisher: Publisher, transport: MemoryTransport
    ) -> None:
        """A re-send with event_id= keeps the same ce_id, so consumers can de-duplicate."""
        publisher.publish(order(1), event_id="fixed-id")
        publisher.publish(order(1), event_id="fixed-id")
        assert [r.header("ce_id") for r in transport.records()] == [b"fixed-id", b"fixed-id"]

    def test_same_key_keeps_order_within_its_partition(
        self, publisher: Publisher, transport: MemoryTransport
    ) -> None:
        """All events of one aggregate land in one partition, in publish order."""
        for n in range(20):
            publisher.publish(OrderPlaced(order_id="same", customer_name="A", total_price=n))
        records = transport.records("orders")
        assert len({r.partition for r in records}) == 1
        totals = [msgspec.json.decode(r.value)["total_price"] for r in records]
        assert totals == sorted(totals)

    def test_msgpack_codec(self, transport: MemoryTransport) -> None:
        """codec='msgpack' encodes with MessagePack and says so in content-type."""
        with Publisher(transport=transport, codec="msgpack") as pub:
            pub.publish(order(3))
        [record] = transport.records()
        assert record.header("content-type") == b"application/msgpack"
        assert msgspec.msgpack.decode(record.value, type=OrderPlaced) == order(3)

    def test_publish_many_validates_everything_before_enqueuing(
        self, publisher: Publisher, transport: MemoryTransport
    ) -> None:
        """One invalid event in publish_many raises before any event is enqueued."""
        with pytest.raises(RoutingError):
            publisher.publish_many([order(1), Unrouted(order_id="x"), order(2)])
        assert transport.records() == []
        handles = publisher.publish_many([order(1), order(2)])
        assert [h.result(1).offset >= 0 for h in handles] == [True, True]

    def test_done_callback_runs_once_settled(self, publisher: Publisher) -> None:
        """add_done_callback runs after delivery, and at once when already settled."""
        seen: list[str] = []
        handle = publisher.publish(order(1))
        handle.add_done_callback(lambda h: seen.append(h.event_id))
        assert seen == [handle.event_id]

    def test_a_failing_done_callback_does_not_lose_the_delivery(
        self, publisher: Publisher, transport: MemoryTransport
    ) -> None:
        """An exception in a user callback is logged; the handle still settles."""
        transport.pause()
        handle = publisher.publish(order(1))
        handle.add_done_callback(lambda h: 1 / 0)
        transport.resume()
        assert handle.result(1).offset == 0


class TestBadInput:
    def test_non_struct(self, publisher: Publisher) -> None:
        """A non-Struct is refused with RoutingError."""
        with pytest.raises(RoutingError, match="msgspec.Struct"):
            publisher.publish({"order_id": "x"})

    def test_unregistered_type(self, publisher: Publisher) -> None:
        """A Struct with no route is refused, naming how to route it."""
        with pytest.raises(RoutingError, match="Unrouted has no route"):
            publisher.publish(Unrouted(order_id="x"))

    def test_none_key(self, publisher: Publisher) -> None:
        """A None key is refused: the event would lose its ordering."""

        class Maybe(msgspec.Struct):
            order_id: str | None

        with Publisher(transport=MemoryTransport(), routes={Maybe: Route("t", "order_id")}) as p:
            with pytest.raises(RoutingError, match="is None"):
                p.publish(Maybe(order_id=None))

    def test_unencodable_field(self) -> None:
        """A field msgspec cannot encode raises SerializationError naming the type."""

        class HasObject(msgspec.Struct):
            k: str
            blob: object

        with Publisher(transport=MemoryTransport(), routes={HasObject: Route("t", "k")}) as p:
            with pytest.raises(SerializationError, match="cannot encode .*HasObject"):
                p.publish(HasObject(k="a", blob=threading.Lock()))

    def test_too_large_is_a_fast_permanent_delivery_error(self) -> None:
        """An event over max_message_bytes fails at publish with a permanent DeliveryError."""
        t = MemoryTransport(max_message_bytes=100)
        with Publisher(transport=t) as p, pytest.raises(DeliveryError) as info:
            p.publish(OrderPlaced(order_id="o", customer_name="x" * 200, total_price=1))
        [failure] = info.value.failures
        assert (failure.code, failure.error_class) == ("MSG_SIZE_TOO_LARGE", ErrorClass.PERMANENT)
        assert "larger than the producer's message.max.bytes" in str(info.value)

    def test_no_bootstrap_and_no_transport(self) -> None:
        """A publisher with nowhere to send names the missing argument."""
        from eventwire import ConfigurationError

        with pytest.raises(ConfigurationError, match="bootstrap_servers"):
            Publisher()


class TestFlushAndClose:
    def test_flush_raises_listing_every_failed_event(
        self, publisher: Publisher, transport: MemoryTransport
    ) -> None:
        """flush() raises DeliveryError naming each failed event's id, type, topic and code."""
        transport.fail_next(2, "_MSG_TIMED_OUT")
        failed = [publisher.publish(order(n)) for n in range(3)]
        with pytest.raises(DeliveryError) as info:
            publisher.flush(1)
        failures = info.value.failures
        assert [f.event_id for f in failures] == [failed[0].event_id, failed[1].event_id]
        assert all(f.error_class is ErrorClass.RETRIABLE and f.possibly_written for f in failures)
        assert failed[0].event_id in str(info.value) and "_MSG_TIMED_OUT" in str(info.value)
        publisher.flush(1)  # failures are reported once

    def test_flush_reports_stragglers_when_it_times_out(
        self, publisher: Publisher, transport: MemoryTransport
    ) -> None:
        """Events still unacknowledged at the flush timeout are listed, not ignored."""
        transport.pause()
        handle = publisher.publish(order(1))
        with pytest.raises(DeliveryError, match="_FLUSH_TIMEOUT") as info:
            publisher.flush(0.01)
        assert info.value.failures[0].event_id == handle.event_id
        transport.resume()
        assert handle.result(1).offset == 0

    def test_close_drops_and_reports_what_remains(self, transport: MemoryTransport) -> None:
        """close() after its timeout purges queued events and raises naming them."""
        pub = Publisher(transport=transport)
        transport.pause()
        handle = pub.publish(order(1))
        with pytest.raises(DeliveryError, match="_PURGE_INFLIGHT"):
            pub.close(0.01)
        assert handle.failed()

    def test_with_block_exit_raises_for_failures(self, transport: MemoryTransport) -> None:
        """Leaving the with-block flushes and raises DeliveryError if anything failed."""
        transport.fail_topic("orders", "TOPIC_AUTHORIZATION_FAILED")
        with pytest.raises(DeliveryError, match="TOPIC_AUTHORIZATION_FAILED") as info:
            with Publisher(transport=transport) as pub:
                pub.publish(order(1))
        assert info.value.failures[0].error_class is ErrorClass.PERMANENT

    def test_publish_after_close_is_refused(self, publisher: Publisher) -> None:
        """A closed publisher refuses new events; closing twice is harmless."""
        publisher.close(1)
        publisher.close(1)
        with pytest.raises(PublisherStateError, match="closed"):
            publisher.publish(order(1))


class TestBackpressure:
    def test_full_queue_is_waited_on_then_succeeds(
        self, publisher: Publisher, transport: MemoryTransport
    ) -> None:
        """A briefly full queue delays publish() but the event is not dropped."""
        transport.queue_full_next(5)
        publisher.publish(order(1)).result(1)
        assert len(transport.records()) == 1

    def test_queue_full_past_the_deadline_raises_and_drops_nothing(self) -> None:
        """A queue full for longer than enqueue_timeout raises BackpressureError; nothing sent."""
        t = MemoryTransport()
        with Publisher(transport=t, enqueue_timeout=0.05) as pub:
            t.queue_full_next(10_000)
            with pytest.raises(BackpressureError, match="NOT enqueued"):
                pub.publish(order(1))
            t.heal()
            assert pub.in_flight == 0
        assert t.records() == []


class TestFatal:
    def test_fatal_error_without_restarts_fails_in_flight_events_and_refuses_new_ones(
        self, transport: MemoryTransport
    ) -> None:
        """With producer_restarts=0, a fatal producer error fails in-flight events as FATAL
        and every later publish raises ProducerFatalError."""
        publisher = Publisher(transport=transport, source="urn:test", producer_restarts=0)
        transport.pause()
        handle = publisher.publish(order(1))
        transport.set_fatal("OUT_OF_ORDER_SEQUENCE_NUMBER")
        # (._failure: not the application observing it, so flush() must report it)
        assert handle._failure is not None and handle._failure.error_class is ErrorClass.FATAL
        with pytest.raises(ProducerFatalError, match="OUT_OF_ORDER_SEQUENCE_NUMBER"):
            publisher.publish(order(2))
        with pytest.raises(DeliveryError):
            publisher.flush(0.1)
        publisher.close(0.1)

    def test_a_memory_transport_is_replaced_after_a_fatal_error_like_kafka(
        self, publisher: Publisher, transport: MemoryTransport
    ) -> None:
        """A fatal error on the memory transport makes a new one on the same log: the
        in-flight event is re-sent (same ce_id) and publishing goes on."""
        transport.pause()
        handle = publisher.publish(order(1))
        transport.set_fatal("OUT_OF_ORDER_SEQUENCE_NUMBER")
        assert handle.result(1).event_id == handle.event_id
        publisher.publish(order(2)).result(1)
        ids = [r.header("ce_id") for r in sorted(transport.records(), key=lambda r: r.sequence)]
        assert ids[-2] == handle.event_id.encode()


class TestThreadsAndFork:
    def test_many_threads_publish_without_loss(
        self, publisher: Publisher, transport: MemoryTransport
    ) -> None:
        """Eight threads publishing 2,000 events each: every event is stored once."""

        def work(t: int) -> None:
            for n in range(2_000):
                publisher.publish(order(n, key=f"t{t}-{n % 10}"))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        publisher.flush(5)
        ids = {r.header("ce_id") for r in transport.records()}
        assert len(ids) == 16_000
        assert publisher.in_flight == 0

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    def test_use_in_a_forked_child_is_a_clear_error(self, publisher: Publisher) -> None:
        """A publisher inherited through fork() raises PublisherStateError in the child."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                publisher.publish(order(1))
            except PublisherStateError as exc:
                code = 0 if "fork" in str(exc) else 2
            os.write(write, bytes([code]))
            os._exit(0)
        os.waitpid(pid, 0)
        assert os.read(read, 1) == b"\x00"
        publisher.publish(order(2)).result(1)  # the parent is unaffected
