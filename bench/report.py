"""Write the results: a markdown report, a JSON list of rows, and a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.runner import BenchRun

__all__ = ["markdown", "write_all", "write_chart"]


def _f(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def table(rows: list[dict[str, Any]]) -> str:
    """The main table: throughput, ratio, CPU, RSS and latency percentiles."""
    head = (
        "| contender | events/s (median) | x raw | min-max events/s | CPU s / 1M events "
        "| peak RSS MiB | p50 ms | p99 ms | p99.9 ms |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = []
    for r in rows:
        spread = (
            f"{_f(r['events_per_s_min'])}-{_f(r['events_per_s_max'])}"
            if r["events_per_s_min"] is not None
            else "-"
        )
        body.append(
            f"| {r['name']} | {_f(r['events_per_s'])} | {_f(r['ratio_to_raw'], '{:.2f}')} "
            f"| {spread} | {_f(r['cpu_s_per_1M_events'], '{:.1f}')} "
            f"| {_f(r['peak_rss_mb'], '{:.0f}')} | {_f(r['p50_ms'], '{:.2f}')} "
            f"| {_f(r['p99_ms'], '{:.2f}')} | {_f(r['p999_ms'], '{:.2f}')} |"
        )
    return head + "\n".join(body) + "\n"


def ratio_table(ratios: list[dict[str, Any]]) -> str:
    """The headline ratios against their goals."""
    lines = ["| ratio (events/s, same round) | value | goal | met |", "|---|---:|---:|---|"]
    for r in ratios:
        goal = "-" if r["goal"] is None else f"≥ {r['goal']:g}"
        met = {True: "yes", False: "**no**", None: "-"}[r["met"]]
        lines.append(f"| {r['ratio']} | {_f(r['value'], '{:.2f}')} | {goal} | {met} |")
    return "\n".join(lines) + "\n"


def markdown(run: BenchRun, rows: list[dict[str, Any]], ratios: list[dict[str, Any]]) -> str:
    """The full report."""
    cfg, m = run.config, run.machine
    from bench.events import encoded_size  # noqa: PLC0415

    parts = [
        f"# eventwire benchmark ({'quick' if cfg.quick else 'full'})\n\n",
        f"{m['date_utc']} · {cfg.nodes}-node local Kafka {m['kafka_broker']} "
        f"(RF {min(3, cfg.nodes)}, min ISR {2 if cfg.nodes >= 3 else 1}, acks=all) · events: "
        f"OrderEventMessage, {encoded_size(cfg.size)} B JSON (size {cfg.size}) · "
        f"{cfg.events:,} events per run after {cfg.warmup:,} warm-up · {cfg.rounds} throughput "
        "round(s) · latency: "
        + (
            f"{cfg.rate:,.0f} ev/s for {cfg.duration_s:g} s x {cfg.latency_rounds} round(s)"
            if cfg.latency
            else "not run"
        )
        + "\n\n",
        "## Results\n\n",
        table(rows),
        "\n## Headline ratios\n\n",
        ratio_table(ratios),
        "\n## Machine\n\n",
        "| what | value |\n|---|---|\n"
        + "\n".join(f"| {k} | {v} |" for k, v in m.items())
        + f"\n| cluster start-up | {_f(run.cluster_start_s, '{:.1f}')} s |\n",
        "\n## Notes per contender\n\n",
    ]
    for r in rows:
        extra = "; ".join(r["notes"]) if r["notes"] else ""
        line = f"- **{r['name']}** — {r['summary']}" + (f". {extra}" if extra else "")
        if r["errors"]:
            line += f". **{len(r['errors'])} run(s) failed**: {r['errors'][0][:300]}"
        parts.append(line + "\n")
    parts.append(METHOD)
    return "".join(parts)


METHOD = """
## Method
- Every contender run is its own fresh process publishing to its own fresh 3-partition topic;
  contenders alternate A B C … A B C each round. Figures are medians over rounds;
  ratios are medians of the per-round ratios (same run, same broker). Absolute numbers on
  shared machines drift (±30%); compare ratios.
- events/s = acknowledged events / wall time from the first publish to the last ack
  (after an unmeasured warm-up). CPU = `getrusage(RUSAGE_SELF)` user+sys over the same
  window (all threads of the process, including librdkafka's). Peak RSS = `ru_maxrss` of
  the process. java-perf-test: its own records/sec; CPU and RSS from `os.wait4` on the JVM.
- Latency: events sent on a fixed schedule; publish-to-ack latency per event, measured
  where the application sees the ack (delivery callback, done-callback, or future).
  eventwire uses its `low_latency` profile; raw-confluent, aiokafka, kafka-python linger 0;
  the guide recipe gets the guide's own "For Low Latency" settings (linger.ms=0).
- asyncio contenders (eventwire-async, aiokafka, confluent-aio) enqueue batches of 1,000
  without awaiting each event, keep at most 10 batches in flight and await the oldest
  batch's futures in order.
- Other work on the machine shows in `load_average_before_after`; a run with a high load
  has wider min-max ranges and noisier latency tails (p99/p99.9 of every contender,
  raw-confluent included, then swing by 10x between rounds).
- All clients use acks=all and idempotence. Compression: lz4 for librdkafka/Java contenders
  (snappy for the guide recipe), none for aiokafka/kafka-python (no lz4 package installed).
"""


def write_chart(path: Path, run: BenchRun, rows: list[dict[str, Any]]) -> None:
    """Throughput bars (median, min-max whiskers, xraw labels) and latency percentiles."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    tput = [r for r in rows if r["events_per_s"] is not None]
    lat = [r for r in rows if r["p50_ms"] is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 6.5), gridspec_kw={"width_ratios": [3, 2]})
    names = [r["name"] for r in tput][::-1]
    values = [r["events_per_s"] for r in tput][::-1]
    lo = [r["events_per_s"] - r["events_per_s_min"] for r in tput][::-1]
    hi = [r["events_per_s_max"] - r["events_per_s"] for r in tput][::-1]
    colors = ["#d62728" if n.startswith("eventwire") else "#7f7f7f" for n in names]
    left.barh(names, values, xerr=[lo, hi], color=colors, capsize=3)
    for y, r in enumerate(tput[::-1]):
        label = f"{r['events_per_s']:,.0f}"
        if r["ratio_to_raw"] is not None:
            label += f"  ({r['ratio_to_raw']:.2f}x raw)"
        left.text(r["events_per_s_max"], y, "  " + label, va="center", fontsize=8)
    left.set_xlabel("acknowledged events/s (median; whiskers min-max)")
    left.set_title("Throughput")
    left.set_xlim(0, max((r["events_per_s_max"] for r in tput), default=1) * 1.5)
    if lat:
        import numpy as np  # noqa: PLC0415

        ys = np.arange(len(lat))
        height = 0.27
        for i, (key, label) in enumerate(
            (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9"))
        ):
            right.barh(ys + (i - 1) * height, [r[key] for r in lat], height, label=label)
        right.set_yticks(ys, [r["name"] for r in lat])
        right.invert_yaxis()
        right.set_xscale("log")
        right.set_xlabel("publish-to-ack latency, ms (log)")
        right.set_title(f"Latency at {run.config.rate:,.0f} events/s")
        right.legend(loc="lower right", fontsize=8)
    else:
        right.axis("off")
    m = run.machine
    fig.suptitle(
        f"eventwire bench · {run.config.nodes}-node Kafka {m['kafka_broker']} · "
        f"{m['cpu_model']} x{m['cpu_cores']} · Python {m['python'].split()[-1]} · "
        f"librdkafka {m['librdkafka']} · {m['date_utc']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(
    out_dir: Path,
    stem: str,
    run: BenchRun,
    rows: list[dict[str, Any]],
    ratios: list[dict[str, Any]],
) -> list[Path]:
    """Write ``<stem>.md``, ``<stem>.json`` (list of rows), ``<stem>.meta.json``, ``<stem>.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js, meta, png = (out_dir / f"{stem}{ext}" for ext in (".md", ".json", ".meta.json", ".png"))
    md.write_text(markdown(run, rows, ratios), encoding="utf-8")
    js.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    meta.write_text(
        json.dumps({**run.to_json(), "ratios": ratios}, indent=2) + "\n", encoding="utf-8"
    )
    try:
        write_chart(png, run, rows)
    except ImportError:  # matplotlib is in the bench extra
        return [md, js, meta]
    return [md, js, meta, png]
