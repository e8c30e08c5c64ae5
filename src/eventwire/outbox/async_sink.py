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
from eventwire._worker_close import WorkerClosing
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
        core.held_elsewhere = self._queue.__len__  # (for the exit check, eventwire._unclosed)
        #: The events of the commit under way ([] between commits).
        self._committing: list[Record] = []
        self._task: asyncio.Task[None] | None = None
        #: close() began: it fails what the writer leaves (see _writer_ended).
        self._closing = False
        #: The sync closing in a worker thread, which outlives a cancelled close().
        self._sync_closing = WorkerClosing(core, self._close_sync, self.sink.close)

    @property
    def in_flight(self) -> int:
        """Events waiting for their commit, plus those committed and not yet settled."""
        return len(self._queue) + self.sink.in_flight

    def submit(self, record: Record, loop: asyncio.AbstractEventLoop) -> None:
        """Queue ``record`` for the writer task (started if idle); its future settles it."""
        self._queue.append(record)
        if self._task is None:
            task = self._task = loop.create_task(self._write())
            task.add_done_callback(self._writer_ended)

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
                            # not begun: failed by close(), or by _writer_ended
                            queue.extendleft(reversed(batch[i + 1 :]))
                            raise
                self._committing = []
        finally:
            self._task = None
            self._committing = []

    def _writer_ended(self, task: asyncio.Task[None]) -> None:
        """The writer task ended: if cancelled other than by close(), fail what it left.

        Cancelled by the event loop's end, or a shutdown that cancels every task (even
        before its first step), it leaves events whose commit never began, which nobody
        else would fail: fail them now (logged, and kept for a later flush()/close()).
        """
        if self._task is task:  # (cancelled before it ran: its finally never did)
            self._task = None
        if not task.cancelled() or self._closing or self._task is not None or not self._queue:
            return
        self._fail_queued(
            "the writer task was cancelled (the event loop ended, or a shutdown cancelled "
            "every task) before the commit began"
        )

    def _fail_queued(self, reason: str) -> None:
        """Fail every event still waiting for its commit: not written."""
        left = list(self._queue)
        self._queue.clear()
        _, token = self.sink.begin_commit(left)
        self._failed(token, left, OutboxWriteError(len(left), reason, possibly_written=False))

    async def _commit(self, records: list[Record], *, quiet: bool = False) -> None:
        """Commit ``records`` in one transaction; on failure fail their futures.

        Raises (unless ``quiet``) the EventIdConflictError of a group, whose
        futures are left unsettled for a commit one by one.
        """
        entries, token = self.sink.begin_commit(records)
        try:
            rows = await self._writer.add(entries)
        except asyncio.CancelledError:
            why = (
                "close() timed out"
                if self._closing
                else "the writer task was cancelled (the event loop ended, or a shutdown "
                "cancelled every task)"
            )
            error = OutboxWriteError(
                len(records),
                f"{why} while the commit was under way",
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
        not begun fail with ``OutboxWriteError`` (not written). The sync closing runs
        once, in a worker thread a cancelled close() leaves running: called again,
        this waits for it (up to ``timeout``) and raises its outcome once, or
        finishes a closing cut short (``core.close_interrupted``).
        """
        deadline = time.monotonic() + timeout
        self._closing = True
        await self._wait_for_commits(timeout)
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._queue:
            self._fail_queued("the publisher closed before the commit began")
        try:
            await self._sync_closing.wait(max(0.0, deadline - time.monotonic()))
            outcome = self._sync_closing.take()
            if outcome is not None:
                raise outcome  # DeliveryError, RelayFailingError; or an interrupt
        finally:
            await self._writer.aclose()

    def _close_sync(self, timeout: float) -> None:
        if self.core.begin_close(timeout):
            self.sink.close(timeout)
