"""Callables where librdkafka takes a callback (oauth_cb, throttle_cb): accepted, masked, passed on."""

from __future__ import annotations

import time

import pytest

from eventwire import ConfigurationError, KafkaConfig, Publisher
from eventwire._config import CALLBACKS, RESERVED, Scrubber
from eventwire.transports.kafka import KafkaTransport
from eventwire.transports.memory import MemoryTransport

TOKEN_SECRET = "client-secret-in-a-closure-4711"


class TokenProvider:
    """A token provider whose repr would leak its secret if anything printed it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, oauthbearer_config: str) -> tuple[str, float]:
        self.calls.append(oauthbearer_config)
        return "header.payload.signature", time.time() + 3600

    def __repr__(self) -> str:
        return f"TokenProvider(secret={TOKEN_SECRET!r})"


def _oauth_config(provider: object) -> KafkaConfig:
    return KafkaConfig(
        "127.0.0.1:9",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        overrides={"oauth_cb": provider, "sasl.oauthbearer.config": "scope=events"},
    )


class TestAccepted:
    @pytest.mark.parametrize("key", sorted(CALLBACKS))
    def test_callback_reaches_to_librdkafka_as_the_same_object(self, key: str) -> None:
        """oauth_cb and throttle_cb are handed on unchanged: the very object given."""
        fn = TokenProvider()
        assert KafkaConfig("h:1", overrides={key: fn}).to_librdkafka()[key] is fn

    def test_with_overrides_adds_a_callback_to_a_loaded_config(self) -> None:
        """A config from the environment gets its token provider with with_overrides()."""
        fn = TokenProvider()
        loaded = KafkaConfig.from_env(environ={"EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": "h:1"})
        config = loaded.with_overrides({"oauth_cb": fn})
        assert config.to_librdkafka()["oauth_cb"] is fn
        assert config.bootstrap_servers == "h:1"

    def test_load_takes_callbacks_as_overrides(self) -> None:
        """KafkaConfig.load(overrides={'oauth_cb': fn}) keeps the callable."""
        fn = TokenProvider()
        env = {"EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": "h:1"}
        assert KafkaConfig.load(environ=env, overrides={"oauth_cb": fn}).overrides["oauth_cb"] is fn

    def test_oauth_cb_is_called_by_librdkafka(self) -> None:
        """Through KafkaTransport, confluent-kafka's producer calls the provider for its token
        with sasl.oauthbearer.config."""
        provider = TokenProvider()
        transport = KafkaTransport(_oauth_config(provider), connect_timeout=None)
        try:
            deadline = time.monotonic() + 10
            while not provider.calls and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            transport.close(0)
        assert provider.calls[0] == "scope=events"


class TestRefused:
    @pytest.mark.parametrize("key", ["linger.ms", "dr_cb", "partitioner_cb", "on_commit"])
    def test_unknown_callable_is_refused_listing_the_accepted_ones(self, key: str) -> None:
        """A callable under any other key names the key and the accepted callback names."""
        with pytest.raises(ConfigurationError, match=f"'{key}'.*oauth_cb, throttle_cb") as info:
            KafkaConfig("h:1", overrides={key: TokenProvider()})
        assert TOKEN_SECRET not in str(info.value)

    @pytest.mark.parametrize("key", sorted(RESERVED))
    def test_eventwire_owned_callbacks_are_refused_saying_what_to_use(self, key: str) -> None:
        """error_cb, logger, stats_cb, on_delivery are eventwire's: refused with the alternative."""
        with pytest.raises(ConfigurationError, match=f"'{key}' is managed by eventwire") as info:
            KafkaConfig("h:1", overrides={key: TokenProvider()})
        assert RESERVED[key] in str(info.value)

    def test_a_callback_key_needs_a_callable(self) -> None:
        """oauth_cb given a string is refused, describing the contract."""
        with pytest.raises(ConfigurationError, match="'oauth_cb' must be a callable.*expiry"):
            KafkaConfig("h:1", overrides={"oauth_cb": "not-callable"})


class TestNeverShown:
    def test_repr_redacted_and_publisher_never_show_the_callables_repr(self) -> None:
        """repr, redacted() and the publisher's repr show '<callback>', never the callable."""
        config = _oauth_config(TokenProvider())
        with Publisher(config=config, transport=MemoryTransport()) as publisher:
            texts = [repr(config), str(config), str(config.redacted()), repr(publisher)]
        assert config.redacted()["oauth_cb"] == "<callback>"
        for text in texts:
            assert TOKEN_SECRET not in text
            assert "TokenProvider" not in text

    def test_callables_are_not_scrubbed_values(self) -> None:
        """secret_values() holds strings only: a callable is never turned into text."""
        config = _oauth_config(TokenProvider())
        assert all(isinstance(v, str) for v in config.secret_values())
        assert "scope=events" in config.secret_values()
        assert repr(Scrubber(config.secret_values())) == "<Scrubber of 1 secret(s)>"
