"""What Publisher and AsyncPublisher share as façades: the core, and how they show it."""

from __future__ import annotations

from typing import NoReturn

from eventwire._config import KafkaConfig
from eventwire._core import PublisherCore
from eventwire._fork import refuse_pickling

__all__ = ["Facade"]


class Facade:
    """The common part of both publishers (httpx's ``BaseClient`` plays this role)."""

    _core: PublisherCore

    @property
    def config(self) -> KafkaConfig | None:
        """The Kafka configuration (None with a custom transport). Its repr hides secrets."""
        return self._core.config

    @property
    def closed(self) -> bool:
        """True once ``close()`` has begun (publishing is refused from then on)."""
        return self._core.closed

    @property
    def in_flight(self) -> int:
        """Events published and not yet acknowledged or failed."""
        return self._core.in_flight

    def __reduce__(self) -> NoReturn:
        refuse_pickling(
            self,
            "its transport (a Kafka producer), threads and locks",
            f"Create one {type(self).__name__} per process (e.g. in a multiprocessing "
            "Pool initializer) and close it there.",
        )

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"in_flight={self.in_flight}"
        return f"<{type(self).__name__} {self.config!r} {state}>"
