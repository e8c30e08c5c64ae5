"""Metrics of the reliability features: circuit breakers, the outbox relay, outbox health.

Every test passes its own SDK MeterProvider explicitly; no global is ever set.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.metrics import NoOpMeterProvider

from eventwire import CircuitBreaker, CircuitOpenError, DeliveryError, Publisher
from eventwire.observability.logging import capture_logs
from eventwire.observability.metrics import PROMETHEUS_NAMES
from eventwire.observability.prometheus import serve_prometheus
from eventwire.outbox import OutboxRelay, OutboxStatus, SQLiteOutbox
from eventwire.transports.memory import MemoryTransport

from .conftest import order
from .test_breaker import Clock
from .test_metrics import Meter
from .test_outbox_relay import entry

STATE = "eventwire.circuit.state"
TRANSITIONS = "eventwire.circuit.transitions"
RELAYED = "eventwire.outbox.relayed"
PENDING = "eventwire.outbox.pending_events"
OLDEST = "eventwire.outbox.oldest_pending_age"
PUBLISHED = "eventwire.events.published"
RELAY_ERRORS = "eventwire.outbox.relay_errors"


@pytest.fixture
def meter() -> Iterator[Meter]:
    m = Meter()
    yield m
    m.provider.shutdown()


@pytest.fixture
def store(tmp_path: Path) -> SQLiteOutbox:
    return SQLiteOutbox(tmp_path / "outbox.db")


def relay(store: object, transport: MemoryTransport, meter: Meter, **kwargs: object) -> OutboxRelay:
    return OutboxRelay(
        store,  # type: ignore[arg-type]
        lambda: transport,
        meter_provider=meter.provider,
        base_backoff_s=0.001,
        max_backoff_s=0.002,
        **kwargs,  # type: ignore[arg-type]
    )


class CountingStore:
    """A SQLiteOutbox whose status() calls are counted, and can be made to fail."""

    def __init__(self, inner: SQLiteOutbox) -> None:
        self.inner = inner
        self.status_calls = 0
        self.broken = False

    def status(self) -> OutboxStatus:
        self.status_calls += 1
        if self.broken:
            raise OSError("disk on fire")
        return self.inner.status()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class TestPublisherBreaker:
    def test_transitions_show_in_the_state_gauge_and_the_counter(self, meter: Meter) -> None:
        """Open, half-open (probe fails), open, half-open (probe ok), closed: the gauge
        follows (2, 1, 0) and each state entered is counted."""
        clock, kafka_up = Clock(), [False]
        breaker = CircuitBreaker(
            open_after_s=0, reset_timeout_s=5, clock=clock, probe=lambda: kafka_up[0]
        )
        transport = MemoryTransport()
        pub = Publisher(transport=transport, meter_provider=meter.provider, circuit_breaker=breaker)
        assert meter.value(STATE, breaker="publisher") == 0
        assert meter.points(TRANSITIONS) == {}
        transport.fail_next(1, "_MSG_TIMED_OUT")
        pub.publish(order(1))
        assert meter.value(STATE, breaker="publisher") == 2
        with pytest.raises(CircuitOpenError):
            pub.publish(order(2))
        clock.now = 5
        with pytest.raises(CircuitOpenError):
            pub.publish(order(3))  # the half-open probe fails: open again
        assert meter.value(STATE, breaker="publisher") == 2
        kafka_up[0] = True
        clock.now = 10
        pub.publish(order(4)).result(timeout=5)
        assert meter.value(STATE, breaker="publisher") == 0
        assert meter.value(TRANSITIONS, breaker="publisher", state="open") == 2
        assert meter.value(TRANSITIONS, breaker="publisher", state="half_open") == 2
        assert meter.value(TRANSITIONS, breaker="publisher", state="closed") == 1
        with pytest.raises(DeliveryError):
            pub.close(1)

    def test_half_open_is_reported_between_timeout_and_probe(self, meter: Meter) -> None:
        """Once reset_timeout_s has passed and the breaker is asked, the gauge reads 1."""
        clock = Clock()
        breaker = CircuitBreaker(open_after_s=0, reset_timeout_s=5, clock=clock)
        with Publisher(
            transport=MemoryTransport(), meter_provider=meter.provider, circuit_breaker=breaker
        ):
            breaker.record_failure("_ALL_BROKERS_DOWN")
            clock.now = 5
            breaker.allow()  # no probe: the next event is the probe, the state stays half-open
            assert meter.value(STATE, breaker="publisher") == 1

    def test_a_closed_publisher_stops_reporting_its_state_but_keeps_its_counts(
        self, meter: Meter
    ) -> None:
        """After close() the gauge has no series; the transitions stay in the counter."""
        breaker = CircuitBreaker(open_after_s=0)
        with Publisher(
            transport=MemoryTransport(), meter_provider=meter.provider, circuit_breaker=breaker
        ):
            breaker.record_failure("_TRANSPORT")
            assert meter.value(STATE, breaker="publisher") == 2
        assert meter.points(STATE) == {}
        assert meter.value(TRANSITIONS, breaker="publisher", state="open") == 1

    def test_a_named_breaker_keeps_its_name_in_metrics_and_logs(self, meter: Meter) -> None:
        """CircuitBreaker(name=...) labels the series and the circuit_* log lines."""
        breaker = CircuitBreaker(open_after_s=0, name="payments")
        with (
            Publisher(
                transport=MemoryTransport(), meter_provider=meter.provider, circuit_breaker=breaker
            ),
            capture_logs() as logs,
        ):
            breaker.record_failure("_TRANSPORT", "broker gone")
            assert meter.value(STATE, breaker="payments") == 2
        [line] = [log for log in logs if log["event"] == "circuit_open"]
        assert line["breaker"] == "payments"
        assert line["last_error"] == "_TRANSPORT: broker gone"

    def test_without_a_breaker_there_is_no_circuit_series(self, meter: Meter) -> None:
        """circuit_breaker=False (the default) reports no circuit state."""
        with Publisher(transport=MemoryTransport(), meter_provider=meter.provider) as pub:
            pub.publish(order(1))
            assert meter.points(STATE) == {}


class TestRelayBreaker:
    def test_relay_breaker_transitions_are_labelled_relay(
        self, meter: Meter, store: SQLiteOutbox
    ) -> None:
        """An unnamed breaker given to a relay is reported, and logged, as breaker=relay."""
        store.add([entry(n) for n in range(3)])
        transport = MemoryTransport()
        transport.fail_next(3, "_MSG_TIMED_OUT")
        breaker = CircuitBreaker(open_after_s=0, reset_timeout_s=0.01)
        worker = relay(store, transport, meter, breaker=breaker)
        assert meter.value(STATE, breaker="relay") == 0
        with capture_logs() as logs:
            worker.run_once()
        assert meter.value(STATE, breaker="relay") == 2
        assert {log.get("breaker") for log in logs if log["event"] == "circuit_open"} == {"relay"}
        time.sleep(0.02)
        assert worker.drain(timeout=5)
        assert meter.value(STATE, breaker="relay") == 0
        assert meter.value(TRANSITIONS, breaker="relay", state="open") == 1
        assert meter.value(TRANSITIONS, breaker="relay", state="closed") == 1

    def test_in_process_relay_reports_to_the_publishers_provider(
        self, meter: Meter, store: SQLiteOutbox
    ) -> None:
        """Publisher(outbox=..., meter_provider=p) gives p to its relay, breaker and all."""
        transport = MemoryTransport()
        with Publisher(transport=transport, outbox=store, meter_provider=meter.provider) as pub:
            pub.publish(order(1)).result(timeout=5)
            assert meter.value(STATE, breaker="relay") == 0
            assert meter.value(RELAYED, topic="orders", outcome="delivered") == 1
            assert meter.value(PENDING) == 0


class TestRelayOutcomes:
    def test_delivered_entries_are_counted_per_topic(
        self, meter: Meter, store: SQLiteOutbox
    ) -> None:
        """Each acknowledged entry adds 1 to relayed{topic, delivered}."""
        store.add([entry(n) for n in range(3)])
        assert relay(store, MemoryTransport(), meter).drain(timeout=5)
        assert meter.value(RELAYED, topic="orders", outcome="delivered") == 3
        assert meter.points(PUBLISHED) == {}  # the relay has its own counter

    def test_retries_are_counted_where_they_are_scheduled(
        self, meter: Meter, store: SQLiteOutbox
    ) -> None:
        """A retriable failure counts as retried; the later success as delivered."""
        store.add([entry(1)])
        transport = MemoryTransport()
        transport.fail_next(2, "_MSG_TIMED_OUT")
        assert relay(store, transport, meter).drain(timeout=5)
        assert meter.value(RELAYED, topic="orders", outcome="retried") == 2
        assert meter.value(RELAYED, topic="orders", outcome="delivered") == 1

    def test_dead_letters_are_counted_under_the_original_topic(
        self, meter: Meter, store: SQLiteOutbox
    ) -> None:
        """A permanent failure sent to orders.dlq counts as dead_lettered for orders."""
        store.add([entry(1, key="a"), entry(2, key="b")])
        transport = MemoryTransport()
        transport.fail_next(1, "TOPIC_AUTHORIZATION_FAILED")
        assert relay(store, transport, meter).drain(timeout=5)
        assert meter.value(RELAYED, topic="orders", outcome="dead_lettered") == 1
        assert meter.value(RELAYED, topic="orders", outcome="delivered") == 1
        assert {dict(k)["topic"] for k in meter.points(RELAYED)} == {"orders"}

    def test_parked_entries_are_counted(self, meter: Meter, store: SQLiteOutbox) -> None:
        """Without a dead-letter topic a permanent failure counts as parked."""
        store.add([entry(1)])
        transport = MemoryTransport()
        transport.fail_next(1, "INVALID_RECORD")
        assert relay(store, transport, meter, dead_letter=None).drain(timeout=5)
        assert meter.value(RELAYED, topic="orders", outcome="parked") == 1
        assert meter.value(RELAYED, topic="orders", outcome="dead_lettered") is None

    def test_publisher_and_relay_count_an_outbox_event_once_each(
        self, meter: Meter, store: SQLiteOutbox
    ) -> None:
        """In outbox mode the publisher's counter counts settled handles and the relay's
        counter counts relayed entries: neither counter sees an event twice."""
        transport = MemoryTransport()
        with Publisher(transport=transport, outbox=store, meter_provider=meter.provider) as pub:
            for n in range(2):
                pub.publish(order(n)).result(timeout=5)
        assert meter.value(PUBLISHED, topic="orders", outcome="delivered") == 2
        assert meter.value(RELAYED, topic="orders", outcome="delivered") == 2


class TestRelayErrors:
    def test_errors_of_the_relay_loop_are_counted_by_step(
        self, meter: Meter, store: SQLiteOutbox
    ) -> None:
        """Two failed claims count as eventwire.outbox.relay_errors{step="round"} = 2; the
        relay then ships the entry."""
        import math

        from .test_outbox_relay_resilience import FlakyStore, wait_until

        flaky = FlakyStore(store)
        flaky.fail("claim_batch", 2)
        store.add([entry(1)])
        transport = MemoryTransport()
        worker = relay(flaky, transport, meter, idle_interval_s=0.01)
        worker._last_cleanup = -math.inf
        worker.start()
        try:
            assert wait_until(lambda: len(transport.records("orders")) == 1)
        finally:
            worker.stop(5)
        assert meter.value(RELAY_ERRORS, step="round") == 2
        assert meter.value(RELAY_ERRORS, step="cleanup") is None


class TestOutboxGauges:
    def test_depth_and_oldest_age_track_the_store(self, meter: Meter, store: SQLiteOutbox) -> None:
        """3 pending entries read as 3 with an age; after the drain, 0 and no age."""
        worker = relay(store, MemoryTransport(), meter)
        assert meter.value(PENDING) == 0
        assert meter.points(OLDEST) == {}
        store.add([entry(n) for n in range(3)])
        time.sleep(0.02)
        assert meter.value(PENDING) == 3
        assert 0.02 <= meter.value(OLDEST) < 60
        assert worker.drain(timeout=5)
        assert meter.value(PENDING) == 0
        assert meter.points(OLDEST) == {}

    def test_both_gauges_cost_one_status_read_per_collection(
        self, meter: Meter, store: SQLiteOutbox
    ) -> None:
        """Depth and age of one collection come from a single store.status() call."""
        counting = CountingStore(store)
        worker = relay(counting, MemoryTransport(), meter)
        store.add([entry(1)])
        data = meter.reader.get_metrics_data()
        names = {
            m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        }  # type: ignore[union-attr]
        assert {PENDING, OLDEST} <= names
        assert counting.status_calls == 1
        meter.reader.get_metrics_data()
        assert counting.status_calls == 2
        worker.stop(1)

    def test_a_failing_store_is_logged_and_reports_nothing(
        self, meter: Meter, store: SQLiteOutbox
    ) -> None:
        """A store error never escapes the gauge callback: it is logged, the gauges are
        empty for that collection, and the other instruments are still collected."""
        counting = CountingStore(store)
        worker = relay(counting, MemoryTransport(), meter)
        store.add([entry(1)])
        counting.broken = True
        with capture_logs() as logs:
            assert meter.points(PENDING) == {}
        [line] = [log for log in logs if log["event"] == "outbox_status_failed"]
        assert "disk on fire" in line["error"]
        counting.broken = False
        assert meter.value(PENDING) == 1
        worker.stop(1)

    def test_relays_sharing_a_store_do_not_double_its_depth(
        self, meter: Meter, store: SQLiteOutbox
    ) -> None:
        """Two relays on one store report its pending count once."""
        workers = [relay(store, MemoryTransport(), meter) for _ in range(2)]
        store.add([entry(n) for n in range(2)])
        assert meter.value(PENDING) == 2
        assert len(workers) == 2

    def test_a_stopped_relay_stops_reading_the_store(
        self, meter: Meter, store: SQLiteOutbox
    ) -> None:
        """After stop() (when the store may be closed) the outbox gauges have no series."""
        worker = relay(store, MemoryTransport(), meter).start()
        store.add([entry(1)])
        worker.stop(5)
        store.close()
        with capture_logs() as logs:
            assert meter.points(PENDING) == {}
        assert logs == []

    def test_no_metrics_work_without_a_real_provider(self, store: SQLiteOutbox) -> None:
        """A no-op provider, the API's default global, or a publisher without metrics:
        the relay has no metrics hook."""
        assert (
            OutboxRelay(store, MemoryTransport, meter_provider=NoOpMeterProvider()).metrics is None
        )
        assert OutboxRelay(store, MemoryTransport).metrics is None
        with Publisher(transport=MemoryTransport(), outbox=store) as pub:
            assert pub._outbox is not None and pub._outbox.relay is not None
            assert pub._outbox.relay.metrics is None


class TestPrometheus:
    def test_reliability_series_have_the_contract_names(self, store: SQLiteOutbox) -> None:
        """GET /metrics shows the circuit and outbox series under their documented names."""
        store.add([entry(1)])
        transport = MemoryTransport()
        transport.fail_next(1, "_MSG_TIMED_OUT")
        with serve_prometheus(0) as server:
            worker = OutboxRelay(
                store,
                lambda: transport,
                meter_provider=server.meter_provider,
                breaker=CircuitBreaker(open_after_s=0, reset_timeout_s=0),
                base_backoff_s=0.001,
                max_backoff_s=0.002,
            )
            worker.run_once()
            store.add([entry(2)])
            text = urllib.request.urlopen(server.url, timeout=5).read().decode()
        assert re.search(r'^eventwire_circuit_state\{breaker="relay"\} 2\.0$', text, re.M)
        assert 'eventwire_circuit_transitions_total{breaker="relay",state="open"} 1.0' in text
        assert 'eventwire_outbox_relayed_total{outcome="retried",topic="orders"} 1.0' in text
        assert re.search(r"^eventwire_outbox_pending_events 2\.0$", text, re.M)
        assert re.search(r"^eventwire_outbox_oldest_pending_age_seconds \d", text, re.M)
        series = set(re.findall(r"^([a-z_]+)[{ ]", text, re.M))
        assert series == {
            PROMETHEUS_NAMES[name] for name in (STATE, TRANSITIONS, RELAYED, PENDING, OLDEST)
        }


class TestBreakerObservers:
    def test_observers_hear_every_transition_after_on_change(self) -> None:
        """observe() callbacks get each new state, in order, after the on_change callback."""
        clock, heard = Clock(), []
        breaker = CircuitBreaker(
            open_after_s=0,
            reset_timeout_s=5,
            clock=clock,
            probe=lambda: True,
            on_change=lambda s: heard.append(("on_change", s.value)),
        )
        breaker.observe(lambda s: heard.append(("observer", s.value)))
        breaker.record_failure("_TRANSPORT")
        clock.now = 5
        assert breaker.allow()
        assert heard == [
            (who, state)
            for state in ("open", "half_open", "closed")
            for who in ("on_change", "observer")
        ]
