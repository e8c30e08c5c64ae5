"""Defects found by the configuration review, each refused or fixed at config time."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventwire import ConfigurationError, KafkaConfig, Publisher

#: Secrets that look like what belongs where they were written by mistake: a base64
#: secret holds '/' and '+' (a path), a generated password is upper-case letters and
#: digits (a variable name).
BASE64_SECRET = "kL9vQ2/xT7+mZpR4wN8s"
UPPER_SECRET = "Q7XK2M9W4PZ8RT"
ROOTED_SECRET = "/xT7+mZpR4wN8sQ7XK2M"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


class TestASecretWhereItsReferenceBelongsIsNeverShown:
    @pytest.mark.parametrize("secret", [BASE64_SECRET, UPPER_SECRET, ROOTED_SECRET])
    @pytest.mark.parametrize("kind", ["env", "file"])
    def test_a_config_file_reference_names_the_key_and_line_never_its_text(
        self, tmp_path: Path, secret: str, kind: str
    ) -> None:
        """`sasl.password.file = <secret>` / `.env = <secret>` in a config file: the error
        names the property, the file and line, and says a PATH / a variable's NAME belongs
        there; the text is never shown, whatever it looks like."""
        path = _write(
            tmp_path, "c.properties", f"bootstrap.servers=h:1\nsasl.password.{kind}={secret}\n"
        )
        with pytest.raises(ConfigurationError) as info:
            KafkaConfig.from_file(path)
        message = str(info.value)
        assert secret not in message
        assert message.startswith("sasl.password: config file ")
        assert "line 2 (sasl.password." + kind + ")" in message
        assert ("must hold the PATH" if kind == "file" else "must hold the NAME") in message

    @pytest.mark.parametrize("secret", [BASE64_SECRET, UPPER_SECRET, ROOTED_SECRET])
    @pytest.mark.parametrize("kind", ["ENV", "FILE"])
    def test_an_environment_reference_names_the_variable_never_its_text(
        self, secret: str, kind: str
    ) -> None:
        """EVENTWIRE_KAFKA_SSL_KEY_PASSWORD_FILE/_ENV=<secret>: the variable holding the
        reference is named, its text is not."""
        env = {
            "EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": "h:1",
            f"EVENTWIRE_KAFKA_SSL_KEY_PASSWORD_{kind}": secret,
        }
        with pytest.raises(ConfigurationError) as info:
            KafkaConfig.from_env(environ=env)
        message = str(info.value)
        assert secret not in message
        assert message.startswith(
            f"ssl.key.password: environment variable EVENTWIRE_KAFKA_SSL_KEY_PASSWORD_{kind} "
            f"must hold the {'PATH' if kind == 'FILE' else 'NAME'}"
        )

    def test_a_property_eventwire_does_not_list_is_treated_as_a_secret(
        self, tmp_path: Path
    ) -> None:
        """A reference for a property whose value is masked (client.software.name: known to
        librdkafka, not on eventwire's allow-list) is not quoted either."""
        path = _write(
            tmp_path,
            "c.properties",
            f"bootstrap.servers=h:1\nclient.software.name.env={UPPER_SECRET}\n",
        )
        with pytest.raises(ConfigurationError, match="must hold the NAME") as info:
            KafkaConfig.from_file(path)
        assert UPPER_SECRET not in str(info.value)

    def test_an_unreadable_or_empty_secret_file_is_named_by_reference_not_path(
        self, tmp_path: Path
    ) -> None:
        """A reference that names a directory, or an empty file: the reason is given, the
        path is not."""
        (tmp_path / "adir").mkdir()
        _write(tmp_path, "empty", "")
        for target, reason in (("adir", "Is a directory"), ("empty", "is empty")):
            path = _write(
                tmp_path, "c.properties", f"bootstrap.servers=h:1\nsasl.password.file={target}\n"
            )
            with pytest.raises(ConfigurationError, match=reason) as info:
                KafkaConfig.from_file(path)
            assert str(tmp_path / target) not in str(info.value)
            assert "the file named by config file" in str(info.value)

    def test_a_reference_for_a_property_holding_no_secret_still_shows_its_path(
        self, tmp_path: Path
    ) -> None:
        """For a property whose value may be shown (sasl.username), the path is named."""
        path = _write(
            tmp_path, "c.properties", "bootstrap.servers=h:1\nsasl.username.file=who/ami\n"
        )
        with pytest.raises(ConfigurationError, match="who/ami.*no such file"):
            KafkaConfig.from_file(path)


class TestTransactionalIdIsRefused:
    MESSAGE = "does not support Kafka transactions.*outbox.*idempotence is already on"

    def test_in_overrides(self) -> None:
        """KafkaConfig(overrides={'transactional.id': ...}) is refused saying transactions
        are not supported and what to use instead; so is Publisher(overrides=...)."""
        with pytest.raises(ConfigurationError, match=self.MESSAGE):
            KafkaConfig("h:1", overrides={"transactional.id": "tx-1"})
        with pytest.raises(ConfigurationError, match="'transactional.id'"):
            KafkaConfig("h:1").with_overrides({"transactional.id": "tx-1"})
        with pytest.raises(ConfigurationError, match=self.MESSAGE):
            Publisher("127.0.0.1:9", overrides={"transactional.id": "tx-1"}, connect_timeout=None)

    @pytest.mark.parametrize("line", ["transactional.id=tx-1", "transactional.id.env=TX_ID"])
    def test_in_a_config_file_naming_the_line(self, tmp_path: Path, line: str) -> None:
        """In a config file (directly or by reference) it is refused naming the line."""
        path = _write(tmp_path, "c.properties", f"bootstrap.servers=h:1\n{line}\n")
        with pytest.raises(ConfigurationError, match=r"line 2: 'transactional.id' cannot be set"):
            KafkaConfig.load(path, environ={"TX_ID": "tx-1"})

    def test_in_the_environment_naming_the_variable(self) -> None:
        env = {
            "EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": "h:1",
            "EVENTWIRE_KAFKA_TRANSACTIONAL_ID": "tx-1",
        }
        with pytest.raises(ConfigurationError, match="EVENTWIRE_KAFKA_TRANSACTIONAL_ID"):
            KafkaConfig.from_env(environ=env)
