"""SQL the SQLite and PostgreSQL outboxes share: columns, conditions, row decoding.

Each store fills in its own "now" (``{now}``): SQLite's is a parameter (the
host's monotonic clock), PostgreSQL's an expression on the server's clock. The
dialects differ enough elsewhere (placeholders, types, ``xid8``) that whole
statements stay in the store modules.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Sequence
from typing import Any

import msgspec

from eventwire.outbox.base import (
    DEAD_LETTERED_PREFIX,
    ClaimedEntry,
    EventIdConflictError,
    OutboxEntry,
    RowState,
)

#: Columns that make a :class:`ClaimedEntry` (see :func:`claimed`), in this order;
#: a store selects them, then ``age_s`` (and for ``list_parked`` ``last_error``).
ENTRY_COLUMNS = (
    "id, event_id, event_type, topic, key, value, headers, attempts, created_at, first_failed_at"
)

#: Columns an existing outbox table must have (a table of an older eventwire lacks some).
REQUIRED_COLUMNS = frozenset(
    {
        "id",
        "event_id",
        "event_type",
        "topic",
        "key",
        "value",
        "headers",
        "created_at",
        "state",
        "attempts",
        "next_attempt_at",
        "retry_scheduled_at",
        "lease_owner",
        "leased_at",
        "lease_until",
        "last_error",
        "first_failed_at",
        "sent_at",
    }
)

#: A pending row that may not go out now: leased, or waiting for its retry time.
#: Both compare with the store's clock and need "now" to lie between the moment the
#: lease or retry was set and the moment it ends: if the clock is *before* the moment
#: it was set, the clock stepped back since, and the lease or wait is over (a stale
#: lease is taken over, a retry goes out at once) instead of lasting as long as the
#: step. Format with ``now``.
HELD_BACK = (
    "(({p}next_attempt_at > {now} AND {p}retry_scheduled_at <= {now})"
    " OR ({p}lease_until > {now} AND {p}leased_at <= {now}))"
)

#: What requeueing a parked row (or re-adding its event) resets. Format with ``wall``
#: (the new ``created_at``); the row keeps its place in its key's order.
REQUEUE_SET = (
    "state = 'pending', attempts = 0, next_attempt_at = 0, retry_scheduled_at = 0,"
    " leased_at = 0, lease_until = 0, lease_owner = NULL, first_failed_at = NULL,"
    " created_at = {wall}"
)


def held_back(now: str, alias: str = "") -> str:
    """The :data:`HELD_BACK` condition for ``now`` on table ``alias`` (none: unqualified)."""
    return HELD_BACK.format(now=now, p=f"{alias}." if alias else "")


def outdated_table(
    existing: set[str], extra: frozenset[str] | set[str] = frozenset()
) -> str | None:
    """A message if an outbox table with these columns (needing ``extra`` too) is outdated."""
    missing = (REQUIRED_COLUMNS | extra) - existing
    if not missing:
        return None
    return (
        "the table eventwire_outbox was created by an older eventwire (missing columns: "
        f"{', '.join(sorted(missing))}). Drain it with the version that created it (or "
        "move its pending rows elsewhere), then drop or rename it; it is created anew"
    )


#: Headers straight into the tuple :class:`OutboxEntry` holds (no copy after decoding).
_HEADERS = msgspec.msgpack.Decoder(tuple[tuple[str, bytes], ...])


def claimed(row: Sequence[Any]) -> ClaimedEntry:
    """A :class:`ClaimedEntry` from :data:`ENTRY_COLUMNS` followed by ``age_s``."""
    return ClaimedEntry(
        row[0],
        OutboxEntry(
            row[1],
            row[2],
            row[3],
            None if row[4] is None else bytes(row[4]),
            bytes(row[5]),
            _HEADERS.decode(row[6]),
        ),
        row[7],
        row[8],
        row[9],
        max(0.0, float(row[10])),
    )


def pick_sendable(
    rows: Iterable[Sequence[Any]],
    picked: list[Any],
    blocked: set[tuple[str, bytes]],
    limit: int,
    *,
    topic: int,
    key: int,
    held: int,
    in_flight: Container[int] = (),
) -> bool:
    """Walk pending ``rows`` in claim order, appending the sendable ones to ``picked``.

    A row is sendable unless it is held back (column ``held``: leased elsewhere or
    waiting for its retry time) or an earlier pending row of its (topic, key) is:
    per-key order. NULL and empty keys share one ordering group. ``blocked``
    carries the held-back groups from one page of rows to the next. Returns True
    once ``picked`` holds ``limit`` rows (the walk stops there), so a claim reads
    the rows up to its last pick and no further: O(batch + held back), not
    O(backlog).

    ``in_flight``: ids (column 0) of rows the claiming relay leased and is still
    delivering in order; such a row is never picked and does not hold its key back
    (the relay sends what is picked after it, and holds it back if it fails).
    """
    for row in rows:
        if row[0] in in_flight:
            continue
        group = (row[topic], bytes(row[key] or b""))
        if row[held]:  # nothing later of its key may go out
            blocked.add(group)
        elif group not in blocked:
            picked.append(row)
            if len(picked) >= limit:
                return True
    return False


def differing_fields(entry: OutboxEntry, topic: str, key: bytes | None, value: bytes) -> list[str]:
    """Which of topic, key, value of ``entry`` differ from these (headers do not count)."""
    return [
        name
        for name, mine, theirs in (
            ("topic", entry.topic, topic),
            ("key", entry.key, None if key is None else bytes(key)),
            ("value", entry.value, bytes(value)),
        )
        if mine != theirs
    ]


def check_batch_event_ids(entries: Sequence[OutboxEntry]) -> None:
    """Raise :class:`EventIdConflictError` if two entries share an event id but differ."""
    if len(entries) < 2:
        return
    seen: dict[str, OutboxEntry] = {}
    for e in entries:
        first = seen.setdefault(e.event_id, e)
        if first is not e:
            differing = differing_fields(e, first.topic, first.key, first.value)
            if differing:
                raise EventIdConflictError(e.event_id, None, differing)


#: Ids per query of ``row_states`` (an IN list / array that stays cheap to plan).
ROW_STATES_CHUNK = 500


def chunks(ids: Sequence[int], size: int = ROW_STATES_CHUNK) -> Iterator[list[int]]:
    """``ids`` without duplicates, ``size`` at a time."""
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), size):
        yield unique[start : start + size]


def dead_lettered_error(dead_lettered: str | None) -> str | None:
    """The ``last_error`` ``mark_sent`` stores: None, or the dead-letter reason, prefixed."""
    return None if dead_lettered is None else DEAD_LETTERED_PREFIX + dead_lettered


def row_state(state: str, last_error: str | None) -> RowState:
    """A :class:`RowState` from a row's ``state`` and ``last_error`` columns."""
    if state == "pending":
        return RowState("pending", last_error)
    if state == "parked":
        return RowState("parked", last_error)
    if last_error is not None and last_error.startswith(DEAD_LETTERED_PREFIX):
        return RowState("dead_lettered", last_error[len(DEAD_LETTERED_PREFIX) :])
    return RowState("sent", last_error)
