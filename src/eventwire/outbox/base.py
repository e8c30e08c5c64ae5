"""The outbox seam: what a store must do for the relay and the publisher."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import msgspec

from eventwire._errors import EventIdConflictError

__all__ = [
    "DEAD_LETTERED_PREFIX",
    "ClaimedEntry",
    "EventIdConflictError",
    "OutboxEntry",
    "OutboxStatus",
    "OutboxStore",
    "RelayHeartbeat",
    "RowState",
    "decode_headers",
    "encode_headers",
    "unwrap_connection",
]


class OutboxEntry(msgspec.Struct, frozen=True):
    """One encoded event, exactly as it will be sent: the relay re-sends these bytes.

    Immutable; compares and hashes by value. A frozen ``msgspec.Struct`` (it was a
    frozen dataclass): the publisher makes one per event written and a claim one per
    row, and msgspec builds it in C, about ten times faster. Build it by position
    or keyword; copy with ``msgspec.structs.replace``.
    """

    event_id: str
    event_type: str
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


class ClaimedEntry(msgspec.Struct, frozen=True):
    """An entry a relay holds a lease on (a frozen ``msgspec.Struct``, as :class:`OutboxEntry`)."""

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


#: How a dead-lettered row's ``last_error`` starts (see :meth:`OutboxStore.mark_sent`).
DEAD_LETTERED_PREFIX = "dead-lettered: "


@dataclass(frozen=True, slots=True)
class RowState:
    """Where one outbox row stands, as :meth:`OutboxStore.row_states` reports it."""

    #: ``pending``: not delivered yet (waiting, leased or retrying); ``parked``: set
    #: aside after a permanent failure; ``sent``: Kafka acknowledged it;
    #: ``dead_lettered``: given up and recorded as done (the relay dead-lettered it).
    state: Literal["pending", "parked", "sent", "dead_lettered"]
    #: The last failure (for ``dead_lettered``: the reason it was given up, without the
    #: ``"dead-lettered: "`` prefix); None for a delivered row.
    last_error: str | None


class OutboxStore(Protocol):
    """Durable storage of entries between ``publish()`` and Kafka's ack.

    Promises:

    * ``add`` returns only once the entries are durably committed (or, with
      ``connection=``, are part of the caller's open transaction). It is
      idempotent by ``event_id`` while an entry is unsent: re-adding an event whose
      row is still pending or parked returns that row's id and stores nothing new.
      A re-add must be the *same* event (same topic, key and value; headers may
      differ): another event under an unsent row's ``event_id`` raises
      :class:`EventIdConflictError` and nothing of that ``add()`` is stored.
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
    * A relay's outcome applies only while it holds the lease: ``mark_retry`` and
      ``park`` with ``owner=`` change nothing once the row left ``pending`` or was
      claimed by another owner (its lease expired and was taken over), so a relay
      whose round outlasted its lease cannot undo the outcome of the relay that
      took the entry over. ``mark_sent`` is unconditional: an ack is the truth.
    """

    def add(self, entries: Sequence[OutboxEntry], *, connection: Any = None) -> list[int]:
        """Store entries; return the row id of each, in order.

        In ``connection``'s transaction if given (the caller commits; database
        errors propagate unchanged), else committed durably before returning. An
        entry whose ``event_id`` already has an unsent row is not stored again:
        its existing id is returned, and a parked row becomes pending again with
        a fresh attempt budget (as :meth:`requeue_parked`). Rows already sent do
        not count: a re-send after delivery is a new row (same ``ce_id``).

        A re-add must be the same event: same ``topic``, ``key`` and ``value``
        (headers are not compared, ``ce_time`` differs between re-sends). The
        check costs no extra query when no ``event_id`` has an unsent row.

        Raises:
            EventIdConflictError: an entry's ``event_id`` has an unsent row (or an
                earlier entry of the same call) with a different topic, key or
                value. Nothing of this call is stored; with ``connection=``, the
                entries before the conflicting one may already be in the caller's
                transaction, which is the caller's to roll back.
            OutboxWriteError: (without ``connection=``) nothing is stored
                (``possibly_written=False``), or the outcome is unknown
                (``possibly_written=True``, e.g. the connection dropped during
                COMMIT). Either way, re-send with the same ``event_id``.
        """
        ...

    def claim_batch(self, limit: int, *, owner: str, lease_s: float) -> list[ClaimedEntry]:
        """Lease up to ``limit`` sendable entries to ``owner`` for ``lease_s`` seconds."""
        ...

    def mark_sent(self, ids: Sequence[int], *, dead_lettered: str | None = None) -> None:
        """Record that these entries are done: Kafka acknowledged them, or they were dead-lettered.

        Unconditional (whoever holds the lease): an ack is the truth. Delivered
        rows get ``last_error = NULL``; with ``dead_lettered="CODE: reason"`` the
        rows are done too, with ``last_error = "dead-lettered: CODE: reason"``
        (:meth:`row_states` reports them as ``dead_lettered``).
        """
        ...

    def mark_retry(
        self,
        entry_id: int,
        error: str,
        delay_s: float,
        *,
        counted: bool = True,
        owner: str | None = None,
    ) -> None:
        """Release the lease; make the entry sendable again ``delay_s`` seconds from now.

        "Now" is the store's clock, so the relay host's wall clock plays no part.
        ``error`` becomes the row's ``last_error``.

        ``counted=False``: the claim that leased the entry was no attempt (the
        relay never tried to send it, e.g. it was held back behind an earlier
        entry of its key): the claim's attempt is taken back (never below 0) and
        no first failure time is set.

        ``owner``: apply only if the row is still pending and leased to
        ``owner`` (else change nothing); None: unconditionally.
        """
        ...

    def park(self, entry_id: int, error: str, *, owner: str | None = None) -> bool:
        """Set the entry aside (permanent failure); it is kept for inspection and replay.

        ``owner``: apply only if the row is still pending and leased to ``owner``;
        None: unconditionally. Returns True if the row was parked.
        """
        ...

    def row_states(self, ids: Sequence[int]) -> dict[int, RowState]:
        """Where each of these rows stands; ids with no row are absent from the result.

        A row that is gone was sent and cleaned up (only sent rows are deleted).
        Cheap for a few thousand ids (queried in chunks). Lets a publisher learn
        that another process's relay delivered (or gave up) the rows it wrote.
        """
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
_HEADERS_DECODER = msgspec.msgpack.Decoder(tuple[tuple[str, bytes], ...])


def encode_headers(headers: Sequence[tuple[str, bytes]]) -> bytes:
    """Headers as stored in a BLOB/BYTEA column (MessagePack)."""
    return _HEADERS_ENCODER.encode(list(headers))


def decode_headers(data: bytes) -> tuple[tuple[str, bytes], ...]:
    """Inverse of :func:`encode_headers`."""
    return _HEADERS_DECODER.decode(data)  # decoded straight into tuples


def unwrap_connection(connection: Any) -> Any:
    """Return the DB-API connection inside an SQLAlchemy Session/Connection, or itself.

    The outbox then writes through the same connection, so it shares the
    caller's open transaction.
    """
    module = type(connection).__module__
    if module.startswith("sqlalchemy"):
        if hasattr(connection, "get_bind"):  # a Session: its current Connection (autobegun)
            connection = connection.connection()
        elif not connection.in_transaction():
            # A Connection whose transaction has not begun would make the caller's
            # conn.commit() a no-op: the row written below would be rolled back. Begin it.
            connection.begin()
        dbapi = connection.connection  # the pool's proxy of the DB-API connection
        return getattr(dbapi, "driver_connection", dbapi)
    return connection
