"""Hand settled deliveries from the transport's thread to an asyncio loop.

A report served on the loop's own thread (inside ``publish_nowait``, which
serves ready reports as it sends) resolves its future at once. One served on
another thread is queued, and one ``call_soon_threadsafe`` wakes the loop per
*burst* of those reports, not per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import TYPE_CHECKING

from eventwire._errors import DeliveryError

if TYPE_CHECKING:
    from eventwire._handle import DeliveryHandle

__all__ = ["LoopBridge"]

_get_ident = threading.get_ident


class LoopBridge:
    """Resolves each handle's asyncio future on its loop, without blocking it.

    Futures resolve in the order their reports were served: a report served on
    the loop's thread while others wait in the queue joins the queue.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: The thread the loop ran on when bound (see :meth:`on_loop`).
        self.thread = _get_ident()
        self._queue: deque[DeliveryHandle] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def on_loop(self) -> bool:
        """True if the caller runs on this bridge's loop.

        Cheaper than comparing ``asyncio.get_running_loop()``, which costs a
        ``getpid()`` system call on CPython 3.11. Only one loop runs on a thread
        at a time, so "this thread, and the loop is running" means "inside this loop".
        """
        return _get_ident() == self.thread and self.loop.is_running()

    def push(self, handle: DeliveryHandle, _failure: object = None) -> None:
        """Resolve a settled handle's future now (on the loop's thread) or queue it.

        Also the ledger's settle hook (``_failure`` unused: the handle has it). A
        handle without a future (nobody awaits it) is ignored: no wake-up.
        """
        if handle._afut is None:
            return
        queue = self._queue
        if not queue and _get_ident() == self.thread:
            # On the loop's thread: set_result's callbacks run later, via call_soon.
            with contextlib.suppress(RuntimeError):  # loop closed: nobody awaits any more
                _resolve(handle)
            return
        queue.append(handle)
        if self._scheduled:
            return
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self.drain)
        except RuntimeError:  # loop closed: nobody is awaiting any more; keep nothing
            queue.clear()
            self._scheduled = False

    def drain(self) -> None:
        """Resolve every queued handle's future now (on the loop's thread only)."""
        with self._lock:
            self._scheduled = False
        queue = self._queue
        while queue:
            _resolve(queue.popleft())


def _resolve(handle: DeliveryHandle) -> None:
    fut = handle._afut
    if fut is None or fut.done():
        return
    failure = handle._failure  # (not .failure: that marks it observed)
    if failure is None:
        fut.set_result(handle._result())
    else:
        fut.set_exception(DeliveryError([failure]))
        if handle._seen:  # already reported (flush) or observed: not "never retrieved"
            fut.exception()
