"""capture_events: what a test sees when it goes wrong.

Two classes sharing a ce_type are not silently decoded as each other; a test's own
failing assertion is not replaced by the DeliveryError of closing the capture; a
MemoryTransport option out of range is refused when made, not at the first publish.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from eventwire import ConfigurationError, DeliveryError, Route
from eventwire.testing import capture_events
from eventwire.transports.memory import MemoryTransport


class V1(msgspec.Struct, frozen=True):
    id: str


class V2(msgspec.Struct, frozen=True):
    id: str
    total: int


SHARED = {
    V1: Route(topic="orders", key="id", type_name="OrderPlaced"),
    V2: Route(topic="orders", key="id", type_name="OrderPlaced"),
}
ROUTES = {V1: Route(topic="orders", key="id")}


def test_two_classes_sharing_a_ce_type_are_not_decoded_as_each_other() -> None:
    """Before: events() returned [V1('a'), V1('b')], V2's total silently dropped."""
    with capture_events(routes=SHARED) as captured:
        captured.publisher.publish(V1(id="a"))
        captured.publisher.publish(V2(id="b", total=5))
        with pytest.raises(LookupError, match=r"V1, V2 share the ce_type 'OrderPlaced'"):
            captured.events()


def fail_unobserved(*, and_then_assert: bool) -> None:
    """A capture whose one event fails unobserved (so closing raises DeliveryError)."""
    with capture_events(routes=ROUTES) as captured:
        captured.transport.fail_next(1, "TOPIC_AUTHORIZATION_FAILED")
        captured.publisher.publish(V1(id="a"))
        if and_then_assert:
            raise AssertionError("the test's own")


async def fail_unobserved_async() -> None:
    async with capture_events(routes=ROUTES) as captured:
        captured.transport.fail_next(1, "TOPIC_AUTHORIZATION_FAILED")
        captured.publisher.publish_nowait(V1(id="a"))
        raise AssertionError("the test's own")


def test_the_tests_own_failure_is_what_propagates() -> None:
    """An assertion failing inside the block stays the error; the close's DeliveryError is a note."""
    with pytest.raises(AssertionError, match="the test's own") as caught:
        fail_unobserved(and_then_assert=True)
    assert any("DeliveryError" in note for note in getattr(caught.value, "__notes__", []))


def test_a_close_failure_still_raises_when_the_block_passed() -> None:
    with pytest.raises(DeliveryError, match="TOPIC_AUTHORIZATION_FAILED"):
        fail_unobserved(and_then_assert=False)


def test_the_async_capture_keeps_the_tests_own_failure_too() -> None:
    with pytest.raises(AssertionError, match="the test's own") as caught:
        asyncio.run(fail_unobserved_async())
    assert any("DeliveryError" in note for note in getattr(caught.value, "__notes__", []))


@pytest.mark.parametrize(
    "options", [{"partitions": 0}, {"max_message_bytes": -1}, {"partitions": "3"}]
)
def test_memory_transport_options_out_of_range_are_refused_when_made(
    options: dict[str, object],
) -> None:
    """Before: partitions=0 was accepted, then publish() raised ZeroDivisionError."""
    with pytest.raises(ConfigurationError, match=r"must be an int >= 1"):
        MemoryTransport(**options)  # type: ignore[arg-type]


def test_an_instance_given_for_the_class_is_a_clear_type_error() -> None:
    """Before: 'RoutingError: cannot publish a V1(...)', though nothing was being published."""
    with capture_events(routes=ROUTES) as captured:
        captured.publisher.publish(V1(id="a"))
        with pytest.raises(TypeError, match=r"pass the event class, e.g. events\(V1\)"):
            captured.events(V1(id="a"))  # type: ignore[arg-type]


def test_an_unknown_topic_fails_with_the_code_real_kafka_gives() -> None:
    """``auto_create_topics=False``: a send to a missing topic failed with ``_UNKNOWN_TOPIC``,
    while librdkafka reports ``UNKNOWN_TOPIC_OR_PART``, so a test asserting the code held in
    memory and not in production. The record is failed for good, never written."""
    capture = capture_events(routes=ROUTES, auto_create_topics=False)
    with pytest.raises(DeliveryError) as caught, capture as captured:
        captured.publisher.publish(V1(id="a"))
    transport = captured.transport
    failure = caught.value.failures[0]
    assert failure.code == "UNKNOWN_TOPIC_OR_PART"
    assert failure.possibly_written is False
    assert transport.records() == []
