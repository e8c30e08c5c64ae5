"""The exit check: a publisher never closed, with events still in flight, is reported.

Closing is the application's job (``close()``, ``with``, ``async with``): it flushes and
raises the failures. A publisher left open at interpreter exit (an exception path that
skipped ``close()``, ``asyncio.run`` ending without it) would lose its unacknowledged
events without a word: librdkafka's queue dies with the process. So every publisher core
is tracked here, weakly, from its creation until its closing ends, and one ``atexit``
hook logs a ``publisher_not_closed`` warning for each one still open with events in
flight. It does not flush: an exit is no time to wait for a broker, and a flush the
application did not ask for would hide the missing ``close()``.

Nothing here runs per event: a core is added once (its constructor) and discarded
once (its closing). The hook never raises.
"""

from __future__ import annotations

import atexit
import os
import weakref
from collections.abc import Callable, Collection
from typing import Protocol

from eventwire.observability.logging import get_logger

__all__ = ["forget", "track"]

_log = get_logger("eventwire")


class _Handle(Protocol):
    @property
    def topic(self) -> str: ...


class _Ledger(Protocol):
    @property
    def pending(self) -> Collection[_Handle]: ...


class PublisherCore(Protocol):
    """What the exit check reads of a publisher core (a Protocol: no import of _core)."""

    @property
    def ledger(self) -> _Ledger: ...

    @property
    def held_elsewhere(self) -> Callable[[], int]: ...

    @property
    def in_flight(self) -> int: ...


#: The cores not yet closed (weakly: tracking never keeps a publisher alive).
_open: weakref.WeakSet[PublisherCore] = weakref.WeakSet()
#: At most this many topics are named per warning.
_TOPICS_SHOWN = 10


def track(core: PublisherCore) -> None:
    """Watch ``core`` from its creation (see the module docs)."""
    _open.add(core)


def forget(core: PublisherCore) -> None:
    """``core``'s closing ended: nothing to report at exit."""
    _open.discard(core)


def _report_unclosed() -> None:
    """At exit: warn of each publisher never closed whose events are still in flight."""
    try:
        cores = list(_open)
    except BaseException:  # nothing may escape at exit
        return
    for core in cores:
        try:
            in_flight = core.in_flight + core.held_elsewhere()
            if in_flight <= 0:
                continue
            topics = sorted({handle.topic for handle in list(core.ledger.pending)})
            _log.warning(
                "publisher_not_closed",
                in_flight=in_flight,
                topics=",".join(topics[:_TOPICS_SHOWN])
                + (",..." if len(topics) > _TOPICS_SHOWN else ""),
                hint="call close() (or use `with`/`async with`): its unacknowledged "
                "events are lost at exit, and their failures reach no API",
            )
        except BaseException:  # nothing may escape at exit
            continue


def _forget_all() -> None:
    """In a forked child: the parent's publishers are not the child's to report."""
    _open.clear()


atexit.register(_report_unclosed)
os.register_at_fork(after_in_child=_forget_all)
