"""AsyncPublisher(outbox=...) on SQLite and the memory transport: errors, loop, close."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec
import pytest

from eventwire import (
    AsyncPublisher,
    ConfigurationError,
    DeliveryError,
    OutboxWriteError,
    PublisherStateError,
    Route,
)
from eventwire.outbox import EventIdConflictError, SQLiteOutbox
from eventwire.transports.memory import MemoryTransport


class Placed(msgspec.Struct, frozen=True):
    order_id: str
    n: int


ROUTES = {Placed: Route(topic="orders", key="order_id", type_name="test.Placed")}


def publisher(store: SQLiteOutbox, memory: MemoryTransport, **kwargs: Any) -> AsyncPublisher:
    return AsyncPublisher(transport=memory, routes=ROUTES, outbox=store, **kwargs)


class TestStageErrors:
    def test_stage_without_an_outbox_is_a_state_error(self) -> None:
        """stage() on a publisher without an outbox says to create it with one."""

        async def main() -> None:
            async with AsyncPublisher(transport=MemoryTransport(), routes=ROUTES) as pub:
                with pytest.raises(PublisherStateError, match="needs an outbox"):
                    await pub.stage(Placed("o", 1), connection=object())

        asyncio.run(main())

    @pytest.mark.parametrize("kind", ["sqlite3", "object"])
    def test_a_connection_of_another_kind_is_refused_saying_what_is_accepted(
        self, tmp_path: Path, kind: str
    ) -> None:
        """A blocking sqlite3 connection or a stranger is a ConfigurationError naming the
        accepted async connections (and Publisher.stage for blocking ones); nothing stored."""
        store = SQLiteOutbox(tmp_path / "o.db")
        conn: Any = sqlite3.connect(tmp_path / "o.db") if kind == "sqlite3" else object()

        async def main() -> None:
            async with publisher(store, MemoryTransport(), relay=False) as pub:
                with pytest.raises(ConfigurationError) as info:
                    await pub.stage(Placed("o", 1), connection=conn)
                message = str(info.value)
                assert "aiosqlite Connection" in message
                assert "psycopg AsyncConnection" in message
                assert "AsyncSession" in message
                assert "Publisher.stage()" in message

        asyncio.run(main())
        assert store.status().pending == 0

    def test_an_autocommit_aiosqlite_connection_is_refused(self, tmp_path: Path) -> None:
        """aiosqlite with isolation_level=None outside a transaction would commit the
        event at once: ConfigurationError saying to open a transaction; nothing stored."""
        store = SQLiteOutbox(tmp_path / "o.db")

        async def main() -> None:
            async with (
                publisher(store, MemoryTransport(), relay=False) as pub,
                aiosqlite.connect(tmp_path / "o.db", isolation_level=None) as conn,
            ):
                with pytest.raises(ConfigurationError, match="not in a transaction"):
                    await pub.stage(Placed("o", 1), connection=conn)
                await conn.execute("BEGIN")  # an explicit transaction is fine
                await pub.stage(Placed("o", 2), connection=conn)
                await conn.execute("ROLLBACK")

        asyncio.run(main())
        assert store.status().pending == 0

    def test_stage_after_close_is_a_state_error(self, tmp_path: Path) -> None:
        """A closed publisher refuses stage() before touching the caller's transaction."""
        store = SQLiteOutbox(tmp_path / "o.db")

        async def main() -> None:
            pub = publisher(store, MemoryTransport(), relay=False)
            await pub.close()
            async with aiosqlite.connect(tmp_path / "o.db") as conn:
                with pytest.raises(PublisherStateError):
                    await pub.stage(Placed("o", 1), connection=conn)

        asyncio.run(main())

    def test_a_conflicting_event_id_raises_and_is_the_callers_to_roll_back(
        self, tmp_path: Path
    ) -> None:
        """Staging another event under the event_id of an unsent row raises
        EventIdConflictError; nothing of the rolled-back transaction stays."""
        store = SQLiteOutbox(tmp_path / "o.db")

        async def main() -> None:
            async with (
                publisher(store, MemoryTransport(), relay=False) as pub,
                aiosqlite.connect(tmp_path / "o.db") as conn,
            ):
                await pub.stage(Placed("o", 1), connection=conn, event_id="same-id")
                await conn.commit()
                with pytest.raises(EventIdConflictError):
                    await pub.stage(Placed("o", 2), connection=conn, event_id="same-id")
                await conn.rollback()

        asyncio.run(main())
        assert store.status().pending == 1


class TestStageKeepsNothing:
    def test_staged_events_leave_no_commit_in_flight_and_no_retained_reports(
        self, tmp_path: Path
    ) -> None:
        """stage() is not a publisher commit: once the relay shipped the staged events,
        the publisher holds no commit in flight and keeps none of the relay's reports
        (a leaked one would keep every later report in memory)."""
        store = SQLiteOutbox(tmp_path / "o.db")
        memory = MemoryTransport()

        async def main() -> tuple[set[int], int]:
            async with (
                publisher(store, memory) as pub,
                aiosqlite.connect(tmp_path / "o.db") as conn,
            ):
                for n in range(3):
                    await pub.stage(Placed("o", n), connection=conn)
                await conn.commit()
                await pub.publish(Placed("o", 3))
                while store.status().pending:
                    await asyncio.sleep(0.02)
                assert pub._outbox is not None
                tracked = pub._outbox.sink._tracked
                return set(tracked._adds), len(tracked._early)

        adds, early = asyncio.run(main())
        assert adds == set()
        assert early == 0
        assert len(memory.records("orders")) == 4


class TestPublishErrors:
    def test_a_commit_that_cannot_get_the_lock_raises_outbox_write_error(
        self, tmp_path: Path
    ) -> None:
        """While another connection holds the file's write lock past busy_timeout_s,
        await publish() raises OutboxWriteError (nothing stored, re-send is safe)."""
        store = SQLiteOutbox(tmp_path / "o.db", busy_timeout_s=0.2)
        locker = sqlite3.connect(tmp_path / "o.db", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")

        async def main() -> None:
            async with publisher(store, MemoryTransport(), relay=False) as pub:
                with pytest.raises(OutboxWriteError) as info:
                    await pub.publish(Placed("o", 1))
                assert info.value.possibly_written is False

        try:
            asyncio.run(main())
        finally:
            locker.execute("ROLLBACK")
        assert store.status().pending == 0

    def test_one_conflicting_event_fails_alone_in_a_group_commit(self, tmp_path: Path) -> None:
        """Events committed together: the one whose event_id is taken by another event
        fails with EventIdConflictError, the others are committed."""
        store = SQLiteOutbox(tmp_path / "o.db")

        async def main() -> list[Any]:
            async with publisher(store, MemoryTransport(), relay=False) as pub:
                futures = [
                    pub.publish_nowait(Placed("a", 1), event_id="shared"),
                    pub.publish_nowait(Placed("b", 2), event_id="shared"),
                    pub.publish_nowait(Placed("c", 3)),
                ]
                done, _ = await asyncio.wait(futures, timeout=10)
                assert [f in done for f in futures] == [False, True, False]
                # retrieved here: else close() raises it, as a failure nobody was told of
                assert isinstance(futures[1].exception(), EventIdConflictError)
            return await asyncio.gather(*futures, return_exceptions=True)

        first, second, third = asyncio.run(main())
        assert isinstance(second, EventIdConflictError)
        # relay=False: committed events settle at close as _IN_OUTBOX (do not re-send)
        for outcome in (first, third):
            assert isinstance(outcome, DeliveryError)
            assert outcome.failures[0].code == "_IN_OUTBOX"
        assert store.status().pending == 2


class TestLoopStaysFree:
    def test_a_commit_waiting_for_a_locked_file_does_not_block_the_loop(
        self, tmp_path: Path
    ) -> None:
        """While the SQLite file is locked for ~1 s, a ticker task keeps running every
        few ms (the commit waits in a thread); the publish completes after the unlock."""
        store = SQLiteOutbox(tmp_path / "o.db")
        locker = sqlite3.connect(tmp_path / "o.db", isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN IMMEDIATE")
        memory = MemoryTransport()

        async def main() -> tuple[int, float]:
            ticks = 0
            stop = asyncio.Event()

            async def ticker() -> None:
                nonlocal ticks
                while not stop.is_set():
                    ticks += 1
                    await asyncio.sleep(0.005)

            async with publisher(store, memory) as pub:
                tick_task = asyncio.create_task(ticker())
                publish = asyncio.create_task(pub.publish(Placed("o", 1)))
                await asyncio.sleep(1.0)
                assert not publish.done()
                locker.execute("ROLLBACK")
                started = time.monotonic()
                result = await asyncio.wait_for(publish, 20)
                stop.set()
                await tick_task
                assert result.topic == "orders"
                return ticks, time.monotonic() - started

        ticks, _ = asyncio.run(main())
        # ~200 ticks if the loop is free; a blocked loop would manage a handful.
        assert ticks >= 50
        assert len(memory.records("orders")) == 1


class TestCloseIsBounded:
    def test_close_gives_up_on_a_commit_stuck_on_a_lock_and_reports_it(
        self, tmp_path: Path
    ) -> None:
        """close(1) returns within a few seconds while a commit waits on a lock held
        elsewhere; that event's future fails with OutboxWriteError (possibly written),
        which close() raises too, since nobody had retrieved it."""
        store = SQLiteOutbox(tmp_path / "o.db", busy_timeout_s=5)
        locker = sqlite3.connect(tmp_path / "o.db", isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN IMMEDIATE")

        async def main() -> tuple[BaseException | None, float]:
            pub = publisher(store, MemoryTransport())
            fut = pub.publish_nowait(Placed("o", 1))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            with pytest.raises(DeliveryError) as raised:
                await pub.close(1.0)
            elapsed = time.monotonic() - started
            locker.execute("ROLLBACK")
            assert [f.code for f in raised.value.failures] == ["_OUTBOX_WRITE_UNKNOWN"]
            return fut.exception(), elapsed

        error, elapsed = asyncio.run(main())
        assert isinstance(error, OutboxWriteError)
        assert error.possibly_written is True
        assert elapsed < 4.0
