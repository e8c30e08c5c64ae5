"""``eventwire outbox status|relay`` and ``eventwire dlq list|replay`` (dead letters).

``outbox status`` also lists each relay's heartbeat (written every few seconds by
a running relay): when it last finished a round, its last error, and STALE when
that was more than :data:`STALE_AFTER_S` ago.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from eventwire.outbox.base import OutboxStore, RelayHeartbeat

app = typer.Typer(help="Inspect and relay the durable outbox.", no_args_is_help=True)
dlq_app = typer.Typer(
    help="Dead letters (outbox only): events given up on after a permanent failure or "
    "exhausted retries, in a dead-letter topic or parked in the outbox.",
    no_args_is_help=True,
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


#: A relay whose last heartbeat is older than this is shown as stale (it beats every 5 s).
STALE_AFTER_S = 30.0


@app.command()
def status(sqlite: SqliteOpt = None, postgres: PostgresOpt = None) -> None:
    """Show the outbox depth and each relay's last heartbeat (age, last error, stale?).

    Depth: pending, parked, sent-and-retained, and the oldest pending age.
    """
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
    _print_relays(s.relays)


def _print_relays(relays: Sequence[RelayHeartbeat]) -> None:
    """One row per relay heartbeat: owner, age of its last round, state, last error."""
    if not relays:
        out.print("relays: none has reported in the last day (is a relay running?)")
        return
    table = Table(title="relays (heartbeat every 5 s)")
    for col in ("owner", "last round", "state", "last error"):
        table.add_column(col)
    for beat in relays:
        if beat.age_s > STALE_AFTER_S:
            state = "[red]STALE[/] (not running?)"
        elif beat.last_error:
            state = "[red]FAILING[/]"
        else:
            state = "ok"
        table.add_row(beat.owner, f"{beat.age_s:.1f} s ago", state, beat.last_error or "-")
    out.print(table)


@app.command()
def relay(  # noqa: PLR0917 - typer maps each parameter to an option
    bootstrap: Annotated[
        str,
        typer.Option(help="Kafka bootstrap servers (plain connection: no SASL/SSL or overrides)."),
    ],
    sqlite: SqliteOpt = None,
    postgres: PostgresOpt = None,
    once: Annotated[bool, typer.Option(help="Drain what is there, then exit.")] = False,
    batch_size: Annotated[int, typer.Option(min=1)] = 1000,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Serve Prometheus metrics (relay outcomes, outbox depth and age) on this "
            "port at /metrics (needs the prometheus extra).",
        ),
    ] = None,
    metrics_addr: Annotated[str, typer.Option(help="Address for --metrics-port.")] = "127.0.0.1",
) -> None:
    """Relay outbox entries to Kafka until SIGTERM/Ctrl-C (or until drained with --once).

    It connects with a plain --bootstrap only (no SASL/SSL or other
    overrides) and has no circuit breaker; dead letters go to <topic>.dlq.
    Database and producer errors are logged, retried with backoff and shown by
    `eventwire outbox status` (with --once the first one ends the command).
    """
    from eventwire._config import KafkaConfig  # noqa: PLC0415
    from eventwire.outbox.relay import OutboxRelay  # noqa: PLC0415
    from eventwire.transports.kafka import KafkaTransport  # noqa: PLC0415

    server = None
    if metrics_port is not None:
        from eventwire.observability.prometheus import serve_prometheus  # noqa: PLC0415

        server = serve_prometheus(metrics_port, metrics_addr)
        err.print(f"metrics at {server.url}")
    store = open_store(sqlite, postgres)
    config = KafkaConfig(bootstrap)
    worker = OutboxRelay(
        store,
        lambda: KafkaTransport(config, connect_timeout=None),
        batch_size=batch_size,
        meter_provider=server.meter_provider if server is not None else None,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())  # only a flag: never librdkafka here
    try:
        if once:
            drained = worker.drain(timeout=3600)
            s = worker.stats
            err.print(f"relayed {s.sent}, dead-lettered {s.dead_lettered}, parked {s.parked}")
            if not drained:
                raise typer.Exit(1)
        else:
            err.print(f"relaying to {bootstrap}; Ctrl-C to stop")
            worker.run(stop)
    finally:
        worker.stop(10)
        store.close()
        if server is not None:
            server.close()
    err.print(
        f"stopped: sent={worker.stats.sent} retried={worker.stats.retried} "
        f"parked={worker.stats.parked} errors={worker.stats.errors}"
    )


BootstrapOpt = Annotated[
    str | None,
    typer.Option(help="Kafka bootstrap servers (with --topic; plain connection: no SASL/SSL)."),
]
TopicOpt = Annotated[
    str | None, typer.Option("--topic", help="A dead-letter topic, e.g. orders.dlq.")
]


@dlq_app.command("list")
def dlq_list(
    sqlite: SqliteOpt = None,
    postgres: PostgresOpt = None,
    topic: TopicOpt = None,
    bootstrap: BootstrapOpt = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """List dead letters: parked events in an outbox, or records of a dead-letter topic."""
    if topic:
        _list_topic(_need(bootstrap), topic, limit)
        return
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


def _need(bootstrap: str | None) -> str:
    if not bootstrap:
        err.print("[red]--topic needs --bootstrap HOST:PORT[/]")
        raise typer.Exit(2)
    return bootstrap


#: (partition, offset, key, value, headers), as :func:`read_records` returns them.
DeadLetterRecord = tuple[int, int, bytes | None, bytes, tuple[tuple[str, bytes], ...]]
#: How many records ``dlq list/replay --topic`` read at most in one run.
READ_MAX = 1_000_000


def _read(bootstrap: str, topic: str, max_records: int) -> list[DeadLetterRecord]:
    """Every record of ``topic`` (up to ``max_records``), or exit 1 saying why not."""
    from eventwire._errors import BrokerUnavailableError  # noqa: PLC0415
    from eventwire.transports.kafka import read_records  # noqa: PLC0415

    try:
        return read_records(bootstrap, topic, max_records=max_records, timeout=30)
    except BrokerUnavailableError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None


def _list_topic(bootstrap: str, topic: str, limit: int) -> None:
    records = _read(bootstrap, topic, READ_MAX)
    table = Table(title=f"dead letters in {topic} ({min(limit, len(records))} of {len(records)})")
    for col in (
        "partition:offset",
        "event id",
        "type",
        "original topic",
        "code",
        "attempts",
        "reason",
    ):
        table.add_column(col)
    for partition, offset, _key, _value, headers in records[:limit]:
        h = {k: v.decode(errors="replace") for k, v in headers}
        table.add_row(
            f"{partition}:{offset}",
            h.get("ce_id", ""),
            h.get("ce_type", ""),
            h.get("eventwire_dlq_original_topic", ""),
            h.get("eventwire_dlq_code", ""),
            h.get("eventwire_dlq_attempts", ""),
            h.get("eventwire_dlq_reason", ""),
        )
    out.print(table)


@dlq_app.command("replay")
def dlq_replay(
    sqlite: SqliteOpt = None,
    postgres: PostgresOpt = None,
    topic: TopicOpt = None,
    bootstrap: BootstrapOpt = None,
    ids: Annotated[list[int] | None, typer.Option("--id", help="Only these outbox ids.")] = None,
) -> None:
    """Re-send dead letters with their original ce_id.

    Parked outbox events become pending again (the relay sends them). Records of
    a dead-letter topic are re-published to their original topic, with the
    eventwire_dlq_* headers removed; the topic is read from the beginning every
    time, so a second run re-publishes them all again (consumers de-duplicate on
    ce_id).
    """
    if topic:
        count = _replay_topic(_need(bootstrap), topic)
        out.print(f"replayed {count} dead letter(s) from {topic}")
        return
    store = open_store(sqlite, postgres)
    count = store.requeue_parked(ids or None)
    store.close()
    out.print(f"requeued {count} parked event(s)")


def _replay_topic(bootstrap: str, topic: str) -> int:
    from eventwire._config import KafkaConfig  # noqa: PLC0415
    from eventwire.outbox.dead_letter import strip_dead_letter_headers  # noqa: PLC0415
    from eventwire.transports.kafka import KafkaTransport  # noqa: PLC0415

    records = _read(bootstrap, topic, READ_MAX)
    transport = KafkaTransport(KafkaConfig(bootstrap))
    failures: list[str] = []

    def report(err: object, msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    for partition, offset, key, value, dlq_headers in records:
        original = dict(dlq_headers).get("eventwire_dlq_original_topic")
        if original is None:
            failures.append(f"{partition}:{offset} has no eventwire_dlq_original_topic")
            continue
        headers = strip_dead_letter_headers(dlq_headers)
        transport.send(original.decode(), key, value, headers, report)
    remaining = transport.close(30)
    if failures or remaining:
        err.print(f"[red]{len(failures) + remaining} record(s) not replayed:[/] {failures[:5]}")
        raise typer.Exit(1)
    return len(records)
