"""What Publisher and AsyncPublisher share as façades: the core, and how they show it."""

from __future__ import annotations

from typing import NoReturn

from eventwire._config import KafkaConfig
from eventwire._core import PublisherCore
from eventwire._errors import EventwireError
from eventwire._fork import refuse_pickling
from eventwire.observability.logging import get_logger

__all__ = ["Facade", "closed_after_error"]

_log = get_logger("eventwire")


def closed_after_error(body_error: BaseException, close_error: EventwireError) -> None:
    """A ``with`` body raised (or was cancelled), then ``close()`` raised ``close_error``.

    The body's exception goes on, unreplaced: the application's own error, and a
    cancellation, keep their meaning (``asyncio.timeout()``, ``TaskGroup``). The
    close error is not dropped either: it is logged (``close_failed_after_error``)
    and added to the body's exception as a note, shown with its traceback.
    """
    _log.error(
        "close_failed_after_error",
        error=str(close_error),
        error_type=type(close_error).__name__,
        body_error=type(body_error).__name__,
    )
    what = type(close_error).__name__
    body_error.add_note(f"eventwire: then close() raised {what}: {close_error}")


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
