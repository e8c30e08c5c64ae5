"""Hand settled deliveries from the transport's thread to an asyncio loop.

One ``call_soon_threadsafe`` wakes the loop per *burst* of reports, not per
event: reports are queued in a deque and drained in one loop callback.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import TYPE_CHECKING

from eventwire._errors import DeliveryError

if TYPE_CHECKING:
    from eventwire._handle import DeliveryHandle

__all__ = ["LoopBridge"]


class LoopBridge:
    """Resolves each handle's asyncio future on its loop, without blocking it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._queue: deque[DeliveryHandle] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def push(self, handle: DeliveryHandle, _failure: object = None) -> None:
        """Queue a settled handle; wake the loop if no drain is scheduled yet.

        Also the ledger's settle hook (``_failure`` unused: the handle has it). A
        handle without a future (nobody awaits it) is ignored: no wake-up.
        """
        if handle._afut is None:
            return
        self._queue.append(handle)
        if self._scheduled:
            return
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self.drain)
        except RuntimeError:  # loop closed: nobody is awaiting any more; keep nothing
            self._queue.clear()
            self._scheduled = False

    def drain(self) -> None:
        """Resolve every queued handle's future now (on the loop's thread only)."""
        with self._lock:
            self._scheduled = False
        queue = self._queue
        while queue:
            handle = queue.popleft()
            fut = handle._afut
            if fut is None or fut.done():
                continue
            failure = handle._failure  # (not .failure: that marks it observed)
            if failure is None:
                fut.set_result(handle._result())
            else:
                fut.set_exception(DeliveryError([failure]))
                if handle._seen:  # already reported (flush) or observed: not "never retrieved"
                    fut.exception()
