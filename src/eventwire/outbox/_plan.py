"""Store writes as plans: the SQL of an ``add`` written once, run sync or async.

A plan is a generator that yields the statements to run and is sent each one's
result; it returns the row ids. :func:`run` drives it on a blocking connection,
:func:`arun` on an asyncio one, so the sync stores and the asyncio publisher
(``AsyncPublisher(outbox=...)``, ``await stage(...)``) write the same rows with
the same SQL and the same checks (:mod:`eventwire.outbox._sql`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, NamedTuple

__all__ = ["Each", "Fetch", "Many", "Plan", "arun", "run"]


class Fetch(NamedTuple):
    """Run ``sql`` once with ``params``; the result is every row it returned."""

    sql: str
    params: Sequence[Any] | dict[str, Any]


class Each(NamedTuple):
    """Run ``sql`` once per parameter set; the result is the first row of each (or None)."""

    sql: str
    param_sets: Sequence[Sequence[Any]]


class Many(NamedTuple):
    """Run ``sql`` once per parameter set; the result is None."""

    sql: str
    param_sets: Sequence[Sequence[Any] | dict[str, Any]]


Step = Fetch | Each | Many
#: What a store's insert yields (steps), is sent (their results) and returns (row ids).
Plan = Generator[Step, Any, list[int]]


def run(plan: Plan, execute: Callable[[Step], Any]) -> list[int]:
    """Drive ``plan`` with a blocking ``execute``; its errors propagate unchanged."""
    try:
        step = next(plan)
        while True:
            step = plan.send(execute(step))
    except StopIteration as done:
        ids: list[int] = done.value
        return ids


async def arun(plan: Plan, execute: Callable[[Step], Awaitable[Any]]) -> list[int]:
    """Drive ``plan`` with an awaitable ``execute``; its errors propagate unchanged."""
    try:
        step = next(plan)
        while True:
            step = plan.send(await execute(step))
    except StopIteration as done:
        ids: list[int] = done.value
        return ids
