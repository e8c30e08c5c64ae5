"""Graceful shutdown: turn SIGTERM/SIGINT into "stop producing, then flush".

The signal handler only sets a flag (and, for asyncio, an Event through the
loop). It never calls into librdkafka: calling ``flush()``/``close()`` from a
handler while a flush is running aborts the process (confluent-kafka 2.16,
exit code 134). The bounded flush happens when the publisher's ``with`` block
ends, in normal code.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Sequence
from types import FrameType, TracebackType
from typing import Any

__all__ = ["GracefulShutdown"]

_DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: How soon :meth:`GracefulShutdown.wait_sync` notices a signal (the handler takes no lock,
#: so it cannot wake the wait; the wait looks again this often).
_SIGNAL_POLL_S = 0.05


class GracefulShutdown:
    """A context manager that records termination signals instead of dying.

    Example::

        with GracefulShutdown() as shutdown, Publisher(bootstrap) as publisher:
            while not shutdown.requested:
                publisher.publish(next_event())
        # SIGTERM -> the loop ends -> the publisher flushes (bounded) -> exit 0

    Enter it *before* the publisher, as above, so the handlers are still in place
    while the publisher's exit flushes: a second signal then cannot cut the
    flush short.

    With asyncio, use ``async with GracefulShutdown() as shutdown`` and
    ``await shutdown.wait()``; handlers are then installed with
    ``loop.add_signal_handler``.

    Previous handlers are restored on exit, exactly: the Python-level handler
    that :func:`signal.getsignal` returned on entry (a function, ``SIG_DFL``,
    ``SIG_IGN``), or, with asyncio, a handler the running loop had for that
    signal before (e.g. a web server's). Must be entered in the main thread.
    """

    def __init__(self, signals: Sequence[signal.Signals] = _DEFAULT_SIGNALS) -> None:
        self._signals = tuple(signals)
        #: Set by the signal handler: a plain assignment, no lock (see :meth:`_handler`).
        self._signalled = False
        #: Set by :meth:`request` from code (any thread): wakes :meth:`wait_sync` at once.
        self._event = threading.Event()
        self._async_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self._previous_in_loop: dict[signal.Signals, asyncio.Handle] = {}
        self.received: signal.Signals | None = None

    @property
    def requested(self) -> bool:
        """True once a shutdown signal arrived (or :meth:`request` was called)."""
        return self._signalled or self._event.is_set()

    def request(self, signum: signal.Signals | None = None) -> None:
        """Ask for shutdown as if a signal had arrived. Safe from any thread, any time.

        After an ``async with`` block ended (its loop closed or gone) it only
        records the request.
        """
        if self.received is None and signum is not None:
            self.received = signum
        self._event.set()
        if self._async_event is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody awaits
                self._loop.call_soon_threadsafe(self._async_event.set)

    def wait_sync(self, timeout: float | None = None) -> bool:
        """Block until shutdown is requested (or ``timeout``); return whether it was.

        A request from code wakes it at once; a signal within :data:`_SIGNAL_POLL_S`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._signalled:
            wait = _SIGNAL_POLL_S
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return self.requested
            if self._event.wait(wait):
                return True
        return True

    async def wait(self) -> None:
        """Wait, in asyncio, until shutdown is requested."""
        if self._async_event is None:
            raise RuntimeError("use `async with GracefulShutdown()` to wait in asyncio")
        await self._async_event.wait()

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        # Python runs this on the main thread between two bytecodes, possibly while
        # that thread holds the Event's lock (inside wait_sync): setting the Event here
        # could deadlock it. Only plain assignments, which take no lock.
        if self.received is None:
            self.received = signal.Signals(signum)
        self._signalled = True

    def __enter__(self) -> GracefulShutdown:
        _check_main_thread()
        for sig in self._signals:
            self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, previous in self._previous.items():
            _restore(sig, previous)
        self._previous.clear()

    async def __aenter__(self) -> GracefulShutdown:
        _check_main_thread()  # (signal handlers, asyncio's too, are the main thread's)
        self._loop = asyncio.get_running_loop()
        self._async_event = asyncio.Event()
        # A handler the loop already has for the signal is not visible through
        # signal.getsignal() (that shows asyncio's no-op); the selector loops keep
        # them in _signal_handlers, and add_signal_handler would drop it.
        in_loop: dict[int, asyncio.Handle] = getattr(self._loop, "_signal_handlers", {})
        for sig in self._signals:
            self._previous[sig] = signal.getsignal(sig)
            if sig in in_loop:
                self._previous_in_loop[sig] = in_loop[sig]
            self._loop.add_signal_handler(sig, self.request, sig)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._loop is not None
        # remove_signal_handler() leaves the signal at SIG_DFL (SIGINT: Python's
        # KeyboardInterrupt handler), whatever was there before: put that back.
        for sig in self._signals:
            self._loop.remove_signal_handler(sig)
            loop_handle = self._previous_in_loop.get(sig)
            callback = getattr(loop_handle, "_callback", None)
            if loop_handle is not None and callback is not None and not loop_handle.cancelled():
                self._loop.add_signal_handler(sig, callback, *getattr(loop_handle, "_args", ()))
            else:
                _restore(sig, self._previous.get(sig))
        self._previous.clear()
        self._previous_in_loop.clear()


def _check_main_thread() -> None:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "GracefulShutdown must be entered in the main thread (Python delivers signals "
            "only there); run the event loop there, or have the main thread call request()"
        )


def _restore(sig: signal.Signals, previous: Any) -> None:
    """Reinstall ``previous``; None (a handler not installed from Python) cannot be."""
    if previous is not None:
        signal.signal(sig, previous)
