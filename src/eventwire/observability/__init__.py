"""Observability around the publish path: tracing, metrics and logging.

These are hooks the publisher core calls at two points -- when an event is
published and when it settles -- rather than a chain of wrapper calls, because
every layer of a call chain costs a Python call per event on the hot path.
Each hook object is ``None`` (or does nothing) when its feature is not configured.

* :mod:`eventwire.observability.tracing` -- OpenTelemetry spans and W3C propagation.
* :mod:`eventwire.observability.metrics` -- the publisher's OpenTelemetry metrics, and the
  table of every instrument's Prometheus name.
* :mod:`eventwire.observability.relay_metrics` -- circuit-breaker and outbox relay metrics.
* :mod:`eventwire.observability.prometheus` -- the Prometheus ``/metrics`` endpoint.
* :mod:`eventwire.observability.logging` -- eventwire's stdlib loggers, the stable event
  names, collapsed repeats and secret scrubbing.
"""

from __future__ import annotations

import functools
from importlib import metadata

__all__ = ["instrumentation_version"]


@functools.cache
def instrumentation_version() -> str:
    """Eventwire's version, as the OpenTelemetry instrumentation scope version."""
    try:
        return metadata.version("eventwire")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "0.0.0"
