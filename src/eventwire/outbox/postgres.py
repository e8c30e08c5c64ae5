"""The production outbox: a PostgreSQL table, written in your own transaction.

Requires the ``postgres`` extra (psycopg 3). Claims use ``FOR UPDATE SKIP
LOCKED`` under a transaction-scoped advisory lock: claiming is serialized (it is
short), which keeps per-key order exact even with several relays, while sending
and acknowledging run fully in parallel.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
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

__all__ = ["PostgresOutbox"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS eventwire_outbox (
    id              BIGSERIAL PRIMARY KEY,
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    topic           TEXT NOT NULL,
    key             BYTEA,
    value           BYTEA NOT NULL,
    headers         BYTEA NOT NULL,
    created_at      DOUBLE PRECISION NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until     DOUBLE PRECISION NOT NULL DEFAULT 0,
    last_error      TEXT,
    first_failed_at DOUBLE PRECISION,
    sent_at         DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS eventwire_outbox_pending ON eventwire_outbox (state, id);
-- Per-key order looks up earlier pending rows of the same key. NULL and empty keys
-- share one ordering group (COALESCE), which keeps the lookup an index search.
CREATE INDEX IF NOT EXISTS eventwire_outbox_key
    ON eventwire_outbox (topic, (COALESCE(key, ''::bytea)), id) WHERE state = 'pending';
"""

_INSERT = (
    "INSERT INTO eventwire_outbox (event_id, event_type, topic, key, value, headers, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)

_CLAIM = """
WITH blocked AS (
  -- Keys held back by an earlier entry (leased, or waiting for its retry time):
  -- nothing of theirs after that entry may go out, so per-key order holds.
  SELECT topic, COALESCE(key, ''::bytea) AS k, MIN(id) AS first_id
  FROM eventwire_outbox
  WHERE state = 'pending' AND (next_attempt_at > %(now)s OR lease_until >= %(now)s)
  GROUP BY topic, COALESCE(key, ''::bytea)
), c AS (
  SELECT o.id FROM eventwire_outbox AS o
  LEFT JOIN blocked AS b ON b.topic = o.topic AND b.k = COALESCE(o.key, ''::bytea)
  WHERE o.state = 'pending' AND o.next_attempt_at <= %(now)s AND o.lease_until < %(now)s
    AND (b.first_id IS NULL OR o.id < b.first_id)
  ORDER BY o.id
  LIMIT %(limit)s
  FOR UPDATE OF o SKIP LOCKED
)
UPDATE eventwire_outbox AS t
SET lease_owner = %(owner)s, lease_until = %(until)s, attempts = t.attempts + 1
FROM c WHERE t.id = c.id
RETURNING t.id, t.event_id, t.event_type, t.topic, t.key, t.value, t.headers,
          t.attempts - 1, t.created_at, t.first_failed_at
"""

_CLAIM_LOCK = 0x657665_6E74  # "event": the advisory lock that serializes claims


def _claimed(row: Sequence[Any]) -> ClaimedEntry:
    key = None if row[4] is None else bytes(row[4])
    entry = OutboxEntry(row[1], row[2], row[3], key, bytes(row[5]), decode_headers(bytes(row[6])))
    return ClaimedEntry(row[0], entry, row[7], row[8], row[9])


class PostgresOutbox:
    """An outbox table in PostgreSQL (created if missing).

    Args:
        dsn: a libpq connection string, e.g. ``"postgresql://app@db/app"``.

    Raises:
        ConfigurationError: psycopg is not installed, or the database refused us.
    """

    def __init__(self, dsn: str) -> None:
        try:
            import psycopg  # noqa: PLC0415
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ConfigurationError(
                "PostgresOutbox needs psycopg 3: pip install 'eventwire[postgres]'"
            ) from exc
        self._psycopg = psycopg
        self._lock = threading.Lock()
        try:
            self._conn = psycopg.connect(dsn, autocommit=False)
            with self._conn.transaction():
                self._conn.execute(_SCHEMA)
        except psycopg.Error as exc:
            raise ConfigurationError(f"cannot open the PostgreSQL outbox: {exc}") from None

    @staticmethod
    def prepare_connection(conn: Any) -> None:
        """Create the outbox table through the caller's psycopg connection."""
        unwrap_connection(conn).execute(_SCHEMA)

    def add(self, entries: Sequence[OutboxEntry], *, connection: Any = None) -> None:
        """Insert entries; commit now, or join ``connection``'s open transaction.

        ``connection`` may be a psycopg connection or an SQLAlchemy Session or
        Connection bound to psycopg; the caller commits or rolls back.
        """
        now = time.time()
        rows = [
            (e.event_id, e.event_type, e.topic, e.key, e.value, encode_headers(e.headers), now)
            for e in entries
        ]
        if connection is not None:
            conn = unwrap_connection(connection)
            if not isinstance(conn, self._psycopg.Connection):
                raise ConfigurationError(
                    "PostgresOutbox.add(connection=...) needs a psycopg Connection or an "
                    f"SQLAlchemy Session/Connection on psycopg, got {type(connection).__name__}"
                )
            with conn.cursor() as cur:
                cur.executemany(_INSERT, rows)
            return
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            cur.executemany(_INSERT, rows)

    def claim_batch(self, limit: int, *, owner: str, lease_s: float) -> list[ClaimedEntry]:
        """Lease up to ``limit`` sendable entries, oldest first, keeping per-key order."""
        now = time.time()
        params = {"now": now, "limit": limit, "owner": owner, "until": now + lease_s}
        with self._lock, self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CLAIM_LOCK,))
            rows = self._conn.execute(_CLAIM, params).fetchall()
        return sorted((_claimed(r) for r in rows), key=lambda c: c.id)

    def _write(self, sql: str, params: Sequence[Sequence[Any]]) -> int:
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            cur.executemany(sql, params)
            return cur.rowcount

    def mark_sent(self, ids: Sequence[int]) -> None:
        """Mark entries acknowledged by Kafka."""
        if ids:
            self._write(
                "UPDATE eventwire_outbox SET state = 'sent', sent_at = %s, lease_until = 0,"
                " lease_owner = NULL WHERE id = ANY(%s)",
                [(time.time(), list(ids))],
            )

    def mark_retry(self, entry_id: int, error: str, next_attempt_at: float) -> None:
        """Release the lease and schedule another attempt."""
        self._write(
            "UPDATE eventwire_outbox SET lease_until = 0, lease_owner = NULL,"
            " next_attempt_at = %s, last_error = %s,"
            " first_failed_at = COALESCE(first_failed_at, %s) WHERE id = %s",
            [(next_attempt_at, error, time.time(), entry_id)],
        )

    def park(self, entry_id: int, error: str) -> None:
        """Set an entry aside after a permanent failure."""
        self._write(
            "UPDATE eventwire_outbox SET state = 'parked', lease_until = 0,"
            " lease_owner = NULL, last_error = %s,"
            " first_failed_at = COALESCE(first_failed_at, %s) WHERE id = %s",
            [(error, time.time(), entry_id)],
        )

    def requeue_parked(self, ids: Sequence[int] | None = None) -> int:
        """Make parked entries pending again (all, or ``ids``); return how many."""
        with self._lock, self._conn.transaction():
            if ids is None:
                cur = self._conn.execute(
                    "UPDATE eventwire_outbox SET state = 'pending', next_attempt_at = 0"
                    " WHERE state = 'parked'"
                )
            else:
                cur = self._conn.execute(
                    "UPDATE eventwire_outbox SET state = 'pending', next_attempt_at = 0"
                    " WHERE state = 'parked' AND id = ANY(%s)",
                    (list(ids),),
                )
            return cur.rowcount

    def list_parked(self, limit: int = 100) -> list[tuple[ClaimedEntry, str]]:
        """Parked entries and their last error, oldest first."""
        with self._lock, self._conn.transaction():
            rows = self._conn.execute(
                "SELECT id, event_id, event_type, topic, key, value, headers, attempts,"
                " created_at, first_failed_at, last_error FROM eventwire_outbox"
                " WHERE state = 'parked'"
                " ORDER BY id LIMIT %s",
                (limit,),
            ).fetchall()
        return [(_claimed(r), r[10] or "") for r in rows]

    def cleanup(self, sent_older_than_s: float) -> int:
        """Delete entries acknowledged more than ``sent_older_than_s`` seconds ago."""
        with self._lock, self._conn.transaction():
            cur = self._conn.execute(
                "DELETE FROM eventwire_outbox WHERE state = 'sent' AND sent_at < %s",
                (time.time() - sent_older_than_s,),
            )
            return cur.rowcount

    def status(self) -> OutboxStatus:
        """Pending, parked and retained-sent counts, and the oldest pending age."""
        with self._lock, self._conn.transaction():
            counts: dict[str, int] = dict(
                self._conn.execute(
                    "SELECT state, COUNT(*) FROM eventwire_outbox GROUP BY state"
                ).fetchall()
            )
            row = self._conn.execute(
                "SELECT MIN(created_at) FROM eventwire_outbox WHERE state = 'pending'"
            ).fetchone()
        oldest = None if row is None else row[0]
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
