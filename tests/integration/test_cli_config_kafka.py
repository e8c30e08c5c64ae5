"""The CLI configured only by a config file and EVENTWIRE_KAFKA_* variables, against the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from eventwire.outbox import SQLiteOutbox
from eventwire_devkit.consume import read_topic

from .test_outbox_relay_kafka import entries


def eventwire_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m eventwire.cli ARGS` with exactly the EVENTWIRE_KAFKA_* variables in env."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTWIRE_KAFKA_")}
    return subprocess.run(
        [sys.executable, "-m", "eventwire.cli", *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
        env={**clean, "COLUMNS": "250", **env},
    )


class TestRelayFromAConfigFile:
    def test_relay_once_drains_with_the_config_file_named_by_the_environment(
        self, tmp_path: Path, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """`outbox relay --once` with no Kafka flag, configured by EVENTWIRE_KAFKA_CONFIG (a
        properties file) and an EVENTWIRE_KAFKA_* variable, relays every entry."""
        db = tmp_path / "o.db"
        store = SQLiteOutbox(db)
        store.add(entries(kafka_topic, 25))
        store.close()
        config = tmp_path / "client.properties"
        config.write_text(f"# written by a test\nbootstrap.servers={kafka_bootstrap}\n")
        env = {"EVENTWIRE_KAFKA_CONFIG": str(config), "EVENTWIRE_KAFKA_CLIENT_ID": "cfg-relay"}
        relay = eventwire_cli(env, "outbox", "relay", "--sqlite", str(db), "--once")
        assert relay.returncode == 0, relay.stderr
        assert "relayed 25, dead-lettered 0, parked 0" in relay.stderr
        assert len(read_topic(kafka_bootstrap, kafka_topic, expected=25, idle=1.0)) == 25

    def test_dlq_list_reads_a_topic_with_config(
        self, tmp_path: Path, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """`dlq list --topic T --config FILE` (TOML) reads the topic's records."""
        db = tmp_path / "o.db"
        store = SQLiteOutbox(db)
        store.add(entries(kafka_topic, 3))
        store.close()
        config = tmp_path / "kafka.toml"
        config.write_text(f'bootstrap.servers = "{kafka_bootstrap}"\n[relay]\nbatch_size = 2\n')
        relay = eventwire_cli(
            {}, "outbox", "relay", "--config", str(config), "--sqlite", str(db), "--once"
        )
        assert relay.returncode == 0, relay.stderr
        listed = eventwire_cli({}, "dlq", "list", "--topic", kafka_topic, "--config", str(config))
        assert listed.returncode == 0, listed.stderr
        assert "(3 of 3)" in listed.stdout


class TestConfigFileOnly:
    def test_relay_takes_the_outbox_and_a_newer_librdkafka_property_from_the_file(
        self, tmp_path: Path, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """`outbox relay --once --config FILE`, no other option: the file's [outbox] table
        names the SQLite outbox, and client.software.name (a librdkafka property eventwire's
        lists lack) reaches the real producer, which relays every entry to the broker."""
        db = tmp_path / "o.db"
        store = SQLiteOutbox(db)
        store.add(entries(kafka_topic, 7))
        store.close()
        config = tmp_path / "kafka.toml"
        config.write_text(
            f'bootstrap.servers = "{kafka_bootstrap}"\n'
            '"client.software.name" = "eventwire-floors-test"\n'
            f'[outbox]\nsqlite = "{db}"\n'
        )
        relay = eventwire_cli({}, "outbox", "relay", "--config", str(config), "--once")
        assert relay.returncode == 0, relay.stderr
        assert "relayed 7, dead-lettered 0, parked 0" in relay.stderr
        assert len(read_topic(kafka_bootstrap, kafka_topic, expected=7, idle=1.0)) == 7
