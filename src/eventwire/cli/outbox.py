"""``eventwire outbox status|relay`` and ``eventwire dlq list|replay`` (dead letters).

The commands that talk to Kafka (``outbox relay``, ``dlq list|replay --topic``)
read the same :class:`~eventwire.KafkaConfig` as an application: ``--config FILE``
(or ``$EVENTWIRE_KAFKA_CONFIG``), the ``EVENTWIRE_KAFKA_*`` variables, then
``--set`` and ``--bootstrap`` (see :mod:`eventwire.cli._kafka_options`). No
option takes a secret. ``outbox status`` reads only the outbox.

``outbox status`` also lists each relay's heartbeat (written every few seconds by
a running relay): when it last finished a round, its last error, and STALE when
that was more than :data:`STALE_AFTER_S` ago.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from eventwire._config import KafkaConfig
from eventwire._errors import ConfigurationError
from eventwire.cli._kafka_options import BootstrapOpt, ConfigOpt, SetOpt, kafka_config
from eventwire.cli._relay_settings import RelaySettings
from eventwire.outbox.base import OutboxStore, RelayHeartbeat

if TYPE_CHECKING:
    from eventwire._shutdown import GracefulShutdown
    from eventwire.outbox.relay import OutboxRelay

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
    config_file: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    sets: SetOpt = None,
    sqlite: SqliteOpt = None,
    postgres: PostgresOpt = None,
    once: Annotated[bool, typer.Option(help="Drain what is there, then exit.")] = False,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Entries per round (default 1000).")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Serve Prometheus metrics (relay outcomes, outbox depth and age) on this "
            "port at /metrics (needs the prometheus extra).",
        ),
    ] = None,
    metrics_addr: Annotated[
        str | None, typer.Option(help="Address for --metrics-port (default 127.0.0.1).")
    ] = None,
    breaker: Annotated[
        bool | None,
        typer.Option(
            "--breaker/--no-breaker",
            help="A circuit breaker: while Kafka is unreachable entries wait on disk "
            "(default: off, or breaker in the config file's relay table).",
        ),
    ] = None,
) -> None:
    """Relay outbox entries to Kafka until SIGTERM/Ctrl-C (or until drained with --once).

    The Kafka connection comes from --config FILE (or $EVENTWIRE_KAFKA_CONFIG),
    EVENTWIRE_KAFKA_* variables, --set and --bootstrap, in that order; secrets
    only from the file or the environment. The relay's own settings (breaker,
    metrics port, batch size, stop timeout) come from the config file's relay table,
    then EVENTWIRE_RELAY_* variables, then these flags. On SIGTERM/SIGINT it
    finishes the round in progress (up to stop_timeout_s), closes the producer
    and exits 0. Dead letters go to <topic>.dlq. Database and producer errors
    are logged, retried with backoff and shown by `eventwire outbox status`
    (with --once the first one ends the command).
    """
    from eventwire._shutdown import GracefulShutdown  # noqa: PLC0415

    config = kafka_config(config_file, bootstrap, sets)
    settings = _relay_settings(
        config_file,
        batch_size=batch_size,
        metrics_port=metrics_port,
        metrics_addr=metrics_addr,
        breaker=breaker,
    )
    store = open_store(sqlite, postgres)
    server = None
    try:
        if settings.metrics_port is not None:
            from eventwire.observability.prometheus import serve_prometheus  # noqa: PLC0415

            server = serve_prometheus(settings.metrics_port, settings.metrics_addr)
            err.print(f"metrics at {server.url}")
        try:
            worker = _make_relay(store, config, settings, server)
        except ConfigurationError as exc:  # librdkafka refused a property (named)
            err.print(f"eventwire: {exc}", style="red", markup=False, highlight=False)
            raise typer.Exit(2) from None
        # Entered before the loop and left after worker.stop(): a second signal
        # cannot cut the final round or the producer's close short.
        with GracefulShutdown() as shutdown:
            try:
                if once:
                    _relay_once(worker, shutdown)
                else:
                    err.print(f"relaying to {config.bootstrap_servers}; Ctrl-C to stop")
                    _relay_until_stopped(worker, shutdown)
            finally:
                worker.stop(settings.stop_timeout_s)
    finally:
        store.close()
        if server is not None:
            server.close()
    err.print(
        f"stopped: sent={worker.stats.sent} retried={worker.stats.retried} "
        f"parked={worker.stats.parked} errors={worker.stats.errors}"
    )


def _relay_settings(config_file: Path | None, **flags: Any) -> RelaySettings:
    """The relay's settings from the config file, EVENTWIRE_RELAY_* and flags; exit 2 if wrong."""
    try:
        return RelaySettings.load(config_file, **flags)
    except ConfigurationError as exc:
        err.print(f"eventwire: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None


def _make_relay(
    store: OutboxStore, config: KafkaConfig, settings: RelaySettings, server: Any
) -> OutboxRelay:
    """The relay, with a circuit breaker probing its current producer if settings ask for one."""
    from eventwire._breaker import CircuitBreaker, connection_probe  # noqa: PLC0415
    from eventwire.outbox.relay import OutboxRelay  # noqa: PLC0415
    from eventwire.transports.kafka import KafkaTransport  # noqa: PLC0415

    made: list[OutboxRelay] = []
    breaker = None
    if settings.breaker:
        breaker = CircuitBreaker(
            name="relay",
            open_after_s=settings.breaker_open_after_s,
            reset_timeout_s=settings.breaker_reset_timeout_s,
            quiet_after_s=settings.breaker_quiet_after_s,
            probe=connection_probe(lambda: made[0].transport if made else None),
        )
    worker = OutboxRelay(
        store,
        lambda: KafkaTransport(config, connect_timeout=None),
        batch_size=settings.batch_size,
        ack_timeout=settings.ack_timeout_s,
        breaker=breaker,
        meter_provider=server.meter_provider if server is not None else None,
    )
    made.append(worker)
    return worker


#: The longest ``outbox relay --once`` runs.
ONCE_TIMEOUT_S = 3600.0


def _relay_once(worker: OutboxRelay, shutdown: GracefulShutdown) -> None:
    """Run rounds until the outbox is empty (exit 1 if it is not) or a signal arrives."""
    deadline = time.monotonic() + ONCE_TIMEOUT_S
    drained = False
    while not shutdown.requested and time.monotonic() < deadline:
        if worker.run_once() == 0:
            if worker.store.status().pending == 0:
                drained = True
                break
            shutdown.wait_sync(worker.idle_interval_s)
    s = worker.stats
    err.print(f"relayed {s.sent}, dead-lettered {s.dead_lettered}, parked {s.parked}")
    if not drained:
        raise typer.Exit(1)


def _relay_until_stopped(worker: OutboxRelay, shutdown: GracefulShutdown) -> None:
    """Run the relay's thread until a signal arrives; exit 1 if the thread dies first."""
    worker.start()
    while not shutdown.wait_sync(1.0):
        if not worker.running:
            err.print(f"[red]the relay stopped:[/] {worker.problem() or 'unknown reason'}")
            raise typer.Exit(1)
    err.print(f"{shutdown.received.name if shutdown.received else 'stop'}: finishing the round")


TopicOpt = Annotated[
    str | None, typer.Option("--topic", help="A dead-letter topic, e.g. orders.dlq.")
]


@dlq_app.command("list")
def dlq_list(  # noqa: PLR0917 - typer maps each parameter to an option
    sqlite: SqliteOpt = None,
    postgres: PostgresOpt = None,
    topic: TopicOpt = None,
    config_file: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    sets: SetOpt = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """List dead letters: parked events in an outbox, or records of a dead-letter topic.

    With --topic, Kafka is reached as by `eventwire outbox relay` (--config,
    EVENTWIRE_KAFKA_*, --set, --bootstrap).
    """
    if topic:
        _list_topic(kafka_config(config_file, bootstrap, sets), topic, limit)
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


#: (partition, offset, key, value, headers), as :func:`read_records` returns them.
DeadLetterRecord = tuple[int, int, bytes | None, bytes, tuple[tuple[str, bytes], ...]]
#: How many records ``dlq list/replay --topic`` read at most in one run.
READ_MAX = 1_000_000


def _read(config: KafkaConfig, topic: str, max_records: int) -> list[DeadLetterRecord]:
    """Every record of ``topic`` (up to ``max_records``), or exit 1 saying why not.

    The reader connects as ``config`` says (TLS, SASL, ``oauth_cb``).
    """
    from eventwire._errors import BrokerUnavailableError  # noqa: PLC0415
    from eventwire.transports.kafka import read_records  # noqa: PLC0415

    try:
        return read_records(config, topic, max_records=max_records, timeout=30)
    except BrokerUnavailableError as exc:
        err.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None


def _list_topic(config: KafkaConfig, topic: str, limit: int) -> None:
    records = _read(config, topic, READ_MAX)
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
def dlq_replay(  # noqa: PLR0917 - typer maps each parameter to an option
    sqlite: SqliteOpt = None,
    postgres: PostgresOpt = None,
    topic: TopicOpt = None,
    config_file: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    sets: SetOpt = None,
    ids: Annotated[list[int] | None, typer.Option("--id", help="Only these outbox ids.")] = None,
) -> None:
    """Re-send dead letters with their original ce_id.

    Parked outbox events become pending again (the relay sends them). Records of
    a dead-letter topic are re-published to their original topic, with the
    eventwire_dlq_* headers removed; the topic is read from the beginning every
    time, so a second run re-publishes them all again (consumers de-duplicate on
    ce_id). With --topic, Kafka is reached as by `eventwire outbox relay`
    (--config, EVENTWIRE_KAFKA_*, --set, --bootstrap).
    """
    if topic:
        count = _replay_topic(kafka_config(config_file, bootstrap, sets), topic)
        out.print(f"replayed {count} dead letter(s) from {topic}")
        return
    store = open_store(sqlite, postgres)
    count = store.requeue_parked(ids or None)
    store.close()
    out.print(f"requeued {count} parked event(s)")


def _replay_topic(config: KafkaConfig, topic: str) -> int:
    from eventwire.outbox.dead_letter import strip_dead_letter_headers  # noqa: PLC0415
    from eventwire.transports.kafka import KafkaTransport  # noqa: PLC0415

    records = _read(config, topic, READ_MAX)
    transport = KafkaTransport(config)
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
