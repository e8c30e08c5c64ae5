"""The SQLite outbox checkpoints its WAL on a thread of its own, not in the writers' commits."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from eventwire.outbox import OutboxEntry, SQLiteOutbox
from eventwire.outbox._checkpoint import SAFETY_NET_PAGES


def entries(n: int, start: int = 0) -> list[OutboxEntry]:
    return [
        OutboxEntry(f"id-{i}", "T", "orders", b"k", b"v" * 500, (("ce_id", b"x"),))
        for i in range(start, start + n)
    ]


def checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "eventwire-sqlite-checkpoint"]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """True once ``condition()`` holds, polling every 20 ms; False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


class TestCheckpoints:
    def test_writes_reach_the_database_file_without_a_commit_checkpointing(
        self, tmp_path: Path
    ) -> None:
        """The store's own commits checkpoint only past the safety net; the thread copies
        the log into the database file soon after a write."""
        path = tmp_path / "o.db"
        store = SQLiteOutbox(path)
        try:
            pages = store._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
            assert pages == SAFETY_NET_PAGES
            before = path.stat().st_size
            store.add(entries(300))  # ~40 pages: far below any auto-checkpoint
            assert wait_until(lambda: path.stat().st_size > before + 100_000)
        finally:
            store.close()

    def test_close_stops_the_thread(self, tmp_path: Path) -> None:
        """close() ends the store's checkpoint thread; a store that never wrote has none."""
        idle = SQLiteOutbox(tmp_path / "idle.db")
        idle.status()
        assert idle._checkpointer is not None and idle._checkpointer._thread is None
        idle.close()
        store = SQLiteOutbox(tmp_path / "o.db")
        store.add(entries(1))
        thread = store._checkpointer._thread if store._checkpointer else None
        assert thread is not None and thread.is_alive()
        store.close()
        assert not thread.is_alive()

    def test_a_store_dropped_without_close_stops_its_thread(self, tmp_path: Path) -> None:
        """Garbage-collecting a store that was never closed ends its thread too."""
        store = SQLiteOutbox(tmp_path / "o.db")
        store.add(entries(1))
        assert store._checkpointer is not None
        thread = store._checkpointer._thread
        assert thread is not None
        del store
        gc.collect()
        assert wait_until(lambda: not thread.is_alive())

    def test_an_in_memory_store_has_no_thread(self) -> None:
        """Without a file there is no WAL to checkpoint."""
        store = SQLiteOutbox(":memory:")
        store.add(entries(3))
        assert store._checkpointer is None
        store.close()

    def test_committed_entries_survive_a_reopen_mid_checkpoint(self, tmp_path: Path) -> None:
        """Entries committed while checkpoints run are all there when the file is opened
        again by another store (durability does not depend on the thread)."""
        path = tmp_path / "o.db"
        store = SQLiteOutbox(path)
        for batch in range(10):
            store.add(entries(100, start=batch * 100))
        other = SQLiteOutbox(path)
        try:
            assert other.status().pending == 1000
        finally:
            other.close()
            store.close()

    def test_a_relative_path_still_names_the_same_file_after_a_chdir(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The thread opens the file the store opened, even if the process changed its
        directory since, and never creates a database of its own."""
        home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
        home.mkdir()
        elsewhere.mkdir()
        monkeypatch.chdir(home)
        store = SQLiteOutbox("o.db")
        monkeypatch.chdir(elsewhere)
        try:
            before = (home / "o.db").stat().st_size
            store.add(entries(300))
            assert wait_until(lambda: (home / "o.db").stat().st_size > before + 100_000)
            assert not (elsewhere / "o.db").exists()
        finally:
            store.close()
