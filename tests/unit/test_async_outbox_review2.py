"""Adversarial-review regressions for AsyncPublisher(outbox=...) (issue #17, review 2)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiosqlite
import msgspec
import pytest

from eventwire import AsyncPublisher, ConfigurationError, Route
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
