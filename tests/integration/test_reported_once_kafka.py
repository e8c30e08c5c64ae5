"""Failures are reported once, on the real broker (issue #17 item 3).

The broker refuses the events (its topic's ``max.message.bytes`` is smaller than the
event), so each failure comes back asynchronously in a delivery report -- the case a
FastAPI lifespan hit: the request saw the DeliveryError, then shutdown raised it again.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid

import msgspec
import pytest

from eventwire import AsyncPublisher, DeliveryError, Publisher, Route

pytestmark = pytest.mark.kafka


class Big(msgspec.Struct, frozen=True):
    id: str
    blob: str


@pytest.fixture
def small_topic(kafka_cluster: object) -> str:
    """A topic whose broker-side limit refuses a 4 KB event (librdkafka's own limit allows it)."""
    name = f"reported-once-{uuid.uuid4().hex[:8]}"
    kafka_cluster.create_topic(  # type: ignore[attr-defined]
        name, partitions=1, replication_factor=1, config={"max.message.bytes": "512"}
    )
    return name


def _big(n: int) -> Big:
    return Big(id=f"b-{n}", blob=secrets.token_hex(4000))  # incompressible: stays > 512 B


def _routes(topic: str) -> dict[type, Route]:
    return {Big: Route(topic=topic, key="id", type_name="test.Big")}


def test_sync_close_raises_only_the_failure_nobody_observed(
    kafka_bootstrap: str, small_topic: str
) -> None:
    """result() raised for one refused event; close() lists only the other one."""
    pub = Publisher(kafka_bootstrap, routes=_routes(small_topic), connect_timeout=30)
    seen = pub.publish(_big(1))
    unseen = pub.publish(_big(2))
    with pytest.raises(DeliveryError, match="MSG_SIZE_TOO_LARGE"):
        seen.result(30)
    with pytest.raises(DeliveryError) as info:
        pub.close(30)
    assert [(f.event_id, f.code) for f in info.value.failures] == [
        (unseen.event_id, "MSG_SIZE_TOO_LARGE")
    ]


def test_async_with_exit_does_not_raise_an_awaited_failure_again(
    kafka_bootstrap: str, small_topic: str
) -> None:
    """The lifespan case: ``await publish()`` raised inside the block (and was handled);
    leaving ``async with`` flushes and closes without raising it a second time, while a
    future nobody awaited is still reported by close()."""

    async def main() -> None:
        async with AsyncPublisher(
            kafka_bootstrap, routes=_routes(small_topic), connect_timeout=30
        ) as pub:
            with pytest.raises(DeliveryError, match="MSG_SIZE_TOO_LARGE"):
                await pub.publish(_big(1))
        # and the unobserved case, on a second publisher
        pub2 = AsyncPublisher(kafka_bootstrap, routes=_routes(small_topic), connect_timeout=30)
        await pub2.start()
        fut = pub2.publish_nowait(_big(2))
        await asyncio.wait({fut}, timeout=30)
        with pytest.raises(DeliveryError, match="MSG_SIZE_TOO_LARGE"):
            await pub2.close(30)

    asyncio.run(main())


@pytest.fixture(params=["sqlite", "postgres"])
def outbox_store(request: pytest.FixtureRequest, tmp_path: object) -> object:
    """A fresh outbox on SQLite or on the real PostgreSQL server."""
    if request.param == "sqlite":
        from eventwire.outbox import SQLiteOutbox

        return SQLiteOutbox(str(tmp_path) + "/outbox.db")  # type: ignore[operator]
    import psycopg

    from eventwire.outbox.postgres import PostgresOutbox

    dsn: str = request.getfixturevalue("postgres_dsn")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("eventwire_outbox", "eventwire_outbox_relays"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    return PostgresOutbox(dsn)


def test_outbox_close_raises_only_the_dead_letter_nobody_observed(
    kafka_bootstrap: str, small_topic: str, outbox_store: object
) -> None:
    """With an outbox (both databases), the broker refuses both events for good; the relay
    gives them up (dead letters). The handle whose result() raised is not reported again by
    close(); the other is, and neither is listed as _IN_OUTBOX."""
    pub = Publisher(
        kafka_bootstrap,
        routes=_routes(small_topic),
        outbox=outbox_store,  # type: ignore[arg-type]
        relay_options={"idle_interval_s": 0.05},
    )
    seen = pub.publish(_big(1))
    unseen = pub.publish(_big(2))
    with pytest.raises(DeliveryError, match="MSG_SIZE_TOO_LARGE"):
        seen.result(60)
    with pytest.raises(DeliveryError) as info:
        pub.close(60)
    assert [(f.event_id, f.code) for f in info.value.failures] == [
        (unseen.event_id, "MSG_SIZE_TOO_LARGE")
    ]


def test_a_failure_whose_await_was_cancelled_is_raised_by_close(
    kafka_bootstrap: str, small_topic: str
) -> None:
    """A request task awaiting ``publish()`` is cancelled (client gone, a wait_for timed
    out) before the broker answers: the refusal then reaches nobody, so close() raises
    it (before the review fix it counted as observed and was reported nowhere)."""

    async def main() -> None:
        pub = AsyncPublisher(kafka_bootstrap, routes=_routes(small_topic), connect_timeout=30)
        await pub.start()
        task = asyncio.create_task(pub.publish(_big(1)))
        await asyncio.sleep(0)  # the task awaits the event's future (no broker answer yet)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(DeliveryError, match="MSG_SIZE_TOO_LARGE"):
            await pub.close(30)

    asyncio.run(main())
