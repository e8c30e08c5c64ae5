"""A bounded window of in-flight batches for the asyncio contenders.

The efficient way a user publishes many events from asyncio: enqueue a batch
without awaiting each event, ``asyncio.gather`` the batch's futures, and keep a
few batches in flight, awaiting the oldest when the window is full.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable
from typing import Any

__all__ = ["BATCH", "WINDOW", "BatchWindow"]

#: Events per batch and batches in flight (so at most 10,000 unacknowledged events).
BATCH = 1000
WINDOW = 10


class BatchWindow:
    """Keeps at most ``WINDOW`` gathered batches outstanding; counts the results."""

    def __init__(self) -> None:
        self._pending: deque[Awaitable[list[Any]]] = deque()
        self.acked = 0
        self.failed = 0

    async def add(self, futures: list[Any]) -> None:
        """Track one batch; wait for the oldest batch while the window is full."""
        self._pending.append(asyncio.gather(*futures, return_exceptions=True))
        if len(self._pending) >= WINDOW:
            await self._settle_oldest()

    async def drain(self) -> None:
        """Wait for every outstanding batch."""
        while self._pending:
            await self._settle_oldest()

    async def _settle_oldest(self) -> None:
        results = await self._pending.popleft()
        bad = sum(1 for r in results if isinstance(r, BaseException))
        self.failed += bad
        self.acked += len(results) - bad
