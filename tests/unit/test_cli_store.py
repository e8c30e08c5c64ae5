"""The CLI's outbox options: an existing SQLite file, a PostgreSQL DSN kept off argv, no password shown."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventwire.cli._app import build_app
from eventwire.outbox._dsn import mask_text

#: Read for the DSN when no outbox option is given (spelt out: it is the documented name).
POSTGRES_ENV_VAR = "EVENTWIRE_OUTBOX_POSTGRES"
SECRET = "S3cr3t-pw"
#: Nothing listens on port 1: libpq's error names the port, which shows that this DSN was used.
REFUSED_DSN = f"postgresql://app:{SECRET}@127.0.0.1:1/app?connect_timeout=5"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No EVENTWIRE_* variable of the machine leaks into a test."""
    for name in list(os.environ):
        if name.startswith("EVENTWIRE_"):
            monkeypatch.delenv(name)


def run(*args: str) -> tuple[int, str]:
    """Run the CLI in-process; its exit code and stdout+stderr with whitespace collapsed."""
    result = CliRunner().invoke(build_app(), list(args))
    return result.exit_code, " ".join((result.stdout + result.stderr).split())


def run_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m eventwire.cli ARGS` as an operator would: all it prints, tracebacks too."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTWIRE_")}
    return subprocess.run(
        [sys.executable, "-m", "eventwire.cli", *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        env={**clean, "COLUMNS": "250", **(env or {})},
    )


class TestSqlitePathMustExist:
    @pytest.mark.parametrize(
        "command",
        [
            ["outbox", "status"],
            ["outbox", "relay", "--once", "--bootstrap", "127.0.0.1:9"],
            ["dlq", "list"],
            ["dlq", "replay"],
        ],
    )
    def test_a_sqlite_path_that_does_not_exist_exits_2_naming_it_and_creates_nothing(
        self, tmp_path: Path, command: list[str]
    ) -> None:
        """A mistyped --sqlite path exits 2 naming the path, instead of creating an empty
        database and reporting an empty outbox."""
        typo = tmp_path / "typo.db"
        code, text = run(*command, "--sqlite", str(typo))
        assert code == 2, text
        assert f"no SQLite outbox at '{typo}'" in text
        assert "does not exist" in text
        assert not typo.exists()

    @pytest.mark.parametrize(
        "command",
        [
            ["outbox", "status"],
            ["outbox", "relay", "--once", "--bootstrap", "127.0.0.1:9"],
            ["dlq", "list"],
        ],
    )
    @pytest.mark.parametrize("content", ["an application database", "an empty file"])
    def test_a_database_without_an_outbox_exits_2_and_is_left_unchanged(
        self, tmp_path: Path, command: list[str], content: str
    ) -> None:
        """--sqlite naming another database (or an empty file) exits 2 saying it holds no
        outbox, instead of creating the outbox tables there, switching it to WAL and
        reporting "0 pending" (a relay would relay nothing, forever)."""
        import sqlite3

        other = tmp_path / "app.db"
        if content == "an empty file":
            other.write_bytes(b"")
        else:
            with contextlib.closing(sqlite3.connect(other)) as conn:
                conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
                conn.commit()
        before = other.read_bytes()
        code, text = run(*command, "--sqlite", str(other))
        assert code == 2, text
        assert f"no eventwire outbox in '{other}'" in text
        assert other.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]  # no -wal, no -shm

    def test_an_existing_sqlite_outbox_is_read(self, tmp_path: Path) -> None:
        """An existing outbox file is opened as before."""
        from eventwire.outbox import SQLiteOutbox

        SQLiteOutbox(tmp_path / "o.db").close()
        code, text = run("outbox", "status", "--sqlite", str(tmp_path / "o.db"))
        assert code == 0, text
        assert "pending" in text


class TestPostgresDsnOffTheCommandLine:
    def test_postgres_env_reads_the_dsn_from_the_named_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--postgres-env VAR connects with the DSN in $VAR (the refused port shows it was
        used), exits 2 on the failure, and never shows the password."""
        monkeypatch.setenv("OUTBOX_DSN", REFUSED_DSN)
        code, text = run("outbox", "status", "--postgres-env", "OUTBOX_DSN")
        assert code == 2, text
        assert "cannot open the PostgreSQL outbox" in text
        assert "port 1" in text
        assert SECRET not in text

    def test_the_dsn_variable_is_read_when_no_outbox_option_is_given(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without --sqlite/--postgres/--postgres-env, $EVENTWIRE_OUTBOX_POSTGRES is the DSN."""
        monkeypatch.setenv(POSTGRES_ENV_VAR, REFUSED_DSN)
        code, text = run("dlq", "list")
        assert code == 2, text
        assert "port 1" in text
        assert SECRET not in text

    def test_an_unset_postgres_env_variable_exits_2_naming_it(self) -> None:
        """--postgres-env naming a variable that is not set exits 2 naming the variable."""
        code, text = run("outbox", "status", "--postgres-env", "NO_SUCH_DSN_VAR")
        assert code == 2, text
        assert "NO_SUCH_DSN_VAR" in text
        assert "not set" in text

    def test_no_outbox_option_names_every_way_to_give_one(self) -> None:
        """Without any outbox option or variable, the error lists the options and the variable."""
        code, text = run("outbox", "status")
        assert code == 2, text
        for way in ("--sqlite", "--postgres-env", "--postgres", POSTGRES_ENV_VAR):
            assert way in text

    def test_two_outbox_options_exit_2(self, tmp_path: Path) -> None:
        """--sqlite with --postgres-env is refused (exit 2) rather than one silently winning."""
        code, text = run(
            "outbox", "status", "--sqlite", str(tmp_path / "o.db"), "--postgres-env", "X"
        )
        assert code == 2, text
        assert "--sqlite and --postgres-env" in text

    @pytest.mark.parametrize(
        "dsn",
        [
            REFUSED_DSN,
            f"host=127.0.0.1 port=1 user=app password={SECRET}",
            f"postgresql://app@127.0.0.1:1/app?sslpassword={SECRET}",
            # no user:password@ at all: the user and password only in the query
            f"postgresql://127.0.0.1:1/app?user=app&password={SECRET}",
        ],
    )
    def test_a_password_in_postgres_is_refused_pointing_at_the_alternatives(self, dsn: str) -> None:
        """--postgres with a password (URL, keyword or query form) exits 2 before connecting
        (no "cannot open" error), names --postgres-env, the variable and the config file,
        and does not show the password."""
        code, text = run("outbox", "status", "--postgres", dsn)
        assert code == 2, text
        assert "--postgres must not hold a password" in text
        for way in ("--postgres-env", POSTGRES_ENV_VAR, "[outbox]"):
            assert way in text
        assert "cannot open" not in text
        assert SECRET not in text

    def test_postgres_without_a_password_is_used(self) -> None:
        """A DSN without a password on --postgres is accepted and connected to (the refused
        port is named)."""
        code, text = run("outbox", "status", "--postgres", "postgresql://app@127.0.0.1:1/app")
        assert code == 2, text
        assert "cannot open the PostgreSQL outbox" in text
        assert "port 1" in text

    def test_help_documents_the_risk_and_the_alternatives(self) -> None:
        """`outbox status --help` names --postgres-env and the variable, and the ps risk."""
        code, text = run("outbox", "status", "--help")
        assert code == 0
        assert "--postgres-env" in text
        assert POSTGRES_ENV_VAR in text
        assert "(ps)" in text


class TestNoPasswordInErrors:
    @pytest.mark.parametrize(
        "dsn",
        [
            # libpq quotes the whole malformed URI in its error
            f"postgresql://app:{SECRET}@[::1/app",
            # ... or the part of it with a space
            f"postgresql://app:{SECRET} x@127.0.0.1:1/app",
            f"host=127.0.0.1 port=1 user=app password={SECRET} connect_timeout=5",
            f"host=127.0.0.1 port=1 password='{SECRET} x' connect_timeout=5",
            REFUSED_DSN,
        ],
    )
    def test_a_failing_dsn_never_shows_its_password(self, dsn: str) -> None:
        """Whatever libpq says about a bad or unreachable DSN, the CLI process prints one
        line (no traceback), exits 2, and its password is nowhere in the output."""
        for args, env in (
            (["--postgres-env", "DSN"], {"DSN": dsn}),
            ([], {POSTGRES_ENV_VAR: dsn}),
        ):
            proc = run_process("outbox", "status", *args, env=env)
            output = proc.stdout + proc.stderr
            assert SECRET not in output
            assert "Traceback" not in output
            assert proc.returncode == 2, output
            assert "eventwire: cannot open the PostgreSQL outbox" in output


class TestMaskDsn:
    @pytest.mark.parametrize(
        ("text", "masked"),
        [
            (f"dsn password={SECRET} host=h", "dsn password=*** host=h"),
            (f"password = '{SECRET} x' host=h", "password = *** host=h"),
            (f'"postgresql://app:{SECRET}@db/app"', '"postgresql://app:***@db/app"'),
            (f"postgres://app:{SECRET}@db/app?sslmode=require", "postgres://app:***@db/app?"
             "sslmode=require"),
            (f"postgresql://db/app?user=a&password={SECRET}&x=1",
             "postgresql://db/app?user=a&password=***&x=1"),
            ("postgresql://app@db/app (no password)", "postgresql://app@db/app (no password)"),
        ],
    )  # fmt: skip
    def test_password_forms_are_masked(self, text: str, masked: str) -> None:
        """password=... keywords (quoted or not, URL query too) and user:password@ are masked."""
        assert mask_text(text) == masked

    def test_the_password_of_the_dsn_in_use_is_masked_wherever_it_appears(self) -> None:
        """A fragment quoting the password alone (libpq: 'unexpected spaces found in "...") is
        masked when the DSN in use is given, in plain and percent-encoded form -- and
        nothing else is (an older libpq parses this URL's password as "p": the DSN is
        parsed by eventwire, not libpq, so "unexpected" keeps its p)."""
        dsn = "postgresql://app:p@ss word@db/app"
        text = 'unexpected spaces found in "p@ss word"; also p%40ss%20word'
        assert mask_text(text, dsn) == 'unexpected spaces found in "***"; also ***'

    def test_the_cli_masks_with_the_outboxs_own_implementation(self) -> None:
        """One DSN masking for the outbox and the CLI: the CLI module has no masking of its
        own, it prints through eventwire.outbox._dsn.mask_text."""
        import eventwire.cli._store as store

        assert store.mask_text is mask_text
        assert not hasattr(store, "mask_dsn")
        assert not hasattr(store, "_passwords")


class TestPipedOutput:
    """Output to a pipe or a log collector (not a terminal) is never cut short or wrapped."""

    def test_a_piped_table_keeps_every_cell_whole(self, tmp_path: Path) -> None:
        """rich laid tables out for 80 columns when piped and cut cells with "...": a long
        event id or error no longer matched a grep."""
        from eventwire.outbox import OutboxEntry, SQLiteOutbox

        event_id = "order-" + "x" * 90 + "-end"
        error = "SOME_BROKER_ERROR: " + "a long explanation of what went wrong " * 4 + "THE-END"
        store = SQLiteOutbox(tmp_path / "o.db")
        [row] = store.add([OutboxEntry(event_id, "t.T", "orders", b"k", b"v", ())])
        store.park(row, error)
        store.close()
        clean = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        listed = subprocess.run(
            [sys.executable, "-m", "eventwire.cli", "dlq", "list", "--sqlite", str(tmp_path / "o.db")],
            capture_output=True, check=False, text=True, timeout=60, env=clean,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert event_id in listed.stdout
        assert error in listed.stdout

    def test_a_multi_line_error_is_one_line_without_escaped_breaks(self, tmp_path: Path) -> None:
        """An error whose text has line breaks (libpq's hints, YAML's context) is printed on
        one line, each break a space, not a literal \\x0a."""
        clean = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        (tmp_path / "piped_events.py").write_text(
            "import msgspec\nfrom eventwire import event\n\n"
            '@event(topic="orders", key="order_id", type_name="test.Placed")\n'
            "class Placed(msgspec.Struct):\n    order_id: str\n"
        )
        bad = tmp_path / "contract.yaml"
        bad.write_text("asyncapi: [unclosed\n  - x: {\n")
        checked = subprocess.run(
            [sys.executable, "-m", "eventwire.cli", "schema", "check", "piped_events",
             "--against", str(bad)],
            capture_output=True, check=False, text=True, timeout=60, env=clean, cwd=tmp_path,
        )  # fmt: skip
        assert "not valid YAML" in checked.stderr
        assert checked.returncode == 2, checked.stderr
        assert checked.stderr.startswith("eventwire: ")
        assert "\\x0a" not in checked.stderr and "\\x09" not in checked.stderr
        assert checked.stderr.count("\n") == 1  # one line, wrapped nowhere


class TestRelayStartedBeforeItsApplication:
    """`outbox relay` (not --once) on a database without the outbox table waits for the
    application to create it, never creating it itself; a signal ends the wait (exit 0)."""

    @staticmethod
    def _start(db: Path) -> tuple[subprocess.Popen[str], list[str]]:
        import threading

        clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTWIRE_")}
        relay = subprocess.Popen(
            [sys.executable, "-m", "eventwire.cli", "outbox", "relay", "--sqlite", str(db),
             "--bootstrap", "127.0.0.1:9"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            env={**clean, "COLUMNS": "250"},
        )  # fmt: skip
        lines: list[str] = []
        assert relay.stderr is not None
        stream = relay.stderr
        threading.Thread(target=lambda: lines.extend(stream), daemon=True).start()
        return relay, lines

    @staticmethod
    def _until(lines: list[str], text: str, relay: subprocess.Popen[str]) -> None:
        import time

        for _ in range(600):
            if any(text in line for line in lines):
                return
            if relay.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never came; stderr: {lines}")

    def test_it_waits_and_a_signal_ends_the_wait_leaving_the_file_unchanged(
        self, tmp_path: Path
    ) -> None:
        import signal
        import sqlite3

        db = tmp_path / "app.db"
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
            conn.commit()
        before = db.read_bytes()
        relay, lines = self._start(db)
        try:
            self._until(lines, "waiting for the application to create it", relay)
            relay.send_signal(signal.SIGTERM)
            assert relay.wait(30) == 0, lines
        finally:
            relay.kill()
        assert db.read_bytes() == before

    def test_it_relays_once_the_application_created_the_outbox(self, tmp_path: Path) -> None:
        import signal

        from eventwire.outbox import SQLiteOutbox

        db = tmp_path / "o.db"
        db.write_bytes(b"")  # the application's file, before its first start
        relay, lines = self._start(db)
        try:
            self._until(lines, "waiting for the application to create it", relay)
            SQLiteOutbox(db).close()
            self._until(lines, "relaying to 127.0.0.1:9", relay)
            relay.send_signal(signal.SIGTERM)
            assert relay.wait(60) == 0, lines
        finally:
            relay.kill()

    def test_a_file_deleted_while_waiting_is_not_created_again(self, tmp_path: Path) -> None:
        """Only a table seen ends the wait: an unsure look (the file gone) waits on, so the
        store's open never creates an outbox in its place."""
        import signal
        import time

        db = tmp_path / "o.db"
        db.write_bytes(b"")
        relay, lines = self._start(db)
        try:
            self._until(lines, "waiting for the application to create it", relay)
            db.unlink()
            time.sleep(6)  # past one look (every 5 s)
            assert relay.poll() is None, lines
            assert not db.exists()
            relay.send_signal(signal.SIGTERM)
            assert relay.wait(30) == 0, lines
        finally:
            relay.kill()

    def test_a_metrics_port_taken_is_said_before_waiting(self, tmp_path: Path) -> None:
        """The metrics server starts before the wait: a port taken exits 2 at once (it was
        found only once the application created the table), and /metrics answers while
        the relay waits."""
        import socket

        db = tmp_path / "o.db"
        db.write_bytes(b"")
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTWIRE_")}
            done = subprocess.run(
                [sys.executable, "-m", "eventwire.cli", "outbox", "relay", "--sqlite", str(db),
                 "--bootstrap", "127.0.0.1:9", "--metrics-port", str(port)],
                capture_output=True, text=True, timeout=60, check=False,
                env={**clean, "COLUMNS": "250"},
            )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr
        assert "waiting" not in done.stderr


class TestUnsureLookChangesNothing:
    """The read-only look for the outbox table may fail (a lock held by another process,
    a file that is no database): unsure is not yes, so the store is not opened, which
    would create the outbox tables and switch the file to WAL."""

    @pytest.mark.parametrize("command", [["outbox", "status"], ["dlq", "replay"]])
    def test_a_foreign_database_locked_past_the_look_exits_2_unchanged(
        self, tmp_path: Path, command: list[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import sqlite3

        from eventwire.cli import _store

        monkeypatch.setattr(_store, "SQLITE_LOOK_TIMEOUT_S", 0.2)
        other = tmp_path / "app.db"
        with contextlib.closing(sqlite3.connect(other)) as conn:
            conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
            conn.commit()
        locker = sqlite3.connect(other, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            locker.execute("INSERT INTO customers VALUES (1)")
            code, text = run(*command, "--sqlite", str(other))
            locker.execute("ROLLBACK")
        finally:
            locker.close()
        assert code == 2, text
        assert f"cannot read '{other}' to check that it is an eventwire outbox" in text
        assert "database is locked" in text
        assert "Nothing was changed" in text
        with contextlib.closing(sqlite3.connect(other)) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
            journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert tables == ["customers"]
        assert journal == "delete"

    def test_a_lock_released_within_the_look_is_waited_for(self, tmp_path: Path) -> None:
        """A lock shorter than the look's wait: the look then answers (no outbox here)."""
        import sqlite3
        import threading

        other = tmp_path / "app.db"
        with contextlib.closing(sqlite3.connect(other)) as conn:
            conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
            conn.commit()
        locker = sqlite3.connect(other, isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN EXCLUSIVE")
        locker.execute("INSERT INTO customers VALUES (1)")
        timer = threading.Timer(1.0, lambda: (locker.execute("COMMIT"), locker.close()))
        timer.start()
        try:
            code, text = run("outbox", "status", "--sqlite", str(other))
        finally:
            timer.join()
        assert code == 2, text
        assert f"no eventwire outbox in '{other}'" in text

    def test_the_relay_does_not_wait_for_a_file_that_is_not_a_database(
        self, tmp_path: Path
    ) -> None:
        """`outbox relay` (waiting mode) on a file that is no SQLite database exits 2 with
        SQLite's error instead of waiting forever for a table."""
        garbage = tmp_path / "garbage.db"
        garbage.write_bytes(b"not a database, " * 200)
        before = garbage.read_bytes()
        proc = run_process(
            "outbox", "relay", "--sqlite", str(garbage), "--bootstrap", "127.0.0.1:9"
        )
        assert proc.returncode == 2, proc.stderr
        assert "file is not a database" in proc.stderr
        assert "waiting" not in proc.stderr
        assert garbage.read_bytes() == before


class TestOtherDsnSchemes:
    @pytest.mark.parametrize(
        ("dsn", "scheme"),
        [
            (f"mysql://app:{SECRET}@127.0.0.1/app", "mysql"),
            ("sqlite:///x.db", "sqlite"),
            (f"postgresql+psycopg://app:{SECRET}@127.0.0.1:1/app", "postgresql+psycopg"),
        ],
    )
    @pytest.mark.parametrize("command", [["outbox", "status"], ["outbox", "relay"]])
    def test_another_scheme_is_named_without_the_password(
        self, dsn: str, scheme: str, command: list[str]
    ) -> None:
        proc = (
            run_process(
                *command, "--postgres-env", "DSN", "--bootstrap", "127.0.0.1:9", env={"DSN": dsn}
            )
            if command[1] == "relay"
            else run_process(*command, "--postgres-env", "DSN", env={"DSN": dsn})
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 2, output
        assert f"unsupported DSN scheme {scheme!r}" in output
        assert "postgresql://" in output
        assert SECRET not in output
        assert "Traceback" not in output
        if "+" in scheme:
            assert "+driver" in output

    def test_a_sqlalchemy_url_with_a_password_is_refused_on_the_command_line(self) -> None:
        code, text = run(
            "outbox", "status", "--postgres", f"postgresql+psycopg://app:{SECRET}@127.0.0.1:1/app"
        )
        assert code == 2, text
        assert "--postgres must not hold a password" in text
        assert SECRET not in text

    def test_any_schemes_password_is_masked(self) -> None:
        from eventwire.outbox._dsn import has_password, mask_dsn

        dsn = f"postgresql+psycopg://app:{SECRET}@db/app"
        assert has_password(dsn)
        assert mask_dsn(dsn) == "postgresql+psycopg://app:***@db/app"
        assert mask_text(f"failed: {dsn}") == "failed: postgresql+psycopg://app:***@db/app"


def test_the_relay_exits_within_its_stop_timeout_while_another_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    """SIGTERM while another process held the SQLite write lock: the relay exited after
    25 s (stop_timeout_s=2; 85 s with the defaults), its store's close and heartbeat
    delete each waiting a busy timeout behind the round's blocked claim."""
    import signal
    import sqlite3
    import threading
    import time

    from eventwire.outbox import OutboxEntry, SQLiteOutbox

    db = tmp_path / "o.db"
    store = SQLiteOutbox(db)
    store.add([OutboxEntry("e-1", "t.T", "orders", b"k", b"v", ())])
    store.close()
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    locker.execute("UPDATE eventwire_outbox SET attempts = attempts")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTWIRE_")}
    relay = subprocess.Popen(
        [sys.executable, "-m", "eventwire.cli", "outbox", "relay", "--sqlite", str(db),
         "--bootstrap", "127.0.0.1:9"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**clean, "COLUMNS": "250", "EVENTWIRE_RELAY_STOP_TIMEOUT_S": "2"},
    )  # fmt: skip
    lines: list[str] = []
    assert relay.stderr is not None
    stream = relay.stderr
    threading.Thread(target=lambda: lines.extend(stream), daemon=True).start()
    try:
        for _ in range(600):
            if any("relaying to" in line for line in lines) or relay.poll() is not None:
                break
            time.sleep(0.05)
        time.sleep(1.0)  # its first claim now waits for the lock (30 s busy timeout)
        started = time.monotonic()
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(60) == 0, lines
        took = time.monotonic() - started
    finally:
        relay.kill()
        locker.execute("ROLLBACK")
        locker.close()
    assert took < 10, (took, lines)


@pytest.mark.parametrize(
    ("error", "lasting"),
    [
        ('connection failed: FATAL:  password authentication failed for user "app"', True),
        ('connection failed: FATAL:  database "shop" does not exist', True),
        ('connection failed: FATAL:  role "app" does not exist', True),
        ("connection failed: fe_sendauth: no password supplied", True),
        ('FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "app"', True),
        ("connection failed: Connection refused", False),
        ("FATAL:  the database system is starting up", False),
        ("FATAL:  sorry, too many clients already", False),
    ],
)
def test_the_waiting_relay_tells_lasting_postgres_refusals_from_passing_ones(
    error: str, lasting: bool
) -> None:
    """A wrong password, user or database cannot come by waiting (the relay exits 2); a
    server down, starting or full can (it waits on). libpq sends these before a session
    exists, without a SQLSTATE, so they are told by their text."""
    from eventwire.cli._store import _PG_LASTING

    assert bool(_PG_LASTING.search(error)) is lasting
