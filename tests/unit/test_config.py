"""Typed configuration, profiles and secret redaction."""

from __future__ import annotations

import pytest

from eventwire import PROFILES, ConfigurationError, KafkaConfig, Publisher, Secret
from eventwire._config import Scrubber
from eventwire.transports.memory import MemoryTransport


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

    @pytest.mark.parametrize("key", ["group.id", "enable.auto.commit", "fetch.max.bytes"])
    def test_a_consumer_property_override_is_refused(self, key: str) -> None:
        """A consumer-only property, which librdkafka would take and the producer ignore,
        is refused by name (as a config file refuses it), also through with_overrides."""
        with pytest.raises(ConfigurationError, match=f"'{key}' is a librdkafka consumer"):
            KafkaConfig("h:1", overrides={key: "1"})
        with pytest.raises(ConfigurationError, match=f"'{key}'"):
            KafkaConfig("h:1").with_overrides({key: "1"})

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


#: Allow-listed properties that librdkafka 2.13 (the confluent-kafka floor) does not know
#: yet: librdkafka refuses them there with its own message (a ConfigurationError).
NEWER_THAN_THE_FLOOR = {"sasl.oauthbearer.sub.claim.name"}

# Accepted by librdkafka 2.16; shown in clear before the allow-list.
NEW_SECRETS = {
    "sasl.oauthbearer.assertion.private.key.passphrase": "pass-phrase-77",
    "sasl.oauthbearer.assertion.private.key.pem": "-----BEGIN PRIVATE KEY-----MIIEvQ",
    "sasl.oauthbearer.extensions": "logicalCluster=lkc-4242,identityPoolId=pool-99",
}
# Properties librdkafka might add one day: masked until someone lists them,
# whether or not the name looks secret.
FUTURE = {
    "sasl.foo.secret.thing": "future-value-31337",
    "sasl.oauthbearer.client.assertion": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
}

MASKED = {**NEW_SECRETS, **FUTURE}


class TestAllowListedValues:
    """Regression tests for issue 10, item 7: only allow-listed values are shown."""

    def _config(self) -> KafkaConfig:
        return KafkaConfig(
            "h:9092",
            security_protocol="SASL_SSL",
            sasl_mechanism="OAUTHBEARER",
            sasl_username="svc-orders",
            overrides={**NEW_SECRETS, **FUTURE, "linger.ms": 7},
        )

    @pytest.mark.parametrize("key", [*NEW_SECRETS, *FUTURE])
    def test_values_not_on_the_allow_list_are_masked(self, key: str) -> None:
        """repr(), redacted(), repr(overrides) and the publisher's repr never show them."""
        cfg = self._config()
        value = MASKED[key]
        assert cfg.redacted()[key] == "***"
        with Publisher(config=cfg, transport=MemoryTransport()) as pub:
            texts = [repr(cfg), str(cfg.redacted()), repr(cfg.overrides), repr(pub)]
        for text in texts:
            assert value not in text

    @pytest.mark.parametrize("key", [*NEW_SECRETS, *FUTURE])
    def test_masked_values_are_scrubbed_from_logs(self, key: str) -> None:
        """secret_values() lists them, so the Scrubber masks them in librdkafka's text."""
        cfg = self._config()
        value = MASKED[key]
        assert value in cfg.secret_values()
        scrub = Scrubber(cfg.secret_values())
        assert scrub(f"failed: {key}={value}") == f"failed: {key}=***"

    def test_masked_values_reach_librdkafka_unchanged(self) -> None:
        """A value masked in the repr is still handed to librdkafka as given."""
        props = self._config().to_librdkafka()
        for key, value in MASKED.items():
            assert props[key] == value

    def test_known_harmless_values_are_shown(self) -> None:
        """bootstrap.servers, acks, linger.ms, compression.type, the SASL mechanism and
        username (an identity, not a secret) are shown as they are."""
        shown = self._config().redacted()
        assert shown["bootstrap.servers"] == "h:9092"
        assert shown["acks"] == "all"
        assert shown["linger.ms"] == "7"
        assert shown["compression.type"] == "lz4"
        assert shown["security.protocol"] == "SASL_SSL"
        assert shown["sasl.mechanism"] == "OAUTHBEARER"
        assert shown["sasl.username"] == "svc-orders"

    def test_the_scrubber_leaves_short_plain_values_of_unknown_properties(self) -> None:
        """Short, numeric or boolean values of unlisted properties are masked in the repr
        but not scrubbed from logs, unless the name says secret or the user wrapped them."""
        cfg = KafkaConfig(
            "h:1",
            overrides={
                "some.future.name": "grp",
                "some.future.flag": "true",
                "some.future.count": "1200",
                "some.password": "pw",
                "acks": Secret("all"),
            },
        )
        assert set(cfg.secret_values()) == {"pw", "all"}
        assert {cfg.redacted()[k] for k in ("some.future.name", "some.future.flag")} == {"***"}

    def test_allow_list_names_only_real_librdkafka_properties(self) -> None:
        """Every allow-listed name is a property librdkafka accepts (no typo unmasks nothing).

        The list is librdkafka 2.16's: on an older librdkafka (down to the floor, 2.13, run
        by the floors job) only the names added since may be unknown."""
        import confluent_kafka

        from eventwire._config import NON_SECRET_PROPERTIES

        unknown = []
        for key in sorted(NON_SECRET_PROPERTIES):
            # An invalid value: librdkafka checks the name first, then refuses it.
            value = "127.0.0.1:9" if key in ("bootstrap.servers", "metadata.broker.list") else "x!"
            try:
                confluent_kafka.Producer({key: value})
            except confluent_kafka.KafkaException as exc:
                if "No such configuration property" in str(exc):
                    unknown.append(key)
        if confluent_kafka.libversion()[1] >= 0x02100000:  # 2.16 and later
            assert unknown == []
        else:
            assert set(unknown) <= NEWER_THAN_THE_FLOOR, unknown
