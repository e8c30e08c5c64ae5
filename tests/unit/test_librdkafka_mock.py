"""eventwire's error policy against librdkafka's own in-process mock cluster.

Each test makes a mock broker fail in one way (through
:mod:`eventwire_devkit.librdkafka`) and checks what eventwire then reports for
the event: delivered, or failed with which code, class and possibly_written.
No real Kafka is needed; the mock brokers listen on loopback in this process.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from eventwire import (
    DeliveryError,
    DeliveryFailure,
    DeliveryHandle,
    ErrorClass,
    ProducerFatalError,
    Publisher,
)
from eventwire.observability.logging import capture_logs
from eventwire.transports.memory import MemoryTransport
from eventwire_devkit.consume import read_topic
from eventwire_devkit.librdkafka import (
    ApiKey,
    ErrorCode,
    LibrdkafkaCallError,
    LibrdkafkaTestApiUnavailable,
    MockCluster,
    inject_fatal_error,
    librdkafka_version,
)
from eventwire_devkit.pytest_plugin import unavailable

from .conftest import order

_UNAVAILABLE = ""
try:
    LIBRDKAFKA_VERSION = librdkafka_version()
except LibrdkafkaTestApiUnavailable as exc:
    _UNAVAILABLE = f"librdkafka's test API is unavailable: {exc}"
if _UNAVAILABLE:
    unavailable(_UNAVAILABLE)  # a skip, or a failure in strict mode

TOPIC = "orders"  # where conftest's OrderPlaced goes
# Short backoffs keep librdkafka's own retries and reconnects fast; they change
# how soon it retries, not whether it does.
FAST = {
    "message.timeout.ms": 10_000,
    "retry.backoff.ms": 20,
    "retry.backoff.max.ms": 100,
    "reconnect.backoff.ms": 20,
    "reconnect.backoff.max.ms": 200,
}


def connect(mock: MockCluster, **overrides: Any) -> Publisher:
    return Publisher(
        mock.bootstrap_servers,
        source="urn:test",
        overrides={**FAST, **overrides},
        connect_timeout=5,
    )


def close_reporting(publisher: Publisher, timeout: float = 5) -> list[DeliveryFailure]:
    """Close, returning the failures close() reported instead of raising them."""
    try:
        publisher.close(timeout)
    except DeliveryError as exc:
        return list(exc.failures)
    return []


def ce_ids(mock: MockCluster, expected: int | None = None) -> list[str]:
    records = read_topic(mock.bootstrap_servers, TOPIC, expected=expected, idle=0.3, timeout=10)
    return [(r.header("ce_id") or b"").decode() for r in records]


@pytest.fixture
def mock() -> Iterator[MockCluster]:
    with MockCluster() as cluster:
        cluster.create_topic(TOPIC, partitions=1)
        yield cluster


@pytest.fixture
def publisher(mock: MockCluster) -> Iterator[Publisher]:
    pub = connect(mock)
    yield pub
    close_reporting(pub)  # before the mock cluster goes (fixture order)


class TestMockCluster:
    def test_brokers_listen_on_loopback_only(self) -> None:
        """bootstrap_servers lists one 127.0.0.1 listener per mock broker."""
        with MockCluster(brokers=3) as cluster:
            hosts = [s.rpartition(":")[0] for s in cluster.bootstrap_servers.split(",")]
        assert hosts == ["127.0.0.1"] * 3

    def test_an_unknown_broker_id_is_refused_with_the_error_name(self, mock: MockCluster) -> None:
        """A call librdkafka refuses raises LibrdkafkaCallError naming the error."""
        with pytest.raises(LibrdkafkaCallError, match="BROKER_NOT_AVAILABLE"):
            mock.broker_down(99)

    def test_a_closed_cluster_refuses_calls_and_closes_once(self) -> None:
        """After close() the cluster refuses calls; a second close() does nothing."""
        cluster = MockCluster()
        cluster.close()
        cluster.close()
        with pytest.raises(RuntimeError, match="closed"):
            cluster.set_rtt(1, 10)

    def test_kafkas_corrupt_message_is_librdkafkas_invalid_msg(self) -> None:
        """Code 2 is CORRUPT_MESSAGE to Kafka but INVALID_MSG to librdkafka (and eventwire)."""
        assert ErrorCode.CORRUPT_MESSAGE is ErrorCode.INVALID_MSG
        assert ErrorCode.INVALID_MSG.name == "INVALID_MSG"


class TestRetriedByLibrdkafka:
    @pytest.mark.parametrize(
        "code",
        [
            ErrorCode.NOT_ENOUGH_REPLICAS,
            ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
            ErrorCode.REQUEST_TIMED_OUT,
            ErrorCode.LEADER_NOT_AVAILABLE,
            ErrorCode.NOT_LEADER_FOR_PARTITION,
            # Kafka's CORRUPT_MESSAGE: librdkafka 2.16 retries it too, so it never
            # reaches eventwire's policy (which lists it as permanent).
            ErrorCode.INVALID_MSG,
        ],
        ids=lambda c: c.name,
    )
    def test_a_transient_produce_error_is_retried_and_the_event_lands_once(
        self, mock: MockCluster, publisher: Publisher, code: ErrorCode
    ) -> None:
        """Three transient errors on Produce are retried by librdkafka; the event lands once."""
        mock.push_request_errors(ApiKey.PRODUCE, code, code, code)
        handle = publisher.publish(order(1))
        assert handle.result(10).topic == TOPIC
        assert mock.request_count(ApiKey.PRODUCE) >= 4  # the three errors were served
        publisher.flush(5)
        assert ce_ids(mock, expected=1) == [handle.event_id]


class TestPermanentErrors:
    @pytest.mark.parametrize(
        "code",
        [
            ErrorCode.MSG_SIZE_TOO_LARGE,
            ErrorCode.TOPIC_AUTHORIZATION_FAILED,
            ErrorCode.INVALID_REQUIRED_ACKS,
        ],
        ids=lambda c: c.name,
    )
    def test_a_permanent_produce_error_fails_the_event_at_once(
        self, mock: MockCluster, publisher: Publisher, code: ErrorCode
    ) -> None:
        """A permanent Produce error fails the event PERMANENT after one request; later ones land.

        Observed with librdkafka 2.16.0: after TOPIC_AUTHORIZATION_FAILED it caches
        the error on the topic, so publish() to it raises DeliveryError at once
        (same code, permanent) until its next Metadata refresh, about 0.5 s later.
        """
        mock.push_request_errors(ApiKey.PRODUCE, code)
        failed = publisher.publish(order(1))
        with pytest.raises(DeliveryError) as info:
            failed.result(5)  # well before message.timeout.ms: not retried until then
        [failure] = info.value.failures
        assert (failure.code, failure.error_class, failure.possibly_written) == (
            code.name,
            ErrorClass.PERMANENT,
            False,
        )
        assert mock.request_count(ApiKey.PRODUCE) == 1
        later = publish_when_accepted(publisher, code.name)
        later.result(10)
        publisher.flush(5)  # the failure result() raised is not reported again
        assert ce_ids(mock, expected=1) == [later.event_id]


def publish_when_accepted(publisher: Publisher, refused_code: str) -> DeliveryHandle:
    """Publish, retrying for up to 5 s while publish() refuses with ``refused_code``."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return publisher.publish(order(2))
        except DeliveryError as exc:
            [failure] = exc.failures
            assert (failure.code, failure.error_class) == (refused_code, ErrorClass.PERMANENT)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class TestBrokerOutage:
    def test_an_outage_past_message_timeout_fails_retriable_and_possibly_written(
        self, mock: MockCluster
    ) -> None:
        """Broker down > message.timeout.ms: _MSG_TIMED_OUT, retriable, possibly written; then recovery."""
        publisher = connect(mock, **{"message.timeout.ms": 3000})
        try:
            publisher.publish(order(0)).result(5)
            mock.broker_down(1)
            lost = publisher.publish(order(1))
            with pytest.raises(DeliveryError) as info:
                lost.result(10)
            [failure] = info.value.failures
            assert (failure.code, failure.error_class, failure.possibly_written) == (
                "_MSG_TIMED_OUT",
                ErrorClass.RETRIABLE,
                True,
            )
            mock.broker_up(1)
            publisher.publish(order(2)).result(10)
        finally:
            reported = close_reporting(publisher)
        assert reported == []  # result() raised it: close() does not raise it again


class TestLatency:
    def test_broker_rtt_is_a_lower_bound_on_ack_latency(
        self, mock: MockCluster, publisher: Publisher
    ) -> None:
        """With a 200 ms broker RTT, publish-to-ack takes at least 0.2 s."""
        publisher.publish(order(0)).result(5)  # connected, producer id acquired
        mock.set_rtt(1, 200)
        start = time.monotonic()
        publisher.publish(order(1)).result(5)
        assert time.monotonic() - start >= 0.2


def _settle_all(
    publisher: Publisher, handles: list[DeliveryHandle]
) -> tuple[list[DeliveryHandle], set[str]]:
    """Publish one more event (allowed to raise ProducerFatalError), flush, close.

    Returns every handle and the ids of every failure flush()/close() reported.
    """
    handles = list(handles)
    with contextlib.suppress(ProducerFatalError):
        handles.append(publisher.publish(order(99)))
    reported: set[str] = set()
    try:
        publisher.flush(5)
    except DeliveryError as exc:
        reported |= {f.event_id for f in exc.failures}
    except ProducerFatalError:
        pass
    reported |= {f.event_id for f in close_reporting(publisher)}
    return handles, reported


def _assert_settled_and_accounted(
    mock: MockCluster, publisher: Publisher, handles: list[DeliveryHandle], reported: set[str]
) -> None:
    """Every event ended delivered (and is in the log) or failed with a reported code."""
    assert publisher.in_flight == 0
    assert all(h.done() for h in handles), [h for h in handles if not h.done()]
    failed = {h.event_id: h.failure for h in handles if h.failure is not None}
    assert all(f.code for f in failed.values())
    assert set(failed) <= reported  # no failure went unreported by flush()/close()
    delivered = {h.event_id for h in handles if h.failure is None}
    assert delivered <= set(ce_ids(mock))


def _fatal_codes(logs: list[dict[str, Any]]) -> list[str]:
    return [entry["code"] for entry in logs if entry["event"] == "producer_fatal"]


def _assert_replaced_without_loss(logs: list[dict[str, Any]], handles: list[Any]) -> None:
    """The default publisher replaced its producer, and no event failed."""
    assert any(entry["event"] == "producer_replaced" for entry in logs)
    assert [h.failure.code for h in handles if h.failure is not None] == []


class TestFatalErrors:
    def test_out_of_order_sequence_is_fatal_and_no_event_is_left_pending(
        self, mock: MockCluster
    ) -> None:
        """OUT_OF_ORDER_SEQUENCE_NUMBER on Produce is fatal; every event still settles, reported.

        Observed with librdkafka 2.16.0 (idempotence on, as in every profile): no
        retry and no epoch bump. librdkafka raises a fatal error with code
        OUT_OF_ORDER_SEQUENCE_NUMBER ("ProduceRequest for orders [0] with N
        message(s) failed due to sequence desynchronization with broker 1 ...").
        Without producer restarts (eventwire before producer_restarts) every event
        of the batch fails with that code as FATAL and publish() raises
        ProducerFatalError; with restarts the events are re-sent through a new
        producer and delivered. With the default producer_restarts=3 the producer is replaced and nothing fails.
        """
        publisher = connect(mock)
        with capture_logs() as logs:
            publisher.publish(order(0)).result(5)
            mock.push_request_errors(ApiKey.PRODUCE, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)
            handles = [publisher.publish(order(n)) for n in (1, 2, 3)]
            deadline = time.monotonic() + 10
            while not _fatal_codes(logs) and time.monotonic() < deadline:
                time.sleep(0.01)
            handles, reported = _settle_all(publisher, handles)
        assert _fatal_codes(logs)[:1] == ["OUT_OF_ORDER_SEQUENCE_NUMBER"]
        for failure in (h.failure for h in handles if h.failure is not None):
            assert failure.error_class is not ErrorClass.PERMANENT  # a re-send may work
        _assert_settled_and_accounted(mock, publisher, handles, reported)
        _assert_replaced_without_loss(logs, handles)

    def test_cluster_authorization_failure_on_init_producer_id_is_fatal(
        self, mock: MockCluster
    ) -> None:
        """CLUSTER_AUTHORIZATION_FAILED on InitProducerId is fatal; every event still settles.

        Observed with librdkafka 2.16.0: a fatal error with that code ("Failed to
        acquire idempotence PID from broker ...: Broker: Cluster authorization
        failed"). Without producer restarts publish() then raises
        ProducerFatalError; with them the new producer's InitProducerId succeeds
        (the one injected error is used up) and the event is delivered.
        """
        mock.push_request_errors(ApiKey.INIT_PRODUCER_ID, ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
        with capture_logs() as logs:
            publisher = connect(mock)
            deadline = time.monotonic() + 10
            while not _fatal_codes(logs) and time.monotonic() < deadline:
                time.sleep(0.01)
            handles, reported = _settle_all(publisher, [])
        assert _fatal_codes(logs)[:1] == ["CLUSTER_AUTHORIZATION_FAILED"]
        assert mock.request_count(ApiKey.INIT_PRODUCER_ID) >= 1
        _assert_settled_and_accounted(mock, publisher, handles, reported)
        _assert_replaced_without_loss(logs, handles)

    def test_an_injected_fatal_error_is_noticed_and_no_event_is_left_pending(
        self, mock: MockCluster
    ) -> None:
        """rd_kafka_test_fatal_error() is reported as producer_fatal; every event still settles.

        Observed with librdkafka 2.16.0: the error callback gets the injected code
        (not _FATAL) and the reason "test_fatal_error: <reason>". Without producer
        restarts the pending events fail with that code as FATAL; with them they
        are re-sent and delivered.
        """
        publisher = connect(mock, **{"client.id": "eventwire-inject-test"})
        with capture_logs() as logs:
            publisher.publish(order(0)).result(5)
            mock.set_rtt(1, 300)  # keep the next events in flight across the injection
            handles = [publisher.publish(order(n)) for n in (1, 2, 3)]
            inject_fatal_error(publisher, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, "by the test")
            deadline = time.monotonic() + 10
            while not _fatal_codes(logs) and time.monotonic() < deadline:
                time.sleep(0.01)
            mock.set_rtt(1, 0)
            handles, reported = _settle_all(publisher, handles)
        [fatal] = [e for e in logs if e["event"] == "producer_fatal"][:1]
        assert fatal["code"] == "OUT_OF_ORDER_SEQUENCE_NUMBER"
        assert "test_fatal_error: by the test" in fatal["reason"]
        _assert_settled_and_accounted(mock, publisher, handles, reported)
        _assert_replaced_without_loss(logs, handles)

    def test_injection_refuses_a_publisher_without_a_kafka_producer(self) -> None:
        """inject_fatal_error raises LibrdkafkaTestApiUnavailable for a memory-transport publisher."""
        with Publisher(transport=MemoryTransport()) as publisher:
            with pytest.raises(LibrdkafkaTestApiUnavailable, match="no confluent-kafka producer"):
                inject_fatal_error(publisher, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, "x")


class TestRelayBreaker:
    def test_the_relay_breaker_opens_while_a_round_still_waits_for_acks(
        self, mock: MockCluster, tmp_path: Any
    ) -> None:
        """librdkafka's connection errors reach the relay's breaker as they happen.

        Before, the breaker heard of failures only when a round ended (after
        ack_timeout, 30 s here), so it opened ~60 s into an outage.
        """
        from eventwire import CircuitBreaker, KafkaConfig, Publisher
        from eventwire._breaker import BreakerState
        from eventwire.outbox import OutboxRelay, SQLiteOutbox
        from eventwire.transports.kafka import KafkaTransport

        store = SQLiteOutbox(tmp_path / "relay.db")
        with Publisher(transport=MemoryTransport(), outbox=store, relay=False) as pub:
            pub.publish_many([order(n) for n in range(5)])
        config = KafkaConfig(mock.bootstrap_servers)
        breaker = CircuitBreaker(open_after_s=1.0, quiet_after_s=2.0)  # errors come ~1 s apart
        mock.broker_down(1)
        relay = OutboxRelay(
            store,
            lambda: KafkaTransport(config, connect_timeout=None),
            breaker=breaker,
            ack_timeout=30.0,
        )
        relay.start()
        try:
            deadline = time.monotonic() + 15  # well inside the round's 30 s wait
            while breaker.state is not BreakerState.OPEN and time.monotonic() < deadline:
                time.sleep(0.1)
            assert breaker.state is BreakerState.OPEN
            assert store.status().pending == 5  # nothing lost meanwhile
        finally:
            mock.broker_up(1)
            relay.stop(5)
            store.close()
