"""Timeouts given by the application: checked once, and kept within what the layers below take.

A timeout is a real number of seconds, ``>= 0``. Infinity means "no limit"; it is
clamped to :data:`MAX_WAIT_S`, since Python's locks refuse waits past
``threading.TIMEOUT_MAX`` (an ``OverflowError`` in the middle of ``close()``) and
librdkafka counts milliseconds in a C ``int``. NaN, a negative number or a non-number
is refused with a :class:`~eventwire.ConfigurationError` naming the argument, before
anything has begun.
"""

from __future__ import annotations

import math

from eventwire._errors import ConfigurationError

__all__ = ["MAX_WAIT_S", "check_finite_seconds", "seconds"]

#: The longest wait eventwire passes on: about 23 days (2**31 ms, librdkafka's limit, less
#: a margin). A longer timeout, ``math.inf`` included, waits this long.
MAX_WAIT_S = 2_000_000.0


def seconds(value: object, name: str, *, positive: bool = False) -> float:
    """``value`` as a timeout in seconds, clamped to :data:`MAX_WAIT_S`.

    Raises:
        ConfigurationError: ``value`` is not an int or float (a bool is not), is NaN,
            is negative, or (``positive``) is 0. The message names ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            f"{name} must be a number of seconds, not {type(value).__name__} {value!r}"
        )
    if math.isnan(value):
        raise ConfigurationError(
            f"{name} is NaN: give a number of seconds (math.inf waits with no limit)"
        )
    if value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigurationError(f"{name} must be {bound} seconds, not {value!r}")
    return min(float(value), MAX_WAIT_S)


def check_finite_seconds(value: object, name: str, *, positive: bool, hint: str = "") -> None:
    """Refuse a setting that is not a finite number of seconds (``> 0`` if ``positive``).

    For durations a component keeps (a backoff, a lease, a breaker's window), where
    infinity is no "no limit" but a stall. ``name`` is how the message names it;
    ``hint`` is added after the rule.

    Raises:
        ConfigurationError: not an int or float (a bool is not), NaN, infinite,
            negative, or (``positive``) 0.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        bound = "> 0" if positive else ">= 0"
        raise ConfigurationError(
            f"{name} must be a finite number of seconds {bound}, not {value!r}{hint}"
        )
