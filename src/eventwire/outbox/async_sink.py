"""The outbox sink of :class:`~eventwire.AsyncPublisher`: awaited commits, the same relay.

With ``AsyncPublisher(..., outbox=store)`` (the same ``SQLiteOutbox`` /
``PostgresOutbox`` as :class:`~eventwire.Publisher` takes):

* Each published event is committed to the store by one writer task, in
  publish order; events published while a commit is under way are committed
  together in the next transaction (one fsync for many events). The commit
  never blocks the loop: PostgreSQL through psycopg's ``AsyncConnection``,
  SQLite in a worker thread (see :mod:`eventwire.outbox._async_write`).
* Everything after the commit is the sync outbox's, unchanged
  (:class:`~eventwire.outbox.sink.OutboxSink`): the same table, the same relay
  in a background thread, the same tracking of handles by outbox row, the same
  flush/close rules. So the promises of :mod:`eventwire.outbox.sink` hold: an
  event is durable once committed; the relay's ack resolves it.
* A failed commit fails the event's future with the store's
  :class:`~eventwire.OutboxWriteError` (``possibly_written`` says whether it may
  be stored; re-send with the same ``event_id`` either way). An event whose
  ``event_id`` conflicts fails alone, not the events committed with it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from eventwire._errors import DeliveryError, DeliveryFailure, OutboxWriteError
from eventwire.outbox._async_write import stage, writer_for
from eventwire.outbox.base import EventIdConflictError, OutboxStore
from eventwire.outbox.sink import OutboxSink

if TYPE_CHECKING:
    from eventwire._core import PublisherCore
    from eventwire._record import Record

__all__ = ["MAX_GROUP_COMMIT", "AsyncOutboxSink"]

#: Events committed in one transaction at most (those waiting while a commit ran).
MAX_GROUP_COMMIT = 1000


class AsyncOutboxSink:
    """Awaited, grouped commits in front of an :class:`OutboxSink` (see module docs)."""

    def __init__(
        self,
        core: PublisherCore,
        store: OutboxStore,
        *,
        start_relay: bool,
        relay_options: Mapping[str, Any] | None,
    ) -> None:
        self.sink = OutboxSink(core, store, start_relay=start_relay, relay_options=relay_options)
        self.core = core
        self.store = store
        self._writer = writer_for(store)
        #: Published events waiting for their commit, in publish order.
        self._queue: deque[Record] = deque()
        #: The events of the commit under way ([] between commits).
        self._committing: list[Record] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        """Events waiting for their commit, plus those committed and not yet settled."""
        return len(self._queue) + self.sink.in_flight

    def submit(self, record: Record, loop: asyncio.AbstractEventLoop) -> None:
        """Queue ``record`` for the writer task (started if idle); its future settles it."""
        self._queue.append(record)
        if self._task is None:
            self._task = loop.create_task(self._write())

    async def _write(self) -> None:
        queue = self._queue
        try:
            while queue:
                batch = [queue.popleft() for _ in range(min(len(queue), MAX_GROUP_COMMIT))]
                self._committing = batch
                try:
                    await self._commit(batch)
                except EventIdConflictError:  # one event's fault: commit the others alone
                    for i, record in enumerate(batch):
                        self._committing = batch[i:]  # those before are settled already
                        try:
                            await self._commit([record], quiet=True)
                        except asyncio.CancelledError:
                            queue.extendleft(reversed(batch[i + 1 :]))  # close() fails them
                            raise
                self._committing = []
        finally:
            self._task = None
            self._committing = []

    async def _commit(self, records: list[Record], *, quiet: bool = False) -> None:
        """Commit ``records`` in one transaction; on failure fail their futures.

        Raises (unless ``quiet``) the EventIdConflictError of a group, whose
        futures are left unsettled for a commit one by one.
        """
        entries, token = self.sink.begin_commit(records)
        try:
            rows = await self._writer.add(entries)
        except asyncio.CancelledError:
            error = OutboxWriteError(
                len(records),
                "close() timed out while the commit was under way; re-send with the same event_id",
                possibly_written=True,
            )
            self._failed(token, records, error)
            raise
        except EventIdConflictError as exc:
            if len(records) > 1 and not quiet:
                self.sink.forget_commit(token)
                raise
            self._failed(token, records, exc)
        except Exception as exc:
            self._failed(token, records, exc)
        else:
            if self.sink.asks_store(rows):  # rare: a park reported before this returned
                await asyncio.to_thread(self.sink.committed, token, records, rows)
            else:
                self.sink.committed(token, records, rows)

    def _failed(self, token: int, records: Sequence[Record], exc: BaseException) -> None:
        """Fail the records' futures with ``exc`` and keep their failures for flush/close.

        The future is all the caller has (unlike the sync outbox, whose caller gets
        the store's error raised): a future nobody awaited, or whose await was
        cancelled, is reported by the next ``flush()``/``close()``, as without an outbox.
        """
        for record in records:  # the store's own error, before the ledger's DeliveryError
            fut = record.handle._afut
            if fut is not None and not fut.done():
                fut.set_exception(exc)
        self.sink.commit_failed(token, records, exc)
        keep = self.core.ledger.keep_refused
        for record in records:
            keep(record.handle)

    async def stage(self, record: Record, connection: Any) -> str:
        """Add the (untraced) record in the caller's open transaction; return its event id."""
        await stage(self.store, self.sink.entries_of([record]), connection)
        return record.handle.event_id

    async def _wait_for_commits(self, timeout: float) -> None:
        task = self._task
        if task is not None:
            await asyncio.wait({task}, timeout=timeout)

    async def flush(self, timeout: float) -> None:
        """Wait (bounded) for the commits, then as :meth:`OutboxSink.flush` in a thread.

        Raises:
            DeliveryError: as :meth:`OutboxSink.flush`; also every event whose
                commit had not ended at the timeout, under way or not begun
                (``_FLUSH_TIMEOUT``; it is still committed later).
            RelayFailingError: as :meth:`OutboxSink.flush`.
        """
        deadline = time.monotonic() + timeout
        await self._wait_for_commits(timeout)
        waiting: list[DeliveryFailure] = [
            r.handle.failure_from("_FLUSH_TIMEOUT", "its commit to the outbox is under way")
            for r in self._committing
            if not r.handle.done()
        ]
        waiting += [
            r.handle.failure_from("_FLUSH_TIMEOUT", "not yet committed to the outbox")
            for r in self._queue
        ]
        context = f"flush({timeout:g}) with outbox"
        try:
            await asyncio.to_thread(self.sink.flush, max(0.0, deadline - time.monotonic()))
        except DeliveryError as exc:
            if not waiting:
                raise
            raise DeliveryError([*exc.failures, *waiting], context=context) from exc
        if waiting:
            raise DeliveryError(waiting, context=context)

    async def close(self, timeout: float) -> None:
        """After ``refuse_publishing()``: finish the commits, then as :meth:`OutboxSink.close`.

        Commits still under way at the timeout are cancelled (their events fail
        with ``OutboxWriteError``, ``possibly_written``); events whose commit had
        not begun fail with ``OutboxWriteError`` (not written).
        """
        deadline = time.monotonic() + timeout
        await self._wait_for_commits(timeout)
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._queue:
            left = list(self._queue)
            self._queue.clear()
            _, token = self.sink.begin_commit(left)
            error = OutboxWriteError(
                len(left), "the publisher closed before the commit began", possibly_written=False
            )
            self._failed(token, left, error)
        try:
            await asyncio.to_thread(self._close_sync, max(0.0, deadline - time.monotonic()))
        finally:
            await self._writer.aclose()

    def _close_sync(self, timeout: float) -> None:
        if self.core.begin_close(timeout):
            self.sink.close(timeout)
