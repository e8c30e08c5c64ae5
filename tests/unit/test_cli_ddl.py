"""`eventwire outbox ddl` prints the SQL a migration runs to create the outbox."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from eventwire.cli._app import build_app
from eventwire.outbox import OutboxEntry, SQLiteOutbox
from eventwire.outbox.postgres import PostgresOutbox


def _ddl(dialect: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_app(), ["outbox", "ddl", dialect])
    return result.exit_code, result.stdout, result.stderr


def test_the_postgres_ddl_is_what_the_store_runs_itself() -> None:
    code, out, _ = _ddl("postgres")
    assert code == 0
    assert out == PostgresOutbox.schema_sql()
    assert "CREATE TABLE IF NOT EXISTS eventwire_outbox (" in out
    assert "CREATE UNIQUE INDEX IF NOT EXISTS eventwire_outbox_unsent_event" in out


def test_a_sqlite_file_made_from_the_printed_ddl_is_an_outbox_the_store_opens(
    tmp_path: Path,
) -> None:
    code, out, _ = _ddl("sqlite")
    assert code == 0
    path = tmp_path / "made.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(out)
    store = SQLiteOutbox(path)
    try:
        [entry_id] = store.add([OutboxEntry("e-1", "t.T", "orders", b"k", b"v", ())])
        assert [c.id for c in store.claim_batch(5, owner="r", lease_s=30)] == [entry_id]
    finally:
        store.close()


def test_an_unknown_dialect_is_a_usage_error_naming_the_choices() -> None:
    code, _, err = _ddl("mysql")
    assert code == 2
    assert "unknown dialect 'mysql': use postgres or sqlite" in err
