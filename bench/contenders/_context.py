"""The inputs one contender run gets from :mod:`bench.worker`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bench.events import Size
from eventwire_devkit.demo.messages import OrderEventMessage

__all__ = ["Mode", "RunContext"]

Mode = Literal["throughput", "latency"]


@dataclass
class RunContext:
    """One run: where to publish, what, how many, and in which mode.

    ``pool`` has a power-of-two length, so event ``i`` is ``pool[i & mask]``.
    ``warmup`` events are published and acknowledged before the measured window
    (connection, producer id and partition metadata are then in place).
    """

    bootstrap: str
    topic: str
    size: Size
    events: int
    warmup: int
    mode: Mode
    rate: float
    duration_s: float
    pool: list[OrderEventMessage] = field(repr=False)
    profile_path: str | None = None
    #: Contender-specific variant (e.g. the tracing set-up of an eventwire contender).
    variant: str = ""

    @property
    def mask(self) -> int:
        """Index mask over :attr:`pool`."""
        return len(self.pool) - 1
