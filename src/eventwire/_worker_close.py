"""The asyncio side's closing of a publisher core: run once on a worker thread, tracked.

``AsyncPublisher.close()`` (and the async outbox's) run the core's blocking close in a
worker thread. Cancelling the task that awaits it (a timed-out ``wait_for``, asyncio.run's
cancel-all after a second Ctrl-C, a shutdown that cancels every task) does not stop
that thread. :class:`WorkerClose` is the record of that one closing: when it ended
(``ended``, a :class:`threading.Event`, so a close() on another event loop can see it)
and its outcome, which a re-run close() waits for (bounded, never blocking the loop)
and raises once. A closing cut short by a non-eventwire exception (a KeyboardInterrupt
or SystemExit out of the transport) sets ``core.close_interrupted``, as the sync
``Publisher.close()`` does: :class:`WorkerClosing`, which every close() of one
publisher goes through, then starts a new closing that finishes the job.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from eventwire._errors import EventwireError

if TYPE_CHECKING:
    from eventwire._core import PublisherCore

__all__ = ["WorkerClose", "WorkerClosing"]


class WorkerClose:
    """One closing of ``core``: ``work(timeout)`` in a worker thread, started at once.

    Must be created on a running event loop. ``outcome`` is the EventwireError the
    work raised (a DeliveryError, a RelayFailingError), ``interrupt`` any other
    exception; :meth:`take` hands either out once.
    """

    def __init__(self, core: PublisherCore, work: Callable[[float], None], timeout: float) -> None:
        #: Set once the work returned or raised (its outcome is then in place).
        self.ended = threading.Event()
        self.outcome: EventwireError | None = None
        self.interrupt: BaseException | None = None
        self._taken = False
        self._core = core
        self._work = work
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # as asyncio.to_thread: logging/tracing context
        self.future = loop.run_in_executor(None, context.run, self._run, timeout)

    def _run(self, timeout: float) -> None:
        """The worker thread's part: it never raises (the outcome is kept for close())."""
        try:
            self._work(timeout)
        except EventwireError as exc:
            self.outcome = exc
        except BaseException as exc:
            # Cut short (a KeyboardInterrupt, SystemExit, or a bug): the producer may
            # still run and events be unsettled; the next close() finishes the closing.
            self._core.close_interrupted = True
            self.interrupt = exc
        finally:
            self.ended.set()

    async def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` s (None: until it ends) for the closing; True if it ended.

        On the loop that started it, on its future; from another loop (the first one
        ended, or runs in another thread), by polling :attr:`ended`. Never a blocked
        thread: a cancelled close() stops waiting at once, and leaves the closing running.
        A close() that started this closing waits with no timeout of its own (the work
        is bounded by the timeout it was given); a later close() waits up to its own.
        """
        future = self.future
        if future.get_loop() is asyncio.get_running_loop():
            if not future.done():
                await asyncio.wait({future}, timeout=timeout)
        else:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self.ended.is_set() and (deadline is None or time.monotonic() < deadline):
                await asyncio.sleep(0.01)
        return self.ended.is_set()

    def take(self) -> BaseException | None:
        """The closing's outcome, the first time it is asked for after it ended; else None."""
        if self._taken or not self.ended.is_set():
            return None
        self._taken = True
        return self.outcome if self.outcome is not None else self.interrupt


class WorkerClosing:
    """The closing of one core on worker threads: one at a time, joined by every close().

    ``close(timeout)`` is the whole closing (the close gate, then the rest); ``finish``
    the rest alone, run by the next close() when a closing was cut short
    (``core.close_interrupted``).
    """

    def __init__(
        self,
        core: PublisherCore,
        close: Callable[[float], None],
        finish: Callable[[float], None],
    ) -> None:
        self._core = core
        self._close = close
        self._finish = finish
        #: The closing begun last (None: none yet).
        self.job: WorkerClose | None = None

    def _start(self, timeout: float) -> WorkerClose:
        """The closing to wait for: the current one, or a new one (first, or finishing)."""
        core, job = self._core, self.job
        if job is None:
            job = WorkerClose(core, self._close, timeout)
        elif job.ended.is_set() and core.close_interrupted:
            core.close_interrupted = False
            job = WorkerClose(core, self._finish, timeout)
        self.job = job
        return job

    async def wait(self, timeout: float) -> bool:
        """Start the closing (or finish one cut short) or join it; True once it ended.

        A closing started here is bounded by ``timeout`` itself (its work is given it)
        and waited for to its end; one begun by an earlier close() is waited for up to
        ``timeout``. If that one ends cut short meanwhile, it is finished here.
        """
        deadline = time.monotonic() + timeout
        begun = self.job
        job = self._start(timeout)
        ended = await job.wait(None if job is not begun else timeout)
        if ended and job is begun and self._core.close_interrupted:
            job = self._start(max(0.0, deadline - time.monotonic()))
            ended = await job.wait(None)
        return ended

    def take(self) -> BaseException | None:
        """The outcome of the closing begun last, once, if it ended (see WorkerClose.take)."""
        return self.job.take() if self.job is not None else None
