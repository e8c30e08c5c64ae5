"""A producer hit by a fatal error is replaced, and unacknowledged events resume.

These drive the replacement logic with memory transports (one per "producer");
tests/integration/test_producer_restart_kafka.py raises a real librdkafka fatal
error in a producer talking to a real broker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest

from eventwire import DeliveryError, ProducerFatalError, Publisher
from eventwire.observability.logging import capture_logs
from eventwire.transports.base import DeliveryCallback, SendRejected
from eventwire.transports.memory import MemoryTransport

from .conftest import order


class _Chained(MemoryTransport):
    """A memory producer whose replacement comes from the test's factory, with its own log.

    (A plain MemoryTransport re-creates itself on the same log; a log per producer
    lets these tests see which producer sent what.)
    """

    def __init__(self, factory: Callable[[], MemoryTransport] | None = None) -> None:
        super().__init__()
        self.factory = factory

    def recreate(self) -> MemoryTransport:
        assert self.factory is not None, "this test expected no replacement"
        return self.factory()


class _Producers:
    """A factory of memory transports that remembers each one it made."""

    def __init__(self, kinds: Iterator[_Chained] | None = None, *, paused: bool = False) -> None:
        self.made: list[MemoryTransport] = []
        self._kinds = kinds
        self._paused = paused

    def __call__(self) -> MemoryTransport:
        transport = next(self._kinds) if self._kinds is not None else _Chained()
        transport.factory = self
        if self._paused:
            transport.pause()
        self.made.append(transport)
        return transport


@pytest.fixture
def producers() -> _Producers:
    return _Producers()


def _publisher(first: _Chained, producers: _Producers, restarts: int = 3) -> Publisher:
    first.factory = producers
    return Publisher(transport=first, source="urn:test", producer_restarts=restarts)


@pytest.fixture
def first() -> _Chained:
    return _Chained()


@pytest.fixture
def publisher(first: _Chained, producers: _Producers) -> Iterator[Publisher]:
    pub = _publisher(first, producers)
    yield pub
    pub.close(1)


def _ids(transport: MemoryTransport) -> list[bytes | None]:
    return [r.header("ce_id") for r in transport.records()]


def test_unacked_events_are_resent_through_a_new_producer_with_the_same_ce_id(
    publisher: Publisher, first: _Chained, producers: _Producers
) -> None:
    """Events in flight at a fatal error are delivered by the replacement producer."""
    first.pause()  # written to the log, not yet acknowledged
    handles = [publisher.publish(order(n)) for n in range(4)]
    handles.append(publisher.publish(order(4), headers=[("tenant", b"acme")]))
    with capture_logs() as logs:
        first.set_fatal("OUT_OF_ORDER_SEQUENCE_NUMBER")
    assert len(producers.made) == 1
    second = producers.made[0]
    assert all(h.done() and not h.failed() for h in handles)
    assert _ids(second) == [h.event_id.encode() for h in handles]
    # byte for byte the same record: key, value and every header (ce_time included)
    assert [(r.key, r.value, r.headers) for r in second.records()] == [
        (r.key, r.value, r.headers) for r in first.records()
    ]
    replaced = [e for e in logs if e["event"] == "producer_replaced"]
    assert replaced and replaced[0]["resent"] == 5
    assert replaced[0]["code"] == "OUT_OF_ORDER_SEQUENCE_NUMBER"


def test_the_old_producers_late_failure_reports_do_not_fail_resent_events(
    publisher: Publisher, first: _Chained, producers: _Producers
) -> None:
    """set_fatal fails the old producer's held reports with _FATAL after the swap: ignored."""
    first.pause()
    handle = publisher.publish(order(1))
    first.set_fatal()
    assert handle.result(1).topic == "orders"
    publisher.flush(1)  # no failure collected


def test_publishing_goes_on_through_the_replacement(
    publisher: Publisher, first: _Chained, producers: _Producers
) -> None:
    """After a replacement, new events go to the new producer and nothing raises."""
    publisher.publish(order(1)).result(1)
    first.set_fatal()
    after = publisher.publish(order(2))
    assert after.result(1).topic == "orders"
    assert _ids(producers.made[0]) == [after.event_id.encode()]
    assert len(first.records()) == 1


def test_the_restart_budget_bounds_replacements_then_the_publisher_is_fatal(
    first: _Chained, producers: _Producers
) -> None:
    """With producer_restarts=1 a second fatal error ends the publisher, failing events."""
    pub = _publisher(first, producers, restarts=1)
    first.set_fatal()
    second = producers.made[0]
    second.pause()
    stuck = pub.publish(order(1))
    with capture_logs() as logs:
        second.set_fatal("CLUSTER_AUTHORIZATION_FAILED")
    assert len(producers.made) == 1
    # (._failure: a look that is not the application observing it, so close() reports it)
    assert stuck._failure is not None and stuck._failure.code == "CLUSTER_AUTHORIZATION_FAILED"
    assert any(e["event"] == "producer_restart_budget_spent" for e in logs)
    with pytest.raises(ProducerFatalError, match="CLUSTER_AUTHORIZATION_FAILED"):
        pub.publish(order(2))
    with pytest.raises(DeliveryError):
        pub.close(0.1)


def test_zero_restarts_keeps_the_fail_fast_behaviour(
    first: _Chained, producers: _Producers
) -> None:
    """producer_restarts=0: a fatal error fails in-flight events at once; no new producer."""
    pub = _publisher(first, producers, restarts=0)
    first.pause()
    handle = pub.publish(order(1))
    first.set_fatal()
    assert producers.made == []
    assert handle._failure is not None  # (not observed: close() must report it)
    with pytest.raises(ProducerFatalError):
        pub.publish(order(2))
    with pytest.raises(DeliveryError):
        pub.close(0.1)


def test_negative_restarts_is_a_configuration_error() -> None:
    """producer_restarts must be an int >= 0, and the error says so."""
    from eventwire import ConfigurationError

    with pytest.raises(ConfigurationError, match="producer_restarts"):
        Publisher(transport=MemoryTransport(), producer_restarts=-1)


class _FatalOnSend(_Chained):
    """A producer already fatal in librdkafka whose error callback has not run yet."""

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        on_delivery: DeliveryCallback,
    ) -> None:
        raise SendRejected("OUT_OF_ORDER_SEQUENCE_NUMBER", "fatal", fatal=True)


def test_a_send_that_finds_the_producer_fatal_goes_out_on_the_replacement(
    producers: _Producers,
) -> None:
    """publish() meeting a fatal producer replaces it and sends there: no error, no loss."""
    pub = _publisher(_FatalOnSend(), producers)
    handle = pub.publish(order(7))
    assert handle.result(1).topic == "orders"
    assert _ids(producers.made[0]) == [handle.event_id.encode()]
    pub.close(1)


def test_many_threads_publishing_across_a_replacement_lose_nothing(
    first: _Chained, producers: _Producers
) -> None:
    """Four threads publish while the producer is replaced: every event settles delivered."""
    import threading

    pub = _publisher(first, producers)
    handles: list[list[object]] = [[] for _ in range(4)]
    started = threading.Barrier(5)

    def work(t: int) -> None:
        started.wait()
        for n in range(3_000):
            handles[t].append(pub.publish(order(n, key=f"k{t}-{n}")))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    first.set_fatal()
    for thread in threads:
        thread.join()
    pub.close(1)  # raises DeliveryError if any event failed or never settled
    done: list[Callable[[], bool]] = [h.done for hs in handles for h in hs]  # type: ignore[attr-defined]
    assert len(done) == 12_000 and all(d() for d in done)
    stored = {r.header("ce_id") for t in [first, *producers.made] for r in t.records()}
    assert len(stored) == 12_000


class _FatalOnNthSend(_Chained):
    """A producer that turns fatal (callbacks first, as librdkafka) on its n-th send."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self._left = n

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        on_delivery: DeliveryCallback,
    ) -> None:
        self._left -= 1
        if self._left == 0:
            self.set_fatal("OUT_OF_ORDER_SEQUENCE_NUMBER", "fatal while being filled")
        super().send(topic, key, value, headers, on_delivery)


def test_a_replacement_that_turns_fatal_while_re_sending_is_replaced_in_turn(
    first: _Chained,
) -> None:
    """The 2nd producer dies on its 3rd re-send: a 3rd one gets the rest, in order."""
    producers = _Producers(iter([_FatalOnNthSend(3), _Chained()]))
    made = producers.made
    pub = _publisher(first, producers)
    first.pause()
    handles = [pub.publish(order(n, key="same-key")) for n in range(6)]
    first.set_fatal()
    assert len(made) == 2
    assert all(h.done() and not h.failed() for h in handles)
    ids = [h.event_id.encode() for h in handles]
    assert _ids(made[0]) == ids[:2]  # acked by the 2nd producer before it died
    assert _ids(made[1]) == ids[2:]  # the rest, in order, by the 3rd
    after = pub.publish(order(9, key="same-key"))
    assert _ids(made[1])[-1] == after.event_id.encode()
    pub.close(1)


def test_a_re_sent_event_keeps_its_trace_context_and_its_span_ends_once(
    first: _Chained, producers: _Producers
) -> None:
    """traceparent is re-sent as it was; the span ends at the new producer's ack."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    first.factory = producers
    pub = Publisher(transport=first, source="urn:test", tracer_provider=provider)
    first.pause()
    handles = [pub.publish(order(1)), pub.publish(order(2))]  # a span each
    first.set_fatal()
    assert all(h.result(1).topic == "orders" for h in handles)
    original = [r.header("traceparent") for r in first.records()]
    assert None not in original
    assert [r.header("traceparent") for r in producers.made[0].records()] == original
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    assert all(s.attributes and "messaging.kafka.offset" in s.attributes for s in spans)
    pub.close(1)


class _FatalThenPurgeElsewhere(_Chained):
    """As librdkafka: the fatal error, then purge reports served by ANOTHER thread."""

    def fatal_with_concurrent_purge(self) -> None:
        import threading

        from eventwire.transports.memory import _Error

        with self._lock:
            self._fatal = ("OUT_OF_ORDER_SEQUENCE_NUMBER", "x")
            held, self._held = self._held, []
        purge = threading.Thread(
            target=lambda: [cb(_Error("_PURGE_QUEUE", "Purged in queue"), m) for cb, _e, m in held]
        )
        fatal = threading.Thread(
            target=lambda: self._report_fatal("OUT_OF_ORDER_SEQUENCE_NUMBER", "x")
        )
        purge.start()
        fatal.start()
        purge.join()
        fatal.join()


def test_purge_reports_racing_the_replacement_do_not_fail_events(producers: _Producers) -> None:
    """_PURGE_QUEUE reports served on another thread leave events pending: all re-sent."""
    first = _FatalThenPurgeElsewhere()
    pub = _publisher(first, producers)
    first.pause()
    handles = [pub.publish(order(n)) for n in range(5_000)]
    first.fatal_with_concurrent_purge()
    assert [h for h in handles if h.failed()] == []
    assert len(producers.made[0].records()) == 5_000
    pub.close(1)


def test_purge_reports_fail_events_when_no_replacement_is_left() -> None:
    """With the budget spent, the same purge reports (or the fatal sweep) fail the events."""
    producers = _Producers(iter([_FatalThenPurgeElsewhere()]))
    original = _Chained()
    pub = _publisher(original, producers, restarts=1)
    original.set_fatal()  # the one replacement allowed: the budget is spent now
    second = producers.made[0]
    assert isinstance(second, _FatalThenPurgeElsewhere)
    second.pause()
    handles = [pub.publish(order(n)) for n in range(100)]
    second.fatal_with_concurrent_purge()
    assert all(h._failure is not None for h in handles)  # (not observed: close() reports)
    with pytest.raises(DeliveryError) as failed:
        pub.close(1)
    assert len(failed.value.failures) == 100


class _FatalInFlush(_Chained):
    """librdkafka serves the fatal error inside flush(), then has nothing left queued."""

    def flush(self, timeout: float) -> int:
        self.set_fatal("OUT_OF_ORDER_SEQUENCE_NUMBER", "from flush")
        return 0


def test_flush_across_a_replacement_flushes_the_new_producer() -> None:
    """flush() that meets the fatal error goes on with the replacement: never a false "done"."""
    producers = _Producers(paused=True)  # the re-sent events are not acknowledged yet
    first = _FatalInFlush()
    pub = _publisher(first, producers)
    first.pause()
    handles = [pub.publish(order(n)) for n in range(5)]
    with pytest.raises(DeliveryError) as failed:
        pub.flush(0.5)
    assert {f.code for f in failed.value.failures} == {"_FLUSH_TIMEOUT"}
    assert {f.event_id for f in failed.value.failures} == {h.event_id for h in handles}
    producers.made[0].resume()
    assert all(h.done() and not h.failed() for h in handles)
    pub.close(1)


def test_a_done_callback_publishing_during_the_refill_makes_no_second_producer(
    first: _Chained, producers: _Producers
) -> None:
    """A callback run while the new producer is filled publishes through that producer."""
    pub = _publisher(first, producers)
    first.pause()
    handles = [pub.publish(order(n, key="k")) for n in range(3)]
    chained: list[object] = []
    handles[0].add_done_callback(lambda h: chained.append(pub.publish(order(99, key="k"))))
    first.set_fatal()
    assert len(producers.made) == 1
    assert len(producers.made[0].records()) == 4  # the chained publish went to the new one
    assert all(h.done() and not h.failed() for h in handles)
    pub.close(1)
