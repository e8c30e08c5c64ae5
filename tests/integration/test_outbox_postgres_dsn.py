"""PostgresOutbox never shows the DSN's password in its errors (review item 17).

libpq quotes the piece of a DSN it could not parse, which may be part of the password;
the DSNs here are the private server's, with a password added (trust authentication
accepts any).
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from eventwire import ConfigurationError
from eventwire.outbox.postgres import PostgresOutbox

PASSWORD = "correct horse-battery staple9"


def _host_port(postgres_dsn: str) -> tuple[str, str]:
    netloc = postgres_dsn.split("@", 1)[1].split("/", 1)[0]
    host, _, port = netloc.rpartition(":")
    return host, port


@pytest.fixture
def keyword_dsn(postgres_dsn: str) -> str:
    """The private server's DSN in keyword form (without a password)."""
    host, port = _host_port(postgres_dsn)
    user = postgres_dsn.split("://", 1)[1].split("@", 1)[0]
    return f"host={host} port={port} user={user} dbname=postgres"


def _assert_hidden(error: BaseException) -> None:
    text = f"{error} {error!r}"
    for word in PASSWORD.split():
        assert word not in text


class TestPasswordNeverShown:
    def test_an_unquoted_password_with_spaces_is_not_echoed(self, keyword_dsn: str) -> None:
        """'password=two words' (libpq: 'missing "=" after "horse-battery"'): the error
        says the DSN is malformed and how to write it, without any word of the password."""
        with pytest.raises(ConfigurationError) as info:
            PostgresOutbox(f"{keyword_dsn} password={PASSWORD}")
        _assert_hidden(info.value)
        assert "not a valid libpq connection string" in str(info.value)
        assert "single-quote" in str(info.value)

    def test_a_url_password_with_raw_spaces_is_not_echoed(self, postgres_dsn: str) -> None:
        """A URL password with raw spaces (libpq: 'unexpected spaces found in "..."'):
        the error says to percent-encode, without the password."""
        dsn = postgres_dsn.replace("@", f":{PASSWORD}@", 1)
        with pytest.raises(ConfigurationError) as info:
            PostgresOutbox(dsn)
        _assert_hidden(info.value)
        assert "percent-encode" in str(info.value)

    def test_a_malformed_url_is_not_echoed_whole(self, postgres_dsn: str) -> None:
        """A URL libpq cannot parse (an unclosed IPv6 bracket), which libpq quotes whole,
        is not shown with its percent-encoded password."""
        encoded = quote(PASSWORD, safe="")
        dsn = f"postgresql://app:{encoded}@[::1/postgres"
        with pytest.raises(ConfigurationError) as info:
            PostgresOutbox(dsn)
        assert encoded not in str(info.value)
        _assert_hidden(info.value)

    def test_a_well_formed_password_still_connects(
        self, postgres_dsn: str, keyword_dsn: str
    ) -> None:
        """Masking changes no DSN: a quoted keyword password and a percent-encoded URL
        password (with '@', ' ' and quotes) reach the server and the store opens."""
        odd = "p@ss w'rd"
        quoted = odd.replace("'", "\\'")
        for dsn in (
            f"{keyword_dsn} password='{quoted}'",
            postgres_dsn.replace("@", f":{quote(odd, safe='')}@", 1),
        ):
            PostgresOutbox(dsn).close()


def test_the_cli_refuses_a_database_without_an_outbox_and_creates_nothing(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`outbox status --postgres-env VAR` naming a database without the outbox tables (a
    wrong database) exits 2 saying so, instead of creating them there and reporting an
    empty outbox."""
    import psycopg
    from typer.testing import CliRunner

    from eventwire.cli._app import build_app

    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS cli_wrong_db")
        admin.execute("CREATE DATABASE cli_wrong_db")
        current = admin.info.dbname
    wrong = postgres_dsn.replace(f"/{current}", "/cli_wrong_db")
    assert wrong != postgres_dsn
    monkeypatch.setenv("WRONG_DB_URL", wrong)
    result = CliRunner().invoke(build_app(), ["outbox", "status", "--postgres-env", "WRONG_DB_URL"])
    text = " ".join((result.stdout + result.stderr).split())
    assert result.exit_code == 2, text
    assert "no eventwire outbox in that PostgreSQL database" in text
    with psycopg.connect(wrong) as conn:
        [(missing,)] = conn.execute("SELECT to_regclass('eventwire_outbox') IS NULL").fetchall()
    assert missing


def test_the_waiting_relay_exits_2_on_a_database_that_does_not_exist(postgres_dsn: str) -> None:
    """`outbox relay` (not --once) waits only for a missing table: a database that does
    not exist cannot come by waiting, so it exits 2 naming the server's error."""
    import os
    import subprocess
    import sys

    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS cli_no_such_db")
        current = admin.info.dbname
    missing = postgres_dsn.replace(f"/{current}", "/cli_no_such_db")
    assert missing != postgres_dsn
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTWIRE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "eventwire.cli", "outbox", "relay", "--postgres-env", "DSN",
         "--bootstrap", "127.0.0.1:9"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**clean, "DSN": missing, "COLUMNS": "250"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert 'database "cli_no_such_db" does not exist' in proc.stderr
    assert "waiting" not in proc.stderr
