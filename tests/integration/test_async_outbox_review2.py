"""Adversarial-review regressions for await stage() on PostgreSQL (issue #17, review 2)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg  # type: ignore[import-untyped]
import msgspec
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from eventwire import (
    AsyncPublisher,
    ConfigurationError,
    DeliveryError,
    OutboxWriteError,
    Publisher,
    Route,
)
from eventwire.outbox.postgres import PostgresOutbox

pytestmark = pytest.mark.kafka


class Placed(msgspec.Struct, frozen=True):
    order_id: str
    n: int


def routes(topic: str) -> dict[type, Route]:
    return {Placed: Route(topic=topic, key="order_id", type_name="test.Placed")}


def fresh_outbox(dsn: str) -> PostgresOutbox:
    with psycopg.connect(dsn, autocommit=True) as admin:
        for table in ("eventwire_outbox", "eventwire_outbox_relays"):
            admin.execute(f"DROP TABLE IF EXISTS {table}")
    return PostgresOutbox(dsn)


def other_database(dsn: str, name: str) -> str:
    """A second database of the same server (recreated), with its own outbox tables."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
        current = admin.info.dbname
    other = dsn.replace(f"/{current}", f"/{name}") if f"/{current}" in dsn else f"{dsn}/{name}"
    PostgresOutbox(other).close()
    return other


class TestStageOnAnotherDatabase:
    def test_a_connection_to_another_database_is_refused(
        self, postgres_dsn: str, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """psycopg and asyncpg connections (async stage) and a psycopg Connection (sync
        stage) to another database, one with an outbox table of its own, would commit
        the event where this publisher's relay never looks: ConfigurationError; nothing
        written there. A connection to the outbox's own database is accepted."""
        store = fresh_outbox(postgres_dsn)
        other_dsn = other_database(postgres_dsn, "review2_other")
        other = PostgresOutbox(other_dsn)

        async def main() -> None:
            async with AsyncPublisher(
                kafka_bootstrap, routes=routes(kafka_topic), outbox=store, relay=False
            ) as pub:
                conn = await psycopg.AsyncConnection.connect(other_dsn)
                with pytest.raises(ConfigurationError, match="another database"):
                    await pub.stage(Placed("a", 1), connection=conn)
                await conn.commit()
                await conn.close()
                raw = await asyncpg.connect(other_dsn)
                async with raw.transaction():
                    with pytest.raises(ConfigurationError, match="another database"):
                        await pub.stage(Placed("a", 2), connection=raw)
                await raw.close()

        asyncio.run(main())
        sync = Publisher(kafka_bootstrap, routes=routes(kafka_topic), outbox=store, relay=False)
        try:
            with psycopg.connect(other_dsn) as conn:
                with pytest.raises(ConfigurationError, match="another database"):
                    sync.stage(Placed("a", 3), connection=conn)
            with psycopg.connect(postgres_dsn) as conn:  # its own database: accepted
                sync.stage(Placed("a", 4), connection=conn)
        finally:
            sync.close(5)
        assert other.status().pending == 0
        assert store.status().pending == 1
        other.close()
        store.close()


class TestStageFollowsTheInnermostTransaction:
    def test_autocommit_psycopg_inside_transaction_is_accepted_and_follows_it(
        self, postgres_dsn: str, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """A psycopg AsyncConnection in autocommit inside `async with conn.transaction()`
        is accepted: committed with the block, or gone when it rolls back."""
        store = fresh_outbox(postgres_dsn)

        async def main() -> None:
            async with AsyncPublisher(
                kafka_bootstrap, routes=routes(kafka_topic), outbox=store, relay=False
            ) as pub:
                conn = await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True)
                async with conn.transaction():
                    await pub.stage(Placed("kept", 1), connection=conn)
                async with conn.transaction(force_rollback=True):
                    await pub.stage(Placed("undone", 2), connection=conn)
                await conn.close()

        asyncio.run(main())
        assert store.status().pending == 1
        store.close()

    def test_a_rolled_back_savepoint_drops_the_event_and_a_released_one_keeps_it(
        self, postgres_dsn: str, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """SQLAlchemy begin_nested() and asyncpg's nested transaction(): an event staged
        in a savepoint that is rolled back is gone though the outer transaction commits;
        one staged in a released savepoint is committed with the outer transaction."""
        store = fresh_outbox(postgres_dsn)
        url = "postgresql+psycopg://" + postgres_dsn.removeprefix("postgresql://")

        async def main() -> None:
            engine = create_async_engine(url)
            async with AsyncPublisher(
                kafka_bootstrap, routes=routes(kafka_topic), outbox=store, relay=False
            ) as pub:
                async with AsyncSession(engine) as session, session.begin():
                    await session.execute(text("SELECT 1"))
                    nested = await session.begin_nested()
                    await pub.stage(Placed("sa-undone", 1), connection=session)
                    await nested.rollback()
                    async with session.begin_nested():
                        await pub.stage(Placed("sa-kept", 2), connection=session)
                raw = await asyncpg.connect(postgres_dsn)
                async with raw.transaction():
                    inner = raw.transaction()
                    await inner.start()
                    await pub.stage(Placed("pg-undone", 3), connection=raw)
                    await inner.rollback()
                    async with raw.transaction():
                        await pub.stage(Placed("pg-kept", 4), connection=raw)
                await raw.close()
            await engine.dispose()

        asyncio.run(main())
        with psycopg.connect(postgres_dsn) as conn:
            keys = sorted(
                bytes(k).decode()
                for (k,) in conn.execute("SELECT key FROM eventwire_outbox").fetchall()
            )
        assert keys == ["pg-kept", "sa-kept"]
        store.close()


class TestCloseIsBounded:
    def test_close_returns_in_time_while_a_commit_waits_on_a_row_lock(
        self, postgres_dsn: str, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """Another transaction holds the unsent row of the same event_id, so the
        publisher's INSERT waits on its lock: close(1) still returns within seconds and
        the event's future fails with OutboxWriteError (possibly_written)."""
        store = fresh_outbox(postgres_dsn)
        holder = psycopg.connect(postgres_dsn)
        sync = Publisher(kafka_bootstrap, routes=routes(kafka_topic), outbox=store, relay=False)
        sync.stage(Placed("held", 1), connection=holder, event_id="same-id")  # not committed
        elapsed: list[float] = []

        async def main() -> None:
            pub = AsyncPublisher(
                kafka_bootstrap, routes=routes(kafka_topic), outbox=store, relay=False
            )
            await pub.start()
            fut = pub.publish_nowait(Placed("held", 1), event_id="same-id")
            await asyncio.sleep(1.0)  # the INSERT now waits on the holder's row lock
            assert not fut.done()
            began = time.monotonic()
            with contextlib.suppress(DeliveryError):  # it may report the event, unobserved
                await asyncio.wait_for(pub.close(1), 30)
            elapsed.append(time.monotonic() - began)
            assert fut.done()
            error = fut.exception()
            assert isinstance(error, OutboxWriteError)
            assert error.possibly_written

        try:
            asyncio.run(main())
        finally:
            holder.rollback()
            holder.close()
            sync.close(5)
            store.close()
        assert elapsed and elapsed[0] < 10, elapsed


class TestStageWithTheCallersRowFactory:
    def test_a_psycopg_connection_with_dict_rows_stages_and_conflicts_as_usual(
        self, postgres_dsn: str, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """Many applications open psycopg connections with row_factory=dict_row: the
        outbox's statements on them read their rows by position all the same, so stage()
        works (async and sync), and a conflicting event_id is still detected."""
        from psycopg.rows import dict_row

        from eventwire.outbox import EventIdConflictError

        store = fresh_outbox(postgres_dsn)

        async def main() -> None:
            async with AsyncPublisher(
                kafka_bootstrap, routes=routes(kafka_topic), outbox=store, relay=False
            ) as pub:
                conn = await psycopg.AsyncConnection.connect(postgres_dsn, row_factory=dict_row)
                await pub.stage(Placed("a", 1), connection=conn, event_id="dict-1")
                await pub.stage(Placed("a", 1), connection=conn, event_id="dict-1")  # same
                with pytest.raises(EventIdConflictError):
                    await pub.stage(Placed("a", 2), connection=conn, event_id="dict-1")
                await conn.rollback()
                await pub.stage(Placed("a", 3), connection=conn, event_id="dict-3")
                await conn.commit()
                await conn.close()

        asyncio.run(main())
        sync = Publisher(kafka_bootstrap, routes=routes(kafka_topic), outbox=store, relay=False)
        try:
            with psycopg.connect(postgres_dsn, row_factory=dict_row) as conn:
                sync.stage(Placed("b", 4), connection=conn, event_id="dict-4")
                sync.stage(Placed("b", 4), connection=conn, event_id="dict-4")
        finally:
            sync.close(5)
        assert store.status().pending == 2
        store.close()


class TestCancelledPublish:
    def test_a_publish_cancelled_during_its_commit_is_still_committed_and_not_reported(
        self, postgres_dsn: str, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """await publish() times out while its INSERT waits on another transaction's row
        lock: once that lock goes, the event is committed all the same (durable, as the
        guide says), and close() raises nothing for it (it is in the outbox)."""
        store = fresh_outbox(postgres_dsn)
        holder = psycopg.connect(postgres_dsn)
        sync = Publisher(kafka_bootstrap, routes=routes(kafka_topic), outbox=store, relay=False)
        sync.stage(Placed("held", 1), connection=holder, event_id="same-id")  # not committed

        async def main() -> None:
            async with AsyncPublisher(
                kafka_bootstrap, routes=routes(kafka_topic), outbox=store, relay=False
            ) as pub:
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(pub.publish(Placed("held", 1), event_id="same-id"), 0.5)
                await asyncio.to_thread(holder.rollback)  # the lock goes; the INSERT proceeds
                deadline = time.monotonic() + 30
                while (await asyncio.to_thread(store.status)).pending == 0:
                    assert time.monotonic() < deadline, "the cancelled publish was not committed"
                    await asyncio.sleep(0.05)

        try:
            asyncio.run(main())  # close() at the end of `async with` raises nothing
        finally:
            holder.close()
            sync.close(5)
        assert store.status().pending == 1
        store.close()
