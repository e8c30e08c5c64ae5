"""What an ``os.fork()`` child must not reuse: its parent's connections and locks.

A forked child inherits copies of its parent's objects, but not its threads. A
database connection copied into the child shares its socket (PostgreSQL: both
processes then read each other's answers) or its file locks' bookkeeping (SQLite:
"all kinds of locking problems", says SQLite's *How To Corrupt* page) with the
parent. A lock held by one of the parent's threads at the fork stays held forever.

An object that owns such things registers itself with :func:`register`; in the
child, right after the fork, its ``_after_fork_in_child()`` runs (single-threaded,
before any other code of the child). It must not close what it inherited (closing a
PostgreSQL connection sends "terminate" on the parent's socket): it hands it to
:func:`abandon`, which keeps it referenced, so that no garbage collection closes it
either, and opens its own on next use.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

from eventwire.observability.logging import get_logger

__all__ = ["ForkAware", "abandon", "register"]

_log = get_logger("eventwire")


class ForkAware(Protocol):
    """An object that replaces its inherited resources in a forked child."""

    def _after_fork_in_child(self) -> None: ...


_registered: weakref.WeakSet[ForkAware] = weakref.WeakSet()
#: The parent's resources inherited by this process: never closed, never collected.
_abandoned: list[object] = []


def register(obj: ForkAware) -> None:
    """Call ``obj._after_fork_in_child()`` in every forked child while ``obj`` lives."""
    _registered.add(obj)


def abandon(resource: object) -> None:
    """Keep the parent's ``resource`` alive, unused and unclosed, in this child."""
    if resource is not None:
        _abandoned.append(resource)


def _after_fork_in_child() -> None:
    for obj in list(_registered):
        try:
            obj._after_fork_in_child()
        except Exception as exc:  # a hook must not break the child's start
            _log.error("after_fork_failed", object=type(obj).__name__, error=repr(exc))


os.register_at_fork(after_in_child=_after_fork_in_child)
