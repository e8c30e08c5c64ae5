"""The circuit breaker state machine."""

from __future__ import annotations

from eventwire._breaker import BreakerState, CircuitBreaker, CircuitOpenError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, probe: object = None, **kw: float) -> CircuitBreaker:
    return CircuitBreaker(open_after_s=10, reset_timeout_s=5, clock=clock, probe=probe, **kw)  # type: ignore[arg-type]


class TestCircuitBreaker:
    def test_opens_only_on_sustained_connectivity_failures(self) -> None:
        """Failures for less than open_after_s keep it closed; past that it opens."""
        clock = Clock()
        b = breaker(clock)
        b.record_failure("_ALL_BROKERS_DOWN")
        clock.now = 9
        b.record_failure("_TRANSPORT")
        assert b.state is BreakerState.CLOSED
        clock.now = 10
        b.record_failure("_TRANSPORT")
        assert b.state is BreakerState.OPEN
        assert not b.allow()

    def test_a_success_resets_the_failure_window(self) -> None:
        """A delivered event in between restarts the clock: intermittent errors never open it."""
        clock = Clock()
        b = breaker(clock)
        b.record_failure("_TRANSPORT")
        clock.now = 8
        b.record_success()
        clock.now = 12
        b.record_failure("_TRANSPORT")
        assert b.state is BreakerState.CLOSED

    def test_permanent_errors_never_open_it(self) -> None:
        """A too-large event says nothing about Kafka's health."""
        clock = Clock()
        b = breaker(clock)
        for t in range(30):
            clock.now = t
            b.record_failure("MSG_SIZE_TOO_LARGE")
        assert b.state is BreakerState.CLOSED

    def test_half_open_probe_closes_it(self) -> None:
        """After reset_timeout_s a successful probe closes the circuit and allows sends."""
        clock = Clock()
        calls: list[float] = []
        b = breaker(clock, probe=lambda: calls.append(clock.now) or True)
        b.record_failure("_ALL_BROKERS_DOWN")
        clock.now = 10
        b.record_failure("_ALL_BROKERS_DOWN")
        clock.now = 14
        assert not b.allow()
        assert calls == []
        clock.now = 15
        assert b.state is BreakerState.HALF_OPEN
        assert b.allow()
        assert calls == [15]
        assert b.state is BreakerState.CLOSED

    def test_failed_probe_reopens_it(self) -> None:
        """A failed probe sends it back to OPEN for another reset_timeout_s."""
        clock = Clock()
        states: list[BreakerState] = []
        b = breaker(clock, probe=lambda: False, on_change=states.append)
        b.record_failure("_TRANSPORT")
        clock.now = 10
        b.record_failure("_TRANSPORT")
        clock.now = 15
        assert not b.allow()
        assert states == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.OPEN]
        clock.now = 19
        assert b.state is BreakerState.OPEN

    def test_open_error_says_what_to_do(self) -> None:
        """The fail-fast error names the event, the last error and the remedies."""
        clock = Clock()
        b = breaker(clock)
        b.record_failure("_ALL_BROKERS_DOWN", "3/3 brokers are down")
        err = b.open_error("event e-1 (Placed) to 'orders'")
        assert isinstance(err, CircuitOpenError)
        assert "e-1" in str(err)
        assert "3/3 brokers are down" in str(err)
        assert "outbox" in str(err)


class TestPublisherWithBreaker:
    def test_open_circuit_fails_fast_then_closes_after_a_probe(self) -> None:
        """Sustained timeouts open the circuit: publish() raises CircuitOpenError without
        enqueueing; after the reset timeout a good probe lets publishing resume."""
        import time

        import pytest

        from eventwire import DeliveryError, Publisher
        from eventwire.transports.memory import MemoryTransport

        from .conftest import order

        transport = MemoryTransport()
        up = [False]
        breaker = CircuitBreaker(open_after_s=0, reset_timeout_s=0.05, probe=lambda: up[0])
        pub = Publisher(transport=transport, circuit_breaker=breaker)
        transport.fail_next(1, "_MSG_TIMED_OUT")
        pub.publish(order(1))
        assert breaker.state is BreakerState.OPEN
        with pytest.raises(CircuitOpenError, match="NOT enqueued"):
            pub.publish(order(3))
        time.sleep(0.06)
        with pytest.raises(CircuitOpenError):  # the probe still fails
            pub.publish(order(4))
        up[0] = True
        time.sleep(0.06)
        pub.publish(order(5)).result(1)
        assert breaker.state is BreakerState.CLOSED
        assert [r.header("ce_id") is not None for r in transport.records()] == [True]
        with pytest.raises(DeliveryError):
            pub.close(1)  # the timed-out event is still reported
