"""A PostgreSQL outbox works for roles that may not run DDL (the tables made by a migration).

Production databases often give the application's role only ``SELECT, INSERT, UPDATE,
DELETE``; the owner creates tables in migrations. Each test gets a database of its own
on the session's private server, and roles of its own.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from eventwire import ConfigurationError
from eventwire.outbox import OutboxEntry
from eventwire.outbox.postgres import PostgresOutbox

#: What the docs tell the owner to grant the application's role.
APP_GRANTS = (
    "GRANT SELECT, INSERT, UPDATE, DELETE ON eventwire_outbox, eventwire_outbox_relays TO {role}",
    "GRANT USAGE ON SEQUENCE eventwire_outbox_id_seq TO {role}",
)


@dataclass
class Database:
    owner_dsn: str
    suffix: str

    def dsn_as(self, role: str) -> str:
        return make_conninfo(self.owner_dsn, user=role)

    def sql(self, *statements: str) -> None:
        with psycopg.connect(self.owner_dsn, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def role(self, name: str) -> str:
        """A login role of this test (roles are per server: the name carries a suffix)."""
        role = f"{name}_{self.suffix}"
        self.sql(f"CREATE ROLE {role} LOGIN")
        return role


@pytest.fixture
def database(postgres_dsn: str) -> Iterator[Database]:
    """A fresh database where only its owner may create tables."""
    suffix = uuid.uuid4().hex[:10]
    name = f"lp_{suffix}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    db = Database(make_conninfo(postgres_dsn, dbname=name), suffix)
    db.sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    yield db
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
        for row in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (f"%\\_{suffix}",)
        ).fetchall():
            conn.execute(f"DROP ROLE {row[0]}")


def _eventwire(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The `eventwire` command in a process of its own (its exit code is the caller's to check)."""
    return subprocess.run(
        [sys.executable, "-m", "eventwire.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def _migrate(db: Database) -> None:
    """What a migration does: the owner runs the SQL `eventwire outbox ddl postgres` prints."""
    done = _eventwire("outbox", "ddl", "postgres")
    assert done.returncode == 0, done.stderr
    with psycopg.connect(db.owner_dsn, autocommit=True) as conn:
        conn.execute(done.stdout.encode())


class TestARoleWithoutDdl:
    def test_an_application_role_with_only_dml_uses_an_outbox_a_migration_made(
        self, database: Database
    ) -> None:
        """The store makes nothing when everything is there, so DML grants are enough:
        it opens, writes, claims, marks, beats and cleans up."""
        _migrate(database)
        app = database.role("app")
        database.sql(*(grant.format(role=app) for grant in APP_GRANTS))
        store = PostgresOutbox(database.dsn_as(app))
        try:
            [entry_id] = store.add([OutboxEntry("e-1", "t.T", "orders", b"k", b"v", ())])
            [claimed] = store.claim_batch(10, owner="relay", lease_s=30)
            assert claimed.id == entry_id
            store.mark_sent([entry_id])
            store.heartbeat("relay")
            store.forget_relay("relay")
            store.cleanup(0)
            assert store.status().pending == 0
        finally:
            store.close()

    def test_a_read_only_role_can_see_the_outbox_status(self, database: Database) -> None:
        """SELECT alone is enough for `outbox status` (a monitoring role)."""
        _migrate(database)
        owner = PostgresOutbox(database.owner_dsn)
        owner.add([OutboxEntry("e-1", "t.T", "orders", b"k", b"v", ())])
        owner.close()
        monitor = database.role("monitor")
        database.sql(f"GRANT SELECT ON eventwire_outbox, eventwire_outbox_relays TO {monitor}")
        done = _eventwire(
            "outbox",
            "status",
            "--json",
            env={"EVENTWIRE_OUTBOX_POSTGRES": database.dsn_as(monitor), "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0, done.stderr
        assert '"pending": 1' in done.stdout

    def test_a_role_that_may_not_create_the_missing_tables_is_told_how_to_get_them(
        self, database: Database
    ) -> None:
        app = database.role("app")
        with pytest.raises(ConfigurationError) as info:
            PostgresOutbox(database.dsn_as(app))
        message = str(info.value)
        assert "lacks eventwire_outbox, eventwire_outbox_relays" in message
        assert "eventwire outbox ddl postgres" in message
        assert "USAGE on eventwire_outbox_id_seq" in message

    def test_a_missing_index_alone_is_named(self, database: Database) -> None:
        """The owner made the tables but a later index is missing: the error names it."""
        _migrate(database)
        database.sql("DROP INDEX eventwire_outbox_key_order")
        app = database.role("app")
        database.sql(*(grant.format(role=app) for grant in APP_GRANTS))
        with pytest.raises(ConfigurationError, match=r"lacks eventwire_outbox_key_order, and"):
            PostgresOutbox(database.dsn_as(app))
        PostgresOutbox(database.owner_dsn).close()  # the owner's open makes it
        PostgresOutbox(database.dsn_as(app)).close()
