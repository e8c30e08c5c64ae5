"""``eventwire outbox status|relay|ddl`` and ``eventwire dlq list|replay`` (dead letters).

The commands that talk to Kafka (``outbox relay``, ``dlq list|replay --topic``)
read the same :class:`~eventwire.KafkaConfig` as an application: ``--config FILE``
(or ``$EVENTWIRE_KAFKA_CONFIG``), the ``EVENTWIRE_KAFKA_*`` variables, then
``--set`` and ``--bootstrap`` (see :mod:`eventwire.cli._kafka_options`). No
option needs a secret: a PostgreSQL outbox's DSN can come from an environment
variable (``--postgres-env VAR`` or ``$EVENTWIRE_OUTBOX_POSTGRES``, see
:mod:`eventwire.cli._store`). ``outbox status`` reads only the outbox. The
outbox must exist: a ``--sqlite`` path that is not a file exits 2.

Text that comes from records, the database or error messages is shown through
:mod:`eventwire.cli._text`: never as markup, control characters escaped.

``dlq replay --topic`` writes only where the operator says (``--to-topic`` or
``--allow-topic``), never where a record's header alone says, and ``--dry-run``
shows each record's target first.

``--json`` (``outbox status``, ``dlq list``) prints one JSON document on stdout
instead of tables, with the stable keys of :func:`status_document` and
:func:`dlq_document` (documented there; a key is only ever added). Errors stay
one line on stderr with the same exit codes.

``outbox status`` also lists each relay's heartbeat (written every few seconds by
a running relay): when it last finished a round, its last error, and STALE when
that was more than :data:`STALE_AFTER_S` ago.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.table import Table

from eventwire._config import KafkaConfig
from eventwire._errors import ConfigurationError
from eventwire.cli._kafka_options import BootstrapOpt, ConfigOpt, SetOpt, kafka_config
from eventwire.cli._relay_settings import RelaySettings
from eventwire.cli._store import (
    PostgresEnvOpt,
    PostgresOpt,
    SqliteOpt,
    fail,
    open_store,
    opened_store,
)
from eventwire.cli._text import cell, console, decoded, markup_safe, printable
from eventwire.outbox.base import OutboxStatus, OutboxStore, RelayHeartbeat
from eventwire.outbox.dead_letter import ReplayDecision, ReplayTargets
from eventwire.outbox.relay import MAX_BATCH_SIZE

if TYPE_CHECKING:
    from eventwire._shutdown import GracefulShutdown
    from eventwire.outbox.relay import OutboxRelay

# pretty_exceptions_show_locals=False: a crash's traceback must not print frame locals
# (a DSN, a config) whatever typer's default is (True before typer 0.23).
app = typer.Typer(
    rich_markup_mode=None,  # help texts mean [outbox] literally, not as markup
    help="Inspect and relay the durable outbox.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
dlq_app = typer.Typer(
    rich_markup_mode=None,  # help texts mean [outbox] literally, not as markup
    help="Dead letters (outbox only): events given up on after a permanent failure or "
    "exhausted retries, in a dead-letter topic or parked in the outbox.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
out = console()
err = console(stderr=True)

__all__ = ["app", "dlq_app", "dlq_document", "open_store", "status_document"]


#: A relay whose last heartbeat is older than this is shown as stale (it beats every 5 s).
STALE_AFTER_S = 30.0

JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document (stable, documented keys) instead."),
]
OutboxConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Config file whose [outbox] table names the outbox (sqlite, postgres, "
        "postgres_env or postgres_file). Default: $EVENTWIRE_KAFKA_CONFIG.",
    ),
]


def _print_json(document: dict[str, Any]) -> None:
    """``document`` as one line of JSON on stdout (never through rich: no wrapping, no markup)."""
    sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def status_document(s: OutboxStatus) -> dict[str, Any]:
    """``outbox status --json``: the outbox depth and each relay's heartbeat.

    Keys (stable; later versions only add keys): ``pending``, ``parked``,
    ``sent_retained`` (ints); ``oldest_pending_age_s`` (float seconds, or null when
    nothing is pending); ``relays``: a list, most recent first, of objects with
    ``owner`` (str), ``age_s`` (float seconds since its last round), ``last_error``
    (str or null) and ``stale`` (bool: no round for more than ``stale_after_s``);
    ``stale_after_s`` (float).
    """
    return {
        "pending": s.pending,
        "parked": s.parked,
        "sent_retained": s.sent_retained,
        "oldest_pending_age_s": s.oldest_pending_age_s,
        "relays": [
            {
                "owner": beat.owner,
                "age_s": beat.age_s,
                "last_error": beat.last_error,
                "stale": beat.age_s > STALE_AFTER_S,
            }
            for beat in s.relays
        ],
        "stale_after_s": STALE_AFTER_S,
    }


@app.command()
def status(
    sqlite: SqliteOpt = None,
    postgres: PostgresOpt = None,
    postgres_env: PostgresEnvOpt = None,
    config_file: OutboxConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the outbox depth and each relay's last heartbeat (age, last error, stale?).

    Depth: pending, parked, sent-and-retained, and the oldest pending age. The
    outbox: --sqlite PATH (an existing file), --postgres-env VAR (a variable
    holding the DSN), --postgres DSN (without a password), else
    $EVENTWIRE_OUTBOX_POSTGRES or $EVENTWIRE_OUTBOX_SQLITE, else the config
    file's [outbox] table.
    """
    with opened_store(sqlite, postgres, postgres_env, config_file) as store:
        s = store.status()
    if as_json:
        _print_json(status_document(s))
        return
    table = Table(title="eventwire outbox")
    table.add_column("pending", justify="right")
    table.add_column("parked", justify="right")
    table.add_column("sent (retained)", justify="right")
    table.add_column("oldest pending", justify="right")
    age = "-" if s.oldest_pending_age_s is None else f"{s.oldest_pending_age_s:.1f} s"
    table.add_row(str(s.pending), str(s.parked), str(s.sent_retained), age)
    out.print(table)
    _print_relays(s.relays)


@app.command()
def ddl(
    dialect: Annotated[str, typer.Argument(help="postgres or sqlite.", metavar="DIALECT")],
) -> None:
    """Print the SQL that creates the outbox tables (for a migration run by their owner).

    An application's role that may not run DDL can use an outbox made this way:
    on PostgreSQL it needs SELECT, INSERT, UPDATE, DELETE on eventwire_outbox and
    eventwire_outbox_relays and USAGE on eventwire_outbox_id_seq (SELECT alone for
    `outbox status` and `dlq list`). The statements are idempotent.
    """
    if dialect == "postgres":
        from eventwire.outbox.postgres import PostgresOutbox  # noqa: PLC0415

        sql = PostgresOutbox.schema_sql()
    elif dialect == "sqlite":
        from eventwire.outbox.sqlite import SQLiteOutbox  # noqa: PLC0415

        sql = SQLiteOutbox.schema_sql()
    else:
        fail(f"unknown dialect {dialect!r}: use postgres or sqlite", 2)
    sys.stdout.write(sql)


#: Where a heartbeat's error text starts the error of a step (``OutboxRelay.last_error``
#: joins ``"step: error"`` texts with ``"; "``, and an error's own text may hold "; ").
_STEP_START = re.compile(r"(?:^|; )(round|cleanup|heartbeat|delivery): ")


def _only_delivery(last_error: str) -> bool:
    """Whether a heartbeat's error says only that deliveries fail (the loop itself works)."""
    return {m.group(1) for m in _STEP_START.finditer(last_error)} == {"delivery"}


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
        elif beat.last_error and not _only_delivery(beat.last_error):
            state = "[red]FAILING[/]"
        elif beat.last_error:
            state = "[yellow]NOT DELIVERING[/] (Kafka?)"
        else:
            state = "ok"
        table.add_row(
            cell(beat.owner), f"{beat.age_s:.1f} s ago", state, cell(beat.last_error or "-")
        )
    out.print(table)


@app.command()
def relay(  # noqa: PLR0917 - typer maps each parameter to an option
    config_file: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    sets: SetOpt = None,
    sqlite: SqliteOpt = None,
    postgres: PostgresOpt = None,
    postgres_env: PostgresEnvOpt = None,
    once: Annotated[
        bool,
        typer.Option(
            help="Drain what is there, then exit: 0 once drained; 1 at the first problem "
            "(no broker within 10 s, a failed round, entries left to retry, a signal), named."
        ),
    ] = False,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, max=MAX_BATCH_SIZE, help="Entries per round, 1 to 1000000 (default 1000)."
        ),
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
    (with --once the first one ends the command with exit 1, as does no broker
    answering within 10 s or a round leaving entries to retry; they stay in the outbox).
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
    # The metrics server first: a port taken is said at once, and /metrics answers
    # while a relay started before its application waits for the outbox table.
    server = _serve_metrics(settings)
    try:
        with opened_store(sqlite, postgres, postgres_env, config_file, wait=not once) as store:
            try:
                worker = _make_relay(store, config, settings, server)
            except ConfigurationError as exc:  # librdkafka refused a property (named)
                fail(str(exc), 2)
            # Entered before the loop and left after worker.stop(): a second signal
            # cannot cut the final round or the producer's close short.
            with GracefulShutdown() as shutdown:
                try:
                    if once:
                        _relay_once(worker, shutdown)
                    else:
                        err.print(
                            f"relaying to {config.bootstrap_servers}; Ctrl-C to stop",
                            markup=False,
                            highlight=False,
                        )
                        _relay_until_stopped(worker, shutdown)
                finally:
                    stop_deadline = time.monotonic() + settings.stop_timeout_s
                    worker.stop(settings.stop_timeout_s)
                    _close_within(store, stop_deadline - time.monotonic())
    finally:
        if server is not None:
            server.close()
    err.print(
        f"stopped: sent={worker.stats.sent} retried={worker.stats.retried} "
        f"parked={worker.stats.parked} errors={worker.stats.errors}"
    )


def _close_within(store: OutboxStore, seconds: float) -> None:
    """Close ``store`` within what is left of the stop timeout, if it can bound its close.

    A relay thread still waiting in SQLite for another process's write lock holds the
    store's connection for up to its busy timeout; the command exits on time anyway
    (the connection goes with the process). ``opened_store`` closes other stores.
    """
    close = store.close
    if "timeout" in inspect.signature(close).parameters:
        cast("Any", close)(timeout=max(0.0, seconds))


def _serve_metrics(settings: RelaySettings) -> Any:
    """The Prometheus server the settings ask for (None if none); exit 2 if it cannot run."""
    if settings.metrics_port is None:
        return None
    from eventwire.observability.prometheus import serve_prometheus  # noqa: PLC0415

    try:
        server = serve_prometheus(settings.metrics_port, settings.metrics_addr)
    except OSError as exc:  # e.g. the port is taken
        fail(
            f"cannot serve metrics on {settings.metrics_addr}:{settings.metrics_port}: "
            f"{exc.strerror or exc}. Choose another --metrics-port or --metrics-addr (or "
            "metrics_port / metrics_addr in the config file's [relay] table).",
            2,
        )
    err.print(f"metrics at {server.url}", markup=False, highlight=False)
    return server


def _relay_settings(config_file: Path | None, **flags: Any) -> RelaySettings:
    """The relay's settings from the config file, EVENTWIRE_RELAY_* and flags; exit 2 if wrong."""
    try:
        return RelaySettings.load(config_file, **flags)
    except ConfigurationError as exc:
        fail(str(exc), 2)


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
#: How long ``outbox relay --once`` waits for a broker to answer before it gives up (a
#: Publisher's default ``connect_timeout``).
ONCE_CONNECT_TIMEOUT_S = 10.0


def _relay_once(worker: OutboxRelay, shutdown: GracefulShutdown) -> None:
    """Run rounds until the outbox is empty (exit 0) or a signal arrives.

    Exits 1 without waiting when no broker answers at the start, when a round fails
    (the database, or the producer), or once a round leaves entries to retry: a
    scheduled job then fails at once, saying why, instead of retrying for up to
    :data:`ONCE_TIMEOUT_S`; the entries stay in the outbox for the next run.
    """
    from eventwire._errors import BrokerUnavailableError  # noqa: PLC0415

    try:
        worker.transport.check_connection(ONCE_CONNECT_TIMEOUT_S)
    except BrokerUnavailableError as exc:
        # (the library's advice to pass connect_timeout=None is no option of this command)
        text = re.sub(r",? or pass connect_timeout=None[^.]*\.", ".", str(exc))
        fail(f"{text} Nothing was relayed; the entries wait in the outbox.", 1)
    deadline = time.monotonic() + ONCE_TIMEOUT_S
    drained = False
    why = "the outbox was not empty after 1 hour"
    while not shutdown.requested and time.monotonic() < deadline:
        retried = worker.stats.retried
        try:
            claimed = worker.run_once()
        except Exception as exc:  # the store's or the transport factory's error
            why = f"a round failed: {exc!r}; its entries are claimed again after their lease"
            break
        if worker.stats.retried > retried:
            n = worker.stats.retried - retried
            why = (
                f"{n} entr{'y' if n == 1 else 'ies'} failed and will be retried (their error "
                "is in the outbox; see the log above, or `eventwire outbox status`)"
            )
            break
        if claimed == 0:
            if worker.store.status().pending == 0:
                drained = True
                break
            shutdown.wait_sync(worker.idle_interval_s)
    s = worker.stats
    err.print(f"relayed {s.sent}, dead-lettered {s.dead_lettered}, parked {s.parked}")
    if not drained:
        if shutdown.requested:
            signal_name = shutdown.received.name if shutdown.received else "a stop"
            why = f"stopped by {signal_name}; the rest waits in the outbox"
        fail(f"not drained: {why}.", 1)


def _relay_until_stopped(worker: OutboxRelay, shutdown: GracefulShutdown) -> None:
    """Run the relay's thread until a signal arrives; exit 1 if the thread dies first."""
    worker.start()
    while not shutdown.wait_sync(1.0):
        if not worker.running:
            problem = markup_safe(worker.problem() or "unknown reason")
            err.print(f"[red]the relay stopped:[/] {problem}")
            raise typer.Exit(1)
    err.print(f"{shutdown.received.name if shutdown.received else 'stop'}: finishing the round")


#: The most dead letters ``dlq list --limit`` shows (as many as a topic read reads).
LIMIT_MAX = 1_000_000

TopicOpt = Annotated[
    str | None, typer.Option("--topic", help="A dead-letter topic, e.g. orders.dlq.")
]


@dlq_app.command("list")
def dlq_list(  # noqa: PLR0917 - typer maps each parameter to an option
    sqlite: SqliteOpt = None,
    postgres: PostgresOpt = None,
    postgres_env: PostgresEnvOpt = None,
    topic: TopicOpt = None,
    config_file: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    sets: SetOpt = None,
    limit: Annotated[
        int,
        typer.Option(
            min=1,
            max=LIMIT_MAX,
            help=f"Show at most this many, oldest first (1 to {LIMIT_MAX}).",
        ),
    ] = 50,
    as_json: JsonOpt = False,
) -> None:
    r"""List dead letters: parked events in an outbox, or records of a dead-letter topic.

    With --topic, Kafka is reached as by `eventwire outbox relay` (--config,
    EVENTWIRE_KAFKA_*, --set, --bootstrap). Without it, the outbox is --sqlite
    PATH (an existing file), --postgres-env VAR, --postgres DSN (without a
    password), $EVENTWIRE_OUTBOX_POSTGRES / $EVENTWIRE_OUTBOX_SQLITE, or the
    config file's [outbox] table. Headers and errors are shown literally:
    control characters and bytes that are not UTF-8 as escapes (\x1b, \xff).
    """
    _one_mode(
        topic,
        outbox={"--sqlite": sqlite, "--postgres": postgres, "--postgres-env": postgres_env},
        kafka={"--bootstrap": bootstrap, "--set": sets},
    )
    if topic:
        _list_topic(kafka_config(config_file, bootstrap, sets), topic, limit, as_json=as_json)
        return
    with opened_store(sqlite, postgres, postgres_env, config_file) as store:
        rows = store.list_parked(limit)
        parked = store.status().parked
    if as_json:
        _print_json(
            dlq_document(
                source="outbox",
                total=parked,
                dead_letters=[
                    {
                        "id": claimed.id,
                        "event_id": claimed.entry.event_id,
                        "event_type": claimed.entry.event_type,
                        "topic": claimed.entry.topic,
                        "attempts": claimed.attempts,
                        "last_error": error,
                    }
                    for claimed, error in rows
                ],
            )
        )
        return
    shown = f"all {parked}" if len(rows) >= parked else f"{len(rows)} of {parked}, oldest first"
    table = Table(title=f"parked events ({shown})")
    for col in ("id", "event id", "type", "topic", "attempts", "last error"):
        table.add_column(col)
    for claimed, error in rows:
        e = claimed.entry
        table.add_row(
            str(claimed.id),
            cell(e.event_id),
            cell(e.event_type),
            cell(e.topic),
            str(claimed.attempts),
            cell(error),
        )
    out.print(table)


#: (partition, offset, key, value, headers), as :func:`read_records` returns them.
DeadLetterRecord = tuple[int, int, bytes | None, bytes, tuple[tuple[str, bytes], ...]]
#: How many records ``dlq list/replay --topic`` read at most in one run.
READ_MAX = 1_000_000
#: ``dlq list/replay --topic`` give up once no record came for this long.
READ_IDLE_TIMEOUT_S = 30.0


def _read(config: KafkaConfig, topic: str, max_records: int) -> list[DeadLetterRecord]:
    """Every record of ``topic``, or exit 1 saying why not (never a silent part of them).

    The reader connects as ``config`` says (TLS, SASL, ``oauth_cb``). A topic holding
    more than ``max_records``, or a read that stalls before the end of the topic,
    exits 1: listing or replaying part of a topic as if it were all of it would lose
    the rest without a word.
    """
    from eventwire._errors import BrokerUnavailableError  # noqa: PLC0415
    from eventwire.transports.kafka import read_records  # noqa: PLC0415

    try:
        read = read_records(config, topic, max_records=max_records, timeout=READ_IDLE_TIMEOUT_S)
    except BrokerUnavailableError as exc:
        fail(str(exc), 1)
    except ConfigurationError as exc:
        fail(str(exc), 2)
    if read.complete:
        return read.records
    if len(read.records) >= max_records:
        fail(
            f"{topic!r} holds more than {max_records:,} records, more than one run reads; "
            "nothing was listed or replayed. Read it with a Kafka consumer of your own.",
            1,
        )
    fail(
        f"no record of {topic!r} came for {READ_IDLE_TIMEOUT_S:g} s before the end of the "
        f"topic (after {len(read.records):,}); nothing was listed or replayed. Try again.",
        1,
    )


def _header(headers: tuple[tuple[str, bytes], ...], name: str) -> str:
    """The printable value of header ``name`` (the last one if repeated), or ""."""
    values = [v for k, v in headers if k == name]
    return decoded(values[-1]) if values else ""


def dlq_document(
    *, source: str, total: int, dead_letters: list[dict[str, Any]], topic: str | None = None
) -> dict[str, Any]:
    r"""``dlq list --json``: the dead letters shown, and where they come from.

    Keys (stable; later versions only add keys): ``source`` (``"outbox"`` or
    ``"topic"``); ``topic`` (the dead-letter topic, or null for the outbox);
    ``total`` (int: parked events in the outbox, or records in the topic);
    ``dead_letters``: a list of objects, at most ``--limit``. From the outbox: ``id``
    (int), ``event_id``, ``event_type``, ``topic`` (str), ``attempts`` (int),
    ``last_error`` (str). From a topic:
    ``partition``, ``offset`` (int), ``event_id``, ``event_type``, ``original_topic``,
    ``code``, ``reason`` (str, "" when the header is absent; bytes that are not
    UTF-8 as ``\xNN`` escapes) and ``attempts`` (int, or null when absent).
    """
    return {"source": source, "topic": topic, "total": total, "dead_letters": dead_letters}


def _attempts(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _list_topic(config: KafkaConfig, topic: str, limit: int, *, as_json: bool = False) -> None:
    records = _read(config, topic, READ_MAX)
    if as_json:
        _print_json(
            dlq_document(
                source="topic",
                topic=topic,
                total=len(records),
                dead_letters=[
                    {
                        "partition": partition,
                        "offset": offset,
                        "event_id": _header(headers, "ce_id"),
                        "event_type": _header(headers, "ce_type"),
                        "original_topic": _header(headers, "eventwire_dlq_original_topic"),
                        "code": _header(headers, "eventwire_dlq_code"),
                        "attempts": _attempts(_header(headers, "eventwire_dlq_attempts")),
                        "reason": _header(headers, "eventwire_dlq_reason"),
                    }
                    for partition, offset, _key, _value, headers in records[:limit]
                ],
            )
        )
        return
    table = Table(
        title=cell(f"dead letters in {topic} ({min(limit, len(records))} of {len(records)})")
    )
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
        table.add_row(
            f"{partition}:{offset}",
            *(
                cell(_header(headers, name))
                for name in (
                    "ce_id",
                    "ce_type",
                    "eventwire_dlq_original_topic",
                    "eventwire_dlq_code",
                    "eventwire_dlq_attempts",
                    "eventwire_dlq_reason",
                )
            ),
        )
    out.print(table)


ToTopicOpt = Annotated[
    str | None,
    typer.Option(
        "--to-topic",
        metavar="TOPIC",
        help="With --topic: write every record to TOPIC, whatever its "
        "eventwire_dlq_original_topic header says.",
    ),
]
AllowTopicOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-topic",
        metavar="TOPIC",
        help="With --topic: write a record back to the topic its eventwire_dlq_original_topic "
        "header names only if it is TOPIC (repeatable); any other record is reported and "
        "skipped.",
    ),
]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="With --topic: list each record and where it would go (or why it would be "
        "skipped), and write nothing.",
    ),
]


@dlq_app.command("replay")
def dlq_replay(  # noqa: PLR0917 - typer maps each parameter to an option
    sqlite: SqliteOpt = None,
    postgres: PostgresOpt = None,
    postgres_env: PostgresEnvOpt = None,
    topic: TopicOpt = None,
    to_topic: ToTopicOpt = None,
    allow_topics: AllowTopicOpt = None,
    dry_run: DryRunOpt = False,
    config_file: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    sets: SetOpt = None,
    ids: Annotated[
        list[int] | None,
        typer.Option("--id", min=1, max=2**63 - 1, help="Only these outbox ids."),
    ] = None,
) -> None:
    """Re-send dead letters with their original ce_id.

    Parked outbox events (--sqlite PATH, --postgres-env VAR or
    $EVENTWIRE_OUTBOX_POSTGRES, or --postgres DSN) become pending again; the
    relay sends them to their topic.

    Records of a dead-letter topic (--topic T) are re-published, with the
    eventwire_dlq_* headers removed, to topics the operator names, never just
    where a record's eventwire_dlq_original_topic header says (anyone who can
    write to T can forge it). Pass exactly one of: --to-topic TOPIC (every
    record goes to TOPIC), or --allow-topic TOPIC, repeatable (a record goes
    back to its original topic only if that is allowed). A record that cannot
    go anywhere allowed (or whose header is missing, repeated or not UTF-8) is
    reported on stderr and skipped; the others are still replayed and flushed,
    and the command then exits 1. Use --dry-run first: it lists every record
    and its target or the reason it would be skipped, writes nothing, and exits
    as the replay would (1 if a record would be skipped).

    T is read from the beginning every time, so a second run re-publishes
    every record again (consumers de-duplicate on ce_id). Kafka is reached as by
    `eventwire outbox relay` (--config, EVENTWIRE_KAFKA_*, --set, --bootstrap).
    """
    _one_mode(
        topic,
        outbox={
            "--sqlite": sqlite,
            "--postgres": postgres,
            "--postgres-env": postgres_env,
            "--id": ids,
        },
        kafka={"--bootstrap": bootstrap, "--set": sets},
    )
    if topic:
        if to_topic is not None and allow_topics:
            fail("pass either --to-topic or --allow-topic, not both", 2)
        if to_topic is not None and to_topic == topic:
            fail(
                f"--to-topic {to_topic} is the dead-letter topic itself: replaying into it "
                "would only add copies of its records; name the topic they belong in",
                2,
            )
        if to_topic is None and not allow_topics:
            fail(
                f"dlq replay --topic {topic} needs a target: --to-topic TOPIC (every record goes "
                "there) or --allow-topic TOPIC, repeatable (a record goes back to the topic its "
                "eventwire_dlq_original_topic header names only if allowed). The header alone is "
                f"not trusted: anyone who can write to {topic} can forge it. Try --dry-run first.",
                2,
            )
        try:
            targets = ReplayTargets(to_topic=to_topic, allowed=frozenset(allow_topics or ()))
        except ConfigurationError as exc:
            fail(str(exc), 2)
        config = kafka_config(config_file, bootstrap, sets)
        if not _replay_topic(config, topic, targets, dry_run=dry_run):
            raise typer.Exit(1)
        return
    given = [
        name
        for name, value in (
            ("--to-topic", to_topic),
            ("--allow-topic", allow_topics),
            ("--dry-run", dry_run),
        )
        if value
    ]
    if given:
        fail(f"{', '.join(given)}: only with --topic (a dead-letter topic)", 2)
    with opened_store(sqlite, postgres, postgres_env, config_file) as store:
        count = store.requeue_parked(ids or None)
    out.print(f"requeued {count} parked event(s)")
    asked = len(set(ids or ()))
    if ids and count < asked:
        fail(
            f"{asked - count} of the {asked} --id value(s) named no parked event (no such "
            "outbox id, or the event is pending or sent): see `eventwire dlq list`",
            1,
        )


def _one_mode(topic: str | None, *, outbox: dict[str, object], kafka: dict[str, object]) -> None:
    """Exit 2 if options of the other mode were given: an outbox's with --topic, or Kafka's without.

    Silently ignoring them would act on other dead letters than asked for.
    """
    stray = [name for name, value in (outbox if topic else kafka).items() if value]
    if stray:
        where = (
            f"with --topic (a dead-letter topic), {', '.join(stray)} (an outbox's) do not apply"
            if topic
            else f"{', '.join(stray)} only apply with --topic (a dead-letter topic)"
        )
        fail(f"{where}: give the options of one of the two", 2)


def _where(record: DeadLetterRecord) -> str:
    """``partition:offset (ce_id ...)``: printable, for a line about one record."""
    partition, offset, _key, _value, headers = record
    ce_id = _header(headers, "ce_id")
    return f"{partition}:{offset}" + (f" (ce_id {ce_id})" if ce_id else "")


def _say(text: str) -> None:
    """One line on stderr, shown literally (no markup, control characters escaped)."""
    err.print(cell(text), highlight=False, soft_wrap=True)


def _print_plan(topic: str, plan: list[tuple[DeadLetterRecord, ReplayDecision]]) -> None:
    """The dry run's table: each record and its target, or why it would be skipped."""
    table = Table(title=cell(f"dry run: dead letters in {topic} (nothing is written)"))
    for col in ("partition:offset", "event id", "original topic", "action"):
        table.add_column(col)
    for record, decision in plan:
        action = f"-> {decision.target}" if decision.target else f"SKIP: {decision.reason}"
        table.add_row(
            f"{record[0]}:{record[1]}",
            cell(_header(record[4], "ce_id")),
            cell(_header(record[4], "eventwire_dlq_original_topic")),
            cell(action),
        )
    out.print(table)
    skipped = sum(1 for _record, decision in plan if decision.target is None)
    out.print(
        f"dry run: {len(plan) - skipped} would be replayed, {skipped} skipped",
        markup=False,
        highlight=False,
    )


def _replay_topic(
    config: KafkaConfig, topic: str, targets: ReplayTargets, *, dry_run: bool
) -> bool:
    """Replay (or with ``dry_run`` list) ``topic``'s records; False if any was not replayed.

    Every record is decided first; one that may not be written is reported and
    skipped, the rest are sent, and the producer is always flushed and closed.
    """
    from eventwire._errors import BrokerUnavailableError  # noqa: PLC0415
    from eventwire.outbox.dead_letter import strip_dead_letter_headers  # noqa: PLC0415
    from eventwire.transports.base import SendRejected, TransportQueueFull  # noqa: PLC0415
    from eventwire.transports.kafka import KafkaTransport  # noqa: PLC0415

    records = _read(config, topic, READ_MAX)
    plan = [(record, targets.decide(record[4])) for record in records]
    skipped = [(record, d) for record, d in plan if d.target is None]
    for record, decision in skipped:
        _say(f"skipped {_where(record)}: {printable(decision.reason)}")
    if dry_run:
        _print_plan(topic, plan)
        return not skipped
    failed: list[str] = []

    def reporter(record: DeadLetterRecord, target: str) -> Any:
        def report(error: object, _msg: object) -> None:
            if error is not None:
                failed.append(f"not replayed {_where(record)} -> {target}: {error}")

        return report

    try:
        transport = KafkaTransport(config)
    except ConfigurationError as exc:
        fail(str(exc), 2)
    except BrokerUnavailableError as exc:
        fail(f"nothing replayed: {exc}", 1)
    try:
        for record, decision in plan:
            if decision.target is None:
                continue
            _partition, _offset, key, value, headers = record
            while True:
                try:
                    transport.send(
                        decision.target,
                        key,
                        value,
                        strip_dead_letter_headers(headers),
                        reporter(record, decision.target),
                    )
                    break
                except TransportQueueFull:
                    transport.flush(1.0)  # room frees up as earlier records are acked
                except SendRejected as exc:
                    failed.append(f"not replayed {_where(record)} -> {decision.target}: {exc}")
                    break
    finally:
        transport.close(30)  # flushes; what is left gets a failed report
    for line in failed:
        _say(line)
    replayed = len(plan) - len(skipped) - len(failed)
    out.print(
        f"replayed {replayed} of {len(plan)} dead letter(s) from {topic} "
        f"({len(skipped)} skipped, {len(failed)} failed)",
        markup=False,
        highlight=False,
    )
    return not skipped and not failed
