"""``eventwire demo``: the end-to-end check a new user runs first (``make demo``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from eventwire_devkit.demo.run import DemoReport, run_demo

console = Console(stderr=True)
out = Console()


@contextlib.contextmanager
def _cluster(bootstrap: str | None) -> Iterator[tuple[str | None, str, object]]:
    """Yield (bootstrap, label, cluster-or-None); start a local cluster if needed."""
    if bootstrap:
        yield bootstrap, f"Kafka at {bootstrap}", None
        return
    from eventwire_devkit.kafka import LocalKafkaCluster, java_available  # noqa: PLC0415

    if not java_available():
        console.print(
            "[bold yellow]No Java found[/]: cannot start a real Kafka broker here, so the "
            "demo runs on the IN-MEMORY transport (no network, no broker). Install a JDK "
            "17+ to run it against real Kafka."
        )
        yield None, "in-memory transport (no Java: NOT real Kafka)", None
        return
    with console.status("Starting a local 1-node Apache Kafka cluster (KRaft)..."):
        cluster = LocalKafkaCluster(nodes=1)
        cluster.start()
    try:
        console.print(f"Local Kafka cluster ready at [bold]{cluster.bootstrap_servers}[/]")
        yield cluster.bootstrap_servers, "local 1-node Apache Kafka (KRaft)", cluster
    finally:
        with console.status("Stopping the local cluster..."):
            cluster.close()


def demo(
    bootstrap: Annotated[
        str | None,
        typer.Option(help="Use this Kafka cluster instead of starting a local one."),
    ] = None,
    events: Annotated[int, typer.Option(min=1, help="How many orders to publish.")] = 20_000,
) -> None:
    """Translate N domain orders, publish them, consume them back, and verify everything."""
    bootstrap = bootstrap or os.environ.get("EVENTWIRE_BOOTSTRAP") or None
    with _cluster(bootstrap) as (servers, label, cluster):
        create = None
        if cluster is not None:
            create = lambda topic: cluster.create_topic(topic, partitions=6)  # type: ignore[attr-defined]  # noqa: E731
        with Progress(
            TextColumn("[bold]publishing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("publish", total=events)
            report = run_demo(
                bootstrap=servers,
                events=events,
                backend_label=label,
                create_topic=create,
                advance=lambda n: progress.advance(task, n),
            )
    _print(report)
    if not report.ok:
        raise typer.Exit(code=1)


def _print(report: DemoReport) -> None:
    v = report.verification
    table = Table(title=f"eventwire demo: {report.backend}", show_header=True)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("topic", report.topic),
        ("events published", f"{report.events:,}"),
        ("throughput (publish + flush)", f"{report.events_per_second:,.0f} events/s"),
        ("ack latency p50", f"{report.latency_percentile(50):.1f} ms"),
        ("ack latency p99", f"{report.latency_percentile(99):.1f} ms"),
        ("delivery failures", str(report.failures)),
        ("consumed back (independent consumer)", f"{v.consumed:,}"),
        ("lost", str(v.lost)),
        ("duplicates (by ce_id)", str(v.duplicates)),
        ("key mismatches", str(v.key_mismatches)),
        ("per-key order violations", str(v.order_violations)),
        ("header problems (CloudEvents)", str(v.header_problems)),
    ]
    for what, value in rows:
        table.add_row(what, value)
    out.print(table)
    for problem in v.problems[:10]:
        out.print(f"[red]- {problem}")
    verdict = "[bold green]VERIFIED[/]" if report.ok else "[bold red]FAILED[/]"
    out.print(f"{verdict}: {v.consumed:,} of {report.events:,} events read back from the log.")
