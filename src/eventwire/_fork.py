"""What another process must not reuse: a forked parent's connections and locks.

A forked child inherits copies of its parent's objects, but not its threads. A
database connection copied into the child shares its socket (PostgreSQL: both
processes then read each other's answers) or its file locks' bookkeeping (SQLite:
"all kinds of locking problems", says SQLite's *How To Corrupt* page) with the
parent. A lock held by one of the parent's threads at the fork stays held forever.

An object that owns such things registers itself with :func:`register`; in the
child, right after the fork, its ``_after_fork_in_child()`` runs (single-threaded,
before any other code of the child). It must not close what it inherited, and opens
its own on next use. It hands what it inherited to :func:`abandon`, which keeps it
referenced, so that no garbage collection closes it while the child runs.

Why not close it: closing a PostgreSQL connection sends "terminate" on the parent's
socket (psycopg itself never closes a connection another process opened). Closing a
SQLite connection that the fork caught inside a write transaction rolls that
transaction back, and in WAL mode a rollback edits the WAL index, memory shared with
the parent. SQLite's ``test/fork-test.c`` allows a child to close an inherited
connection when no write transaction was pending at the fork; that is why a store's
``_before_fork`` waits until none of its transactions is open (bounded): the
interpreter's exit may then close what the child abandoned. (The sqlite3-ruby gem
"discards" such connections without ``sqlite3_close`` since its 2024 ADR
``2024-09-fork-safety``; Python's ``sqlite3`` offers no way to do that.)

The other way into a process, pickling (``multiprocessing`` with the spawn or
forkserver start method, ``ProcessPoolExecutor`` arguments), is refused by
:func:`refuse_pickling` with a message that says what to do instead: such an object
is made in each process, never copied into one.
"""

from __future__ import annotations

import os
import weakref
from typing import NoReturn, Protocol

from eventwire.observability.logging import get_logger

__all__ = ["ForkAware", "abandon", "refuse_pickling", "register"]

_log = get_logger("eventwire")


class ForkAware(Protocol):
    """An object that replaces its inherited resources in a forked child.

    It may also define ``_before_fork()`` and ``_after_fork_in_parent()``: run in the
    forking process just before and after the fork, to keep its threads out of
    libraries whose process-wide mutexes the child must not inherit held (SQLite's).
    ``_before_fork`` must wait a bounded time only.
    """

    def _after_fork_in_child(self) -> None: ...


_registered: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def register(obj: ForkAware) -> None:
    """Run ``obj``'s fork hooks (see :class:`ForkAware`) at every fork while ``obj`` lives."""
    _registered.add(obj)


#: What this process inherited and must not use: kept referenced until its exit.
_abandoned: list[object] = []


def abandon(resource: object) -> None:
    """Keep the parent's ``resource`` referenced, unused and unclosed, in this child.

    Only the interpreter's exit frees it (see the module docstring for why that is
    safe for the outbox stores).
    """
    if resource is not None:
        _abandoned.append(resource)


def refuse_pickling(obj: object, owns: str, instead: str) -> NoReturn:
    """Raise the TypeError that explains why ``obj`` cannot go to another process.

    For ``__reduce__``: pickle (and so ``multiprocessing``'s spawn and forkserver
    start methods, and ``copy.copy``) then fail with what to do, instead of a
    "cannot pickle '_thread.lock' object" from deep inside.
    """
    name = type(obj).__name__
    raise TypeError(
        f"{name} cannot be pickled or sent to another process: it owns {owns}, which "
        f"only work in the process that opened them. {instead}"
    )


def _run(hook: str, objects: list[ForkAware]) -> None:
    for obj in objects:
        method = getattr(obj, hook, None)
        if method is None:
            continue
        try:
            method()
        except Exception as exc:  # a hook must not break the fork
            _log.error("fork_hook_failed", object=type(obj).__name__, hook=hook, error=repr(exc))


#: The objects the last ``_before_fork`` ran for (the after hooks run for the same ones).
_forking: list[ForkAware] = []


def _before_fork() -> None:
    _forking[:] = list(_registered)
    _run("_before_fork", _forking)


def _after_fork_in_parent() -> None:
    _run("_after_fork_in_parent", _forking)
    _forking.clear()


def _after_fork_in_child() -> None:
    objects = list(_forking) or list(_registered)
    _forking.clear()
    _run("_after_fork_in_child", objects)


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
