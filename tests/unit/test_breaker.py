"""The circuit breaker state machine."""

from __future__ import annotations

import pytest

from eventwire._breaker import BreakerState, CircuitBreaker, CircuitOpenError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, probe: object = None, **kw: float) -> CircuitBreaker:
    return CircuitBreaker(open_after_s=10, reset_timeout_s=5, clock=clock, probe=probe, **kw)  # type: ignore[arg-type]


def fail_until(b: CircuitBreaker, clock: Clock, end: float, code: str = "_TRANSPORT") -> None:
    """Report a connectivity failure every second from ``clock.now`` up to ``end``."""
    while True:
        b.record_failure(code)
        if clock.now >= end:
            return
        clock.now = min(clock.now + 1, end)


class TestCircuitBreaker:
    def test_opens_only_on_sustained_connectivity_failures(self) -> None:
        """Failures for less than open_after_s keep it closed; past that it opens."""
        clock = Clock()
        b = breaker(clock)
        b.record_failure("_ALL_BROKERS_DOWN")
        fail_until(b, clock, 9)
        assert b.state is BreakerState.CLOSED
        clock.now = 10
        b.record_failure("_TRANSPORT")
        assert b.state is BreakerState.OPEN
        assert not b.allow()

    def test_a_success_resets_the_failure_window(self) -> None:
        """A delivered event in between restarts the clock: intermittent errors never open it."""
        clock = Clock()
        b = breaker(clock)
        fail_until(b, clock, 8)
        b.record_success()
        fail_until(b, clock, 12)
        assert b.state is BreakerState.CLOSED

    def test_two_blips_11_s_apart_do_not_open_it(self) -> None:
        """Two one-second error bursts 11 s apart, nothing delivered in between, keep it
        closed: the pause between them ended the first failure window (issue 10, item 8)."""
        clock = Clock()
        b = breaker(clock)
        fail_until(b, clock, 1)
        clock.now = 11
        fail_until(b, clock, 12)
        assert b.state is BreakerState.CLOSED
        assert b.allow()

    def test_two_blips_an_hour_apart_do_not_open_it(self) -> None:
        """A single error, then another an hour later, keep it closed (issue 10, item 8)."""
        clock = Clock()
        b = breaker(clock)
        b.record_failure("_ALL_BROKERS_DOWN")
        clock.now = 3600
        b.record_failure("_ALL_BROKERS_DOWN")
        assert b.state is BreakerState.CLOSED

    def test_many_isolated_blips_never_open_it(self) -> None:
        """Blips every 6 s (just over the default 5 s pause) for a minute keep it closed."""
        clock = Clock()
        b = breaker(clock)
        for start in range(0, 60, 6):
            clock.now = start
            b.record_failure("_TRANSPORT")
        assert b.state is BreakerState.CLOSED

    def test_continuous_errors_for_open_after_s_open_it_after_a_blip(self) -> None:
        """After a past blip, errors that then keep coming open it open_after_s after they
        began, not earlier and not later."""
        clock = Clock()
        b = breaker(clock)
        b.record_failure("_TRANSPORT")  # the old blip
        clock.now = 100
        fail_until(b, clock, 109)
        assert b.state is BreakerState.CLOSED
        clock.now = 110
        b.record_failure("_TRANSPORT")
        assert b.state is BreakerState.OPEN

    def test_repeats_librdkafka_held_back_keep_the_window_going(self) -> None:
        """librdkafka reports a broker's identical error again only after 30 s, saying how
        many it held back: such a report (N >= 2) shows the outage never paused."""
        refused = "127.0.0.1:9092/1: Connect to ipv4#127.0.0.1:9092 failed: Connection refused"
        clock = Clock()
        b = breaker(clock)
        b.record_failure("_TRANSPORT", f"{refused} (after 0ms in state CONNECT)")
        clock.now = 30
        b.record_failure(
            "_TRANSPORT",
            f"{refused} (after 0ms in state CONNECT, 12 identical error(s) suppressed)",
        )
        assert b.state is BreakerState.OPEN

    def test_a_repeat_with_nothing_held_back_is_a_new_blip(self) -> None:
        """ "1 identical error(s) suppressed" means none was held back: after a pause it is a
        new blip, and the circuit stays closed."""
        clock = Clock()
        b = breaker(clock)
        b.record_failure("_TRANSPORT", "Connection refused (after 0ms in state CONNECT)")
        clock.now = 30
        b.record_failure(
            "_TRANSPORT",
            "Connection refused (after 0ms in state CONNECT, 1 identical error(s) suppressed)",
        )
        assert b.state is BreakerState.CLOSED

    def test_quiet_after_s_defaults_to_half_of_open_after_s_and_can_be_set(self) -> None:
        """A pause up to quiet_after_s keeps the window going; a longer one restarts it."""
        assert CircuitBreaker(open_after_s=10).quiet_after_s == 5
        clock = Clock()
        b = breaker(clock, quiet_after_s=8)
        b.record_failure("_TRANSPORT")
        clock.now = 8  # a pause of exactly quiet_after_s: still the same outage
        b.record_failure("_TRANSPORT")
        clock.now = 10
        b.record_failure("_TRANSPORT")
        assert b.state is BreakerState.OPEN

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
        fail_until(b, clock, 10, "_ALL_BROKERS_DOWN")
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
        fail_until(b, clock, 10)
        clock.now = 15
        assert not b.allow()
        assert states == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.OPEN]
        clock.now = 19
        assert b.state is BreakerState.OPEN

    def test_without_a_probe_half_open_lets_one_event_through_and_its_failure_reopens_it(
        self,
    ) -> None:
        """A breaker without a probe stayed HALF_OPEN for the rest of an outage and let
        every event through. Now one event is the probe; the rest are refused until it is
        reported; a connectivity failure reopens the circuit, a delivery closes it."""
        clock = Clock()
        b = breaker(clock)
        fail_until(b, clock, 10)
        clock.now = 15
        assert b.state is BreakerState.HALF_OPEN
        assert b.allow()  # the trial
        assert not b.allow()  # the others wait for its outcome
        b.record_failure("_MSG_TIMED_OUT")
        assert b.state is BreakerState.OPEN
        clock.now = 19
        assert not b.allow()
        clock.now = 20
        assert b.allow()  # the next trial, reset_timeout_s later
        b.record_success()
        assert b.state is BreakerState.CLOSED
        assert b.allow() and b.allow()

    def test_without_a_probe_a_trial_that_says_nothing_is_replaced_after_the_reset_timeout(
        self,
    ) -> None:
        """A trial event that fails for another reason (too large) does not block for good."""
        clock = Clock()
        b = breaker(clock)
        fail_until(b, clock, 10)
        clock.now = 15
        assert b.allow()
        b.record_failure("MSG_SIZE_TOO_LARGE")
        clock.now = 19.9
        assert not b.allow()
        clock.now = 20
        assert b.allow()

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"quiet_after_s": 0},
            {"quiet_after_s": -1},
            {"open_after_s": -1},
            {"reset_timeout_s": float("nan")},
            {"open_after_s": float("inf")},
        ],
    )
    def test_settings_that_would_never_open_or_never_wait_are_refused(
        self, kwargs: dict[str, float]
    ) -> None:
        """quiet_after_s=0 made every failure a new window: the circuit never opened."""
        from eventwire import ConfigurationError

        name = next(iter(kwargs))
        with pytest.raises(ConfigurationError, match=rf"CircuitBreaker\({name}=\) must be"):
            CircuitBreaker(**kwargs)

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


class TestTransitionLogs:
    """observability review 2, F03: a long outage's probe cycle writes a handful of lines."""

    def test_the_probe_cycle_is_collapsed_the_opening_and_closing_are_not(self) -> None:
        from eventwire.observability.logging import capture_logs

        clock = Clock()
        answers = {"ok": False}
        seen: list[BreakerState] = []
        b = breaker(clock, probe=lambda: answers["ok"], on_change=seen.append)  # type: ignore[arg-type]
        with capture_logs("eventwire.breaker") as logs:
            for _outage in range(2):
                fail_until(b, clock, clock.now + 10)
                assert b.state is BreakerState.OPEN
                for _probe in range(20):  # 20 failed probes, 5 s apart
                    clock.now += 5
                    assert b.allow() is False
                answers["ok"] = True
                clock.now += 5
                assert b.allow() is True
                answers["ok"] = False
        assert len(seen) == 2 * (1 + 2 * 20 + 2)  # observers see every transition
        events = [log["event"] for log in logs]
        one_outage = ["circuit_open", "circuit_half_open", "circuit_open", "circuit_closed"]
        assert events == one_outage * 2
        assert all(log["breaker"] is None or log["breaker"] == b.name for log in logs)


class TestProbeOfAClosedProducer:
    """observability review 2, F04: a probe cut short by close() is a failed probe."""

    def test_a_probe_of_a_producer_closed_under_it_fails_and_raises_nothing(self) -> None:
        from eventwire._breaker import connection_probe
        from eventwire._config import KafkaConfig
        from eventwire._errors import BrokerUnavailableError
        from eventwire.transports.kafka import KafkaTransport

        transport = KafkaTransport(KafkaConfig("127.0.0.1:1"), connect_timeout=None)
        transport.close(0)  # (a relay's stop() closes it while a probe may run)
        with pytest.raises(BrokerUnavailableError, match="closed during the connection check"):
            transport.check_connection(0.2)
        assert connection_probe(lambda: transport, timeout=0.2)() is False


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
