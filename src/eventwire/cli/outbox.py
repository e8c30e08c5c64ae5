"""``eventwire outbox status|relay`` and ``eventwire dlq list|replay`` (parked events)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from eventwire.outbox.base import OutboxStore

app = typer.Typer(help="Inspect and relay the durable outbox.", no_args_is_help=True)
dlq_app = typer.Typer(
    help="Dead letters: events parked after permanent failures.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True)

SqliteOpt = Annotated[str | None, typer.Option("--sqlite", help="Path of a SQLite outbox file.")]
PostgresOpt = Annotated[str | None, typer.Option("--postgres", help="PostgreSQL DSN of an outbox.")]


def open_store(sqlite: str | None, postgres: str | None) -> OutboxStore:
    """Open exactly one store named on the command line, or exit 2 saying what to pass."""
    if bool(sqlite) == bool(postgres):
        err.print("[red]Pass exactly one of --sqlite PATH or --postgres DSN.[/]")
        raise typer.Exit(2)
    if sqlite:
        from eventwire.outbox.sqlite import SQLiteOutbox  # noqa: PLC0415

        return SQLiteOutbox(sqlite)
    from eventwire.outbox.postgres import PostgresOutbox  # noqa: PLC0415

    assert postgres is not None
    return PostgresOutbox(postgres)


@app.command()
def status(sqlite: SqliteOpt = None, postgres: PostgresOpt = None) -> None:
    """Show the outbox depth: pending, parked, sent-and-retained, oldest pending age."""
    store = open_store(sqlite, postgres)
    s = store.status()
    store.close()
    table = Table(title="eventwire outbox")
    table.add_column("pending", justify="right")
    table.add_column("parked", justify="right")
    table.add_column("sent (retained)", justify="right")
    table.add_column("oldest pending", justify="right")
    age = "-" if s.oldest_pending_age_s is None else f"{s.oldest_pending_age_s:.1f} s"
    table.add_row(str(s.pending), str(s.parked), str(s.sent_retained), age)
    out.print(table)


@app.command()
def relay(
    bootstrap: Annotated[str, typer.Option(help="Kafka bootstrap servers.")],
    sqlite: SqliteOpt = None,
    postgres: PostgresOpt = None,
    once: Annotated[bool, typer.Option(help="Drain what is there, then exit.")] = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 1000,
) -> None:
    """Relay outbox entries to Kafka until SIGTERM/Ctrl-C (or until drained with --once)."""
    from eventwire._config import KafkaConfig  # noqa: PLC0415
    from eventwire.outbox.relay import OutboxRelay  # noqa: PLC0415
    from eventwire.transports.kafka import KafkaTransport  # noqa: PLC0415

    store = open_store(sqlite, postgres)
    config = KafkaConfig(bootstrap)
    worker = OutboxRelay(
        store, lambda: KafkaTransport(config, connect_timeout=None), batch_size=batch_size
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())  # only a flag: never librdkafka here
    try:
        if once:
            drained = worker.drain(timeout=3600)
            err.print(f"relayed {worker.stats.sent}, parked {worker.stats.parked}")
            if not drained:
                raise typer.Exit(1)
        else:
            err.print(f"relaying to {bootstrap}; Ctrl-C to stop")
            worker.run(stop)
    finally:
        worker.stop(10)
        store.close()
    err.print(
        f"stopped: sent={worker.stats.sent} retried={worker.stats.retried} "
        f"parked={worker.stats.parked}"
    )


@dlq_app.command("list")
def dlq_list(
    sqlite: SqliteOpt = None,
    postgres: PostgresOpt = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """List parked events with their last error."""
    store = open_store(sqlite, postgres)
    rows = store.list_parked(limit)
    store.close()
    table = Table(title=f"parked events ({len(rows)} shown)")
    for col in ("id", "event id", "type", "topic", "attempts", "last error"):
        table.add_column(col)
    for claimed, error in rows:
        e = claimed.entry
        table.add_row(
            str(claimed.id), e.event_id, e.event_type, e.topic, str(claimed.attempts), error
        )
    out.print(table)


@dlq_app.command("replay")
def dlq_replay(
    sqlite: SqliteOpt = None,
    postgres: PostgresOpt = None,
    ids: Annotated[list[int] | None, typer.Option("--id", help="Only these outbox ids.")] = None,
) -> None:
    """Make parked events pending again, so the relay sends them (same ce_id)."""
    store = open_store(sqlite, postgres)
    count = store.requeue_parked(ids or None)
    store.close()
    out.print(f"requeued {count} parked event(s)")
