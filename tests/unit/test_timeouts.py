"""Timeouts: NaN and non-numbers are refused up front, infinity waits with no practical limit.

Before: ``close(math.inf)`` raised OverflowError half-way (the publisher already
closed, its failures never reported, its producer never destroyed);
``connect_timeout=nan`` made ``Publisher()`` hang forever.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from eventwire import AsyncPublisher, ConfigurationError, DeliveryError, Publisher
from eventwire._timeouts import MAX_WAIT_S, seconds
from eventwire.testing import capture_events
from eventwire.transports.memory import MemoryTransport

from .conftest import order


def publisher(transport: MemoryTransport) -> Publisher:
    return Publisher(transport=transport)


class TestTheCheck:
    @pytest.mark.parametrize("value", [0, 1, 2.5, MAX_WAIT_S])
    def test_a_number_of_seconds_is_kept(self, value: float) -> None:
        assert seconds(value, "t") == value

    def test_infinity_is_clamped_to_the_longest_wait(self) -> None:
        assert seconds(math.inf, "t") == MAX_WAIT_S

    @pytest.mark.parametrize(
        ("value", "says"),
        [
            (math.nan, "t is NaN"),
            (-1, "t must be >= 0 seconds"),
            ("3", "t must be a number of seconds, not str '3'"),
            (True, "not bool"),
            (None, "not NoneType"),
        ],
    )
    def test_anything_else_is_a_configuration_error_naming_the_argument(
        self, value: object, says: str
    ) -> None:
        with pytest.raises(ConfigurationError, match=says):
            seconds(value, "t")


class TestPublisher:
    def test_close_with_no_limit_closes_and_reports_the_failures(self) -> None:
        """close(math.inf) waits as long as needed, then raises the failures as usual."""
        transport = MemoryTransport()
        pub = publisher(transport)
        transport.fail_next(1, "TOPIC_AUTHORIZATION_FAILED")
        pub.publish(order(1))
        with pytest.raises(DeliveryError) as failed:
            pub.close(math.inf)
        assert failed.value.failures[0].code == "TOPIC_AUTHORIZATION_FAILED"
        assert pub.closed and transport.closed

    @pytest.mark.parametrize("call", ["close", "flush"])
    def test_a_nan_timeout_is_refused_before_anything_happens(self, call: str) -> None:
        pub = publisher(MemoryTransport())
        with pytest.raises(ConfigurationError, match=rf"{call}\(timeout\) is NaN"):
            getattr(pub, call)(math.nan)
        assert not pub.closed  # nothing begun: it still works, and closes normally
        pub.publish(order(1)).result(5)
        pub.close()

    def test_a_nan_connect_timeout_is_refused_instead_of_hanging(self) -> None:
        with pytest.raises(ConfigurationError, match=r"connect_timeout .* is NaN"):
            Publisher("127.0.0.1:1", connect_timeout=math.nan)

    def test_result_with_no_limit_returns_the_result(self) -> None:
        with publisher(MemoryTransport()) as pub:
            assert pub.publish(order(1)).result(math.inf)


class TestAsyncPublisher:
    def test_close_with_no_limit_and_a_nan_flush(self) -> None:
        async def main() -> None:
            pub = AsyncPublisher(transport=MemoryTransport())
            await pub.publish(order(1))
            with pytest.raises(ConfigurationError, match=r"flush\(timeout\) is NaN"):
                await pub.flush(math.nan)
            await pub.close(math.inf)
            assert pub.closed

        asyncio.run(main())


def test_capture_events_wait_for_refuses_nan() -> None:
    async def main() -> None:
        with capture_events() as captured:
            with pytest.raises(ValueError, match=r"wait_for\(timeout\) is NaN"):
                await captured.wait_for(1, timeout=math.nan)

    asyncio.run(main())
