"""KafkaConfig from a file (TOML, properties) and from the environment (eventwire._config_load)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventwire import ConfigurationError, KafkaConfig, Secret
from eventwire._config import Scrubber
from eventwire._config_load import load_section, read_env

PASSWORD = "pa55-w0rd-from-a-secret-store"

#: What the devkit's secured cluster writes for each principal.
DEVKIT_CLIENT_FILE = f"""\
# eventwire devkit: client config for principal alice
bootstrap.servers=127.0.0.1:39093
security.protocol=SASL_SSL
ssl.ca.location=/tmp/devkit/ca.pem
sasl.mechanism=SCRAM-SHA-512
sasl.username=alice
sasl.password={PASSWORD}
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _texts(config: KafkaConfig) -> str:
    """Everything a config may show: repr, str, redacted(), repr of its fields."""
    return " ".join(
        [repr(config), str(config), str(config.redacted()), repr(config.overrides)]
        + [repr(getattr(config, f)) for f in config.__dataclass_fields__]
    )


class TestPropertiesFile:
    def test_reads_the_devkit_client_file(self, tmp_path: Path) -> None:
        """The properties file the secured local cluster writes loads into every field."""
        config = KafkaConfig.from_file(_write(tmp_path, "alice.properties", DEVKIT_CLIENT_FILE))
        props = config.to_librdkafka()
        assert config.bootstrap_servers == "127.0.0.1:39093"
        assert config.security_protocol == "SASL_SSL"
        assert config.sasl_mechanism == "SCRAM-SHA-512"
        assert config.sasl_username == "alice"
        assert config.ssl_ca_location == "/tmp/devkit/ca.pem"
        assert isinstance(config.sasl_password, Secret)
        assert props["sasl.password"] == PASSWORD
        assert PASSWORD not in _texts(config)

    def test_reads_the_devkit_oauthbearer_client_file(self, tmp_path: Path) -> None:
        """The devkit's OAUTHBEARER file (unsecured JWT, principal in the config) loads, its
        sasl.oauthbearer.config masked."""
        text = (
            "# eventwire devkit secured cluster: producer over OAUTHBEARER\n"
            "bootstrap.servers=127.0.0.1:39093\nsecurity.protocol=SASL_SSL\n"
            "ssl.ca.location=/tmp/devkit/ca.pem\nsasl.mechanism=OAUTHBEARER\n"
            "enable.sasl.oauthbearer.unsecure.jwt=true\n"
            "sasl.oauthbearer.config=principal=producer\n"
        )
        config = KafkaConfig.from_file(_write(tmp_path, "producer-oauthbearer.properties", text))
        props = config.to_librdkafka()
        assert props["sasl.oauthbearer.config"] == "principal=producer"
        assert props["enable.sasl.oauthbearer.unsecure.jwt"] == "true"
        assert config.redacted()["sasl.oauthbearer.config"] == "***"

    def test_comments_blank_lines_and_spaces(self, tmp_path: Path) -> None:
        """'#' and '!' lines and blank lines are skipped; spaces around key and value go;
        a value keeps any '=' after the first one."""
        text = (
            "\n! comment\n  # comment\n bootstrap.servers = h:9092 \nsasl.oauthbearer.config=a=b\n"
        )
        config = KafkaConfig.from_file(_write(tmp_path, "c.conf", text))
        assert config.bootstrap_servers == "h:9092"
        assert config.to_librdkafka()["sasl.oauthbearer.config"] == "a=b"

    def test_a_line_without_equals_is_named_by_number(self, tmp_path: Path) -> None:
        """A line that is not key=value names the file and its line number, not its text."""
        path = _write(tmp_path, "c.properties", f"bootstrap.servers=h:1\n{PASSWORD}\n")
        with pytest.raises(ConfigurationError, match="line 2") as info:
            KafkaConfig.from_file(path)
        assert str(path) in str(info.value)
        assert PASSWORD not in str(info.value)

    def test_a_key_given_twice_is_refused(self, tmp_path: Path) -> None:
        """The same key on two lines is an error naming both lines."""
        path = _write(tmp_path, "c.properties", "bootstrap.servers=h:1\nbootstrap.servers=h:2\n")
        with pytest.raises(ConfigurationError, match="line 2.*also line 1"):
            KafkaConfig.from_file(path)


class TestTomlFile:
    def test_dotted_and_quoted_keys_profile_and_lists(self, tmp_path: Path) -> None:
        """Dotted and quoted keys are librdkafka names, lists are comma-joined, profile is
        eventwire's, and security.protocol may be lower-case."""
        text = """
profile = "low_latency"
bootstrap.servers = ["b1:9093", "b2:9093"]
security.protocol = "sasl_ssl"
sasl.mechanism = "PLAIN"
"sasl.username" = "svc"
"api.version.request" = true
linger.ms = 7

[relay]
metrics_port = 9464
"""
        config = KafkaConfig.from_file(_write(tmp_path, "kafka.toml", text))
        props = config.to_librdkafka()
        assert config.profile == "low_latency"
        assert config.bootstrap_servers == "b1:9093,b2:9093"
        assert config.security_protocol == "SASL_SSL"
        assert config.sasl_username == "svc"
        assert props["linger.ms"] == 7
        assert props["api.version.request"] is True

    def test_invalid_toml_names_the_file(self, tmp_path: Path) -> None:
        """A TOML syntax error names the file and the position."""
        path = _write(tmp_path, "bad.toml", "bootstrap.servers = \n")
        with pytest.raises(ConfigurationError, match="bad.toml.*not valid TOML"):
            KafkaConfig.from_file(path)

    def test_a_table_value_of_the_wrong_type(self, tmp_path: Path) -> None:
        """A TOML date (or any non-scalar) is refused, naming the key."""
        path = _write(tmp_path, "c.toml", 'bootstrap.servers = "h:1"\nlinger.ms = 1979-05-27\n')
        with pytest.raises(ConfigurationError, match="'linger.ms'"):
            KafkaConfig.from_file(path)


class TestUnknownAndUnreadable:
    @pytest.mark.parametrize("name", ["c.toml", "c.properties"])
    def test_unknown_key_is_named_with_a_suggestion(self, tmp_path: Path, name: str) -> None:
        """A key that is no librdkafka producer property is refused by name, with the close one."""
        line = '"bootstrap.server" = "h:1"' if name.endswith("toml") else "bootstrap.server=h:1"
        with pytest.raises(ConfigurationError, match="'bootstrap.server'.*'bootstrap.servers'"):
            KafkaConfig.from_file(_write(tmp_path, name, line + "\n"))

    def test_a_consumer_property_is_unknown(self, tmp_path: Path) -> None:
        """group.id (a consumer property) is refused: the config is a producer's."""
        path = _write(tmp_path, "c.properties", "bootstrap.servers=h:1\ngroup.id=g\n")
        with pytest.raises(ConfigurationError, match="'group.id'"):
            KafkaConfig.from_file(path)

    def test_missing_file_is_named(self, tmp_path: Path) -> None:
        """A config file that cannot be read is named, with the reason."""
        with pytest.raises(ConfigurationError, match="nope.toml.*No such file"):
            KafkaConfig.from_file(tmp_path / "nope.toml")

    @pytest.mark.parametrize("key", ["error_cb", "logger", "oauth_cb"])
    def test_callbacks_and_reserved_keys_cannot_come_from_a_file(
        self, tmp_path: Path, key: str
    ) -> None:
        """A callback or eventwire-owned key in a file is refused, saying why."""
        path = _write(tmp_path, "c.properties", f"bootstrap.servers=h:1\n{key}=x\n")
        with pytest.raises(ConfigurationError, match=f"'{key}' cannot be set here"):
            KafkaConfig.from_file(path)

    def test_no_bootstrap_anywhere(self) -> None:
        """Without bootstrap.servers in any source the error says where to give it."""
        with pytest.raises(ConfigurationError, match="EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS"):
            KafkaConfig.load(environ={})


class TestSecretsByReference:
    def test_env_reference_in_toml(self, tmp_path: Path) -> None:
        """sasl.password.env names a variable whose value becomes a Secret."""
        path = _write(
            tmp_path, "c.toml", 'bootstrap.servers = "h:1"\nsasl.password.env = "KAFKA_PW"\n'
        )
        config = KafkaConfig.load(path, environ={"KAFKA_PW": PASSWORD})
        assert config.to_librdkafka()["sasl.password"] == PASSWORD
        assert PASSWORD not in _texts(config)

    def test_file_reference_relative_to_the_config_file(self, tmp_path: Path) -> None:
        """sasl.password.file reads a file (relative to the config file), dropping one newline."""
        (tmp_path / "secrets").mkdir()
        _write(tmp_path / "secrets", "kafka", PASSWORD + "\n")
        path = _write(
            tmp_path, "c.properties", "bootstrap.servers=h:1\nsasl.password.file=secrets/kafka\n"
        )
        config = KafkaConfig.from_file(path)
        assert config.to_librdkafka()["sasl.password"] == PASSWORD
        assert PASSWORD not in _texts(config)

    def test_a_missing_variable_of_a_secret_names_the_key_and_file_not_the_reference(
        self, tmp_path: Path
    ) -> None:
        """An unset variable referenced for a secret: the key, the file and the reference's
        key are named, the reference's text (it may be the secret itself) is not."""
        path = _write(
            tmp_path, "c.toml", 'bootstrap.servers = "h:1"\n"sasl.password.env" = "NOT_SET_PW"\n'
        )
        pattern = (
            r"sasl.password: config file .*c\.toml' \(sasl\.password\.env\) must hold the NAME"
        )
        with pytest.raises(ConfigurationError, match=pattern) as info:
            KafkaConfig.load(path, environ={})
        assert "NOT_SET_PW" not in str(info.value)

    def test_a_missing_secret_file_names_the_key_and_variable_not_the_path(self) -> None:
        """A file referenced for a secret that does not exist: the key and the variable
        are named, the path (it may be the secret itself) is not."""
        env = {
            "EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": "h:1",
            "EVENTWIRE_KAFKA_SSL_KEY_PASSWORD_FILE": "/no/such",
        }
        pattern = r"ssl.key.password: environment variable .*_FILE must hold the PATH"
        with pytest.raises(ConfigurationError, match=pattern) as info:
            KafkaConfig.from_env(environ=env)
        assert "/no/such" not in str(info.value)

    def test_direct_and_by_reference_at_once_is_refused(self, tmp_path: Path) -> None:
        """A property given directly and by reference in one file is ambiguous: refused."""
        text = f"bootstrap.servers=h:1\nsasl.password={PASSWORD}\nsasl.password.env=X\n"
        with pytest.raises(ConfigurationError, match="'sasl.password' is given twice") as info:
            KafkaConfig.from_file(_write(tmp_path, "c.properties", text))
        assert PASSWORD not in str(info.value)

    def test_librdkafka_file_properties_are_paths_not_references(self, tmp_path: Path) -> None:
        """sasl.oauthbearer.assertion.file is librdkafka's own property, passed as a path."""
        text = "bootstrap.servers=h:1\nsasl.oauthbearer.assertion.file=/run/assertion.jwt\n"
        config = KafkaConfig.from_file(_write(tmp_path, "c.properties", text))
        assert config.to_librdkafka()["sasl.oauthbearer.assertion.file"] == "/run/assertion.jwt"


class TestASecretWrittenInTheWrongPlaceIsNotShown:
    """A secret typed where a path, or a key, belongs is not echoed in the error."""

    def test_a_file_reference_holding_no_path_is_not_shown(self, tmp_path: Path) -> None:
        path = _write(
            tmp_path, "c.toml", f'bootstrap.servers = "h:1"\nsasl.password.file = "{PASSWORD}"\n'
        )
        with pytest.raises(ConfigurationError, match="must hold the PATH of a file") as info:
            KafkaConfig.load(path, environ={})
        assert PASSWORD not in str(info.value)

    def test_a_key_run_on_from_a_secret_property_is_not_shown(self, tmp_path: Path) -> None:
        """`sasl.password-<secret>=` (a mistyped separator) is not quoted; the hint stays."""
        text = f"bootstrap.servers=h:1\nsasl.password-{PASSWORD}=\n"
        with pytest.raises(ConfigurationError, match="did you mean 'sasl.password'") as info:
            KafkaConfig.from_file(_write(tmp_path, "c.properties", text))
        assert PASSWORD not in str(info.value)

    def test_a_numeric_secret_is_a_secret_too(self, tmp_path: Path) -> None:
        """ssl.keystore.password = 98765432 (a TOML int) is scrubbed like any secret."""
        path = _write(
            tmp_path, "c.toml", 'bootstrap.servers = "h:1"\nssl.keystore.password = 98765432\n'
        )
        config = KafkaConfig.load(path, environ={})
        assert config.secret_values() == ["98765432"]
        assert config.to_librdkafka()["ssl.keystore.password"] == "98765432"
        assert "98765432" not in _texts(config)


class TestEnvironment:
    def test_names_map_to_properties(self) -> None:
        """'_' is '.', '__' is '_', and PROFILE is eventwire's profile."""
        env = {
            "EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": "h:9092",
            "EVENTWIRE_KAFKA_SASL_PASSWORD": PASSWORD,
            "EVENTWIRE_KAFKA_LOG__LEVEL": "3",
            "EVENTWIRE_KAFKA_PROFILE": "high_throughput",
            "EVENTWIRE_OTHER": "ignored",
        }
        config = KafkaConfig.from_env(environ=env)
        props = config.to_librdkafka()
        assert (config.bootstrap_servers, config.profile) == ("h:9092", "high_throughput")
        assert props["sasl.password"] == PASSWORD
        assert props["log_level"] == "3"
        assert PASSWORD not in _texts(config)

    def test_a_custom_prefix(self) -> None:
        """from_env(prefix) reads only that prefix."""
        env = {"APP_KAFKA_BOOTSTRAP_SERVERS": "a:1", "EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": "b:1"}
        assert KafkaConfig.from_env("APP_KAFKA_", environ=env).bootstrap_servers == "a:1"

    def test_unknown_variable_is_named_without_its_value(self) -> None:
        """A prefixed variable that maps to no property names the variable, never its value."""
        env = {
            "EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": "h:1",
            "EVENTWIRE_KAFKA_SASL_PASSWROD": PASSWORD,
        }
        with pytest.raises(ConfigurationError, match="EVENTWIRE_KAFKA_SASL_PASSWROD") as info:
            KafkaConfig.from_env(environ=env)
        assert PASSWORD not in str(info.value)

    def test_the_devkit_cache_variable_is_not_a_property(self) -> None:
        """EVENTWIRE_KAFKA_CACHE (the devkit's jar cache) is skipped, not refused."""
        assert read_env(environ={"EVENTWIRE_KAFKA_CACHE": "/tmp/jars"}) == {}

    def test_empty_variables_count_as_unset(self) -> None:
        """A variable set to '' is ignored, as if unset."""
        assert read_env(environ={"EVENTWIRE_KAFKA_LINGER_MS": ""}) == {}

    def test_environment_overrides_the_file(self, tmp_path: Path) -> None:
        """load(): each property from the environment wins over the file's."""
        path = _write(tmp_path, "c.toml", 'bootstrap.servers = "file:1"\nlinger.ms = 7\nacks = 1\n')
        env = {"EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": "env:2", "EVENTWIRE_KAFKA_LINGER_MS": "9"}
        props = KafkaConfig.load(path, environ=env).to_librdkafka()
        assert (props["bootstrap.servers"], props["linger.ms"], props["acks"]) == ("env:2", "9", 1)

    def test_an_env_value_replaces_a_file_reference_unresolved(self, tmp_path: Path) -> None:
        """A password from the environment replaces the file's reference, which is not followed."""
        path = _write(
            tmp_path, "c.toml", 'bootstrap.servers = "h:1"\nsasl.password.env = "UNSET"\n'
        )
        config = KafkaConfig.load(path, environ={"EVENTWIRE_KAFKA_SASL_PASSWORD": PASSWORD})
        assert config.to_librdkafka()["sasl.password"] == PASSWORD

    def test_the_config_variable_names_the_file(self, tmp_path: Path) -> None:
        """EVENTWIRE_KAFKA_CONFIG names the file load() reads when none is given."""
        path = _write(tmp_path, "c.properties", "bootstrap.servers=from-file:1\n")
        config = KafkaConfig.load(environ={"EVENTWIRE_KAFKA_CONFIG": str(path)})
        assert config.bootstrap_servers == "from-file:1"

    def test_python_overrides_come_last(self, tmp_path: Path) -> None:
        """load(overrides=...) wins over the file and the environment."""
        env = {"EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": "h:1", "EVENTWIRE_KAFKA_LINGER_MS": "9"}
        props = KafkaConfig.load(environ=env, overrides={"linger.ms": 1}).to_librdkafka()
        assert props["linger.ms"] == 1

    def test_a_bad_value_names_its_source(self) -> None:
        """A value the constructor refuses is named together with where it came from."""
        env = {"EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": "h:1", "EVENTWIRE_KAFKA_PROFILE": "fast"}
        with pytest.raises(ConfigurationError, match="profile 'fast'.*EVENTWIRE_KAFKA_"):
            KafkaConfig.from_env(environ=env)


class TestSections:
    def test_relay_table_and_relay_variables(self, tmp_path: Path) -> None:
        """The [relay] table (or relay.* lines) is read, with EVENTWIRE_RELAY_* over it."""
        toml = _write(
            tmp_path,
            "c.toml",
            'bootstrap.servers = "h:1"\n[relay]\nbatch_size = 5\nbreaker = true\n',
        )
        props = _write(tmp_path, "c.properties", "bootstrap.servers=h:1\nrelay.batch_size=6\n")
        env = {"EVENTWIRE_RELAY_BREAKER": "false"}
        assert load_section("relay", toml, env_prefix="EVENTWIRE_RELAY_", environ=env) == {
            "batch_size": 5,
            "breaker": "false",
        }
        assert load_section("relay", props, env_prefix="EVENTWIRE_RELAY_", environ={}) == {
            "batch_size": "6"
        }


class TestNoSecretInAnyOutput:
    def test_every_route_and_every_error_is_free_of_the_secret(self, tmp_path: Path) -> None:
        """The secret, given literally, by variable, by file or in the environment, appears in
        no repr, redacted() dump or loader error, and is scrubbed from librdkafka's text."""
        secret_file = _write(tmp_path, "pw", PASSWORD + "\n")
        env = {"KAFKA_PW": PASSWORD, "EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": "h:1"}
        configs = [
            KafkaConfig.from_file(_write(tmp_path, "a.properties", DEVKIT_CLIENT_FILE)),
            KafkaConfig.load(
                _write(
                    tmp_path,
                    "b.toml",
                    'bootstrap.servers = "h:1"\nsasl.password.env = "KAFKA_PW"\n',
                ),
                environ=env,
            ),
            KafkaConfig.from_env(
                environ={**env, "EVENTWIRE_KAFKA_SASL_PASSWORD_FILE": str(secret_file)}
            ),
            KafkaConfig.from_env(environ={**env, "EVENTWIRE_KAFKA_SSL_KEY_PASSWORD": PASSWORD}),
        ]
        texts = [_texts(c) for c in configs]
        failing = [
            f"bootstrap.servers=h:1\nsasl.password={PASSWORD}\nsasl.password.env=X\n",
            f"bootstrap.servers=h:1\nsasl.password={PASSWORD}\nsasl.pasword={PASSWORD}\n",
            f"bootstrap.servers=h:1\nsasl.password={PASSWORD}\nprofile=fast\n",
            f"bootstrap.servers=h:1\nsasl.password={PASSWORD}\n{PASSWORD}\n",
        ]
        for i, text in enumerate(failing):
            with pytest.raises(ConfigurationError) as info:
                KafkaConfig.from_file(_write(tmp_path, f"bad{i}.properties", text))
            texts.append(str(info.value))
        for config in configs:
            assert Scrubber(config.secret_values())(f"auth failed for {PASSWORD}") == (
                "auth failed for ***"
            )
        assert not [t for t in texts if PASSWORD in t]


class TestPropertiesOnlyTheInstalledLibrdkafkaKnows:
    """eventwire's lists are librdkafka 2.16's; a property they lack that the installed
    librdkafka knows (client.software.name: KIP-511, not in the lists) is accepted from a
    file and the environment, masked (the lists decide redaction only), and reaches the
    real librdkafka producer."""

    def test_a_file_sets_a_property_eventwire_does_not_list(self, tmp_path: Path) -> None:
        from eventwire._config_load import KNOWN_PROPERTIES
        from eventwire.transports.kafka import KafkaTransport

        assert "client.software.name" not in KNOWN_PROPERTIES  # else this test proves nothing
        path = _write(
            tmp_path,
            "c.properties",
            "bootstrap.servers=127.0.0.1:9\nclient.software.name=shop-orders\n",
        )
        config = KafkaConfig.from_file(path)
        assert config.to_librdkafka()["client.software.name"] == "shop-orders"
        assert config.redacted()["client.software.name"] == "***"
        assert "shop-orders" not in repr(config)
        transport = KafkaTransport(config, connect_timeout=None)  # librdkafka takes it
        transport.close(timeout=1)

    def test_the_environment_and_references_set_one_too(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """EVENTWIRE_KAFKA_CLIENT_SOFTWARE_VERSION, and `client.software.name.env = VAR` in a
        TOML file, are the unlisted properties client.software.version and .name."""
        monkeypatch.setenv("SOFTWARE_NAME", "shop-orders")
        path = _write(tmp_path, "c.toml", '"client.software.name.env" = "SOFTWARE_NAME"\n')
        config = KafkaConfig.load(
            path,
            environ={
                "EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": "h:9092",
                "EVENTWIRE_KAFKA_CLIENT_SOFTWARE_VERSION": "1.2.3",
                "SOFTWARE_NAME": "shop-orders",
            },
        )
        props = config.to_librdkafka()
        assert (props["client.software.name"], props["client.software.version"]) == (
            "shop-orders",
            "1.2.3",
        )

    def test_a_name_librdkafka_does_not_know_is_refused_naming_its_version(
        self, tmp_path: Path
    ) -> None:
        """A typo is refused with the key, the file and line, the installed librdkafka's
        version, and the closest known name."""
        from eventwire.transports.kafka import librdkafka_version

        path = _write(tmp_path, "c.properties", "bootstrap.servers=h:1\nlinger.msec=5\n")
        with pytest.raises(ConfigurationError) as raised:
            KafkaConfig.from_file(path)
        message = str(raised.value)
        assert "line 2: 'linger.msec' is not a property of the installed librdkafka" in message
        assert f"({librdkafka_version()})" in message
        assert "did you mean 'linger.ms'?" in message

    def test_an_unknown_secret_looking_name_is_refused_without_its_value(
        self, tmp_path: Path
    ) -> None:
        """A name librdkafka does not know is refused even if it looks secret, and its value
        (which may be a secret) is not in the message."""
        path = _write(tmp_path, "c.properties", "sasl.oauthbearer.token.secret=Leak3d-value\n")
        with pytest.raises(ConfigurationError) as raised:
            KafkaConfig.from_file(path)
        assert "'sasl.oauthbearer.token.secret'" in str(raised.value)
        assert "Leak3d" not in str(raised.value)

    def test_a_consumer_property_librdkafka_knows_is_still_refused(self, tmp_path: Path) -> None:
        """librdkafka knows group.id, but a producer ignores it: refused, saying so."""
        path = _write(tmp_path, "c.properties", "bootstrap.servers=h:1\ngroup.id=g\n")
        with pytest.raises(ConfigurationError, match="'group.id' is a librdkafka consumer"):
            KafkaConfig.from_file(path)

    def test_a_known_property_librdkafka_will_not_take_as_text_fails_naming_it(
        self, tmp_path: Path
    ) -> None:
        """socket_cb is librdkafka's but only settable through its C API: the file is read,
        and creating the producer raises ConfigurationError naming socket_cb."""
        from eventwire.transports.kafka import KafkaTransport

        path = _write(tmp_path, "c.properties", "bootstrap.servers=h:1\nsocket_cb=x\n")
        config = KafkaConfig.from_file(path)
        with pytest.raises(ConfigurationError, match='"socket_cb"'):
            KafkaTransport(config, connect_timeout=None)


def test_librdkafka_knows_asks_librdkafka_without_a_client() -> None:
    """librdkafka_knows: True for its properties (listed by eventwire or not), False for
    others; it creates no producer (no librdkafka thread is left behind)."""
    import threading

    from eventwire.transports.kafka import librdkafka_knows

    before = threading.active_count()
    assert librdkafka_knows("linger.ms")
    assert librdkafka_knows("client.software.name")
    assert not librdkafka_knows("linger.msec")
    assert not librdkafka_knows("eventwire.not-a-property")
    assert threading.active_count() == before


@pytest.mark.parametrize(
    ("name", "text"),
    [("c.toml", 'bootstrap.servers = "h:1"\n'), ("c.properties", "bootstrap.servers=h:1\n")],
)
def test_a_file_starting_with_a_byte_order_mark_is_read(
    tmp_path: Path, name: str, text: str
) -> None:
    """Windows editors write one; it failed as 'Invalid statement' or 'a key of 18 characters'."""
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert KafkaConfig.from_file(path).bootstrap_servers == "h:1"
