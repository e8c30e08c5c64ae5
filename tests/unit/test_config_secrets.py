"""Secrets that reached logs, errors and reprs in parts or in unexpected places (review item 17).

Parts of ``sasl.oauthbearer.config`` echoed by librdkafka (a real producer), credentials
embedded in ``bootstrap.servers`` or a token endpoint URL, a properties line with
Java's ``:`` separator, and a secret written where a variable NAME belongs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from eventwire import AuthenticationError, BrokerUnavailableError, ConfigurationError, KafkaConfig
from eventwire._config import Scrubber
from eventwire.observability.logging import capture_logs
from eventwire.transports.kafka import KafkaTransport

DEAD = "127.0.0.1:1"
#: An OAUTHBEARER (unsecured JWT) config whose third key librdkafka does not know:
#: it reports the rest of the string from that key on.
OAUTH_SECRET = "hunter2-oauth-XYZ"
EXTENSION_SECRET = "ext-value-Q9w8"
OAUTH_CONFIG = (
    f"principal=alice scope=events secretkey={OAUTH_SECRET} "
    f"extension_traceid={EXTENSION_SECRET} lifeSeconds=60"
)
USERINFO_PASSWORD = "Pw-in-bootstrap-77"
URL_SECRET = "client-secret-in-url-4242"


def _logged(logs: list[dict[str, Any]]) -> str:
    return " ".join(str(entry) for entry in logs)


def _oauth_config(oauth_config: str) -> KafkaConfig:
    return KafkaConfig(
        DEAD,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        overrides={
            "enable.sasl.oauthbearer.unsecure.jwt": True,
            "sasl.oauthbearer.config": oauth_config,
        },
    )


def _wait_for(logs: list[dict[str, Any]], event: str, code: str) -> None:
    deadline = time.monotonic() + 30
    while not any(e["event"] == event and e.get("code") == code for e in logs):
        assert time.monotonic() < deadline, f"no {event} {code} within 30 s: {logs}"
        time.sleep(0.05)


class TestOauthbearerConfigFragments:
    def test_librdkafkas_echo_of_an_unknown_key_is_masked_in_log_and_error(self) -> None:
        """A real producer whose sasl.oauthbearer.config has an unknown key: librdkafka
        echoes the rest of the config from that key, and neither the kafka_error WARNING
        nor the AuthenticationError shows any of it."""
        with capture_logs() as logs:
            with pytest.raises(AuthenticationError) as raised:
                KafkaTransport(_oauth_config(OAUTH_CONFIG), connect_timeout=30)
        text = f"{raised.value} {raised.value!r} {vars(raised.value)} {_logged(logs)}"
        assert "Unrecognized sasl.oauthbearer.config beginning at" in text  # librdkafka's words
        for fragment in (OAUTH_SECRET, EXTENSION_SECRET, "secretkey=", "lifeSeconds=60"):
            assert fragment not in text

    def test_a_short_tail_after_the_unknown_key_is_masked_too(self) -> None:
        """Even a tail too short to be scrubbed on its own ('al ice': librdkafka stops at
        'ice') is masked after librdkafka's "beginning at:" marker."""
        with capture_logs() as logs:
            with pytest.raises(AuthenticationError) as raised:
                KafkaTransport(_oauth_config("principal=al ice"), connect_timeout=30)
        assert "beginning at: ***" in str(raised.value)
        assert "beginning at: ice" not in f"{raised.value} {_logged(logs)}"

    @pytest.mark.parametrize(
        "quoted",
        [
            f"secretkey={OAUTH_SECRET}",  # a key=value pair
            OAUTH_SECRET,  # a pair's value alone (e.g. "non-integral 'lifeSeconds=': <value>")
            f"extension_traceid={EXTENSION_SECRET} lifeSeconds=60",  # a tail
        ],
    )
    def test_the_scrubber_masks_every_part_of_a_secret(self, quoted: str) -> None:
        """Scrubber: a pair, a pair's value and a tail of a secret value are masked
        wherever they appear, not only the whole value."""
        scrub = Scrubber(_oauth_config(OAUTH_CONFIG).secret_values())
        assert scrub(f"error: {quoted}.") == "error: ***."

    def test_short_plain_words_of_a_secret_are_not_scrubbed_alone(self) -> None:
        """Words shorter than MIN_SCRUBBED_LENGTH and numbers of a secret value are not
        masked on their own (that would wreck the logs); their pairs are."""
        scrub = Scrubber(["principal=alice lifeSeconds=60"])
        assert scrub("alice waited 60 s; principal=alice") == "alice waited 60 s; ***"


class TestCredentialsInUrls:
    def test_bootstrap_userinfo_is_masked_in_repr_errors_and_librdkafka_logs(self) -> None:
        """'user:pass@host:9092' in bootstrap.servers: repr() and redacted() show '***@',
        and librdkafka's resolve errors and the start-up check's error never show it."""
        config = KafkaConfig(f"alice:{USERINFO_PASSWORD}@{DEAD}")
        assert config.redacted()["bootstrap.servers"] == f"***@{DEAD}"
        assert USERINFO_PASSWORD not in repr(config)
        with capture_logs() as logs:
            transport = KafkaTransport(config, connect_timeout=None)
            try:
                _wait_for(logs, "kafka_error", "_RESOLVE")
                with pytest.raises(BrokerUnavailableError) as raised:
                    transport.check_connection(0.5)
            finally:
                transport.close(0)
        text = f"{raised.value} {_logged(logs)}"
        assert "***@127.0.0.1:1" in text
        assert USERINFO_PASSWORD not in text and "alice:" not in text

    def test_a_malformed_bootstrap_entry_is_quoted_without_its_userinfo(self) -> None:
        """The 'not host:port' error masks the userinfo of the entry it quotes."""
        with pytest.raises(ConfigurationError) as raised:
            KafkaConfig(f"alice:{USERINFO_PASSWORD}@broker")
        assert USERINFO_PASSWORD not in str(raised.value)
        assert "'***@broker' is not 'host:port'" in str(raised.value)

    def test_token_endpoint_userinfo_and_query_are_masked_and_scrubbed(self) -> None:
        """sasl.oauthbearer.token.endpoint.url: its userinfo and query string are masked in
        repr()/redacted() and scrubbed from librdkafka's text; the rest is shown."""
        url = f"https://svc:{URL_SECRET}@idp.example/oauth2/token?client_secret={URL_SECRET}"
        config = KafkaConfig(DEAD, sasl_oauthbearer_token_endpoint_url=url)
        shown = config.redacted()["sasl.oauthbearer.token.endpoint.url"]
        assert shown == "https://***@idp.example/oauth2/token?***"
        assert URL_SECRET not in repr(config)
        scrub = Scrubber(config.secret_values())
        assert URL_SECRET not in scrub(f"Failed to fetch token from {url}: 401")
        assert "idp.example/oauth2/token" in scrub(f"Failed to fetch token from {url}: 401")


class TestPropertiesSeparators:
    #: Split at its first '=' (as before Java separators), its head "Leak3d-Part" became
    #: part of the key, quoted in the unknown-key error.
    PASSWORD = "Leak3d-Part=with=equals-3141"

    def _load(self, tmp_path: Path, text: str) -> KafkaConfig:
        path = tmp_path / "client.properties"
        path.write_text(f"bootstrap.servers={DEAD}\n{text}\n")
        return KafkaConfig.from_file(path)

    @pytest.mark.parametrize(
        "line",
        [
            f"sasl.password: {PASSWORD}",
            f"sasl.password:{PASSWORD}",
            f"sasl.password {PASSWORD}",
            f"sasl.password = {PASSWORD}",
            f"sasl.password\t:  {PASSWORD}",
        ],
    )
    def test_java_separators_split_key_and_value(self, tmp_path: Path, line: str) -> None:
        """As in Java: the key ends at the first '=', ':' or blank; the value keeps any
        '=' or ':' after that."""
        config = self._load(tmp_path, line)
        assert config.to_librdkafka()["sasl.password"] == self.PASSWORD

    def test_an_unknown_key_with_a_colon_separator_does_not_quote_the_value(
        self, tmp_path: Path
    ) -> None:
        """'sasl.passwrod: pw=...' names the key 'sasl.passwrod' only, never the value."""
        with pytest.raises(ConfigurationError) as raised:
            self._load(tmp_path, f"sasl.passwrod: {self.PASSWORD}")
        assert "Leak3d" not in str(raised.value)
        assert "'sasl.passwrod' is not a property of the installed librdkafka" in str(raised.value)

    def test_a_key_that_is_not_a_property_name_is_not_quoted(self, tmp_path: Path) -> None:
        """A TOML key that cannot be a property name (a value pasted as a key) is described,
        not quoted."""
        path = tmp_path / "c.toml"
        path.write_text(f'bootstrap.servers = "{DEAD}"\n"sasl.password {self.PASSWORD}" = 1\n')
        with pytest.raises(ConfigurationError) as raised:
            KafkaConfig.from_file(path)
        assert "Leak3d" not in str(raised.value)
        assert "not a property name" in str(raised.value)


class TestSecretWhereAVariableNameBelongs:
    def test_a_secret_given_as_the_variable_name_is_not_echoed(self) -> None:
        """EVENTWIRE_KAFKA_SASL_PASSWORD_ENV=<the password>: the error says the variable it
        names does not exist and what to do, without showing the text."""
        env = {
            "EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": DEAD,
            "EVENTWIRE_KAFKA_SASL_PASSWORD_ENV": "s3cr-et!pw",
        }
        with pytest.raises(ConfigurationError, match="EVENTWIRE_KAFKA_SASL_PASSWORD_ENV") as raised:
            KafkaConfig.from_env(environ=env)
        message = str(raised.value)
        assert "s3cr-et!pw" not in message
        assert "does not exist" in message and "variable's name" in message

    def test_an_unset_variable_of_a_secret_is_not_named_even_if_it_looks_like_one(
        self,
    ) -> None:
        """A reference to an unset upper-case variable for a secret is not quoted either: a
        generated upper-case password looks like any variable name."""
        env = {
            "EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": DEAD,
            "EVENTWIRE_KAFKA_SASL_PASSWORD_ENV": "KAFKA_PW",
        }
        with pytest.raises(ConfigurationError, match="must hold the NAME") as raised:
            KafkaConfig.from_env(environ=env)
        assert "KAFKA_PW" not in str(raised.value)

    def test_an_unset_variable_of_a_property_holding_no_secret_is_named(self) -> None:
        """For a property whose value may be shown (sasl.username), the variable is named."""
        env = {
            "EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": DEAD,
            "EVENTWIRE_KAFKA_SASL_USERNAME_ENV": "KAFKA_USER",
        }
        with pytest.raises(
            ConfigurationError, match="environment variable 'KAFKA_USER' .* not set"
        ):
            KafkaConfig.from_env(environ=env)
