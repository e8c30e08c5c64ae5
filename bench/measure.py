"""What a contender process measures, and the helpers every contender shares.

* :class:`Stopwatch` brackets the measured window (first publish to last ack) with
  wall time (``perf_counter_ns``) and this process's CPU time (``getrusage(RUSAGE_SELF)``,
  user + sys, all threads: the client library's own threads count too).
* :class:`Pacer` issues sends at a fixed rate for the latency mode.
* :func:`percentile` is a nearest-rank percentile over recorded latencies.
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "LatencySample",
    "Pacer",
    "Stopwatch",
    "ThroughputSample",
    "cpu_seconds",
    "peak_rss_mb",
    "percentile",
]


def cpu_seconds() -> float:
    """User + system CPU seconds used so far by this process (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stopwatch:
    """Wall time and CPU time of the measured window."""

    __slots__ = ("_cpu0", "_t0", "cpu_s", "wall_s")

    def __init__(self) -> None:
        self._t0 = 0
        self._cpu0 = 0.0
        self.wall_s = 0.0
        self.cpu_s = 0.0

    def start(self) -> None:
        """Mark the first publish."""
        self._cpu0 = cpu_seconds()
        self._t0 = time.perf_counter_ns()

    def stop(self) -> None:
        """Mark the last acknowledgement."""
        self.wall_s = (time.perf_counter_ns() - self._t0) / 1e9
        self.cpu_s = cpu_seconds() - self._cpu0


@dataclass
class ThroughputSample:
    """One throughput run of one contender: N events published and acknowledged."""

    acked: int
    failed: int
    wall_s: float
    cpu_s: float
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (events_per_s = acked / wall_s)."""
        return {
            "acked": self.acked,
            "failed": self.failed,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "events_per_s": self.acked / self.wall_s if self.wall_s > 0 else 0.0,
            "cpu_s_per_1M_events": self.cpu_s / self.acked * 1e6 if self.acked else None,
            "peak_rss_mb": peak_rss_mb(),
            "notes": self.notes,
        }


@dataclass
class LatencySample:
    """One fixed-rate run: publish-to-ack latency of every acknowledged event, in ns."""

    latencies_ns: list[int]
    failed: int
    sent: int
    #: Seconds from the first send to the last send (not to the last ack).
    wall_s: float
    cpu_s: float
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready percentiles in milliseconds plus the achieved send rate."""
        lat = sorted(self.latencies_ns)
        return {
            "sent": self.sent,
            "acked": len(lat),
            "failed": self.failed,
            "achieved_rate": self.sent / self.wall_s if self.wall_s > 0 else 0.0,
            "p50_ms": percentile(lat, 50) / 1e6,
            "p99_ms": percentile(lat, 99) / 1e6,
            "p999_ms": percentile(lat, 99.9) / 1e6,
            "max_ms": (lat[-1] / 1e6) if lat else math.nan,
            "cpu_s": self.cpu_s,
            "peak_rss_mb": peak_rss_mb(),
            "notes": self.notes,
        }


def percentile(sorted_values: list[int], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (NaN when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


class Pacer:
    """Fixed-rate schedule: event ``i`` is due at ``start + i / rate``.

    ``count`` bounds the run (``rate * duration`` events). A sender that falls
    behind sends back to back until it catches up. Latency is measured from the
    actual send call, so time spent behind schedule is not counted; the achieved
    rate is reported, which shows a contender that cannot keep up.
    """

    def __init__(self, rate: float, duration_s: float) -> None:
        self.rate = rate
        self.count = max(1, int(rate * duration_s))
        self._interval_ns = int(1e9 / rate)
        self._start_ns = 0

    def begin(self) -> None:
        """Start the schedule now."""
        self._start_ns = time.perf_counter_ns()

    def elapsed_s(self) -> float:
        """Seconds since :meth:`begin` (call it after the last send for the achieved rate)."""
        return (time.perf_counter_ns() - self._start_ns) / 1e9

    def delay_s(self, i: int) -> float:
        """Seconds until event ``i`` is due (<= 0 when it is due or late)."""
        due = self._start_ns + i * self._interval_ns
        return (due - time.perf_counter_ns()) / 1e9
