"""A/B: one contender on a base git revision vs the working tree, side by side on one broker.

    python -m bench.ab --base HEAD~1 [--contender eventwire] [--events 150000] [--rounds 3]

Runs ``raw-confluent``, ``<contender>@<base>`` and ``<contender>@worktree`` in
alternation (A B C A B C ...), each in its own process, on one local 1-node
cluster, and prints the median events/s and CPU µs/event of each with its
ratio to raw. This is how an optimization is judged on a noisy shared machine:
one run, same broker, interleaved, ratios only.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys

from bench.contenders import by_name
from bench.runner import BenchConfig, RunRecord, _cluster, _rev, _Runner, _snapshot

RAW = "raw-confluent"


def main(argv: list[str] | None = None) -> str:
    """Run the A/B and return (and print) its markdown table."""
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("--base", required=True, help="git revision for the A side")
    parser.add_argument("--contender", default="eventwire")
    parser.add_argument(
        "--raw",
        default=RAW,
        help="the reference contender ratios are taken to (e.g. raw-ce, raw-ce-span)",
    )
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    from eventwire_devkit._kafka.jars import find_java  # noqa: PLC0415
    from eventwire_devkit.kafka import ensure_kafka_jars  # noqa: PLC0415

    cfg = BenchConfig(events=args.events, warmup=1_000, rounds=args.rounds, latency=False)
    snapshot = _snapshot(args.base)
    base_label = f"{args.contender}@{_rev(args.base)}"
    work_label = f"{args.contender}@worktree"
    raw = args.raw
    samples: dict[str, list[RunRecord]] = {raw: [], base_label: [], work_label: []}
    contender = by_name(args.contender)
    try:
        with _cluster(1, lambda m: None) as cluster:
            jars, java = ensure_kafka_jars(), find_java()
            base = _Runner(cfg, cluster, jars, java, str(snapshot / "src"))
            work = _Runner(cfg, cluster, jars, java, None)
            work.run(by_name(raw), "throughput", 0)  # warm the broker
            for round_no in range(1, args.rounds + 1):
                for label, runner, c in (
                    (raw, work, by_name(raw)),
                    (base_label, base, contender),
                    (work_label, work, contender),
                ):
                    record = runner.run(c, "throughput", round_no)
                    if record.error:
                        raise SystemExit(f"{label} round {round_no}: {record.error}")
                    samples[label].append(record)
                    print(
                        f"round {round_no} {label}: {record.result['events_per_s']:,.0f} ev/s",
                        file=sys.stderr,
                    )
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)
    raw_eps = statistics.median(r.result["events_per_s"] for r in samples[raw])
    lines = [
        f"A/B, 1 node, {args.events:,} events x {args.rounds} rounds, interleaved "
        f"(`python -m bench.ab --base {args.base} --contender {args.contender} --raw {raw}`)",
        "",
        f"| contender | events/s (median) | ratio to {raw} | CPU µs/event, measured window "
        "(median) | CPU µs/event, whole process (median) | per round |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, records in samples.items():
        eps = [r.result["events_per_s"] for r in records]
        # The window: the contender's own stopwatch, around publishing and the final
        # flush. The whole process adds start-up, imports, warm-up and close.
        window = [r.result["cpu_s"] / args.events * 1e6 for r in records]
        cpu = [r.result["process_cpu_s"] / args.events * 1e6 for r in records]
        lines.append(
            f"| {label} | {statistics.median(eps):,.0f} | {statistics.median(eps) / raw_eps:.2f} "
            f"| {statistics.median(window):.2f} | {statistics.median(cpu):.2f} "
            f"| {', '.join(f'{e:,.0f}' for e in eps)} |"
        )
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    return text


if __name__ == "__main__":
    main()
