"""A relay loop's health: which of its steps fail now, each error logged once.

The relay runs its steps (a round, cleanup, heartbeat) through
:meth:`StepErrors.run`: an exception is logged the first time (and again only when
its text changes), counted, and kept until the step succeeds again, which is
logged as a recovery. A state that raises nothing, such as deliveries that all fail
while Kafka is unreachable, is kept the same way through :meth:`note` and
:meth:`clear`. :meth:`problem` and :meth:`last_error` say what fails, for ``flush()``
and the heartbeat, from any thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

from eventwire.observability.logging import get_logger

__all__ = ["StepErrors"]

_log = get_logger("eventwire.outbox")
_T = TypeVar("_T")


@dataclass
class _StepError:
    """A step of the relay loop that is failing now."""

    text: str
    since: float
    count: int = 1


class StepErrors:
    """The failing steps of one relay's loop (thread-safe).

    Args:
        owner: the relay's name in the logs.
        on_error: called with the step's name for every error (to count it).
    """

    def __init__(self, owner: str, on_error: Callable[[str], None]) -> None:
        self._owner = owner
        self._on_error = on_error
        self._errors: dict[str, _StepError] = {}
        self._lock = threading.Lock()

    def run(self, step: str, action: Callable[[], _T]) -> _T | None:
        """Run ``action``; on an ``Exception`` record it and return None.

        Never raises an ``Exception`` (a ``BaseException`` such as KeyboardInterrupt
        passes through).
        """
        try:
            value = action()
        except Exception as exc:
            self._record(step, exc)
            return None
        self.clear(step)
        return value

    def clear(self, step: str) -> None:
        """``step`` works again: forget its error, logged as a recovery if it had one."""
        if step in self._errors:
            with self._lock:
                error = self._errors.pop(step, None)
            if error is not None:
                _log.warning("outbox_relay_recovered", step=step, failures=error.count)

    def note(self, step: str, text: str, hint: str) -> None:
        """Keep ``step`` as failing now with ``text``, though nothing raised.

        Not counted as an error of the loop; logged (``outbox_relay_not_delivering``,
        a warning, with ``hint``) only when the step starts failing.
        """
        if self._keep(step, text) is None:
            _log.warning("outbox_relay_not_delivering", error=text, owner=self._owner, hint=hint)

    def _keep(self, step: str, text: str) -> str | None:
        """Keep ``text`` as ``step``'s error now; the step's previous text, or None if new."""
        with self._lock:
            known = self._errors.get(step)
            if known is None:
                self._errors[step] = _StepError(text, time.monotonic())
                return None
            previous = known.text
            known.count += 1
            known.text = text
            return previous

    def _record(self, step: str, exc: Exception) -> None:
        """Count an error of ``step``; log it unless it repeats the step's last one."""
        text = f"{type(exc).__name__}: {exc}"
        repeated = self._keep(step, text) == text
        self._on_error(step)
        if not repeated:
            _log.error(
                "outbox_relay_failing",
                step=step,
                error=text,
                owner=self._owner,
                exc_info=exc,
                hint="the relay retries with backoff; events stay safe in the outbox",
            )

    def last_error(self) -> str | None:
        """The errors of the steps that fail now (``"step: error"``), or None."""
        with self._lock:
            errors = [f"{step}: {e.text}" for step, e in self._errors.items()]
        return "; ".join(errors) or None

    def problem(self, steps: Collection[str]) -> str | None:
        """What fails among ``steps`` now, for how long and how often; None if none does."""
        with self._lock:
            failing = [(s, e) for s, e in self._errors.items() if s in steps]
        if not failing:
            return None
        step, error = failing[0]
        age = time.monotonic() - error.since
        return f"its {step}s have failed for {age:.1f} s ({error.count} tries); last: {error.text}"
