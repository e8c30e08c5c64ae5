"""The outbox options of the commands that read an existing outbox: ``--sqlite``, ``--postgres*``.

Exactly one outbox, from the first of these that names one:

1. the command line: ``--sqlite PATH``, ``--postgres-env VAR`` (the PostgreSQL DSN
   is read from environment variable ``VAR``) or ``--postgres DSN`` -- a DSN
   WITHOUT a password: every user of the host can read a command line (``ps``),
   so a DSN with a password there is refused (exit 2), as Kafka secrets are;
2. the environment: ``$EVENTWIRE_OUTBOX_POSTGRES`` (a DSN) or
   ``$EVENTWIRE_OUTBOX_SQLITE`` (a path);
3. the config file (``--config`` or ``$EVENTWIRE_KAFKA_CONFIG``): its ``[outbox]``
   table (``outbox.<name>=`` lines in a properties file) with one of ``sqlite``
   (a path, relative to the working directory), ``postgres`` (a DSN),
   ``postgres_env`` (a variable holding the DSN) or ``postgres_file`` (a file
   holding it, relative to the config file).

A SQLite file must exist: these commands read an outbox an application wrote; a
mistyped path would otherwise create an empty database and report nothing
pending.

No error the CLI prints contains a DSN's password: :func:`~eventwire.outbox._dsn.mask_text`
(the outbox's own implementation) replaces ``password=...`` keywords, the
``user:password@`` part of URLs and the password of the DSN in use wherever it
appears (libpq quotes parts of a malformed DSN in its error messages).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from eventwire._config_load import CONFIG_FILE_VAR, ENV_PREFIX, config_file_path, load_section
from eventwire._errors import ConfigurationError
from eventwire.cli._text import console, one_line, printable
from eventwire.outbox._dsn import has_password, hide_quoted, mask_text, unsupported_scheme
from eventwire.outbox.base import OutboxStore

__all__ = [
    "OUTBOX_ENV_PREFIX",
    "POSTGRES_ENV_VAR",
    "SQLITE_ENV_VAR",
    "PostgresEnvOpt",
    "PostgresOpt",
    "SqliteOpt",
    "open_store",
    "opened_store",
]

err = console(stderr=True)

#: The prefix of the outbox settings in the environment (the ``[outbox]`` table's names).
OUTBOX_ENV_PREFIX = "EVENTWIRE_OUTBOX_"
#: The variable read for the PostgreSQL DSN when no outbox option is given.
POSTGRES_ENV_VAR = f"{OUTBOX_ENV_PREFIX}POSTGRES"
#: The variable read for the SQLite outbox's path when no outbox option is given.
SQLITE_ENV_VAR = f"{OUTBOX_ENV_PREFIX}SQLITE"
#: The keys of the config file's ``[outbox]`` table (and ``EVENTWIRE_OUTBOX_<KEY>``).
_OUTBOX_KEYS = ("sqlite", "postgres", "postgres_env", "postgres_file")

SqliteOpt = Annotated[
    str | None,
    typer.Option("--sqlite", metavar="PATH", help="Path of an existing SQLite outbox file."),
]
PostgresOpt = Annotated[
    str | None,
    typer.Option(
        "--postgres",
        metavar="DSN",
        help="PostgreSQL DSN of an outbox, without a password: any user of this host can "
        "read a command line (ps), so a DSN with a password is refused. For one, use "
        f"--postgres-env VAR, ${POSTGRES_ENV_VAR} or the config file's [outbox] postgres_env.",
    ),
]
PostgresEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--postgres-env",
        metavar="VAR",
        help="Read the PostgreSQL DSN of an outbox from environment variable VAR "
        f"(keeps the password off the command line). Without any outbox option, "
        f"${POSTGRES_ENV_VAR} is read.",
    ),
]


def fail(message: str, code: int, dsn: str | None = None) -> NoReturn:
    """Print ``message`` on stderr (masked, on one line, no markup, no control characters); exit."""
    err.print(
        printable(f"eventwire: {one_line(mask_text(message, dsn))}"),
        style="red",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(code)


def _postgres_dsn(postgres: str | None, postgres_env: str | None) -> str | None:
    """The DSN named by --postgres or --postgres-env; exit 2 if the variable is unset."""
    if postgres_env is not None:
        value = os.environ.get(postgres_env, "").strip()
        if not value:
            fail(
                f"environment variable {postgres_env} (named by --postgres-env) is not set "
                "or empty: set it to the PostgreSQL DSN of the outbox",
                2,
            )
        return value
    return postgres


def open_store(
    sqlite: str | None,
    postgres: str | None,
    postgres_env: str | None = None,
    config_file: Path | None = None,
) -> OutboxStore:
    """Open the one existing outbox the options, environment or config file name, or exit 2.

    Exit 2: no outbox or more than one given; a password in ``--postgres``;
    a variable named for the DSN is unset; the SQLite file does not exist; the
    config file's ``[outbox]`` table is wrong; the store refused to open (a
    malformed DSN, the database unreachable or an outdated table). Messages
    never contain the DSN's password.
    """
    return _open(sqlite, postgres, postgres_env, config_file)[0]


def _from_config(config_file: Path | None) -> dict[str, str]:
    """The outbox ``EVENTWIRE_OUTBOX_*`` names, else the one of the config file's ``[outbox]``.

    The environment replaces the file as a whole (a variable for a PostgreSQL DSN
    is not mixed with a file's SQLite path).
    """
    env = {k: v for k, v in os.environ.items() if k.startswith(OUTBOX_ENV_PREFIX) and v.strip()}
    others = {k: v for k, v in os.environ.items() if not k.startswith(OUTBOX_ENV_PREFIX)}
    if env:
        values: dict[str, object] = {k[len(OUTBOX_ENV_PREFIX) :].lower(): v for k, v in env.items()}
        where = f"{OUTBOX_ENV_PREFIX}* variables"
    else:
        try:
            values = load_section(
                "outbox", config_file, env_prefix=OUTBOX_ENV_PREFIX, environ=others
            )
        except ConfigurationError as exc:
            fail(str(exc), 2)
        where = "[outbox] in the config file"
    unknown = sorted(k for k in values if k not in _OUTBOX_KEYS)
    if unknown:
        fail(
            f"unknown outbox setting {unknown[0]!r} ({where}): use one of "
            f"{', '.join(_OUTBOX_KEYS)}",
            2,
        )
    given = {k: str(v).strip() for k, v in values.items() if str(v).strip()}
    if len(given) > 1:
        fail(
            f"the outbox is given more than once ({', '.join(sorted(given))}; {where}): give one", 2
        )
    if "postgres_file" in given:
        path = Path(given.pop("postgres_file")).expanduser()
        base = config_file_path(config_file, ENV_PREFIX, os.environ)
        if not path.is_absolute() and base is not None:
            path = Path(base).parent / path
        try:
            given["postgres"] = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            fail(
                f"cannot read the outbox DSN file {str(path)!r} (postgres_file, {where}): {reason}",
                2,
            )
    if "postgres_env" in given:
        given["postgres"] = _variable(given.pop("postgres_env"), f"postgres_env, {where}")
    return given


def _variable(name: str, named_by: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        fail(
            f"environment variable {name} (named by {named_by}) is not set or empty: "
            "set it to the PostgreSQL DSN of the outbox",
            2,
        )
    return value


def _open(
    sqlite: str | None,
    postgres: str | None,
    postgres_env: str | None,
    config_file: Path | None = None,
    *,
    wait: bool = False,
) -> tuple[OutboxStore, str | None]:
    """:func:`open_store`, and the PostgreSQL DSN it used (None for SQLite).

    ``wait``: a database without the outbox table is waited for (see
    :func:`_wait_for_outbox`) instead of refused.
    """
    given = [name for name, v in (("--sqlite", sqlite), ("--postgres", postgres)) if v]
    if postgres_env is not None:
        given.append("--postgres-env")
    if len(given) > 1:
        fail(f"pass only one outbox, not {' and '.join(given)}", 2)
    if postgres is not None and has_password(postgres):
        fail(
            "--postgres must not hold a password: every user of this host can read a command "
            "line. Put the DSN in an environment variable and pass --postgres-env VAR, set "
            f"{POSTGRES_ENV_VAR}, or name it in the config file's [outbox] table "
            "(postgres_env or postgres_file)",
            2,
        )
    dsn: str | None = postgres
    if postgres_env is not None:
        dsn = _variable(postgres_env, "--postgres-env")
    elif not given:
        configured: Mapping[str, str] = _from_config(config_file)
        sqlite = configured.get("sqlite")
        dsn = configured.get("postgres")
    if sqlite:
        return _open_sqlite(Path(sqlite), wait=wait), None
    if not dsn:
        fail(
            "pass the outbox: --sqlite PATH, --postgres-env VAR (a variable holding the "
            f"PostgreSQL DSN) or --postgres DSN (no password); or set {POSTGRES_ENV_VAR} or "
            f"{SQLITE_ENV_VAR}; or an [outbox] table in the config file (--config, "
            f"${ENV_PREFIX}{CONFIG_FILE_VAR})",
            2,
        )
    problem = unsupported_scheme(dsn)
    if problem is not None:
        fail(f"cannot open the PostgreSQL outbox: {problem}", 2, dsn)
    from eventwire.outbox.postgres import PostgresOutbox  # noqa: PLC0415

    lacking = "no eventwire outbox in that PostgreSQL database: it has no eventwire_outbox table"
    if wait:
        _wait_for_outbox(lambda: _postgres_has_outbox(dsn, cap_s=5), lacking, dsn)
    elif _postgres_has_outbox(dsn).found is False:
        fail(
            f"{lacking} (check the DSN's database and search_path; the application creates "
            "the table when it opens its PostgresOutbox). Nothing was created.",
            2,
            dsn,
        )
    try:
        return PostgresOutbox(dsn), dsn
    except ConfigurationError as exc:  # its message may quote the DSN: masked by fail()
        fail(str(exc), 2, dsn)
    except Exception as exc:  # e.g. psycopg's ProgrammingError: masked, without a traceback
        fail(f"cannot open the PostgreSQL outbox: {exc}", 2, dsn)


def _open_sqlite(path: Path, *, wait: bool = False) -> OutboxStore:
    """The existing SQLite outbox at ``path``; exit 2 if there is no such file."""
    if not path.is_file():
        fail(
            f"no SQLite outbox at {str(path)!r}: the file does not exist (check the path; "
            "the application creates it when it opens its SQLiteOutbox)",
            2,
        )
    if wait:
        _wait_for_outbox(
            lambda: _sqlite_has_outbox(path, WAIT_FOR_OUTBOX_S),
            f"no eventwire outbox in {str(path)!r}: the file has no eventwire_outbox table",
        )
    else:
        look = _sqlite_has_outbox(path, SQLITE_LOOK_TIMEOUT_S)
        if look.found is False:
            fail(
                f"no eventwire outbox in {str(path)!r}: the file has no eventwire_outbox table "
                "(is it the application's outbox file? the application creates the table when "
                "it opens its SQLiteOutbox). Nothing was changed.",
                2,
            )
        if look.found is None:
            # Unsure is not yes: opening the store would create the tables (and switch
            # the file to WAL) in a file that may be another application's database.
            fail(f"{look.error}. Nothing was changed.", 2)
    from eventwire.outbox.sqlite import SQLiteOutbox  # noqa: PLC0415

    try:
        return SQLiteOutbox(path)
    except ConfigurationError as exc:
        fail(str(exc), 2)


# The commands work on an outbox the application made: opening a store creates its
# tables, which on a mistyped path or database would turn it into an empty outbox that
# reports "0 pending" (and a relay that relays nothing). These look first, read-only.
_HAS_OUTBOX_SQLITE = (
    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'eventwire_outbox'"
)


#: How often a relay started before its application looks for the outbox table again.
WAIT_FOR_OUTBOX_S = 5.0
#: How long the look into a SQLite file waits for another process's lock (a
#: ``SQLiteOutbox``'s default ``busy_timeout_s``) before the command gives up, unchanged.
SQLITE_LOOK_TIMEOUT_S = 30.0

#: SQLite errors no wait can cure: the file is not a database (or a damaged one).
_SQLITE_LASTING = frozenset({sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT})
#: SQLite's "the file is locked" errors.
_SQLITE_LOCKED = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
#: libpq's refusals of the DSN itself (the server sends them without a SQLSTATE to a
#: client that did not connect): a wrong password, user or database stays wrong.
_PG_LASTING = re.compile(
    r"password authentication failed|authentication failed for user|no password supplied"
    r"|no pg_hba\.conf entry|(?:database|role) \"[^\"]*\" does not exist",
    re.I,
)


@dataclass(frozen=True, slots=True)
class _Look:
    """What a read-only look for the outbox table found."""

    #: Whether the table is there; None: the look failed (``error`` says why).
    found: bool | None
    #: Why the look failed, a sentence naming the database (its password is masked
    #: by :func:`fail`).
    error: str = ""
    #: Waiting cannot help: not a database, a password or database refused, ...
    lasting: bool = False


def _wait_for_outbox(has_outbox: Callable[[], _Look], what: str, dsn: str | None = None) -> None:
    """Return once ``has_outbox()`` finds the table; exit 0 on SIGTERM/SIGINT before that.

    A relay deployed beside its application may start first: it waits for the
    application to create the outbox table, never creating it (on a mistyped
    database that would relay nothing, forever), and says so once. Only a table
    seen ends the wait: an unsure look (the file gone or locked, the server down)
    waits on, saying why. A look that cannot succeed by waiting (the file is not a
    database, the password or the database is refused) exits 2 naming the error.
    """
    from eventwire._shutdown import GracefulShutdown  # noqa: PLC0415

    look = has_outbox()
    if look.found is True:
        return
    if look.lasting:
        fail(f"{look.error}. Nothing was changed.", 2, dsn)
    reason = (
        what if look.found is False else f"{look.error}: the eventwire_outbox table is not seen"
    )
    err.print(
        printable(
            f"eventwire: {one_line(mask_text(reason, dsn))} yet; waiting for the application "
            f"to create it (checked every {WAIT_FOR_OUTBOX_S:.0f} s; Ctrl-C to stop). Check "
            "the path or DSN if it never comes."
        ),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    with GracefulShutdown() as shutdown:
        while not shutdown.wait_sync(WAIT_FOR_OUTBOX_S):
            look = has_outbox()
            if shutdown.requested:
                break
            if look.found is True:
                return
            if look.lasting:
                fail(f"{look.error}. Nothing was changed.", 2, dsn)
    err.print(f"stopped ({shutdown.received.name if shutdown.received else 'stop'})")
    raise typer.Exit(0)


def _sqlite_has_outbox(path: Path, timeout_s: float) -> _Look:
    """Whether the SQLite file at ``path`` has the outbox table (a read-only look).

    Unsure (``found`` None): the file is gone, is not a database (``lasting``),
    stayed locked by another process for ``timeout_s`` ...
    """
    where = f"cannot read {str(path)!r} to check that it is an eventwire outbox"
    if not path.is_file():
        return _Look(None, f"{where}: the file does not exist")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s)
    except (sqlite3.Error, ValueError, OSError) as exc:
        return _Look(None, f"{where}: {exc}", _sqlite_lasting(exc))
    try:
        return _Look(conn.execute(_HAS_OUTBOX_SQLITE).fetchone() is not None)
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _SQLITE_LOCKED:
            return _Look(
                None,
                f"{where}: {exc} (another process held it locked for {timeout_s:g} s; try "
                "again once it is done)",
            )
        return _Look(None, f"{where}: {exc}", _sqlite_lasting(exc))
    finally:
        conn.close()


def _sqlite_lasting(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _SQLITE_LASTING


def _postgres_has_outbox(dsn: str, cap_s: int | None = None) -> _Look:
    """Whether the PostgreSQL database of ``dsn`` has the outbox table (a read-only look).

    Unsure (``found`` None): psycopg missing, a malformed DSN, the password or the
    database refused (these three ``lasting``), the server unreachable ... It
    connects with the DSN's own ``connect_timeout``, 10 s if it has none; ``cap_s``
    bounds that (a wait must notice a signal), also for ``connect_timeout=0`` (no limit).
    """
    where = "cannot open the PostgreSQL outbox"
    problem = unsupported_scheme(dsn)
    if problem is not None:
        return _Look(None, f"{where}: {problem}", lasting=True)
    try:
        import psycopg  # noqa: PLC0415
        from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415
    except ImportError:
        return _Look(None, f"{where}: it needs psycopg 3: pip install 'eventwire[postgres]'", True)
    try:
        given = conninfo_to_dict(dsn).get("connect_timeout")
        timeout = int(str(given)) if given is not None else 10
    except (psycopg.Error, ValueError) as exc:
        # libpq quotes the piece it stopped at, which may be part of the password.
        return _Look(
            None,
            f"{where}: its DSN is not a valid libpq connection string "
            f"({hide_quoted(str(exc).strip())}; quoted parts hidden)",
            lasting=True,
        )
    if cap_s is not None and not 0 < timeout <= cap_s:
        timeout = cap_s
    extra: dict[str, Any] = (
        {} if given is not None and timeout == int(str(given)) else {"connect_timeout": timeout}
    )
    try:
        with psycopg.connect(dsn, autocommit=True, **extra) as conn:
            row = conn.execute("SELECT to_regclass('eventwire_outbox') IS NOT NULL").fetchone()
    except Exception as exc:
        text = str(exc).strip()
        return _Look(None, f"{where}: {text}", lasting=bool(_PG_LASTING.search(text)))
    return _Look(bool(row and row[0]))


def _is_database_error(exc: BaseException) -> bool:
    """A SQLite or psycopg error (psycopg only if it is loaded: it is an optional extra)."""
    psycopg = sys.modules.get("psycopg")
    return isinstance(exc, sqlite3.Error) or (
        psycopg is not None and isinstance(exc, psycopg.Error)
    )


@contextlib.contextmanager
def opened_store(
    sqlite: str | None,
    postgres: str | None,
    postgres_env: str | None = None,
    config_file: Path | None = None,
    *,
    wait: bool = False,
) -> Iterator[OutboxStore]:
    """:func:`open_store`, closed at the end; a database error on the way exits 1.

    The error is printed as one masked line, without a traceback (whose frames
    hold the DSN). ``wait``: a database without the outbox table yet is waited for
    (a relay started before its application), not refused.
    """
    store, dsn = _open(sqlite, postgres, postgres_env, config_file, wait=wait)
    try:
        yield store
    except Exception as exc:
        if not _is_database_error(exc):
            raise
        fail(f"the outbox failed: {exc}", 1, dsn)
    finally:
        with contextlib.suppress(Exception):
            store.close()
