"""The outbox options of the commands that read an existing outbox: ``--sqlite``, ``--postgres*``.

Exactly one outbox, from (in this order of preference for scripts):

* ``--postgres-env VAR``: the PostgreSQL DSN is read from environment variable
  ``VAR``, so the password never appears on the command line;
* ``$EVENTWIRE_OUTBOX_POSTGRES`` when no outbox option is given;
* ``--postgres DSN``: works, but every user of the host can read a command line
  (``ps``), so a DSN with a password there is visible to them;
* ``--sqlite PATH``: the file must exist. These commands read an outbox an
  application wrote; a mistyped path would otherwise create an empty database
  and report nothing pending.

No error the CLI prints contains a DSN's password: :func:`mask_dsn` replaces
``password=...`` keywords, the ``user:password@`` part of URLs and the
password of the DSN in use wherever it appears (libpq quotes parts of a
malformed DSN in its error messages).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, NoReturn
from urllib.parse import quote, unquote

import typer
from rich.console import Console

from eventwire._errors import ConfigurationError
from eventwire.cli._text import printable
from eventwire.outbox.base import OutboxStore

__all__ = [
    "POSTGRES_ENV_VAR",
    "PostgresEnvOpt",
    "PostgresOpt",
    "SqliteOpt",
    "mask_dsn",
    "open_store",
    "opened_store",
]

err = Console(stderr=True)

#: The variable read for the PostgreSQL DSN when no outbox option is given.
POSTGRES_ENV_VAR = "EVENTWIRE_OUTBOX_POSTGRES"

SqliteOpt = Annotated[
    str | None,
    typer.Option("--sqlite", metavar="PATH", help="Path of an existing SQLite outbox file."),
]
PostgresOpt = Annotated[
    str | None,
    typer.Option(
        "--postgres",
        metavar="DSN",
        help="PostgreSQL DSN of an outbox. Any user of this host can read a command line "
        f"(ps): for a DSN with a password use --postgres-env VAR or ${POSTGRES_ENV_VAR}.",
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

_MASK = "***"
# password=secret / password = 'sec ret' (libpq keyword form, URL query parameters).
_KEYWORD = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&]+)")
# scheme://user:secret@host
_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s]*)@")
# The password parts of a DSN that is not well-formed (spaces in a URL password).
_URL_PASSWORD = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^:/@\s]*:(.*)@")


def _passwords(dsn: str) -> set[str]:
    """Every form in which ``dsn``'s password may appear in a message (best effort)."""
    found: set[str] = set()
    for match in _KEYWORD.finditer(dsn):
        found.add(match.group(2))
        found.add(match.group(2).strip("'"))
    for match in _URL_PASSWORD.finditer(dsn):
        found.add(match.group(1))
    try:
        from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

        password = conninfo_to_dict(dsn).get("password")
        if password:
            found.add(str(password))
    except Exception:  # malformed DSN or no psycopg: the regexes above found it, if anything
        pass
    for value in list(found):
        found.update({unquote(value), quote(value, safe="")})
    return {value for value in found if value}


def mask_dsn(text: str, dsn: str | None = None) -> str:
    """``text`` with DSN passwords masked: ``password=***``, ``user:***@``, and ``dsn``'s password.

    ``dsn`` (the DSN in use) adds its password, in any form, to what is masked
    wherever it appears, e.g. in libpq's quotes of a malformed DSN.
    """
    if dsn:
        for secret in sorted(_passwords(dsn), key=len, reverse=True):
            text = text.replace(secret, _MASK)
    text = _KEYWORD.sub(lambda m: m.group(1) + _MASK, text)
    return _USERINFO.sub(lambda m: m.group(1) + _MASK + "@", text)


def has_password(dsn: str) -> bool:
    """Whether ``dsn`` carries a password (keyword, query parameter or ``user:password@``)."""
    return bool(_passwords(dsn))


def fail(message: str, code: int, dsn: str | None = None) -> NoReturn:
    """Print ``message`` on stderr (masked, no markup, no control characters) and exit ``code``."""
    err.print(
        printable(f"eventwire: {mask_dsn(message, dsn)}"),
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
    sqlite: str | None, postgres: str | None, postgres_env: str | None = None
) -> OutboxStore:
    """Open the one existing outbox the options name, or exit 2 saying what was wrong.

    Exit 2: no outbox or more than one given; --postgres-env names an unset
    variable; the SQLite file does not exist; the store refused to open (a
    malformed DSN, the database unreachable or an outdated table). Messages
    never contain the DSN's password.
    """
    return _open(sqlite, postgres, postgres_env)[0]


def _open(
    sqlite: str | None, postgres: str | None, postgres_env: str | None
) -> tuple[OutboxStore, str | None]:
    """:func:`open_store`, and the PostgreSQL DSN it used (None for SQLite)."""
    given = [name for name, v in (("--sqlite", sqlite), ("--postgres", postgres)) if v]
    if postgres_env is not None:
        given.append("--postgres-env")
    if len(given) > 1:
        fail(f"pass only one outbox, not {' and '.join(given)}", 2)
    if not given and os.environ.get(POSTGRES_ENV_VAR, "").strip():
        postgres_env = POSTGRES_ENV_VAR
    if sqlite:
        path = Path(sqlite)
        if not path.is_file():
            fail(
                f"no SQLite outbox at {str(path)!r}: the file does not exist (check the path; "
                "the application creates it when it opens its SQLiteOutbox)",
                2,
            )
        from eventwire.outbox.sqlite import SQLiteOutbox  # noqa: PLC0415

        try:
            return SQLiteOutbox(path), None
        except ConfigurationError as exc:
            fail(str(exc), 2)
    dsn = _postgres_dsn(postgres, postgres_env)
    if dsn is None:
        fail(
            "pass the outbox: --sqlite PATH, --postgres-env VAR (a variable holding the "
            f"PostgreSQL DSN), or --postgres DSN; or set {POSTGRES_ENV_VAR}",
            2,
        )
    if postgres is not None and has_password(dsn):
        err.print(
            "eventwire: warning: --postgres puts the DSN's password on the command line, where "
            f"every user of this host can read it; use --postgres-env VAR or {POSTGRES_ENV_VAR}",
            style="yellow",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    from eventwire.outbox.postgres import PostgresOutbox  # noqa: PLC0415

    try:
        return PostgresOutbox(dsn), dsn
    except ConfigurationError as exc:  # its message may quote the DSN: masked by fail()
        fail(str(exc), 2, dsn)
    except Exception as exc:  # e.g. psycopg's ProgrammingError: masked, without a traceback
        fail(f"cannot open the PostgreSQL outbox: {exc}", 2, dsn)


def _is_database_error(exc: BaseException) -> bool:
    """A SQLite or psycopg error (psycopg only if it is loaded: it is an optional extra)."""
    psycopg = sys.modules.get("psycopg")
    return isinstance(exc, sqlite3.Error) or (
        psycopg is not None and isinstance(exc, psycopg.Error)
    )


@contextlib.contextmanager
def opened_store(
    sqlite: str | None, postgres: str | None, postgres_env: str | None = None
) -> Iterator[OutboxStore]:
    """:func:`open_store`, closed at the end; a database error on the way exits 1.

    The error is printed as one masked line, without a traceback (whose frames
    hold the DSN).
    """
    store, dsn = _open(sqlite, postgres, postgres_env)
    try:
        yield store
    except Exception as exc:
        if not _is_database_error(exc):
            raise
        fail(f"the outbox failed: {exc}", 1, dsn)
    finally:
        with contextlib.suppress(Exception):
            store.close()
