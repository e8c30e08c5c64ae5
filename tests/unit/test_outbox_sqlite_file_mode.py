"""The SQLite outbox's files are private to their user (review item 19), on a real disk."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventwire import ConfigurationError
from eventwire.outbox import OutboxEntry, SQLiteOutbox


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The usual umask (022), under which SQLite alone creates 0o644 files."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _add_one(store: SQLiteOutbox) -> None:
    store.add([OutboxEntry("id-1", "T", "orders", b"k", b"v", (("ce_id", b"id-1"),))])


@pytest.mark.usefixtures("permissive_umask")
class TestFileModes:
    def test_a_new_database_and_its_wal_and_shm_are_0600(self, tmp_path: Path) -> None:
        """A new outbox file and the -wal and -shm files SQLite makes beside it are
        readable and writable by their owner only."""
        path = tmp_path / "outbox.db"
        store = SQLiteOutbox(path)
        try:
            _add_one(store)
            files = [path, tmp_path / "outbox.db-wal", tmp_path / "outbox.db-shm"]
            assert {f.name: oct(_mode(f)) for f in files} == {f.name: "0o600" for f in files}
        finally:
            store.close()

    def test_mode_sets_the_new_files_permissions(self, tmp_path: Path) -> None:
        """mode=0o660 (a relay of the same group) gives exactly that, whatever the umask."""
        path = tmp_path / "outbox.db"
        store = SQLiteOutbox(path, mode=0o660)
        try:
            _add_one(store)
            assert oct(_mode(path)) == "0o660"
            assert oct(_mode(tmp_path / "outbox.db-wal")) == "0o660"
        finally:
            store.close()

    def test_an_existing_files_mode_is_kept(self, tmp_path: Path) -> None:
        """A file that exists (e.g. the application's own database) keeps its mode."""
        path = tmp_path / "app.db"
        SQLiteOutbox(path).close()
        os.chmod(path, 0o640)
        store = SQLiteOutbox(path)
        try:
            _add_one(store)
            assert oct(_mode(path)) == "0o640"
        finally:
            store.close()

    def test_a_mode_that_is_not_permission_bits_is_refused(self, tmp_path: Path) -> None:
        """mode must be permission bits such as 0o600; nothing is created otherwise."""
        with pytest.raises(ConfigurationError, match="0o600"):
            SQLiteOutbox(tmp_path / "outbox.db", mode=600)  # decimal, not octal
        assert not (tmp_path / "outbox.db").exists()
