"""The publisher's circuit breaker against librdkafka's mock cluster (issue 10, item 8).

A broker that goes down briefly, comes back, and goes down again later makes two
separate blips: the circuit must not add them up into one outage. An outage that
lasts makes librdkafka report errors about every second, and must still open it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from eventwire import CircuitBreaker, Publisher
from eventwire._breaker import BreakerState
from eventwire.testing.librdkafka import (
    LibrdkafkaTestApiUnavailable,
    MockCluster,
    librdkafka_version,
)
from eventwire.testing.pytest_plugin import in_ci

from .conftest import order

_UNAVAILABLE = ""
try:
    librdkafka_version()
except LibrdkafkaTestApiUnavailable as exc:
    _UNAVAILABLE = f"librdkafka's test API is unavailable: {exc}"
if _UNAVAILABLE:
    if in_ci():
        pytest.fail(f"{_UNAVAILABLE}\n(CI is set: failing instead of skipping)", pytrace=False)
    pytest.skip(_UNAVAILABLE, allow_module_level=True)

# Short backoffs: librdkafka reconnects at once when the broker is back.
FAST = {
    "message.timeout.ms": 10_000,
    "retry.backoff.ms": 20,
    "retry.backoff.max.ms": 100,
    "reconnect.backoff.ms": 20,
    "reconnect.backoff.max.ms": 200,
}
OPEN_AFTER_S = 4.0  # quiet_after_s is left at its default (half of it, 2 s)


class HearingBreaker(CircuitBreaker):
    """A CircuitBreaker that also notes when it heard each failure."""

    def __init__(self) -> None:
        super().__init__(open_after_s=OPEN_AFTER_S, reset_timeout_s=60.0)
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


@pytest.fixture
def publisher(mock: MockCluster, breaker: HearingBreaker) -> Iterator[Publisher]:
    pub = Publisher(
        mock.bootstrap_servers,
        source="urn:test",
        overrides=FAST,
        connect_timeout=5,
        circuit_breaker=breaker,
    )
    pub.publish(order(1)).result(5)  # connected and delivered once
    yield pub
    pub.close(5)  # before the mock cluster goes (fixture order)


def heard_between(breaker: HearingBreaker, start: float, end: float) -> int:
    return sum(start <= t <= end for t in breaker.heard)


class TestBlips:
    def test_a_second_blip_after_the_broker_came_back_does_not_open_it(
        self, mock: MockCluster, publisher: Publisher, breaker: HearingBreaker
    ) -> None:
        """Down 1 s, up 4 s (nothing delivered meanwhile), down again 1.5 s: each blip is
        shorter than open_after_s, so the circuit stays closed and publish() is allowed."""
        first = time.monotonic()
        mock.broker_down(1)
        time.sleep(1.0)
        mock.broker_up(1)
        time.sleep(4.0)
        second = time.monotonic()
        mock.broker_down(1)
        time.sleep(1.5)
        end = time.monotonic()
        state = breaker.state
        mock.broker_up(1)
        # Both blips were heard, the second one OPEN_AFTER_S or more after the first.
        assert heard_between(breaker, first, first + 1.5) > 0
        assert heard_between(breaker, second, end) > 0
        assert end - first > OPEN_AFTER_S
        assert state is BreakerState.CLOSED
        assert breaker.allow()

    def test_an_outage_that_lasts_still_opens_it(
        self, mock: MockCluster, publisher: Publisher, breaker: HearingBreaker
    ) -> None:
        """With the broker down for good, the errors keep coming and the circuit opens
        about open_after_s into the outage."""
        start = time.monotonic()
        mock.broker_down(1)
        try:
            deadline = start + OPEN_AFTER_S + 5
            while breaker.state is not BreakerState.OPEN and time.monotonic() < deadline:
                time.sleep(0.05)
            opened_after = time.monotonic() - start
        finally:
            mock.broker_up(1)
        assert breaker.state is BreakerState.OPEN
        assert OPEN_AFTER_S <= opened_after < OPEN_AFTER_S + 3
