"""Adversarial-review regressions for AsyncPublisher(outbox=...) (issue #17, review 2)."""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
import time
from pathlib import Path

import aiosqlite
import msgspec
import pytest

from eventwire import AsyncPublisher, ConfigurationError, DeliveryError, Publisher, Route
from eventwire.outbox import SQLiteOutbox
from eventwire.transports.memory import MemoryTransport


class Placed(msgspec.Struct, frozen=True):
    order_id: str
    n: int


ROUTES = {Placed: Route(topic="orders", key="order_id", type_name="test.Placed")}


class TestStageOnAnotherSQLiteFile:
    def test_an_aiosqlite_connection_on_another_file_is_refused(self, tmp_path: Path) -> None:
        """stage() through an aiosqlite connection of another database file would
        commit the event where this publisher's relay never looks (silently, if that
        file has an outbox table too): ConfigurationError naming both files; nothing
        written to either."""
        store = SQLiteOutbox(tmp_path / "outbox.db")
        other = SQLiteOutbox(tmp_path / "other.db")  # another file with an outbox table

        async def main() -> None:
            async with (
                AsyncPublisher(
                    transport=MemoryTransport(), routes=ROUTES, outbox=store, relay=False
                ) as pub,
                aiosqlite.connect(tmp_path / "other.db") as conn,
            ):
                with pytest.raises(ConfigurationError, match="another database") as info:
                    await pub.stage(Placed("o", 1), connection=conn)
                assert "other.db" in str(info.value)
                assert "outbox.db" in str(info.value)
                await conn.commit()

        asyncio.run(main())
        assert store.status().pending == 0
        assert other.status().pending == 0
        other.close()
        store.close()

    def test_the_same_file_through_another_path_is_accepted(self, tmp_path: Path) -> None:
        """The check compares files, not spellings: a symlinked path to the outbox's
        own file is the same database, and the staged event is committed with it."""
        store = SQLiteOutbox(tmp_path / "outbox.db")
        (tmp_path / "link.db").symlink_to(tmp_path / "outbox.db")

        async def main() -> None:
            async with (
                AsyncPublisher(
                    transport=MemoryTransport(), routes=ROUTES, outbox=store, relay=False
                ) as pub,
                aiosqlite.connect(tmp_path / "link.db") as conn,
            ):
                await pub.stage(Placed("o", 1), connection=conn)
                await conn.commit()

        asyncio.run(main())
        assert store.status().pending == 1
        store.close()


class TestReportedOnceAtTheWorkerThreadTake:
    @pytest.mark.parametrize("ending", ["close", "flush"])
    def test_a_failure_whose_awaiter_was_woken_is_not_raised_again(
        self, tmp_path: Path, ending: str
    ) -> None:
        """The relay gives an awaited event up; its future is resolved on the loop and
        the awaiting task is woken, but has not run yet when flush()/close()'s worker
        thread takes the failures. That failure is the awaiter's to see: flush()/close()
        must not raise it too (they decide futures on the loop, as without an outbox)."""
        store = SQLiteOutbox(tmp_path / "outbox.db")

        async def observe(fut: asyncio.Future[object]) -> BaseException | None:
            try:
                await fut
            except DeliveryError as exc:
                return exc
            return None

        async def main() -> None:
            transport = MemoryTransport()
            transport.fail_topic("orders", "TOPIC_AUTHORIZATION_FAILED")
            pub = AsyncPublisher(
                transport=transport,
                routes=ROUTES,
                outbox=store,
                relay_options={"idle_interval_s": 0.01},
            )
            await pub.start()
            awaiter = asyncio.create_task(observe(pub.publish_nowait(Placed("o", 1))))
            outbox = pub._outbox
            assert outbox is not None
            while outbox._queue or outbox._task is not None:  # committed
                await asyncio.sleep(0.01)
            deadline = time.monotonic() + 10
            while pub.in_flight and time.monotonic() < deadline:
                time.sleep(0.01)  # the loop is held: the relay's report waits for it
            assert pub.in_flight == 0
            # The awaiter runs only after this callback: the worker thread takes first.
            asyncio.get_running_loop().call_soon(time.sleep, 1.0)
            if ending == "flush":
                await pub.flush(5)
                await pub.close(5)
            else:
                await pub.close(5)
            seen = await awaiter
            assert isinstance(seen, DeliveryError)
            assert seen.failures[0].code == "TOPIC_AUTHORIZATION_FAILED"

        asyncio.run(main())


class TestInOutboxIsNotAFailure:
    def test_futures_settled_in_outbox_at_close_are_not_logged_as_never_retrieved(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With relay=False, close() settles unawaited futures as _IN_OUTBOX: durable,
        not a failure, so close() does not raise it -- and asyncio must not log each one
        as "Future exception was never retrieved" either. An await still sees the code."""
        store = SQLiteOutbox(tmp_path / "outbox.db")

        async def main() -> None:
            pub = AsyncPublisher(
                transport=MemoryTransport(), routes=ROUTES, outbox=store, relay=False
            )
            await pub.start()
            unawaited = [pub.publish_nowait(Placed("o", n)) for n in range(3)]
            awaited = pub.publish_nowait(Placed("o", 3))
            await pub.close(1)
            with pytest.raises(DeliveryError) as info:
                await awaited
            assert info.value.failures[0].code == "_IN_OUTBOX"
            assert all(f.done() for f in unawaited)
            del unawaited
            gc.collect()
            await asyncio.sleep(0.05)

        with caplog.at_level(logging.ERROR, logger="asyncio"):
            asyncio.run(main())
            gc.collect()
        assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
        assert store.status().pending == 4


class TestSyncStageOnAnotherSQLiteFile:
    def test_a_sqlite3_connection_on_another_file_is_refused(self, tmp_path: Path) -> None:
        """Publisher.stage() (SQLiteOutbox.add(connection=...)) through a sqlite3
        connection of another file: ConfigurationError naming both files, nothing
        written to either (the same rule as the async stage())."""
        store = SQLiteOutbox(tmp_path / "outbox.db")
        other = SQLiteOutbox(tmp_path / "other.db")
        pub = Publisher(transport=MemoryTransport(), routes=ROUTES, outbox=store, relay=False)
        try:
            with sqlite3.connect(tmp_path / "other.db") as conn:
                with pytest.raises(ConfigurationError, match="another database") as info:
                    pub.stage(Placed("o", 1), connection=conn)
                assert "other.db" in str(info.value)
            assert other.status().pending == 0
            assert store.status().pending == 0
        finally:
            pub.close(1)
            other.close()
            store.close()


def _dict_row(cursor: sqlite3.Cursor, row: tuple[object, ...]) -> dict[str, object]:
    return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}


class TestStageWithTheCallersRowFactory:
    def test_sqlite_connections_with_a_dict_row_factory_stage_as_usual(
        self, tmp_path: Path
    ) -> None:
        """The sqlite3 docs' dict row_factory on the caller's connection (sync or
        aiosqlite): the outbox reads its rows by position all the same, so stage()
        stores the event, and the same event twice is stored once."""
        store = SQLiteOutbox(tmp_path / "outbox.db")

        async def main() -> None:
            async with (
                AsyncPublisher(
                    transport=MemoryTransport(), routes=ROUTES, outbox=store, relay=False
                ) as pub,
                aiosqlite.connect(tmp_path / "outbox.db") as conn,
            ):
                conn.row_factory = _dict_row
                await pub.stage(Placed("o", 1), connection=conn, event_id="a-1")
                await pub.stage(Placed("o", 1), connection=conn, event_id="a-1")
                await conn.commit()

        asyncio.run(main())
        pub = Publisher(transport=MemoryTransport(), routes=ROUTES, outbox=store, relay=False)
        try:
            with sqlite3.connect(tmp_path / "outbox.db") as conn:
                conn.row_factory = _dict_row
                pub.stage(Placed("o", 2), connection=conn, event_id="s-2")
                pub.stage(Placed("o", 2), connection=conn, event_id="s-2")
        finally:
            pub.close(1)
        assert store.status().pending == 2
        store.close()
