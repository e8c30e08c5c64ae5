"""The CLI reads the same KafkaConfig as an application: --config, EVENTWIRE_KAFKA_*, no secrets on argv."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventwire import ConfigurationError, KafkaConfig
from eventwire.cli._app import build_app
from eventwire.cli._kafka_options import env_name, parse_sets
from eventwire.cli._relay_settings import RelaySettings
from eventwire.outbox import SQLiteOutbox

PASSWORD = "cli-pa55word-never-on-argv"
#: Nothing listens here: the relay starts anyway (no start-up check) and keeps retrying.
DEAD_BROKER = "127.0.0.1:9"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No EVENTWIRE_KAFKA_* / EVENTWIRE_RELAY_* variable of the machine leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("EVENTWIRE_KAFKA_", "EVENTWIRE_RELAY_")):
            monkeypatch.delenv(name)


def run(*args: str) -> tuple[int, str]:
    """Run the eventwire CLI in-process; return its exit code and its stdout+stderr, unwrapped."""
    result = CliRunner().invoke(build_app(), list(args))
    return result.exit_code, " ".join((result.stdout + result.stderr).split())


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


class TestNoSecretsOnTheCommandLine:
    @pytest.mark.parametrize(
        "prop", ["sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret"]
    )
    def test_set_refuses_a_secret_property_without_echoing_it(self, prop: str) -> None:
        """--set of a secret property exits 2, points to the file and the variable, and never
        prints the value."""
        code, text = run("outbox", "relay", "--bootstrap", "h:1", "--set", f"{prop}={PASSWORD}")
        assert code == 2
        assert "config file" in text
        assert env_name(prop) in text
        assert PASSWORD not in text

    def test_set_refuses_any_property_not_known_to_be_harmless(self) -> None:
        """An unknown or unlisted property is refused on argv as well: it might hold a secret."""
        with pytest.raises(ConfigurationError, match="--set some.future.token"):
            parse_sets([f"some.future.token={PASSWORD}"])

    def test_set_takes_harmless_properties(self) -> None:
        """--set linger.ms=10 is a property override."""
        assert parse_sets(["linger.ms = 10", "client.id=x=y"]) == {
            "linger.ms": "10",
            "client.id": "x=y",
        }

    @pytest.mark.parametrize("option", ["--password", "--sasl-password", "--secret"])
    def test_there_is_no_password_option(self, option: str) -> None:
        """No command has a password-like option."""
        for command in (["outbox", "relay"], ["dlq", "list"], ["dlq", "replay"]):
            code, text = run(*command, option, PASSWORD)
            assert code == 2
            assert "No such option" in text

    def test_env_names_of_properties(self) -> None:
        """env_name turns '.' into '_' and '_' into '__', upper-cased, after the prefix."""
        assert env_name("sasl.password") == "EVENTWIRE_KAFKA_SASL_PASSWORD"
        assert env_name("log_level") == "EVENTWIRE_KAFKA_LOG__LEVEL"


class TestConfigOption:
    def test_relay_help_lists_config_set_and_bootstrap(self) -> None:
        """`outbox relay --help` documents --config, --set, --bootstrap and the breaker switch."""
        code, text = run("outbox", "relay", "--help")
        assert code == 0
        for option in ("--config", "--set", "--bootstrap", "--breaker", "--metrics-port"):
            assert option in text

    @pytest.mark.parametrize(
        "command",
        [["outbox", "relay", "--sqlite", "o.db"], ["dlq", "list", "--topic", "t"]],
    )
    def test_an_unknown_key_in_the_config_file_exits_2_naming_it(
        self, tmp_path: Path, command: list[str]
    ) -> None:
        """A misspelt property in --config FILE is named, with the file, and exits 2."""
        path = _write(tmp_path, "c.properties", "bootstrap.server=h:1\n")
        code, text = run(*command, "--config", str(path))
        assert code == 2
        assert "'bootstrap.server'" in text
        assert "c.properties" in text

    def test_a_missing_secret_variable_exits_2_naming_the_key_not_the_reference(
        self, tmp_path: Path
    ) -> None:
        """A secret referenced by an unset variable: the key is named (not the reference's
        text, which may be the secret itself), and exits 2."""
        path = _write(
            tmp_path, "c.toml", 'bootstrap.servers = "h:1"\nsasl.password.env = "UNSET_PW_VAR"\n'
        )
        code, text = run("outbox", "relay", "--config", str(path), "--sqlite", "o.db")
        assert code == 2
        assert "sasl.password.env" in text
        assert "UNSET_PW_VAR" not in text

    def test_no_cluster_given(self) -> None:
        """Without --bootstrap, --config or the variables, the command says what to pass."""
        code, text = run("outbox", "relay", "--sqlite", "o.db")
        assert code == 2
        assert "--bootstrap" in text
        assert "--config" in text
        assert "EVENTWIRE_KAFKA_CONFIG" in text

    def test_dlq_topic_on_a_secured_cluster_reads_with_the_configs_login(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`dlq list --topic` over SASL_SSL (config from EVENTWIRE_KAFKA_CONFIG) hands the
        whole config (TLS, SASL) to the topic reader, and shows no secret."""
        import eventwire.transports.kafka as kafka_transport

        path = _write(
            tmp_path,
            "c.properties",
            f"bootstrap.servers=h:1\nsecurity.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n"
            f"sasl.username=u\nsasl.password={PASSWORD}\n",
        )
        seen: list[object] = []

        def fake_read(cluster: object, topic: str, **_: object) -> kafka_transport.TopicRead:
            seen.append(cluster)
            return kafka_transport.TopicRead([], complete=True)

        monkeypatch.setattr(kafka_transport, "read_records", fake_read)
        monkeypatch.setenv("EVENTWIRE_KAFKA_CONFIG", str(path))
        code, text = run("dlq", "list", "--topic", "orders.dlq")
        assert code == 0, text
        [config] = seen
        assert isinstance(config, KafkaConfig)
        assert config.client_properties()["security.protocol"] == "SASL_SSL"
        assert PASSWORD not in text

    def test_a_bad_relay_setting_exits_2_naming_it(self, tmp_path: Path) -> None:
        """A [relay] value of the wrong type names the setting and exits 2."""
        path = _write(
            tmp_path, "c.toml", 'bootstrap.servers = "h:1"\n[relay]\nbatch_size = "many"\n'
        )
        code, text = run("outbox", "relay", "--config", str(path), "--sqlite", "o.db")
        assert code == 2
        assert "'batch_size'" in text
        assert "must be a whole number" in text  # (it said "must be a int")

    @pytest.mark.parametrize(
        ("args", "env", "named"),
        [
            (["--batch-size", "99999999999999999999"], {}, "--batch-size"),
            (["--batch-size", "1000001"], {}, "--batch-size"),
            ([], {"EVENTWIRE_RELAY_BATCH_SIZE": "3000000000"}, "batch_size"),
        ],
    )
    def test_a_batch_size_past_a_million_exits_2_naming_the_range(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        args: list[str],
        env: dict[str, str],
        named: str,
    ) -> None:
        """A batch size above the C int range was accepted; then every round failed with
        OverflowError, forever (or, with --once, exit 1 'a round failed')."""
        from eventwire.outbox import SQLiteOutbox

        SQLiteOutbox(tmp_path / "o.db").close()
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        code, text = run(
            "outbox", "relay", "--once", "--bootstrap", "127.0.0.1:9",
            "--sqlite", str(tmp_path / "o.db"), *args,
        )  # fmt: skip
        assert code == 2, text
        assert named in text
        assert "1000000" in text.replace("_", "").replace(",", "")
        assert "Traceback" not in text


class TestRelaySettings:
    def test_defaults(self) -> None:
        """With nothing given: no breaker, no metrics, batches of 1000, 30 s to stop."""
        settings = RelaySettings.load(environ={})
        assert (settings.breaker, settings.metrics_port, settings.batch_size) == (False, None, 1000)
        assert settings.stop_timeout_s == 30.0

    def test_flags_over_variables_over_the_file(self, tmp_path: Path) -> None:
        """The [relay] table, then EVENTWIRE_RELAY_*, then the command's flags."""
        path = _write(
            tmp_path,
            "c.toml",
            'bootstrap.servers = "h:1"\n[relay]\nbatch_size = 10\nbreaker = true\n'
            "breaker_open_after_s = 3\nmetrics_port = 9000\n",
        )
        env = {"EVENTWIRE_RELAY_BATCH_SIZE": "20", "EVENTWIRE_RELAY_METRICS_PORT": "9001"}
        settings = RelaySettings.load(path, environ=env, metrics_port=9002, breaker=None)
        assert settings.batch_size == 20
        assert settings.metrics_port == 9002
        assert settings.breaker is True
        assert settings.breaker_open_after_s == 3.0

    def test_properties_file_relay_lines(self, tmp_path: Path) -> None:
        """relay.<name>= lines of a properties file are the relay's settings."""
        path = _write(tmp_path, "c.properties", "bootstrap.servers=h:1\nrelay.breaker=on\n")
        assert RelaySettings.load(path, environ={}).breaker is True

    def test_unknown_setting_lists_the_known_ones(self) -> None:
        """A misspelt EVENTWIRE_RELAY_* variable is named with the valid settings."""
        with pytest.raises(ConfigurationError, match="'metric_port'.*metrics_port"):
            RelaySettings.load(environ={"EVENTWIRE_RELAY_METRIC_PORT": "1"})

    def test_out_of_range(self) -> None:
        """A value out of range names the setting."""
        with pytest.raises(ConfigurationError, match="stop_timeout_s"):
            RelaySettings(stop_timeout_s=0)

    @pytest.mark.parametrize("text", ["inf", "nan", "-inf"])
    def test_a_time_that_is_not_finite_is_refused(self, text: str) -> None:
        """stop_timeout_s = inf was accepted, then SIGTERM crashed the relay (exit 1,
        producer left open); every time setting must be finite."""
        for name in ("STOP_TIMEOUT_S", "ACK_TIMEOUT_S", "BREAKER_QUIET_AFTER_S"):
            with pytest.raises(ConfigurationError, match="must be a finite number of seconds"):
                RelaySettings.load(environ={f"EVENTWIRE_RELAY_{name}": text})


class TestStandaloneRelayProcess:
    def test_sigterm_stops_the_relay_cleanly_with_settings_from_the_config(
        self, tmp_path: Path
    ) -> None:
        """A relay configured only by EVENTWIRE_KAFKA_CONFIG (metrics port and breaker from its
        [relay] table) runs until SIGTERM, then finishes its round and exits 0."""
        config = _write(
            tmp_path,
            "c.toml",
            f'bootstrap.servers = "{DEAD_BROKER}"\n[relay]\nmetrics_port = 0\nbreaker = true\n'
            "stop_timeout_s = 10\n",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTWIRE_KAFKA_")} | {
            "EVENTWIRE_KAFKA_CONFIG": str(config)
        }
        SQLiteOutbox(tmp_path / "o.db").close()  # the relay reads an existing outbox
        args = ["outbox", "relay", "--sqlite", str(tmp_path / "o.db")]
        proc = subprocess.Popen(
            [sys.executable, "-m", "eventwire.cli", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stderr is not None
            lines: list[str] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                line = proc.stderr.readline()
                lines.append(line)
                if "relaying to" in line or not line:
                    break
            assert any("metrics at http://127.0.0.1:" in line for line in lines), lines
            assert any(f"relaying to {DEAD_BROKER}" in line for line in lines), lines
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, rest = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, "".join(lines) + rest
        assert "SIGTERM: finishing the round" in rest
        assert "stopped: sent=0" in rest
        assert time.monotonic() - started < 15


def test_relay_once_stopped_by_a_signal_says_so() -> None:
    """`outbox relay --once` stopped by SIGTERM before the outbox was drained exits 1 with a
    line saying so (it exited 1 saying nothing)."""
    import signal
    import types
    from typing import Any

    import typer
    from typer.testing import CliRunner

    from eventwire._shutdown import GracefulShutdown
    from eventwire.cli import outbox as cli_outbox

    worker: Any = types.SimpleNamespace(
        transport=types.SimpleNamespace(check_connection=lambda timeout: None),
        stats=types.SimpleNamespace(retried=0, sent=3, dead_lettered=0, parked=0),
        run_once=lambda: 1,
        idle_interval_s=0.01,
        store=types.SimpleNamespace(status=lambda: types.SimpleNamespace(pending=5)),
    )
    shutdown = GracefulShutdown()
    shutdown.request(signal.SIGTERM)
    app = typer.Typer()

    @app.command()
    def once() -> None:
        cli_outbox._relay_once(worker, shutdown)

    result = CliRunner().invoke(app, [])
    assert result.exit_code == 1
    text = " ".join((result.stdout + result.stderr).split())
    assert "not drained: stopped by SIGTERM; the rest waits in the outbox" in text
