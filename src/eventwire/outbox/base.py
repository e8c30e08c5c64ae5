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
    created_at: float
    #: When the first attempt failed (Unix seconds), if one did.
    first_failed_at: float | None = None


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """Health of an outbox: how much waits, and for how long."""

    pending: int
    parked: int
    sent_retained: int
    oldest_pending_age_s: float | None


class OutboxStore(Protocol):
    """Durable storage of entries between ``publish()`` and Kafka's ack.

    Promises: ``add`` returns only once the entries are durably committed (or,
    with ``connection=``, are part of the caller's open transaction);
    ``claim_batch`` returns pending entries in insertion order and never returns
    an entry while an earlier entry of the same (topic, key) is still pending, so
    per-key order survives retries; a claim is a lease that expires, so a crashed
    relay's entries are claimed again.
    """

    def add(self, entries: Sequence[OutboxEntry], *, connection: Any = None) -> None:
        """Store entries (in ``connection``'s transaction if given, else commit now)."""
        ...

    def claim_batch(self, limit: int, *, owner: str, lease_s: float) -> list[ClaimedEntry]:
        """Lease up to ``limit`` sendable entries to ``owner`` for ``lease_s`` seconds."""
        ...

    def mark_sent(self, ids: Sequence[int]) -> None:
        """Record that Kafka acknowledged these entries."""
        ...

    def mark_retry(self, entry_id: int, error: str, next_attempt_at: float) -> None:
        """Release the lease; make the entry sendable again at ``next_attempt_at``."""
        ...

    def park(self, entry_id: int, error: str) -> None:
        """Set the entry aside (permanent failure); it is kept for inspection and replay."""
        ...

    def requeue_parked(self, ids: Sequence[int] | None = None) -> int:
        """Make parked entries (all, or ``ids``) pending again; return how many."""
        ...

    def list_parked(self, limit: int = 100) -> list[tuple[ClaimedEntry, str]]:
        """Parked entries with their last error, oldest first."""
        ...

    def cleanup(self, sent_older_than_s: float) -> int:
        """Delete entries sent longer ago than this; return how many."""
        ...

    def status(self) -> OutboxStatus:
        """Counts and the age of the oldest pending entry."""
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
