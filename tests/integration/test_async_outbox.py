"""AsyncPublisher(outbox=...) and await stage() on SQLite and PostgreSQL, to the real broker.

Each test runs on both databases: the store, the caller's async connection
(aiosqlite / psycopg AsyncConnection) and an SQLAlchemy async engine on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg  # type: ignore[import-untyped]
import msgspec
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from eventwire import (
    AsyncPublisher,
    ConfigurationError,
    DeliveryError,
    DeliveryResult,
    KafkaConfig,
    OutboxWriteError,
    Route,
)
from eventwire.outbox import OutboxRelay, OutboxStore, SQLiteOutbox
from eventwire.outbox.postgres import PostgresOutbox
from eventwire.transports.kafka import KafkaTransport
from eventwire_devkit.consume import read_topic

pytestmark = pytest.mark.kafka


class Placed(msgspec.Struct, frozen=True):
    order_id: str
    n: int


@dataclass
class Database:
    """One database as the tests use it: its store, an async connection, a SQLAlchemy URL."""

    name: str
    store: Callable[[], OutboxStore]
    connect: Callable[[], Awaitable[Any]]
    sqlalchemy_url: str


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """SQLite in a temporary file, or the session's PostgreSQL with fresh tables."""
    if request.param == "sqlite":
        path = tmp_path / "app.db"
        SQLiteOutbox(path).close()  # the outbox tables, before the app's connections
        yield Database(
            "sqlite",
            lambda: SQLiteOutbox(path),
            lambda: aiosqlite.connect(path, timeout=30),
            f"sqlite+aiosqlite:///{path}",
        )
        return
    dsn: str = request.getfixturevalue("postgres_dsn")
    with psycopg.connect(dsn, autocommit=True) as admin:
        for table in ("eventwire_outbox", "eventwire_outbox_relays", "orders"):
            admin.execute(f"DROP TABLE IF EXISTS {table}")
    PostgresOutbox(dsn).close()
    yield Database(
        "postgres",
        lambda: PostgresOutbox(dsn),
        lambda: psycopg.AsyncConnection.connect(dsn),
        "postgresql+psycopg://" + dsn.removeprefix("postgresql://"),
    )


def routes(topic: str) -> dict[type, Route]:
    return {Placed: Route(topic=topic, key="order_id", type_name="test.Placed")}


def delivered_ids(bootstrap: str, topic: str, expected: int) -> list[str]:
    records = read_topic(bootstrap, topic, expected=expected, timeout=60, idle=1.5)
    return [(r.header("ce_id") or b"").decode() for r in records]


async def relayed(store: OutboxStore, timeout: float = 60) -> None:
    """Wait until the publisher's relay shipped every row (flush() waits only for
    published events, not staged ones)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (await asyncio.to_thread(store.status)).pending:
        assert asyncio.get_running_loop().time() < deadline, "the relay did not drain"
        await asyncio.sleep(0.05)


async def stage_in_sessions(
    pub: AsyncPublisher,
    sessions: async_sessionmaker[AsyncSession],
    count: int,
    kept: list[str],
    dropped: list[str],
    *,
    domain_write: bool,
) -> None:
    """Stage one event per session; commit the even ones, roll back the odd ones."""
    for n in range(count):
        async with sessions() as session:
            if domain_write:
                await session.execute(text("INSERT INTO orders VALUES (:id)"), {"id": n})
            ce_id = await pub.stage(Placed(f"s{n}", n), connection=session)
            if n % 2:
                await session.rollback()
                dropped.append(ce_id)
            else:
                await session.commit()
                kept.append(ce_id)


async def create_orders(db: Database) -> None:
    conn = await db.connect()
    await conn.execute("CREATE TABLE IF NOT EXISTS orders (id TEXT)")
    await conn.commit()
    await conn.close()


class TestPublish:
    def test_every_published_event_resolves_at_the_ack_and_lands_once_in_key_order(
        self, database: Database, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """300 events through await publish()/publish_many(): each resolves with a real
        partition and offset, and the topic holds each once, in publish order per key."""
        store = database.store()

        async def main() -> list[Any]:
            async with AsyncPublisher(
                kafka_bootstrap, routes=routes(kafka_topic), outbox=store
            ) as pub:
                singles = [await pub.publish(Placed(f"k{n % 5}", n)) for n in range(50)]
                many = await pub.publish_many(Placed(f"k{n % 5}", n) for n in range(50, 300))
                return [*singles, *many]

        results = asyncio.run(main())
        assert all(isinstance(r, DeliveryResult) and r.offset >= 0 for r in results)
        records = read_topic(kafka_bootstrap, kafka_topic, expected=300, timeout=60, idle=1.5)
        ids = [(r.header("ce_id") or b"").decode() for r in records]
        assert sorted(ids) == sorted(r.event_id for r in results)
        by_key: dict[bytes | None, list[int]] = {}
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            by_key.setdefault(r.key, []).append(msgspec.json.decode(r.value)["n"])
        assert all(ns == sorted(ns) for ns in by_key.values())
        assert store.status().pending == 0

    def test_with_relay_false_events_wait_in_the_outbox_for_the_sync_relay(
        self, database: Database, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """relay=False: close() settles the futures as _IN_OUTBOX (durable, do not
        re-send) and the rows wait in the same table; the sync OutboxRelay ships them."""
        store = database.store()

        async def main() -> list[Any]:
            pub = AsyncPublisher(
                kafka_bootstrap, routes=routes(kafka_topic), outbox=store, relay=False
            )
            await pub.start()
            futures = [pub.publish_nowait(Placed("k", n)) for n in range(20)]
            await pub.close(5)
            return await asyncio.gather(*futures, return_exceptions=True)

        outcomes = asyncio.run(main())
        assert all(
            isinstance(o, DeliveryError) and o.failures[0].code == "_IN_OUTBOX" for o in outcomes
        )
        assert store.status().pending == 20
        relay = OutboxRelay(store, lambda: KafkaTransport(KafkaConfig(kafka_bootstrap)))
        assert relay.drain(timeout=60)
        relay.stop()
        ids = delivered_ids(kafka_bootstrap, kafka_topic, 20)
        assert sorted(ids) == sorted(o.failures[0].event_id for o in outcomes)


class TestStage:
    def test_staged_in_a_committed_transaction_is_sent_and_rolled_back_is_not(
        self, database: Database, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """stage() on the driver's async connection joins the caller's transaction: the
        committed event (and its domain row) lands, the rolled-back one never does."""
        store = database.store()

        async def main() -> tuple[str, str]:
            await create_orders(database)
            async with AsyncPublisher(
                kafka_bootstrap, routes=routes(kafka_topic), outbox=store
            ) as pub:
                conn = await database.connect()
                await conn.execute("INSERT INTO orders VALUES ('kept')")
                kept = await pub.stage(Placed("kept", 1), connection=conn)
                await conn.commit()
                await conn.execute("INSERT INTO orders VALUES ('dropped')")
                dropped = await pub.stage(Placed("dropped", 2), connection=conn)
                await conn.rollback()
                await conn.close()
                await relayed(store)
            return kept, dropped

        kept, dropped = asyncio.run(main())
        ids = delivered_ids(kafka_bootstrap, kafka_topic, 1)
        assert ids == [kept]
        assert dropped not in ids
        assert store.status().pending == 0

    def test_staged_through_an_sqlalchemy_async_session_follows_its_commit(
        self, database: Database, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """stage(connection=AsyncSession) writes in the session's transaction: sent after
        session.commit(), never after session.rollback()."""
        store = database.store()

        async def main() -> tuple[list[str], list[str]]:
            await create_orders(database)
            engine = create_async_engine(database.sqlalchemy_url)
            sessions = async_sessionmaker(engine, class_=AsyncSession)
            kept: list[str] = []
            dropped: list[str] = []
            async with AsyncPublisher(
                kafka_bootstrap, routes=routes(kafka_topic), outbox=store
            ) as pub:
                await stage_in_sessions(pub, sessions, 6, kept, dropped, domain_write=True)
                async with engine.connect() as conn:  # an AsyncConnection works too
                    ce_id = await pub.stage(Placed("c", 9), connection=conn)
                    await conn.commit()
                    kept.append(ce_id)
                await relayed(store)
            await engine.dispose()
            return kept, dropped

        kept, dropped = asyncio.run(main())
        ids = delivered_ids(kafka_bootstrap, kafka_topic, len(kept))
        assert sorted(ids) == sorted(kept)
        assert not set(ids) & set(dropped)


class TestPostgresDrivers:
    def test_asyncpg_connection_and_sqlalchemy_on_asyncpg_follow_the_transaction(
        self, postgres_dsn: str, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """stage() through an asyncpg Connection (inside conn.transaction()) and through an
        SQLAlchemy AsyncSession on asyncpg: committed events land, rolled-back ones never."""
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute("DROP TABLE IF EXISTS orders")
            admin.execute("CREATE TABLE orders (id TEXT)")
        store = PostgresOutbox(postgres_dsn)

        async def main() -> tuple[list[str], list[str]]:
            kept: list[str] = []
            dropped: list[str] = []
            async with AsyncPublisher(
                kafka_bootstrap, routes=routes(kafka_topic), outbox=store
            ) as pub:
                conn = await asyncpg.connect(postgres_dsn)
                async with conn.transaction():
                    await conn.execute("INSERT INTO orders VALUES ('a')")
                    kept.append(await pub.stage(Placed("a", 1), connection=conn))
                undone = conn.transaction()
                await undone.start()
                dropped.append(await pub.stage(Placed("b", 2), connection=conn))
                await undone.rollback()
                await conn.close()
                url = "postgresql+asyncpg://" + postgres_dsn.removeprefix("postgresql://")
                engine = create_async_engine(url)
                # stage() first in each session: it must still join the session's transaction
                sessions = async_sessionmaker(engine, class_=AsyncSession)
                await stage_in_sessions(pub, sessions, 4, kept, dropped, domain_write=False)
                await engine.dispose()
                await relayed(store)
            return kept, dropped

        kept, dropped = asyncio.run(main())
        ids = delivered_ids(kafka_bootstrap, kafka_topic, len(kept))
        assert sorted(ids) == sorted(kept)
        assert not set(ids) & set(dropped)

    def test_an_autocommit_connection_is_refused_before_writing(
        self, postgres_dsn: str, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """A psycopg AsyncConnection in autocommit (or asyncpg outside a transaction) would
        commit the event whatever the caller does: ConfigurationError, nothing stored."""
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute("DROP TABLE IF EXISTS eventwire_outbox")
        store = PostgresOutbox(postgres_dsn)

        async def main() -> None:
            async with AsyncPublisher(
                kafka_bootstrap, routes=routes(kafka_topic), outbox=store, relay=False
            ) as pub:
                conn = await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True)
                with pytest.raises(ConfigurationError, match="not in a transaction"):
                    await pub.stage(Placed("a", 1), connection=conn)
                await conn.close()
                raw = await asyncpg.connect(postgres_dsn)
                with pytest.raises(ConfigurationError, match="not in a transaction"):
                    await pub.stage(Placed("a", 1), connection=raw)
                await raw.close()

        asyncio.run(main())
        assert store.status().pending == 0


class TestPostgresWrites:
    def test_a_lost_connection_is_replaced_and_a_failed_insert_rolled_back(
        self, postgres_dsn: str, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """The publisher's own AsyncConnection: after pg_terminate_backend of every
        connection the next publish reconnects and is delivered; an insert the server
        refuses raises OutboxWriteError(possibly_written=False) and the next publish
        on the same connection succeeds (the failed transaction was rolled back)."""
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            for table in ("eventwire_outbox", "eventwire_outbox_relays"):
                admin.execute(f"DROP TABLE IF EXISTS {table}")
        store = PostgresOutbox(postgres_dsn)

        async def main() -> list[str]:
            delivered: list[str] = []
            async with AsyncPublisher(
                kafka_bootstrap, routes=routes(kafka_topic), outbox=store
            ) as pub:
                delivered.append((await pub.publish(Placed("a", 1))).event_id)
                with psycopg.connect(postgres_dsn, autocommit=True) as admin:
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                    delivered.append((await pub.publish(Placed("a", 2))).event_id)
                    admin.execute(
                        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
                        " $$ BEGIN RAISE EXCEPTION 'refused by test'; END $$"
                    )
                    admin.execute(
                        "CREATE TRIGGER refuse BEFORE INSERT ON eventwire_outbox"
                        " FOR EACH ROW EXECUTE FUNCTION refuse()"
                    )
                    with pytest.raises(OutboxWriteError, match="refused by test") as info:
                        await pub.publish(Placed("a", 3))
                    assert info.value.possibly_written is False
                    admin.execute("DROP TRIGGER refuse ON eventwire_outbox")
                    admin.execute("DROP FUNCTION refuse()")
                delivered.append((await pub.publish(Placed("a", 4))).event_id)
            return delivered

        delivered = asyncio.run(main())
        records = read_topic(kafka_bootstrap, kafka_topic, expected=3, timeout=60, idle=1.5)
        assert sorted((r.header("ce_id") or b"").decode() for r in records) == sorted(delivered)
        assert sorted(msgspec.json.decode(r.value)["n"] for r in records) == [1, 2, 4]
