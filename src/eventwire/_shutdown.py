"""Graceful shutdown: turn SIGTERM/SIGINT into "stop producing, then flush".

The signal handler only sets a flag (and, for asyncio, an Event through the
loop). It never calls into librdkafka: calling ``flush()``/``close()`` from a
handler while a flush is running aborts the process (confluent-kafka 2.16,
exit code 134). The bounded flush happens when the publisher's ``with`` block
ends, in normal code.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Sequence
from types import FrameType, TracebackType
from typing import Any

__all__ = ["GracefulShutdown"]

_DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
        self._event = threading.Event()
        self._async_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self._previous_in_loop: dict[signal.Signals, asyncio.Handle] = {}
        self.received: signal.Signals | None = None

    @property
    def requested(self) -> bool:
        """True once a shutdown signal arrived (or :meth:`request` was called)."""
        return self._event.is_set()

    def request(self, signum: signal.Signals | None = None) -> None:
        """Ask for shutdown as if a signal had arrived. Safe from any thread."""
        if self.received is None and signum is not None:
            self.received = signum
        self._event.set()
        if self._async_event is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._async_event.set)

    def wait_sync(self, timeout: float | None = None) -> bool:
        """Block until shutdown is requested (or ``timeout``); return whether it was."""
        return self._event.wait(timeout)

    async def wait(self) -> None:
        """Wait, in asyncio, until shutdown is requested."""
        if self._async_event is None:
            raise RuntimeError("use `async with GracefulShutdown()` to wait in asyncio")
        await self._async_event.wait()

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.request(signal.Signals(signum))

    def __enter__(self) -> GracefulShutdown:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("GracefulShutdown must be entered in the main thread")
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


def _restore(sig: signal.Signals, previous: Any) -> None:
    """Reinstall ``previous``; None (a handler not installed from Python) cannot be."""
    if previous is not None:
        signal.signal(sig, previous)
