"""Publisher behaviour that must hold on the memory transport and on real Kafka alike."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from eventwire import DeliveryError, DeliveryResult, ErrorClass
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
