"""Turn raw run records into one row per contender and the headline ratios.

* ``events_per_s``, CPU and RSS are medians over the throughput rounds.
* ``ratio_to_raw`` (and every headline ratio) is the median over rounds of the
  ratio *within* a round, so slow drift of the shared machine cancels out.
* Latency percentiles are medians over the latency rounds.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from typing import Any

from bench.contenders import by_name
from bench.runner import RAW, BenchRun, RunRecord

__all__ = ["RATIOS", "Ratio", "ratios", "rows"]


@dataclass(frozen=True)
class Ratio:
    """One headline ratio: numerator/denominator events/s, and its goal if any."""

    numerator: str
    denominator: str
    goal: float | None

    @property
    def label(self) -> str:
        """``a / b``."""
        return f"{self.numerator} / {self.denominator}"


RATIOS: tuple[Ratio, ...] = (
    # Issue 19's goals, against the ceilings that write eventwire's wire contract.
    Ratio("eventwire", "raw-ce", 0.75),
    Ratio("eventwire-traced-100", "raw-ce-span", 0.9),
    Ratio("eventwire-async", "confluent-aio", 1.0),
    Ratio("eventwire-async", "faststream-aiokafka", 2.0),
    Ratio("eventwire-async", "faststream-confluent", 2.0),
    Ratio("eventwire", RAW, 0.9),
    Ratio("eventwire-traced-1", RAW, 0.85),
    Ratio("eventwire-traced-100", "guide-recipe", None),
    Ratio("eventwire-batch-traced-100", "guide-recipe", 3.0),
    Ratio("eventwire-async", RAW, 0.8),
    Ratio("eventwire-async", "aiokafka", 2.0),
    Ratio("eventwire", "java-perf-test", None),
)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _by_round(records: list[RunRecord], mode: str) -> dict[str, dict[int, dict[str, Any]]]:
    table: dict[str, dict[int, dict[str, Any]]] = {}
    for r in records:
        if r.mode == mode and r.error is None:
            table.setdefault(r.name, {})[r.round] = r.result
    return table


def round_ratio(run: BenchRun, numerator: str, denominator: str) -> float | None:
    """Median over rounds of events/s(numerator) / events/s(denominator) in the same round."""
    table = _by_round(run.records, "throughput")
    num, den = table.get(numerator, {}), table.get(denominator, {})
    values = [
        num[r]["events_per_s"] / den[r]["events_per_s"]
        for r in num
        if r in den and den[r]["events_per_s"] > 0
    ]
    return _median(values)


def rows(run: BenchRun) -> list[dict[str, Any]]:
    """One JSON-ready row per contender, in the configured order."""
    tput = _by_round(run.records, "throughput")
    lat = _by_round(run.records, "latency")
    out: list[dict[str, Any]] = []
    for name in run.config.contenders:
        t = list(tput.get(name, {}).values())
        lt = list(lat.get(name, {}).values())
        eps = [x["events_per_s"] for x in t]
        notes: list[str] = []
        seen: set[str] = set()
        for x in t + lt:  # one note per kind: "201884 spans exported" and "202000 ..." are one
            for note in x.get("notes", []):
                kind = re.sub(r"\d[\d,.]*", "#", note)
                if kind not in seen:
                    seen.add(kind)
                    notes.append(note)
        errors = [r.error for r in run.records if r.name == name and r.error]
        if name in run.skipped:
            notes.append(
                f"NOT RUN: missing {', '.join(run.skipped[name])} "
                "(install the bench dependency group: pip install --group bench)"
            )
        out.append(
            {
                "name": name,
                "summary": by_name(name).summary,
                "events_per_s": _median(eps),
                "events_per_s_min": min(eps) if eps else None,
                "events_per_s_max": max(eps) if eps else None,
                "events_per_s_rounds": eps,
                "ratio_to_raw": round_ratio(run, name, RAW),
                "cpu_s_per_1M_events": _median(
                    [
                        x["cpu_s_per_1M_events"]
                        for x in t
                        if x.get("cpu_s_per_1M_events") is not None
                    ]
                ),
                "peak_rss_mb": _median([x["peak_rss_mb"] for x in t]),
                "failed_events": sum(int(x.get("failed", 0)) for x in t),
                "p50_ms": _median([x["p50_ms"] for x in lt]),
                "p99_ms": _median([x["p99_ms"] for x in lt]),
                "p999_ms": _median([x["p999_ms"] for x in lt]),
                "latency_rate": _median([x.get("achieved_rate", 0.0) for x in lt]),
                "notes": notes,
                "errors": errors,
            }
        )
    return out


def ratios(run: BenchRun) -> list[dict[str, Any]]:
    """The headline ratios with their goals and whether each goal was met."""
    out = []
    for ratio in RATIOS:
        value = round_ratio(run, ratio.numerator, ratio.denominator)
        met = None if ratio.goal is None or value is None else value >= ratio.goal
        out.append({"ratio": ratio.label, "value": value, "goal": ratio.goal, "met": met})
    return out
