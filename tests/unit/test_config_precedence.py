"""One property given twice in one source, TLS verification switched off, and a
world-readable config file holding a secret (review item 18)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eventwire import ConfigurationError, KafkaConfig
from eventwire.observability.logging import capture_logs

PASSWORD = "pa55-in-a-readable-file-8080"


def _write(tmp_path: Path, name: str, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(text)
    os.chmod(path, mode)
    return path


class TestOnePropertyTwiceInOneSource:
    @pytest.mark.parametrize(
        "text",
        [
            '"sasl.username" = "a"\nsasl.username = "b"\n',
            '"sasl.username" = "a"\n[sasl]\nusername = "b"\n',
            'sasl.username = "a"\n"sasl.username" = "b"\n',
        ],
        ids=["quoted-then-dotted", "quoted-then-table", "dotted-then-quoted"],
    )
    def test_a_toml_file_setting_a_property_twice_is_refused(
        self, tmp_path: Path, text: str
    ) -> None:
        """A quoted key and a dotted key (or table) for the same property are refused,
        naming the property and the file, instead of the last one silently winning."""
        path = _write(tmp_path, "c.toml", 'bootstrap.servers = "h:1"\n' + text)
        with pytest.raises(ConfigurationError, match=r"'sasl\.username' is given twice") as info:
            KafkaConfig.from_file(path)
        assert str(path) in str(info.value)

    @pytest.mark.parametrize(
        ("name", "text"),
        [
            ("c.toml", 'bootstrap.servers = "a:1"\n"metadata.broker.list" = "b:1"\n'),
            ("c.properties", "bootstrap.servers=a:1\nmetadata.broker.list=b:1\n"),
            ("c.properties", "bootstrap.servers=a:1\nlinger.ms=5\nqueue.buffering.max.ms=9\n"),
        ],
    )
    def test_a_file_giving_a_property_under_two_names_is_refused(
        self, tmp_path: Path, name: str, text: str
    ) -> None:
        """Two librdkafka aliases of one property in one file are refused, naming both
        names and the file."""
        path = _write(tmp_path, name, text)
        with pytest.raises(ConfigurationError, match="one librdkafka property under two names"):
            KafkaConfig.from_file(path)

    def test_the_environment_giving_a_property_under_two_names_is_refused(self) -> None:
        """EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS and ..._METADATA_BROKER_LIST together are refused."""
        env = {
            "EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": "a:1",
            "EVENTWIRE_KAFKA_METADATA_BROKER_LIST": "b:1",
        }
        with pytest.raises(ConfigurationError, match="METADATA_BROKER_LIST.*two names"):
            KafkaConfig.from_env(environ=env)

    def test_an_alias_in_the_environment_replaces_the_files_name(self, tmp_path: Path) -> None:
        """Across sources the later one wins under any of the property's names: the
        environment's queue.buffering.max.ms replaces the file's linger.ms (not both
        reach librdkafka)."""
        path = _write(tmp_path, "c.properties", "bootstrap.servers=a:1\nlinger.ms=5\n")
        env = {"EVENTWIRE_KAFKA_QUEUE_BUFFERING_MAX_MS": "9"}
        props = KafkaConfig.load(path, environ=env).to_librdkafka()
        assert props["queue.buffering.max.ms"] == "9"
        assert "linger.ms" not in KafkaConfig.load(path, environ=env).overrides


class TestTlsVerificationOff:
    @pytest.mark.parametrize(
        "overrides",
        [
            {"enable.ssl.certificate.verification": False},
            {"ssl.endpoint.identification.algorithm": "none"},
            {"enable.ssl.certificate.verification": "false",
             "ssl.endpoint.identification.algorithm": "none"},
        ],
    )  # fmt: skip
    def test_switching_verification_off_logs_one_warning(
        self, overrides: dict[str, object]
    ) -> None:
        """Each way of switching TLS verification off logs exactly one WARNING naming the
        settings, through eventwire's logger."""
        with capture_logs() as logs:
            config = KafkaConfig("h:9093", security_protocol="SSL", overrides=overrides)
            config.with_overrides({"linger.ms": 1})  # a copy does not warn again
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert [e["event"] for e in warnings] == ["tls_verification_disabled"]
        for key in overrides:
            assert key in warnings[0]["properties"]

    def test_verification_on_logs_nothing(self) -> None:
        """The default (verification on) and explicit 'https' / true log no warning."""
        with capture_logs() as logs:
            KafkaConfig(
                "h:9093",
                overrides={
                    "enable.ssl.certificate.verification": True,
                    "ssl.endpoint.identification.algorithm": "https",
                },
            )
        assert logs == []

    def test_a_file_switching_verification_off_warns_once(self, tmp_path: Path) -> None:
        """Loading a file with verification off logs one WARNING."""
        path = _write(
            tmp_path,
            "c.properties",
            "bootstrap.servers=h:1\nssl.endpoint.identification.algorithm=none\n",
        )
        with capture_logs() as logs:
            KafkaConfig.from_file(path)
        assert [e["event"] for e in logs] == ["tls_verification_disabled"]


class TestWorldReadableSecrets:
    def test_a_world_readable_file_with_an_inline_secret_warns(self, tmp_path: Path) -> None:
        """A 0o644 file holding sasl.password inline: one WARNING naming the file, the
        property and the remedy, never the value."""
        path = _write(
            tmp_path, "c.properties", f"bootstrap.servers=h:1\nsasl.password={PASSWORD}\n", 0o644
        )
        with capture_logs() as logs:
            KafkaConfig.from_file(path)
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert [e["event"] for e in warnings] == ["config_file_exposes_secret"]
        warning = warnings[0]
        assert warning["file"] == str(path)
        assert warning["properties"] == "sasl.password"
        assert "chmod 600" in warning["hint"] and ".env" in warning["hint"]
        assert PASSWORD not in str(logs)

    @pytest.mark.parametrize(
        ("mode", "line"),
        [
            (0o600, f"sasl.password={PASSWORD}"),  # only its owner can read it
            (0o640, f"sasl.password={PASSWORD}"),  # owner and group
            (0o644, "sasl.password.env=KAFKA_PW"),  # a reference: no secret in the file
        ],
    )
    def test_a_private_file_or_a_reference_does_not_warn(
        self, tmp_path: Path, mode: int, line: str
    ) -> None:
        """No warning when other users cannot read the file or the secret is a reference."""
        path = _write(tmp_path, "c.properties", f"bootstrap.servers=h:1\n{line}\n", mode)
        with capture_logs() as logs:
            KafkaConfig.load(path, env_prefix=None, environ={"KAFKA_PW": PASSWORD})
        assert logs == []
