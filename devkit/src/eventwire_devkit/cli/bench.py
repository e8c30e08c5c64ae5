"""``eventwire bench``: compare eventwire with other Kafka publishers on a local real cluster.

The harness itself lives in the source checkout's ``bench/`` folder (it is in no
distribution); this command finds it at the root of the checkout this devkit is installed
from (``devkit/src/eventwire_devkit/cli/bench.py`` -> the repository root), and puts that
root on ``sys.path``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

console = Console(stderr=True)

_REPO_ROOT = Path(__file__).resolve().parents[4]


def _import_bench() -> None:
    if not (_REPO_ROOT / "bench" / "runner.py").is_file():
        console.print(
            "[red]eventwire bench runs from a source checkout[/]: no bench/ folder in "
            f"{_REPO_ROOT}. Clone the repository and run `make bench`."
        )
        raise typer.Exit(code=2)
    if str(_REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(_REPO_ROOT))


def bench(
    *,
    quick: Annotated[
        bool, typer.Option("--quick", help="30k events, 1 latency round of 3 s: under 3 min.")
    ] = False,
    nodes: Annotated[
        int, typer.Option(min=1, max=3, help="Cluster size: 1, or 3 (RF=3, min ISR 2).")
    ] = 1,
    size: Annotated[
        str, typer.Option(help="Event size: 100 (~115 B JSON), 300 (~340 B), 1k or 10k.")
    ] = "300",
    events: Annotated[
        int | None, typer.Option(min=1_000, max=2_000_000, help="Events per run (override).")
    ] = None,
    rounds: Annotated[
        int | None, typer.Option(min=1, max=9, help="Throughput rounds (override).")
    ] = None,
    only: Annotated[
        str | None,
        typer.Option(help="Comma-separated contender names (raw-confluent is always added)."),
    ] = None,
    latency: Annotated[
        bool, typer.Option("--latency/--no-latency", help="Run the fixed-rate latency mode.")
    ] = True,
    micro: Annotated[
        bool,
        typer.Option("--micro", help="Only the per-event CPU microbenchmark (no broker)."),
    ] = False,
    profile: Annotated[
        bool,
        typer.Option("--profile", help="Only profile eventwire's publish path (pyinstrument)."),
    ] = False,
    snapshot: Annotated[
        str | None,
        typer.Option(
            help="Run the contenders on this git revision's src/ (e.g. HEAD) instead of the "
            "working tree, so edits made during the run cannot mix versions."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option(help="Where results go (default: bench/results).")
    ] = None,
    stem: Annotated[str, typer.Option(help="Result file name stem.")] = "latest",
) -> None:
    """Benchmark eventwire against raw confluent-kafka, the guide's recipe, other clients, Java."""
    _import_bench()
    if micro:
        from bench import micro as micro_bench  # noqa: PLC0415

        micro_bench.main(["--out", str(_REPO_ROOT / "bench" / "results" / "micro.md")])
        return
    if profile:
        from bench import profile_publish  # noqa: PLC0415

        profile_publish.main(["--quick"] if quick else [])
        return
    from bench.contenders import CONTENDERS  # noqa: PLC0415
    from bench.events import SIZES  # noqa: PLC0415
    from bench.runner import REPO_ROOT, BenchConfig  # noqa: PLC0415

    if size not in SIZES:
        raise typer.BadParameter(f"use one of {', '.join(SIZES)}", param_hint="--size")
    if nodes == 2:
        raise typer.BadParameter("use 1 or 3", param_hint="--nodes")
    cfg = BenchConfig.preset(quick=quick)
    cfg.nodes, cfg.size, cfg.latency = nodes, size, latency
    cfg.snapshot = snapshot
    if events is not None:
        cfg.events = events
    if rounds is not None:
        cfg.rounds = rounds
    if only:
        known = {c.name for c in CONTENDERS}
        wanted = [n.strip() for n in only.split(",") if n.strip()]
        bad = [n for n in wanted if n not in known]
        if bad:
            raise typer.BadParameter(
                f"unknown {', '.join(bad)}; known: {', '.join(sorted(known))}", param_hint="--only"
            )
        cfg.contenders = [
            c.name for c in CONTENDERS if c.name in wanted or c.name == "raw-confluent"
        ]
    _run(cfg, out_dir or REPO_ROOT / "bench" / "results", stem)


def _run(cfg: Any, out_dir: Path, stem: str) -> None:
    from bench.report import ratio_table, table, write_all  # noqa: PLC0415
    from bench.runner import run_benchmark  # noqa: PLC0415
    from bench.summary import ratios, rows  # noqa: PLC0415

    from eventwire_devkit.kafka import KafkaClusterError  # noqa: PLC0415

    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("starting Kafka", total=None)

        steps = [0]

        def on_step(label: str) -> None:
            if steps[0]:
                progress.advance(task)
            steps[0] += 1
            progress.update(task, description=label)

        def on_done(record: Any) -> None:
            if record.error:
                progress.console.print(
                    f"[red]✗ {record.name} ({record.mode}): {record.error[:400]}"
                )
            elif record.mode == "throughput":
                r = record.result
                progress.console.print(
                    f"  {record.name:<22} r{record.round}  {r['events_per_s']:>10,.0f} ev/s  "
                    f"cpu {r.get('cpu_s_per_1M_events') or 0:6.1f} s/1M"
                )
            else:
                r = record.result
                progress.console.print(
                    f"  {record.name:<22} r{record.round}  p50 {r['p50_ms']:.2f} ms  "
                    f"p99 {r['p99_ms']:.2f} ms  p99.9 {r['p999_ms']:.2f} ms"
                )

        try:
            run = run_benchmark(
                cfg,
                on_start=lambda total: progress.update(task, total=total, completed=0),
                on_step=on_step,
                on_done=on_done,
                progress=lambda msg: progress.update(task, description=msg),
            )
        except KafkaClusterError as exc:
            console.print(f"[red]could not run a local Kafka cluster:[/] {exc}")
            raise typer.Exit(code=1) from None
        except ValueError as exc:  # e.g. an unknown --snapshot revision
            console.print(f"[red]{exc}")
            raise typer.Exit(code=2) from None
        progress.update(task, description="writing results", completed=progress.tasks[0].total)
        result_rows, result_ratios = rows(run), ratios(run)
        paths = write_all(out_dir, stem, run, result_rows, result_ratios)
    sys.stdout.write(table(result_rows) + "\n" + ratio_table(result_ratios))
    sys.stdout.flush()
    console.print("wrote " + ", ".join(str(p) for p in paths))
