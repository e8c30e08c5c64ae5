"""A bounded window of in-flight batches for the asyncio contenders.

The efficient way a user publishes many events from asyncio: enqueue a batch
without awaiting each event, keep a few batches in flight, and when the window
is full await the oldest batch's futures one by one. Awaiting a future that is
already done does not suspend, so this costs far less than ``asyncio.gather``
(which adds a done-callback, hence a loop callback, per future).
"""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["BATCH", "WINDOW", "BatchWindow"]

#: Events per batch and batches in flight (so at most 10,000 unacknowledged events).
BATCH = 1000
WINDOW = 10


class BatchWindow:
    """Keeps at most ``WINDOW`` batches outstanding; counts acknowledged and failed events."""

    def __init__(self) -> None:
        self._pending: deque[list[Any]] = deque()
        self.acked = 0
        self.failed = 0

    async def add(self, futures: list[Any]) -> None:
        """Track one batch; wait for the oldest batch while the window is full."""
        self._pending.append(futures)
        if len(self._pending) >= WINDOW:
            await self._settle_oldest()

    async def drain(self) -> None:
        """Wait for every outstanding batch."""
        while self._pending:
            await self._settle_oldest()

    async def _settle_oldest(self) -> None:
        batch = self._pending.popleft()
        for fut in batch:
            try:
                await fut
            except Exception:  # a failed delivery: counted, never raised
                self.failed += 1
            else:
                self.acked += 1
