"""`eventwire --version`, `--json` output, and where the outbox commands find the outbox.

The JSON documents' keys are a documented interface (eventwire.cli.outbox.status_document
and dlq_document): these tests parse the output and check every key and its type.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import eventwire
from eventwire.cli._app import build_app
from eventwire.outbox import OutboxEntry, SQLiteOutbox

SECRET = "S3cr3t-pw"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No EVENTWIRE_* variable of the machine leaks into a test."""
    for name in list(os.environ):
        if name.startswith("EVENTWIRE_"):
            monkeypatch.delenv(name)


def run(*args: str) -> tuple[int, str, str]:
    """Run the CLI in-process: exit code, stdout, stderr."""
    result = CliRunner().invoke(build_app(), list(args))
    return result.exit_code, result.stdout, result.stderr


def outbox(path: Path, *, parked: int = 1, pending: int = 2) -> Path:
    """A SQLite outbox with ``pending`` waiting and ``parked`` parked entries and a heartbeat."""
    store = SQLiteOutbox(path)
    entries = [
        OutboxEntry(f"e-{i}", "shop.OrderPlaced", "orders", b"k", b"v", ())
        for i in range(pending + parked)
    ]
    ids = store.add(entries)
    for entry_id in ids[:parked]:
        store.park(entry_id, f"too large: {entry_id}")
    store.heartbeat("relay-1", "broker down")
    store.close()
    return path


class TestVersion:
    def test_version_prints_the_package_version_and_exits_0(self) -> None:
        """`eventwire --version` prints `eventwire <eventwire.__version__>` on stdout alone."""
        code, out, err = run("--version")
        assert code == 0, err
        assert out == f"eventwire {eventwire.__version__}\n"


class TestStatusJson:
    def test_status_json_has_the_documented_keys_and_values(self, tmp_path: Path) -> None:
        """`outbox status --json` prints one JSON object: the depth counts, the oldest pending
        age, and each relay's heartbeat (owner, age, last error, stale)."""
        path = outbox(tmp_path / "o.db")
        code, out, err = run("outbox", "status", "--sqlite", str(path), "--json")
        assert code == 0, err
        doc = json.loads(out)
        assert set(doc) == {
            "pending",
            "parked",
            "sent_retained",
            "oldest_pending_age_s",
            "relays",
            "stale_after_s",
        }
        assert (doc["pending"], doc["parked"], doc["sent_retained"]) == (2, 1, 0)
        assert isinstance(doc["oldest_pending_age_s"], float)
        assert doc["oldest_pending_age_s"] >= 0
        [relay] = doc["relays"]
        assert set(relay) == {"owner", "age_s", "last_error", "stale"}
        assert (relay["owner"], relay["last_error"], relay["stale"]) == (
            "relay-1",
            "broker down",
            False,
        )
        assert doc["stale_after_s"] == 30.0

    def test_an_empty_outbox_gives_null_age_and_no_relays(self, tmp_path: Path) -> None:
        """Nothing pending: oldest_pending_age_s is null; no heartbeat: relays is []."""
        SQLiteOutbox(tmp_path / "o.db").close()
        code, out, err = run("outbox", "status", "--sqlite", str(tmp_path / "o.db"), "--json")
        assert code == 0, err
        doc = json.loads(out)
        assert doc["oldest_pending_age_s"] is None
        assert doc["relays"] == []
        assert doc["pending"] == doc["parked"] == 0

    def test_a_missing_database_exits_2_with_no_json_and_creates_nothing(
        self, tmp_path: Path
    ) -> None:
        """`--json` on a mistyped path: exit 2, the message on stderr, nothing on stdout,
        and no file created."""
        missing = tmp_path / "typo.db"
        code, out, err = run("outbox", "status", "--sqlite", str(missing), "--json")
        assert code == 2
        assert out == ""
        assert "no SQLite outbox at" in err
        assert not missing.exists()


class TestDlqListJson:
    def test_parked_events_as_json(self, tmp_path: Path) -> None:
        """`dlq list --json` on an outbox: source "outbox", the parked total, and each parked
        event's id, event id, type, topic, attempts and last error."""
        path = outbox(tmp_path / "o.db", parked=2, pending=1)
        code, out, err = run("dlq", "list", "--sqlite", str(path), "--json", "--limit", "1")
        assert code == 0, err
        doc = json.loads(out)
        assert set(doc) == {"source", "topic", "total", "dead_letters"}
        assert (doc["source"], doc["topic"], doc["total"]) == ("outbox", None, 2)
        [letter] = doc["dead_letters"]  # --limit 1 of the 2
        assert set(letter) == {"id", "event_id", "event_type", "topic", "attempts", "last_error"}
        assert isinstance(letter["id"], int)
        assert isinstance(letter["attempts"], int)
        assert (letter["event_type"], letter["topic"]) == ("shop.OrderPlaced", "orders")
        assert letter["last_error"] == f"too large: {letter['id']}"


def _write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


class TestOutboxFromConfigAndEnvironment:
    def test_the_config_files_outbox_table_names_the_sqlite_outbox(self, tmp_path: Path) -> None:
        """`[outbox] sqlite = PATH` in the --config file is the outbox when no option names one."""
        path = outbox(tmp_path / "o.db")
        config = _write_config(tmp_path / "c.toml", f'[outbox]\nsqlite = "{path}"\n')
        code, out, err = run("outbox", "status", "--config", str(config), "--json")
        assert code == 0, err
        assert json.loads(out)["pending"] == 2

    def test_a_properties_file_and_the_config_variable_work_too(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`outbox.sqlite=PATH` in a properties file named by $EVENTWIRE_KAFKA_CONFIG."""
        path = outbox(tmp_path / "o.db")
        config = _write_config(tmp_path / "c.properties", f"outbox.sqlite={path}\n")
        monkeypatch.setenv("EVENTWIRE_KAFKA_CONFIG", str(config))
        code, out, err = run("dlq", "list", "--json")
        assert code == 0, err
        assert json.loads(out)["total"] == 1

    def test_the_sqlite_variable_names_the_outbox_and_replaces_the_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """$EVENTWIRE_OUTBOX_SQLITE wins over the config file's [outbox] (whole, not mixed)."""
        path = outbox(tmp_path / "o.db", pending=5)
        config = _write_config(tmp_path / "c.toml", '[outbox]\npostgres_env = "NOT_SET_ANYWHERE"\n')
        monkeypatch.setenv("EVENTWIRE_OUTBOX_SQLITE", str(path))
        code, out, err = run("outbox", "status", "--config", str(config), "--json")
        assert code == 0, err
        assert json.loads(out)["pending"] == 5

    def test_postgres_env_in_the_config_file_reads_the_dsn_from_that_variable(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`[outbox] postgres_env = "VAR"`: the DSN (password and all) comes from $VAR; the
        connection to it is tried (the refused port is named), and the password not shown."""
        monkeypatch.setenv("OUTBOX_DSN", f"postgresql://app:{SECRET}@127.0.0.1:1/app")
        config = _write_config(tmp_path / "c.toml", '[outbox]\npostgres_env = "OUTBOX_DSN"\n')
        code, out, err = run("outbox", "status", "--config", str(config))
        assert code == 2
        text = " ".join((out + err).split())
        assert "cannot open the PostgreSQL outbox" in text
        assert "port 1" in text
        assert SECRET not in text

    def test_postgres_file_is_read_relative_to_the_config_file(self, tmp_path: Path) -> None:
        """`[outbox] postgres_file = "dsn.txt"` reads the DSN from the file beside the config."""
        (tmp_path / "dsn.txt").write_text(f"postgresql://app:{SECRET}@127.0.0.1:1/app\n")
        config = _write_config(tmp_path / "c.toml", '[outbox]\npostgres_file = "dsn.txt"\n')
        code, out, err = run("outbox", "status", "--config", str(config))
        text = " ".join((out + err).split())
        assert code == 2
        assert "port 1" in text
        assert SECRET not in text

    @pytest.mark.parametrize(
        ("table", "expected"),
        [
            ('sqlite_path = "x.db"', "unknown outbox setting 'sqlite_path'"),
            ('sqlite = "a.db"\npostgres_env = "X"', "the outbox is given more than once"),
            ('postgres_env = "NO_SUCH_VAR_X"', "NO_SUCH_VAR_X"),
        ],
    )
    def test_a_wrong_outbox_table_exits_2_saying_what_is_wrong(
        self, tmp_path: Path, table: str, expected: str
    ) -> None:
        """An unknown key, two outboxes, or a variable that is not set: exit 2, named."""
        config = _write_config(tmp_path / "c.toml", f"[outbox]\n{table}\n")
        code, out, err = run("outbox", "status", "--config", str(config))
        assert code == 2
        assert expected in " ".join((out + err).split())

    def test_a_command_line_option_wins_over_the_config_file(self, tmp_path: Path) -> None:
        """--sqlite is used even when the config file's [outbox] names another outbox."""
        path = outbox(tmp_path / "o.db", pending=3)
        config = _write_config(tmp_path / "c.toml", '[outbox]\nsqlite = "elsewhere.db"\n')
        code, out, err = run(
            "outbox", "status", "--sqlite", str(path), "--config", str(config), "--json"
        )
        assert code == 0, err
        doc: dict[str, Any] = json.loads(out)
        assert doc["pending"] == 3
