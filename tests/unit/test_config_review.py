"""Defects found by the configuration review, each refused or fixed at config time."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventwire import ConfigurationError, KafkaConfig, Publisher, Secret

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


class TestIntegerOverridesOutOfRange:
    @pytest.mark.parametrize("value", [2**32 + 1500, "4294968796", 10**12, -(2**31) - 1])
    def test_a_value_beyond_a_c_int_is_refused_naming_key_and_range(self, value: object) -> None:
        """message.timeout.ms = 2**32 + 1500 would wrap around to 1.5 s in librdkafka: it is
        refused, naming the key, the value given and the property's range."""
        with pytest.raises(ConfigurationError) as info:
            KafkaConfig("h:1", overrides={"message.timeout.ms": value})
        message = str(info.value)
        assert message.startswith(f"message.timeout.ms = {value!r} is outside")
        assert "0..2147483647" in message and "wrap around" in message

    def test_a_value_outside_a_narrower_range_is_refused(self) -> None:
        """compression.level takes -1..12 (asked of the installed librdkafka)."""
        with pytest.raises(ConfigurationError, match=r"compression.level = 13 .* -1\.\.12"):
            KafkaConfig("h:1", overrides={"compression.level": 13})

    def test_a_float_is_refused_unless_whole_and_in_range(self) -> None:
        """log_level = 1e20 is out of range (its text, "1e+20", would be read as 1), 2.5
        would be read as 2; 6.0 is 6."""
        with pytest.raises(ConfigurationError, match=r"log_level = 1e\+20 is outside .*0\.\.7"):
            KafkaConfig("h:1", overrides={"log_level": 1e20})
        with pytest.raises(ConfigurationError, match="log_level = 2.5 is not a whole number"):
            KafkaConfig("h:1", overrides={"log_level": 2.5})
        assert KafkaConfig("h:1", overrides={"log_level": 6.0}).to_librdkafka()["log_level"] == 6.0

    @pytest.mark.parametrize(("text", "read"), [("1e3", 1), ("010", 8), ("08", 0)])
    def test_text_librdkafka_would_read_as_another_number_is_refused(
        self, text: str, read: int
    ) -> None:
        """librdkafka reads an integer property as C's strtol: "1e3" is 1, "010" octal 8."""
        pattern = f"message.timeout.ms = '{text}' would be read by librdkafka as {read} "
        with pytest.raises(ConfigurationError, match=pattern):
            KafkaConfig("h:1", overrides={"message.timeout.ms": text})
        assert KafkaConfig("h:1", overrides={"message.timeout.ms": "30000.0"})

    def test_from_a_config_file_and_through_with_overrides(self, tmp_path: Path) -> None:
        path = _write(tmp_path, "c.properties", "bootstrap.servers=h:1\nlinger.ms=5\n")
        config = KafkaConfig.from_file(path)
        with pytest.raises(ConfigurationError, match="message.timeout.ms"):
            config.with_overrides({"message.timeout.ms": 2**32})
        bad = _write(tmp_path, "d.properties", "bootstrap.servers=h:1\nbatch.size=4294967296\n")
        with pytest.raises(ConfigurationError, match=r"batch.size = '4294967296'.*d\.properties"):
            KafkaConfig.from_file(bad)

    def test_values_in_range_and_other_properties_are_untouched(self) -> None:
        """The edges of the range pass; a long number for a string property (client.id,
        a numeric password) and a float property (linger.ms, checked by librdkafka) pass."""
        config = KafkaConfig(
            "h:1",
            overrides={
                "message.timeout.ms": 2**31 - 1,
                "client.id": 12345678901234,
                "sasl.password": "98765432101234",
                "ssl.key.password": Secret("4294968796"),
                "acks": "all",
            },
        )
        props = config.to_librdkafka()
        assert props["message.timeout.ms"] == 2**31 - 1
        assert props["client.id"] == 12345678901234
        assert props["sasl.password"] == "98765432101234"

    def test_the_value_of_a_masked_property_is_not_shown(self) -> None:
        """A number given as a Secret is refused without showing it."""
        with pytest.raises(ConfigurationError, match="message.timeout.ms is outside") as info:
            KafkaConfig("h:1", overrides={"message.timeout.ms": Secret("4294968796")})
        assert "4294968796" not in str(info.value)


class TestAliasesInOverrides:
    def test_the_latest_with_overrides_wins_whatever_name_it_uses(self) -> None:
        """message.timeout.ms, then delivery.timeout.ms, then message.timeout.ms: the last
        value (30 s) is the only one librdkafka gets."""
        config = (
            KafkaConfig("h:1", overrides={"message.timeout.ms": 10_000})
            .with_overrides({"delivery.timeout.ms": 20_000})
            .with_overrides({"message.timeout.ms": 30_000})
        )
        props = config.to_librdkafka()
        assert props["message.timeout.ms"] == 30_000
        assert "delivery.timeout.ms" not in props
        assert dict(config.overrides) == {"message.timeout.ms": 30_000}

    def test_an_override_replaces_the_profiles_value_under_another_name(self) -> None:
        """queue.buffering.max.ms replaces the profile's linger.ms: one value reaches
        librdkafka."""
        props = KafkaConfig("h:1", overrides={"queue.buffering.max.ms": 50}).to_librdkafka()
        assert props["queue.buffering.max.ms"] == 50
        assert "linger.ms" not in props

    @pytest.mark.parametrize(
        "overrides",
        [
            {"linger.ms": 10, "queue.buffering.max.ms": 500},
            {"message.timeout.ms": 1000, "delivery.timeout.ms": 2000},
            {"acks": "all", "request.required.acks": 1},
        ],
    )
    def test_two_names_of_one_property_in_one_dict_are_refused(
        self, overrides: dict[str, object]
    ) -> None:
        """As a config file refuses them: in the constructor, with_overrides, Publisher."""
        first, second = overrides
        pattern = f"'{first}' and '{second}', which are one librdkafka property under two names"
        with pytest.raises(ConfigurationError, match=pattern):
            KafkaConfig("h:1", overrides=overrides)
        with pytest.raises(ConfigurationError, match="two names"):
            KafkaConfig("h:1").with_overrides(overrides)
        with pytest.raises(ConfigurationError, match="two names"):
            Publisher("127.0.0.1:9", overrides=overrides, connect_timeout=None)

    def test_load_overrides_replace_a_files_property_under_another_name(
        self, tmp_path: Path
    ) -> None:
        """KafkaConfig.load(overrides=) replaces the file's linger.ms with its
        queue.buffering.max.ms, as the environment does."""
        path = _write(tmp_path, "c.properties", "bootstrap.servers=h:1\nlinger.ms=5\n")
        config = KafkaConfig.load(path, environ={}, overrides={"queue.buffering.max.ms": 9})
        props = config.to_librdkafka()
        assert props["queue.buffering.max.ms"] == 9
        assert "linger.ms" not in props


class TestBrokersInOverrides:
    @pytest.mark.parametrize("key", ["bootstrap.servers", "metadata.broker.list"])
    def test_are_refused_pointing_to_bootstrap_servers(self, key: str) -> None:
        """The producer would connect to them while errors named bootstrap_servers, and
        they would skip the host:port check: refused, pointing to the argument."""
        with pytest.raises(ConfigurationError, match=f"'{key}' is not taken.*bootstrap_servers"):
            KafkaConfig("127.0.0.1:51775", overrides={key: "127.0.0.1:1"})
        with pytest.raises(ConfigurationError, match=f"'{key}' is not taken"):
            KafkaConfig("h:1").with_overrides({key: "no-port-here"})
        with pytest.raises(ConfigurationError, match=f"'{key}' is not taken"):
            Publisher("127.0.0.1:9", overrides={key: "127.0.0.1:1"}, connect_timeout=None)

    @pytest.mark.parametrize("key", ["bootstrap.servers", "metadata.broker.list"])
    def test_load_moves_them_into_the_checked_field(self, tmp_path: Path, key: str) -> None:
        """KafkaConfig.load(overrides=) (the command line's --bootstrap) replaces the file's
        brokers in bootstrap_servers, which is checked and named."""
        path = _write(tmp_path, "c.properties", "bootstrap.servers=a:1\n")
        config = KafkaConfig.load(path, environ={}, overrides={key: "b:2"})
        assert config.bootstrap_servers == "b:2"
        assert key not in config.overrides
        with pytest.raises(ConfigurationError, match="'no-port-here' is not 'host:port'"):
            KafkaConfig.load(path, environ={}, overrides={key: "no-port-here"})

    def test_load_refuses_both_names_in_its_overrides(self) -> None:
        overrides = {"bootstrap.servers": "a:1", "metadata.broker.list": "b:1"}
        with pytest.raises(ConfigurationError, match="two names"):
            KafkaConfig.load(environ={}, overrides=overrides)
