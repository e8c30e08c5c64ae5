"""Typed configuration, profiles and secret redaction."""

from __future__ import annotations

import pytest

from eventwire import PROFILES, ConfigurationError, KafkaConfig, Publisher, Secret


class TestProfiles:
    def test_reliable_is_the_default(self) -> None:
        """The default profile is acks=all + idempotence + compression + ~5 ms linger."""
        props = KafkaConfig("h:9092").to_librdkafka()
        assert props["acks"] == "all"
        assert props["enable.idempotence"] is True
        assert props["compression.type"] != "none"
        assert props["linger.ms"] == 5

    def test_no_profile_limits_in_flight_to_one(self) -> None:
        """No profile sets max.in.flight=1: idempotence already keeps order."""
        for props in PROFILES.values():
            assert "max.in.flight.requests.per.connection" not in props

    def test_every_profile_uses_the_java_partitioner(self) -> None:
        """Keys land where Kafka's Java clients would put them, in every profile."""
        assert {p["partitioner"] for p in PROFILES.values()} == {"murmur2_random"}

    def test_low_latency_and_high_throughput(self) -> None:
        """low_latency lingers 0 ms; high_throughput lingers long with big lz4 batches."""
        assert KafkaConfig("h:1", profile="low_latency").to_librdkafka()["linger.ms"] == 0
        ht = KafkaConfig("h:1", profile="high_throughput").to_librdkafka()
        assert ht["linger.ms"] >= 50
        assert ht["compression.type"] == "lz4"

    def test_overrides_apply_last(self) -> None:
        """Raw librdkafka overrides win over the profile."""
        props = KafkaConfig("h:1", overrides={"linger.ms": 42}).to_librdkafka()
        assert props["linger.ms"] == 42


class TestValidation:
    @pytest.mark.parametrize("bootstrap", ["", "localhost", "host:notaport", "h:0", "h:70000"])
    def test_bad_bootstrap_is_named(self, bootstrap: str) -> None:
        """A malformed bootstrap list raises ConfigurationError naming bootstrap_servers."""
        with pytest.raises(ConfigurationError, match="bootstrap_servers"):
            KafkaConfig(bootstrap)

    def test_unknown_profile(self) -> None:
        """An unknown profile lists the valid ones."""
        with pytest.raises(ConfigurationError, match="reliable, low_latency, high_throughput"):
            KafkaConfig("h:1", profile="fast")  # type: ignore[arg-type]

    def test_malformed_override_key_is_named(self) -> None:
        """An override key that cannot be a librdkafka property is rejected by name."""
        with pytest.raises(ConfigurationError, match="'Linger MS'"):
            KafkaConfig("h:1", overrides={"Linger MS": 5})

    def test_reserved_override_is_refused(self) -> None:
        """Callbacks eventwire owns cannot be overridden."""
        with pytest.raises(ConfigurationError, match="error_cb"):
            KafkaConfig("h:1", overrides={"error_cb": "x"})

    def test_unknown_librdkafka_key_is_named_when_the_publisher_starts(self) -> None:
        """librdkafka's own check of property names surfaces as ConfigurationError naming it."""
        with pytest.raises(ConfigurationError, match="linger.msec"):
            Publisher("127.0.0.1:9", overrides={"linger.msec": 5}, connect_timeout=None)

    def test_bad_librdkafka_value_is_named(self) -> None:
        """A value librdkafka rejects names the key."""
        with pytest.raises(ConfigurationError, match="acks"):
            Publisher("127.0.0.1:9", overrides={"acks": "most"}, connect_timeout=None)


class TestSecrets:
    SECRET = "hunter2-s3cr3t"

    def _config(self) -> KafkaConfig:
        return KafkaConfig(
            "h:9092",
            security_protocol="SASL_SSL",
            sasl_mechanism="PLAIN",
            sasl_username="svc",
            sasl_password=self.SECRET,
            ssl_key_password=self.SECRET + "k",
            sasl_oauthbearer_client_secret=self.SECRET + "o",
            overrides={"sasl.oauthbearer.config": self.SECRET + "c"},
        )

    def test_secrets_never_appear_in_repr_or_dump(self) -> None:
        """repr() and redacted() show *** for every secret."""
        cfg = self._config()
        for text in (repr(cfg), str(cfg.redacted()), repr(cfg.sasl_password)):
            assert self.SECRET not in text
        assert cfg.redacted()["sasl.password"] == "***"

    def test_secrets_reach_librdkafka(self) -> None:
        """The real values are still handed to librdkafka."""
        props = self._config().to_librdkafka()
        assert props["sasl.password"] == self.SECRET
        assert props["ssl.key.password"] == self.SECRET + "k"

    def test_secret_wrapper_hides_itself(self) -> None:
        """Secret's str and repr are masked; get() reveals."""
        s = Secret("x")
        assert (str(s), repr(s), s.get()) == ("Secret('***')", "Secret('***')", "x")

    def test_secret_in_rejected_value_is_scrubbed_from_the_error(self) -> None:
        """When librdkafka rejects a config, the error message never echoes a secret."""
        with pytest.raises(ConfigurationError) as info:
            Publisher(
                config=KafkaConfig(
                    "127.0.0.1:9",
                    sasl_password=self.SECRET,
                    overrides={"compression.type": self.SECRET},
                ),
                connect_timeout=None,
            )
        assert self.SECRET not in str(info.value)
