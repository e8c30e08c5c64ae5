"""The embedded outbox: one SQLite file, WAL mode, ``synchronous=FULL``.

``add()`` returns after the entries are committed and fsynced, so an event
survives a crash of the process (and of the machine) from then on. Several
processes may share the file; claims take a write lock (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eventwire._errors import ConfigurationError
from eventwire.outbox.base import (
    ClaimedEntry,
    OutboxEntry,
    OutboxStatus,
    decode_headers,
    encode_headers,
    unwrap_connection,
)

__all__ = ["SQLiteOutbox"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS eventwire_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    topic           TEXT NOT NULL,
    key             BLOB,
    value           BLOB NOT NULL,
    headers         BLOB NOT NULL,
    created_at      REAL NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until     REAL NOT NULL DEFAULT 0,
    last_error      TEXT,
    first_failed_at REAL,
    sent_at         REAL
);
CREATE INDEX IF NOT EXISTS eventwire_outbox_pending
    ON eventwire_outbox (state, id);
CREATE INDEX IF NOT EXISTS eventwire_outbox_key
    ON eventwire_outbox (topic, key, id) WHERE state = 'pending';
"""

_INSERT = (
    "INSERT INTO eventwire_outbox (event_id, event_type, topic, key, value, headers, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)

# Sendable now, and no earlier pending entry of the same (topic, key) is held
# back (leased elsewhere or waiting for its retry time): per-key order. The
# held-back keys are found in one pass, so a claim costs O(backlog), not
# O(backlog x entries per key). NULL and empty keys share one ordering group.
_CLAIMABLE = """
WITH blocked AS (
  SELECT topic, COALESCE(key, x'') AS k, MIN(id) AS first_id
  FROM eventwire_outbox
  WHERE state = 'pending' AND (next_attempt_at > :now OR lease_until >= :now)
  GROUP BY topic, COALESCE(key, x'')
)
SELECT o.id, o.event_id, o.event_type, o.topic, o.key, o.value, o.headers, o.attempts,
       o.created_at, o.first_failed_at
FROM eventwire_outbox AS o
LEFT JOIN blocked AS b ON b.topic = o.topic AND b.k = COALESCE(o.key, x'')
WHERE o.state = 'pending' AND o.next_attempt_at <= :now AND o.lease_until < :now
  AND (b.first_id IS NULL OR o.id < b.first_id)
ORDER BY o.id
LIMIT :limit
"""


def _row_to_claimed(row: Sequence[Any]) -> ClaimedEntry:
    entry = OutboxEntry(row[1], row[2], row[3], row[4], row[5], decode_headers(row[6]))
    return ClaimedEntry(row[0], entry, row[7], row[8], row[9])


class SQLiteOutbox:
    """An outbox in a SQLite file (created if missing).

    Args:
        path: the database file. Use the same file as your domain tables to add
            events in your own transaction (``add(..., connection=conn)``).

    Raises:
        ConfigurationError: the file cannot be opened or is not a database.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._conn = self._connect()
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(
                f"cannot open the SQLite outbox at {self.path}: {exc}"
            ) from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    @staticmethod
    def prepare_connection(conn: sqlite3.Connection) -> None:
        """Create the outbox table on the caller's connection (idempotent)."""
        conn.executescript(_SCHEMA)

    def add(self, entries: Sequence[OutboxEntry], *, connection: Any = None) -> None:
        """Insert entries; commit durably, or join ``connection``'s open transaction."""
        now = time.time()
        rows = [
            (e.event_id, e.event_type, e.topic, e.key, e.value, encode_headers(e.headers), now)
            for e in entries
        ]
        if connection is not None:
            connection = unwrap_connection(connection)
            if not isinstance(connection, sqlite3.Connection):
                raise ConfigurationError(
                    f"SQLiteOutbox.add(connection=...) needs a sqlite3.Connection, got "
                    f"{type(connection).__name__}"
                )
            connection.executemany(_INSERT, rows)  # the caller commits or rolls back
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(_INSERT, rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def claim_batch(self, limit: int, *, owner: str, lease_s: float) -> list[ClaimedEntry]:
        """Lease up to ``limit`` sendable entries, oldest first, keeping per-key order."""
        now = time.time()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                rows = self._conn.execute(_CLAIMABLE, {"now": now, "limit": limit}).fetchall()
                self._conn.executemany(
                    "UPDATE eventwire_outbox SET lease_owner = ?, lease_until = ?,"
                    " attempts = attempts + 1 WHERE id = ?",
                    [(owner, now + lease_s, row[0]) for row in rows],
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return [_row_to_claimed(row) for row in rows]

    def _write(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(sql, params)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def mark_sent(self, ids: Sequence[int]) -> None:
        """Mark entries acknowledged by Kafka."""
        now = time.time()
        self._write(
            "UPDATE eventwire_outbox SET state = 'sent', sent_at = ?, lease_until = 0,"
            " lease_owner = NULL WHERE id = ?",
            [(now, i) for i in ids],
        )

    def mark_retry(self, entry_id: int, error: str, next_attempt_at: float) -> None:
        """Release the lease and schedule another attempt."""
        self._write(
            "UPDATE eventwire_outbox SET lease_until = 0, lease_owner = NULL,"
            " next_attempt_at = ?, last_error = ?,"
            " first_failed_at = COALESCE(first_failed_at, ?) WHERE id = ?",
            [(next_attempt_at, error, time.time(), entry_id)],
        )

    def park(self, entry_id: int, error: str) -> None:
        """Set an entry aside after a permanent failure."""
        self._write(
            "UPDATE eventwire_outbox SET state = 'parked', lease_until = 0,"
            " lease_owner = NULL, last_error = ?,"
            " first_failed_at = COALESCE(first_failed_at, ?) WHERE id = ?",
            [(error, time.time(), entry_id)],
        )

    def requeue_parked(self, ids: Sequence[int] | None = None) -> int:
        """Make parked entries pending again (all, or ``ids``); return how many."""
        with self._lock:
            if ids is None:
                cur = self._conn.execute(
                    "UPDATE eventwire_outbox SET state = 'pending', next_attempt_at = 0"
                    " WHERE state = 'parked'"
                )
            else:
                cur = self._conn.executemany(
                    "UPDATE eventwire_outbox SET state = 'pending', next_attempt_at = 0"
                    " WHERE state = 'parked' AND id = ?",
                    [(i,) for i in ids],
                )
            return cur.rowcount

    def list_parked(self, limit: int = 100) -> list[tuple[ClaimedEntry, str]]:
        """Parked entries and their last error, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, event_id, event_type, topic, key, value, headers, attempts,"
                " created_at, first_failed_at, last_error FROM eventwire_outbox"
                " WHERE state = 'parked'"
                " ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        return [(_row_to_claimed(row), row[10] or "") for row in rows]

    def cleanup(self, sent_older_than_s: float) -> int:
        """Delete entries acknowledged more than ``sent_older_than_s`` seconds ago."""
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM eventwire_outbox WHERE state = 'sent' AND sent_at < ?",
                (time.time() - sent_older_than_s,),
            )
            return cur.rowcount

    def status(self) -> OutboxStatus:
        """Pending, parked and retained-sent counts, and the oldest pending age."""
        with self._lock:
            counts = dict(
                self._conn.execute(
                    "SELECT state, COUNT(*) FROM eventwire_outbox GROUP BY state"
                ).fetchall()
            )
            oldest = self._conn.execute(
                "SELECT MIN(created_at) FROM eventwire_outbox WHERE state = 'pending'"
            ).fetchone()[0]
        return OutboxStatus(
            pending=counts.get("pending", 0),
            parked=counts.get("parked", 0),
            sent_retained=counts.get("sent", 0),
            oldest_pending_age_s=None if oldest is None else max(0.0, time.time() - oldest),
        )

    def close(self) -> None:
        """Close the store's connection."""
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteOutbox({str(self.path)!r})"
