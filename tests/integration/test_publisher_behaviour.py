"""Publisher behaviour that must hold on the memory transport and on real Kafka alike."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from eventwire import (
    BatchPublishError,
    DeliveryError,
    DeliveryResult,
    ErrorClass,
    PublisherStateError,
)
from eventwire._partitioner import java_partition

from .conftest import Backend, Placed


class TestSharedBehaviour:
    def test_result_points_at_the_stored_record(self, backend: Backend) -> None:
        """The handle's partition/offset is where an independent reader finds the event."""
        with backend.publisher() as pub:
            result = pub.publish(Placed(order_id="o-1", seq=1)).result(timeout=30)
        [record] = backend.read(expected=1)
        assert (record.partition, record.offset) == (result.partition, result.offset)
        assert record.key == b"o-1"
        assert msgspec.json.decode(record.value, type=Placed) == Placed(order_id="o-1", seq=1)
        assert record.header("ce_id") == result.event_id.encode()
        assert record.header("ce_type") == b"test.Placed"
        assert record.header("ce_specversion") == b"1.0"
        assert record.header("content-type") == b"application/json"

    def test_keys_go_where_the_java_client_puts_them_and_stay_in_order(
        self, backend: Backend
    ) -> None:
        """Every key lands on toPositive(murmur2(key)) % 3, in publish order per key."""
        with backend.publisher() as pub:
            pub.publish_many(Placed(order_id=f"k{n % 7}", seq=n) for n in range(210))
        records = backend.read(expected=210)
        assert len(records) == 210
        last: dict[bytes, int] = {}
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            assert r.key is not None
            assert r.partition == java_partition(r.key, 3), r.key
            seq = msgspec.json.decode(r.value, type=Placed).seq
            assert seq > last.get(r.key, -1)
            last[r.key] = seq

    def test_flush_returns_once_every_event_is_acknowledged(self, backend: Backend) -> None:
        """After flush() returns without raising, every handle is delivered."""
        pub = backend.publisher()
        handles = [pub.publish(Placed(order_id=f"o{n}", seq=n)) for n in range(1000)]
        pub.flush(30)
        assert all(h.done() and not h.failed() for h in handles)
        assert pub.in_flight == 0
        assert len(backend.read(expected=1000)) == 1000

    def test_resend_keeps_the_event_id(self, backend: Backend) -> None:
        """Re-sending with event_id= writes the same ce_id (consumers de-duplicate on it)."""
        with backend.publisher() as pub:
            first = pub.publish(Placed(order_id="o", seq=1)).result(30)
            pub.publish(Placed(order_id="o", seq=1), event_id=first.event_id).result(30)
        assert {r.header("ce_id") for r in backend.read(expected=2)} == {first.event_id.encode()}

    def test_oversize_event_is_a_fast_permanent_error(self, backend: Backend) -> None:
        """An event over message.max.bytes fails at publish(), not after a timeout."""
        with backend.publisher() as pub, pytest.raises(DeliveryError) as info:
            pub.publish(Placed(order_id="o", seq=1, note="x" * 1_100_000))
        [failure] = info.value.failures
        assert failure.error_class is ErrorClass.PERMANENT
        assert "SIZE_TOO_LARGE" in failure.code

    def test_async_publish_resolves_at_the_ack(self, backend: Backend) -> None:
        """await publish() and publish_many() resolve with the stored positions."""

        async def main() -> list[DeliveryResult]:
            async with backend.async_publisher() as pub:
                one = await pub.publish(Placed(order_id="a", seq=0))
                many = await pub.publish_many(Placed(order_id="a", seq=n) for n in range(1, 50))
            assert all(isinstance(m, DeliveryResult) for m in many)
            return [one, *many]  # type: ignore[list-item]

        results = asyncio.run(main())
        offsets = [r.offset for r in results]
        assert offsets == sorted(offsets) and len(set(offsets)) == 50
        assert len(backend.read(expected=50)) == 50


def _tiny_queue(backend: Backend) -> dict[str, Any]:
    """Publisher options (and faults) that make the local queue fill up at once.

    Kafka: a 20-message librdkafka queue. Memory: the first sends find the queue full
    (MemoryTransport reports synchronously, so its queue never fills by itself).
    """
    if backend.memory is not None:
        backend.memory.queue_full_next(5)
        return {}
    return {"overrides": {"queue.buffering.max.messages": 20}}


class TestCloseGateAndBatches:
    def test_publish_after_close_raises_and_writes_nothing(self, backend: Backend) -> None:
        """After close(), publish() and publish_many() raise PublisherStateError and the log
        gains nothing."""
        pub = backend.publisher()
        pub.publish(Placed(order_id="o", seq=1)).result(30)
        pub.close(10)
        assert pub.closed
        with pytest.raises(PublisherStateError):
            pub.publish(Placed(order_id="o", seq=2))
        with pytest.raises(PublisherStateError):
            pub.publish_many([Placed(order_id="o", seq=3)])
        records = backend.read(expected=1)
        assert [msgspec.json.decode(r.value, type=Placed).seq for r in records] == [1]

    def test_async_publish_after_close_raises(self, backend: Backend) -> None:
        """After an AsyncPublisher is closed, publish() raises PublisherStateError and the
        log gains nothing."""

        async def main() -> None:
            async with backend.async_publisher() as pub:
                await pub.publish(Placed(order_id="o", seq=1))
            with pytest.raises(PublisherStateError):
                await pub.publish(Placed(order_id="o", seq=2))

        asyncio.run(main())
        records = backend.read(expected=1)
        assert [msgspec.json.decode(r.value, type=Placed).seq for r in records] == [1]

    def test_publish_many_stops_at_a_too_large_event(self, backend: Backend) -> None:
        """publish_many raises BatchPublishError at an oversize event: the events before it
        are enqueued and delivered, it and the rest are not, and every ce_id is given."""
        batch = [
            Placed(order_id="o", seq=1),
            Placed(order_id="o", seq=2, note="x" * 1_100_000),
            Placed(order_id="o", seq=3),
        ]
        with backend.publisher() as pub:
            with pytest.raises(BatchPublishError) as info:
                pub.publish_many(batch)
            err = info.value
            assert err.failed_index == 1
            assert len(err.event_ids) == 3
            [enqueued] = err.handles
            assert enqueued.result(30).event_id == err.event_ids[0]
        assert isinstance(err.__cause__, DeliveryError)
        assert "SIZE_TOO_LARGE" in err.__cause__.failures[0].code
        records = backend.read(expected=1)
        assert [r.header("ce_id") for r in records] == [err.event_ids[0].encode()]

    def test_async_per_key_order_holds_with_a_tiny_queue(self, backend: Backend) -> None:
        """Events published while the local queue is full reach the log in publish order
        per key, and all are delivered."""

        async def main() -> int:
            async with backend.async_publisher(**_tiny_queue(backend)) as pub:
                futures = [
                    pub.publish_nowait(Placed(order_id=f"k{n % 5}", seq=n)) for n in range(3000)
                ]
                results = await asyncio.gather(*futures)
            return len(results)

        assert asyncio.run(main()) == 3000
        records = backend.read(expected=3000)
        assert len(records) == 3000
        seqs: dict[bytes | None, list[int]] = {}
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            seqs.setdefault(r.key, []).append(msgspec.json.decode(r.value, type=Placed).seq)
        assert len(seqs) == 5
        for key, seq in seqs.items():
            assert seq == sorted(seq), f"key {key!r} out of order"
