"""The outbox seam: what a store must do for the relay and the publisher."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

__all__ = [
    "ClaimedEntry",
    "OutboxEntry",
    "OutboxStatus",
    "OutboxStore",
    "RelayHeartbeat",
    "decode_headers",
    "encode_headers",
    "unwrap_connection",
]


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One encoded event, exactly as it will be sent: the relay re-sends these bytes."""

    event_id: str
    event_type: str
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class ClaimedEntry:
    """An entry a relay holds a lease on."""

    id: int
    entry: OutboxEntry
    #: Attempts made before this claim.
    attempts: int
    #: When the entry was committed (or last requeued), Unix seconds by the store's clock
    #: (the database server's for PostgreSQL, the host's for SQLite).
    created_at: float
    #: When the first attempt failed (Unix seconds, the store's clock), if one did.
    first_failed_at: float | None = None
    #: Seconds since ``created_at`` by the store's own clock at claim time: compare
    #: this with a deadline, not ``time.time() - created_at`` (the relay host's clock
    #: may differ from the database's).
    age_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RelayHeartbeat:
    """The last sign of life of one relay, as written by :meth:`OutboxStore.heartbeat`."""

    owner: str
    #: Seconds since the relay's last heartbeat, by the store's clock.
    age_s: float
    #: The error of its last round, or None if that round went through.
    last_error: str | None


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """Health of an outbox: how much waits, for how long, and which relays are alive."""

    pending: int
    parked: int
    sent_retained: int
    oldest_pending_age_s: float | None
    #: Every relay that wrote a heartbeat in the last day, most recent first.
    relays: tuple[RelayHeartbeat, ...] = ()


class OutboxStore(Protocol):
    """Durable storage of entries between ``publish()`` and Kafka's ack.

    Promises:

    * ``add`` returns only once the entries are durably committed (or, with
      ``connection=``, are part of the caller's open transaction). It is
      idempotent by ``event_id`` while an entry is unsent: re-adding an event whose
      row is still pending or parked returns that row's id and stores nothing new.
    * ``claim_batch`` returns pending entries in the store's order and never returns
      an entry while an earlier entry of the same (topic, key) is still pending, so
      per-key order survives retries. The order is fixed once an entry can be
      claimed: no entry that becomes visible later sorts before it (SQLite: commit
      order; PostgreSQL: the order of the writing transactions' ids, and an entry
      waits until every transaction that could still add an earlier one has ended).
    * A claim is a lease that expires, so a crashed relay's entries are claimed
      again. Leases and retry times are measured by the store's clock (the
      database server's, or for SQLite the host's monotonic clock), never by the
      caller's wall clock, and a clock that steps back neither stalls a retry nor
      holds a lease longer than it was given.
    """

    def add(self, entries: Sequence[OutboxEntry], *, connection: Any = None) -> list[int]:
        """Store entries; return the row id of each, in order.

        In ``connection``'s transaction if given (the caller commits; database
        errors propagate unchanged), else committed durably before returning. An
        entry whose ``event_id`` already has an unsent row is not stored again:
        its existing id is returned, and a parked row becomes pending again with
        a fresh attempt budget (as :meth:`requeue_parked`). Rows already sent do
        not count: a re-send after delivery is a new row (same ``ce_id``).

        Raises:
            OutboxWriteError: (without ``connection=``) nothing is stored
                (``possibly_written=False``), or the outcome is unknown
                (``possibly_written=True``, e.g. the connection dropped during
                COMMIT). Either way, re-send with the same ``event_id``.
        """
        ...

    def claim_batch(self, limit: int, *, owner: str, lease_s: float) -> list[ClaimedEntry]:
        """Lease up to ``limit`` sendable entries to ``owner`` for ``lease_s`` seconds."""
        ...

    def mark_sent(self, ids: Sequence[int]) -> None:
        """Record that Kafka acknowledged these entries."""
        ...

    def mark_retry(self, entry_id: int, error: str, delay_s: float) -> None:
        """Release the lease; make the entry sendable again ``delay_s`` seconds from now.

        "Now" is the store's clock, so the relay host's wall clock plays no part.
        """
        ...

    def park(self, entry_id: int, error: str) -> None:
        """Set the entry aside (permanent failure); it is kept for inspection and replay."""
        ...

    def requeue_parked(self, ids: Sequence[int] | None = None) -> int:
        """Make parked entries (all, or ``ids``) pending again; return how many.

        A requeued entry starts over: no attempts, no failure time, and its age
        (``created_at``, for ``max_age_s``) counts from the requeue. It keeps its
        place in its key's order.
        """
        ...

    def list_parked(self, limit: int = 100) -> list[tuple[ClaimedEntry, str]]:
        """Parked entries with their last error, oldest first."""
        ...

    def cleanup(self, sent_older_than_s: float) -> int:
        """Delete entries sent longer ago than this; return how many.

        Pending and parked entries are never deleted. Heartbeats older than a day
        are deleted too (not counted).
        """
        ...

    def heartbeat(self, owner: str, error: str | None = None) -> None:
        """Record that relay ``owner`` finished a round (``error``: why it failed, if it did).

        Cheap enough to call every round: a store may skip the write when the
        same owner reported the same error less than a second ago.
        :meth:`status` lists the heartbeats, so another process can tell whether
        a relay is alive.
        """
        ...

    def status(self) -> OutboxStatus:
        """Counts, the age of the oldest pending entry, and the relays' heartbeats."""
        ...

    def close(self) -> None:
        """Release the store's own connections."""
        ...


_HEADERS_ENCODER = msgspec.msgpack.Encoder()
_HEADERS_DECODER = msgspec.msgpack.Decoder(list[tuple[str, bytes]])


def encode_headers(headers: Sequence[tuple[str, bytes]]) -> bytes:
    """Headers as stored in a BLOB/BYTEA column (MessagePack)."""
    return _HEADERS_ENCODER.encode(list(headers))


def decode_headers(data: bytes) -> tuple[tuple[str, bytes], ...]:
    """Inverse of :func:`encode_headers`."""
    return tuple(_HEADERS_DECODER.decode(data))


def unwrap_connection(connection: Any) -> Any:
    """Return the DB-API connection inside an SQLAlchemy Session/Connection, or itself.

    The outbox then writes through the same connection, so it shares the
    caller's open transaction.
    """
    module = type(connection).__module__
    if module.startswith("sqlalchemy"):
        if hasattr(connection, "get_bind"):  # a Session: its current Connection
            connection = connection.connection()
        dbapi = connection.connection  # the pool's proxy of the DB-API connection
        return getattr(dbapi, "driver_connection", dbapi)
    return connection
