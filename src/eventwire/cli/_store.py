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
import sqlite3
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from eventwire._config_load import CONFIG_FILE_VAR, ENV_PREFIX, config_file_path, load_section
from eventwire._errors import ConfigurationError
from eventwire.cli._text import console, one_line, printable
from eventwire.outbox._dsn import has_password, mask_text
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
    from eventwire.outbox.postgres import PostgresOutbox  # noqa: PLC0415

    lacking = "no eventwire outbox in that PostgreSQL database: it has no eventwire_outbox table"
    if wait:
        _wait_for_outbox(lambda: _postgres_has_outbox(dsn, cap_s=5), lacking)
    elif _postgres_has_outbox(dsn) is False:
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
            lambda: _sqlite_has_outbox(path),
            f"no eventwire outbox in {str(path)!r}: the file has no eventwire_outbox table",
        )
    elif _sqlite_has_outbox(path) is False:
        fail(
            f"no eventwire outbox in {str(path)!r}: the file has no eventwire_outbox table "
            "(is it the application's outbox file? the application creates the table when "
            "it opens its SQLiteOutbox). Nothing was changed.",
            2,
        )
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


def _wait_for_outbox(has_outbox: Callable[[], bool | None], what: str) -> None:
    """Return once ``has_outbox()`` is True; exit 0 on SIGTERM/SIGINT before that.

    A relay deployed beside its application may start first: it waits for the
    application to create the outbox table, never creating it (on a mistyped
    database that would relay nothing, forever), and says so once. Only a table
    seen ends the wait: an unsure look (the file gone, the server down) waits on.
    """
    from eventwire._shutdown import GracefulShutdown  # noqa: PLC0415

    if has_outbox() is True:
        return
    err.print(
        printable(
            f"eventwire: {what} yet; waiting for the application to create it (checked "
            f"every {WAIT_FOR_OUTBOX_S:.0f} s; Ctrl-C to stop). Check the path or DSN if "
            "it never comes."
        ),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    with GracefulShutdown() as shutdown:
        while not shutdown.wait_sync(WAIT_FOR_OUTBOX_S):
            if has_outbox() is True and not shutdown.requested:
                return
    err.print(f"stopped ({shutdown.received.name if shutdown.received else 'stop'})")
    raise typer.Exit(0)


def _sqlite_has_outbox(path: Path) -> bool | None:
    """Whether the SQLite file at ``path`` has the outbox table; None if unsure.

    A read-only look. Unsure: the file is gone, is not a database, is locked ...
    """
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except (sqlite3.Error, ValueError, OSError):
        return None
    try:
        return conn.execute(_HAS_OUTBOX_SQLITE).fetchone() is not None
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _postgres_has_outbox(dsn: str, cap_s: int | None = None) -> bool | None:
    """Whether the PostgreSQL database of ``dsn`` has the outbox table; None if unsure.

    A read-only look (psycopg missing, the server unreachable: unsure). It connects
    with the DSN's own ``connect_timeout``, 10 s if it has none; ``cap_s`` bounds
    that (a wait must notice a signal), also for ``connect_timeout=0`` (no limit).
    """
    try:
        import psycopg  # noqa: PLC0415
        from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

        given = conninfo_to_dict(dsn).get("connect_timeout")
        timeout = int(str(given)) if given is not None else 10
        if cap_s is not None and not 0 < timeout <= cap_s:
            timeout = cap_s
        extra: dict[str, Any] = (
            {} if given is not None and timeout == int(str(given)) else {"connect_timeout": timeout}
        )
        with psycopg.connect(dsn, autocommit=True, **extra) as conn:
            row = conn.execute("SELECT to_regclass('eventwire_outbox') IS NOT NULL").fetchone()
    except Exception:
        return None
    return bool(row and row[0])


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
