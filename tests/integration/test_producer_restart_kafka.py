"""A real librdkafka fatal error, raised in a producer talking to a real broker.

``rd_kafka_test_fatal_error`` (through eventwire_devkit.librdkafka) puts the
producer into the same fatal state an idempotence sequence error would: its
error callback reports it and every later ``produce()`` is refused. eventwire
must replace the producer and deliver every event, including those in flight.
"""

from __future__ import annotations

import collections

import pytest

from eventwire import DeliveryError, ProducerFatalError, Publisher, Route
from eventwire.observability.logging import capture_logs
from eventwire_devkit import librdkafka
from eventwire_devkit.consume import read_topic

from .conftest import Placed


def _inject(pub: Publisher) -> None:
    try:
        librdkafka.inject_fatal_error(
            pub, librdkafka.ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, "injected by the test"
        )
    except librdkafka.LibrdkafkaTestApiUnavailable as exc:  # pragma: no cover - other wheels
        pytest.skip(f"librdkafka test API unavailable: {exc}")


def test_fatal_error_mid_stream_replaces_the_producer_and_loses_nothing(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    """4,000 events, a fatal error after the first 2,000: all acked, all in the log, in order."""
    routes = {Placed: Route(topic=kafka_topic, key="order_id")}
    with capture_logs() as logs:
        pub = Publisher(kafka_bootstrap, routes=routes)
        first = [pub.publish(Placed(order_id=f"k{n % 10}", seq=n)) for n in range(2_000)]
        _inject(pub)
        rest = [pub.publish(Placed(order_id=f"k{n % 10}", seq=n)) for n in range(2_000, 4_000)]
        pub.close(30)  # raises DeliveryError if any event failed or never settled
    handles = first + rest
    bad = [(h.done(), h.failure) for h in handles if not h.done() or h.failed()]
    assert not bad, (len(bad), bad[:3], [e for e in logs if e["event"] != "librdkafka_log"][:8])
    replaced = [e for e in logs if e["event"] == "producer_replaced"]
    assert len(replaced) == 1, logs
    print("producer_replaced:", {k: replaced[0][k] for k in ("code", "resent", "restarts_left")})
    records = read_topic(kafka_bootstrap, kafka_topic, expected=4_000, timeout=60)
    ids = collections.Counter(r.header("ce_id") for r in records)
    assert set(ids) == {h.event_id.encode() for h in handles}  # every event, nothing else
    # Per key, the first copy of each event keeps publish order (a re-sent copy may repeat).
    by_key: dict[bytes | None, list[int]] = collections.defaultdict(list)
    seen: set[bytes | None] = set()
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        if r.header("ce_id") in seen:
            continue
        seen.add(r.header("ce_id"))
        by_key[r.key].append(int(r.value.split(b'"seq":')[1].split(b",")[0].rstrip(b"}")))
    assert all(seqs == sorted(seqs) for seqs in by_key.values())


def test_with_no_restarts_a_fatal_error_fails_in_flight_events_and_later_publishes(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    """producer_restarts=0: ProducerFatalError on publish; nothing is left unreported."""
    routes = {Placed: Route(topic=kafka_topic, key="order_id")}
    pub = Publisher(kafka_bootstrap, routes=routes, producer_restarts=0)
    handles = [pub.publish(Placed(order_id="k", seq=n)) for n in range(500)]
    _inject(pub)

    def publish_until_refused() -> None:
        for n in range(500, 100_000):  # the error callback arrives on the poll thread
            handles.append(pub.publish(Placed(order_id="k", seq=n)))

    with pytest.raises(ProducerFatalError):
        publish_until_refused()
    reported: set[str] = set()
    try:
        pub.close(10)
    except DeliveryError as exc:
        reported = {f.event_id for f in exc.failures}
    assert all(h.done() for h in handles)  # delivered, or failed...
    failed_ids = {h.event_id for h in handles if h.failed()}
    assert reported == failed_ids, (
        len(reported),
        len(failed_ids),
        len(reported - failed_ids),
        len(failed_ids - reported),
    )
