"""Which MeterProvider eventwire reports to: a real (SDK) one, or none at all.

Every metrics hook (a publisher's, a relay's, a circuit breaker's) is built the same
way: :func:`resolve` picks the ``meter_provider=`` given, else the global one, and
returns None unless it is an SDK provider -- so that without an SDK eventwire does
no metrics work at all. :func:`bound` then gives the provider's one instance of an
instrument group, so each instrument is created once per provider and every hook on
that provider shares its counts.

This is private plumbing, shared by :mod:`eventwire.observability.metrics` and
:mod:`eventwire.observability.relay_metrics`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry.metrics import MeterProvider, NoOpMeterProvider

__all__ = ["bound", "is_real_provider", "resolve"]

_G = TypeVar("_G")

_BOUND: weakref.WeakKeyDictionary[MeterProvider, dict[Any, Any]] = weakref.WeakKeyDictionary()
_BOUND_LOCK = threading.Lock()


def bound(provider: MeterProvider, group: Callable[[MeterProvider], _G]) -> _G:
    """The provider's one instance of an instrument group (instruments are made once)."""
    with _BOUND_LOCK:
        groups = _BOUND.get(provider)
        if groups is None:
            groups = _BOUND[provider] = {}
        found = groups.get(group)
        if found is None:
            found = groups[group] = group(provider)
        return found


def resolve(meter_provider: MeterProvider | None) -> MeterProvider | None:
    """``meter_provider`` or the global one, if it is a real (SDK) provider; else None."""
    if meter_provider is None:
        from opentelemetry.metrics import get_meter_provider  # noqa: PLC0415

        meter_provider = get_meter_provider()
    return meter_provider if is_real_provider(meter_provider) else None


def is_real_provider(provider: MeterProvider) -> bool:
    """False for the API's no-op and proxy providers (no SDK configured)."""
    if isinstance(provider, NoOpMeterProvider):
        return False
    return not type(provider).__module__.startswith("opentelemetry.metrics")
