"""The durable outbox: commit events to a database first, then relay them to Kafka.

Events so stored survive broker outages and process crashes.

* :class:`~eventwire.outbox.sqlite.SQLiteOutbox` -- the embedded default.
* :class:`~eventwire.outbox.postgres.PostgresOutbox` -- for production, in the
  same transaction as your domain write.
* :class:`~eventwire.outbox.relay.OutboxRelay` -- claims, sends, marks sent.
"""

from eventwire.outbox.base import (
    ClaimedEntry,
    EventIdConflictError,
    OutboxEntry,
    OutboxStatus,
    OutboxStore,
    RelayHeartbeat,
    RowState,
)
from eventwire.outbox.relay import OutboxRelay, RelayFailingError, RelayStats
from eventwire.outbox.sqlite import SQLiteOutbox

__all__ = [
    "ClaimedEntry",
    "EventIdConflictError",
    "OutboxEntry",
    "OutboxRelay",
    "OutboxStatus",
    "OutboxStore",
    "RelayFailingError",
    "RelayHeartbeat",
    "RelayStats",
    "RowState",
    "SQLiteOutbox",
]
