"""The publisher's circuit breaker against librdkafka's mock cluster (issue 10, item 8).

A broker that goes down briefly, comes back, and goes down again later makes two
separate blips: the circuit must not add them up into one outage. An outage that
lasts makes librdkafka report errors about every second, and must still open it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from eventwire import CircuitBreaker, DeliveryError, Publisher
from eventwire._breaker import BreakerState, CircuitOpenError
from eventwire_devkit.librdkafka import (
    LibrdkafkaTestApiUnavailable,
    MockCluster,
    librdkafka_version,
)
from eventwire_devkit.pytest_plugin import unavailable

from .conftest import order

try:
    librdkafka_version()
except LibrdkafkaTestApiUnavailable as exc:
    unavailable(f"librdkafka's test API is unavailable: {exc}")

# Short backoffs: librdkafka reconnects at once when the broker is back. An idle
# librdkafka may stop reconnecting to a broker that is down, and then reports
# nothing: a metadata refresh every 200 ms keeps it trying, as traffic would,
# without delivering anything (so the breaker hears no success).
FAST = {
    "topic.metadata.refresh.interval.ms": 200,
    "message.timeout.ms": 10_000,
    "retry.backoff.ms": 20,
    "retry.backoff.max.ms": 100,
    "reconnect.backoff.ms": 20,
    "reconnect.backoff.max.ms": 200,
}
OPEN_AFTER_S = 4.0
# Errors come about every second in an outage here; 3 s leaves room for a loaded
# machine, and the broker stays up for 5 s between the blips.
QUIET_AFTER_S = 3.0


class HearingBreaker(CircuitBreaker):
    """A CircuitBreaker that also notes when it heard each failure."""

    def __init__(self) -> None:
        super().__init__(open_after_s=OPEN_AFTER_S, reset_timeout_s=60.0)
        # An attribute, not the argument, so the test also runs (and fails) on code
        # from before quiet_after_s.
        self.quiet_after_s = QUIET_AFTER_S
        self.heard: list[float] = []

    def record_failure(self, code: str, reason: str = "") -> None:
        self.heard.append(time.monotonic())
        super().record_failure(code, reason)


@pytest.fixture
def mock() -> Iterator[MockCluster]:
    with MockCluster() as cluster:
        cluster.create_topic("orders", partitions=1)
        yield cluster


@pytest.fixture
def breaker() -> HearingBreaker:
    return HearingBreaker()


def connect(mock: MockCluster, breaker: HearingBreaker, **overrides: int) -> Publisher:
    pub = Publisher(
        mock.bootstrap_servers,
        source="urn:test",
        overrides={**FAST, **overrides},
        connect_timeout=5,
        circuit_breaker=breaker,
    )
    pub.publish(order(1)).result(5)  # connected and delivered once
    return pub


@pytest.fixture
def publisher(mock: MockCluster, breaker: HearingBreaker) -> Iterator[Publisher]:
    pub = connect(mock, breaker)
    yield pub
    pub.close(5)  # before the mock cluster goes (fixture order)


def heard_between(breaker: HearingBreaker, start: float, end: float) -> int:
    return sum(start <= t <= end for t in breaker.heard)


class TestBlips:
    def test_a_second_blip_after_the_broker_came_back_does_not_open_it(
        self, mock: MockCluster, publisher: Publisher, breaker: HearingBreaker
    ) -> None:
        """Down 1 s, up 5 s (nothing delivered meanwhile), down again 1.5 s: each blip is
        shorter than open_after_s, so the circuit stays closed and publish() is allowed."""
        first = time.monotonic()
        mock.broker_down(1)
        time.sleep(1.0)
        mock.broker_up(1)
        time.sleep(5.0)
        second = time.monotonic()
        mock.broker_down(1)
        time.sleep(1.5)
        end = time.monotonic()
        state = breaker.state
        mock.broker_up(1)
        # Both blips were heard, the second one OPEN_AFTER_S or more after the first.
        heard = [round(t - first, 2) for t in breaker.heard if t >= first]
        assert heard_between(breaker, first, first + 1.5) > 0, heard
        assert heard_between(breaker, second, end) > 0, heard
        assert end - first > OPEN_AFTER_S
        assert state is BreakerState.CLOSED, f"failures heard at {heard}"
        assert breaker.allow()

    def test_an_outage_that_lasts_still_opens_it(
        self, mock: MockCluster, breaker: HearingBreaker
    ) -> None:
        """With the broker down for good and the application publishing, the errors keep
        coming and the circuit opens about open_after_s into the outage.

        librdkafka may hold back its repeated connection errors for 30 s; the events'
        own timeouts (message.timeout.ms=1 s here) keep failures coming meanwhile.
        """
        publisher = connect(mock, breaker, **{"message.timeout.ms": 1000})
        start = time.monotonic()
        mock.broker_down(1)
        try:
            deadline = start + OPEN_AFTER_S + 5
            n = 1
            while time.monotonic() < deadline:
                n += 1
                try:
                    publisher.publish(order(n))  # delivered once the broker is back
                except CircuitOpenError:
                    break
                time.sleep(0.25)
            opened_after = time.monotonic() - start
            state = breaker.state
        finally:
            mock.broker_up(1)
            with contextlib.suppress(DeliveryError):  # the events that timed out
                publisher.close(5)
        heard = [round(t - start, 2) for t in breaker.heard if t >= start]
        assert state is BreakerState.OPEN, f"failures heard at {heard}"
        assert OPEN_AFTER_S <= opened_after < OPEN_AFTER_S + 3
