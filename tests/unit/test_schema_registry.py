"""eventwire.schema_registry without a server: confluent-kafka's MockSchemaRegistryClient,
the config loader, the Avro derivation, error translation and secrets."""

from __future__ import annotations

import datetime
import enum
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Literal

import fastavro
import msgspec
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from eventwire import ConfigurationError, Publisher, Route, SerializationContext, SerializationError
from eventwire.schema_registry import (
    AvroCodec,
    JsonSchemaCodec,
    RegistryError,
    SchemaIncompatibleError,
    SchemaNotFoundError,
    SchemaRegistryConfig,
    SchemaRegistryUnavailableError,
    avro_schema,
    json_schema,
)
from eventwire.transports.memory import MemoryTransport

CODECS = [JsonSchemaCodec, AvroCodec]


class Color(enum.Enum):
    red = "red"
    blue = "blue"


class Priority(enum.IntEnum):
    low = 1
    high = 2


class Line(msgspec.Struct, frozen=True):
    sku: str
    quantity: int


class Order(msgspec.Struct, frozen=True):
    order_id: str
    total: float
    lines: list[Line]
    paid: bool = False
    note: str | None = None
    color: Color = Color.red
    priority: Priority = Priority.low
    kind: Literal["web", "shop"] = "web"
    tags: dict[str, int] = {}
    at: datetime.datetime | None = None
    day: datetime.date | None = None
    ref: uuid.UUID | None = None
    blob: bytes = b""


def full_order() -> Order:
    return Order(
        order_id="o-1",
        total=19.5,
        lines=[Line("a", 1), Line("b", 2)],
        paid=True,
        note="hi",
        color=Color.blue,
        priority=Priority.high,
        kind="shop",
        tags={"x": 1},
        at=datetime.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC),
        day=datetime.date(2024, 5, 1),
        ref=uuid.UUID(int=7),
        blob=b"\x00\xff",
    )


@pytest.fixture
def mock_client() -> Any:
    return SchemaRegistryClient.new_client({"url": "mock://registry"})


def ctx(topic: str = "orders") -> SerializationContext:
    return SerializationContext(topic)


class TestRoundTrip:
    @pytest.mark.parametrize("codec_cls", CODECS)
    def test_encode_decode_gives_the_event_back(self, codec_cls: Any, mock_client: Any) -> None:
        """Every supported field type survives encode_for then decode_from."""
        codec = codec_cls(mock_client)
        data = codec.encode_for(full_order(), ctx())
        assert data[0] == 0
        assert codec.decode_from(data, Order, ctx()) == full_order()

    @pytest.mark.parametrize("codec_cls", CODECS)
    def test_dataschema_header_names_the_schema_id(self, codec_cls: Any, mock_client: Any) -> None:
        """encode_for appends ce_dataschema = <url>/schemas/ids/<id>, the id of the prefix."""
        codec = codec_cls(mock_client)
        context = ctx()
        data = codec.encode_for(full_order(), context)
        schema_id = int.from_bytes(data[1:5], "big")
        assert context.headers == [
            ("ce_dataschema", f"mock://registry/schemas/ids/{schema_id}".encode())
        ]

    def test_dataschema_can_be_switched_off(self, mock_client: Any) -> None:
        """dataschema=False adds no header."""
        context = ctx()
        JsonSchemaCodec(mock_client, dataschema=False).encode_for(full_order(), context)
        assert context.headers == []

    @pytest.mark.parametrize("codec_cls", CODECS)
    def test_through_a_publisher(self, codec_cls: Any, mock_client: Any) -> None:
        """A publisher with the codec writes framed values, content-type and ce_dataschema."""
        transport = MemoryTransport()
        codec = codec_cls(mock_client)
        routes = {Order: Route(topic="orders", key="order_id")}
        with Publisher(transport=transport, codec=codec, routes=routes) as publisher:
            publisher.publish(full_order()).result(timeout=5)
        [record] = transport.records("orders")
        assert record.header("content-type") == codec.content_type.encode()
        assert (record.header("ce_dataschema") or b"").startswith(b"mock://registry/schemas/ids/")
        assert codec.decode_from(record.value, Order, ctx()) == full_order()

    def test_nan_is_refused_by_json(self, mock_client: Any) -> None:
        """JSON cannot carry NaN: a SerializationError naming the field, before the registry."""
        event = Order("o", float("nan"), [])
        with pytest.raises(SerializationError, match=r"\$\.total"):
            JsonSchemaCodec(mock_client).encode_for(event, ctx())


class TestSubjects:
    @pytest.mark.parametrize("codec_cls", CODECS)
    @pytest.mark.parametrize(
        ("strategy", "expected"),
        [
            ("topic", "orders-value"),
            ("record", f"{__name__}.Order"),
            ("topic_record", f"orders-{__name__}.Order"),
        ],
    )
    def test_strategies_name_the_subject(
        self, codec_cls: Any, mock_client: Any, strategy: str, expected: str
    ) -> None:
        """topic, record and topic_record strategies register under Confluent's names."""
        codec = codec_cls(mock_client, subject_name_strategy=strategy)
        codec.encode_for(full_order(), ctx())
        assert codec.subject_for(Order, "orders") == expected
        assert mock_client.get_subjects() == [expected]

    def test_unknown_strategy_is_refused(self, mock_client: Any) -> None:
        """A strategy name that is not one of the three is a ConfigurationError."""
        with pytest.raises(ConfigurationError, match="subject_name_strategy"):
            JsonSchemaCodec(mock_client, subject_name_strategy="bogus")  # type: ignore[arg-type]

    def test_use_latest_version_writes_with_the_registered_schema(self, mock_client: Any) -> None:
        """use_latest_version (auto_register off) writes with the subject's latest schema id."""
        JsonSchemaCodec(mock_client).encode_for(full_order(), ctx())  # registers
        latest = mock_client.get_latest_version("orders-value").schema_id
        data = JsonSchemaCodec(mock_client, use_latest_version=True).encode_for(full_order(), ctx())
        assert int.from_bytes(data[1:5], "big") == latest

    def test_not_registered_without_auto_register(self, mock_client: Any) -> None:
        """auto_register=False and nothing registered: SchemaNotFoundError naming the subject."""
        codec = JsonSchemaCodec(mock_client, auto_register=False)
        with pytest.raises(SchemaNotFoundError, match="orders-value") as caught:
            codec.encode_for(full_order(), ctx())
        assert caught.value.subject == "orders-value"

    def test_auto_register_and_use_latest_conflict(self, mock_client: Any) -> None:
        """Both switches on is a ConfigurationError."""
        with pytest.raises(ConfigurationError, match="cannot both"):
            JsonSchemaCodec(mock_client, auto_register=True, use_latest_version=True)

    def test_explicit_schema_is_used(self, mock_client: Any) -> None:
        """schemas={Type: text} registers that schema, not a derived one."""
        schema = json.dumps(
            {
                "type": "record",
                "name": "Line",
                "namespace": "theirs",
                "fields": [{"name": "sku", "type": "string"}, {"name": "quantity", "type": "long"}],
            }
        )
        codec = AvroCodec(mock_client, schemas={Line: schema}, subject_name_strategy="record")
        codec.encode_for(Line("a", 1), ctx())
        assert mock_client.get_subjects() == ["theirs.Line"]


class _Failing:
    """A registry client whose every call raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def config(self) -> dict[str, str]:
        return {
            "url": "https://user:s3cr3t-pw@registry.example:8081",
            "basic.auth.user.info": "u:topsecret",
        }

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self.error

        return fail


class TestErrors:
    @pytest.mark.parametrize(
        ("error", "expected"),
        [
            (SchemaRegistryError(409, 0, "Incompatible artifact"), SchemaIncompatibleError),
            (SchemaRegistryError(404, 40401, "Subject not found"), SchemaNotFoundError),
            (SchemaRegistryError(401, 401, "Unauthorized"), RegistryError),
            (SchemaRegistryError(503, 50003, "down"), SchemaRegistryUnavailableError),
            (SchemaRegistryError(422, 42201, "Invalid schema"), RegistryError),
            (ConnectionRefusedError(111, "Connection refused"), SchemaRegistryUnavailableError),
        ],
    )
    def test_registry_failures_become_typed_serialization_errors(
        self, error: Exception, expected: type[Exception]
    ) -> None:
        """Each registry failure is a SerializationError subclass naming the subject; no
        credential of the URL or the user info appears in it."""
        codec = JsonSchemaCodec(_Failing(error))
        with pytest.raises(expected) as caught:
            codec.encode_for(full_order(), ctx())
        assert isinstance(caught.value, SerializationError)
        text = str(caught.value)
        assert "orders-value" in text
        assert "s3cr3t-pw" not in text and "topsecret" not in text
        assert "registry.example:8081" in text

    def test_publish_raises_before_anything_is_enqueued(self) -> None:
        """publish() raises the registry's typed error and the transport holds nothing."""
        codec = JsonSchemaCodec(_Failing(SchemaRegistryError(409, 0, "no")))
        transport = MemoryTransport()
        routes = {Order: Route(topic="orders", key="order_id")}
        with Publisher(transport=transport, codec=codec, routes=routes) as publisher:
            with pytest.raises(SchemaIncompatibleError):
                publisher.publish(full_order())
        assert transport.records() == []

    def test_unavailable_is_a_connection_error(self) -> None:
        """SchemaRegistryUnavailableError can be caught as ConnectionError too."""
        assert issubclass(SchemaRegistryUnavailableError, ConnectionError)
        assert issubclass(SchemaRegistryUnavailableError, SerializationError)

    def test_record_that_does_not_fit_the_type(self, mock_client: Any) -> None:
        """Decoding a record of another shape is a SerializationError naming the type."""
        data = JsonSchemaCodec(mock_client).encode_for(Line("a", 1), ctx("lines"))
        with pytest.raises(SerializationError, match="Order"):
            JsonSchemaCodec(mock_client).decode_from(data, Order, ctx("lines"))


class TestConfig:
    def test_toml_section_beside_kafka(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The [schema_registry] table of the Kafka config file; KafkaConfig still loads it."""
        from eventwire import KafkaConfig

        secret = tmp_path / "token"
        secret.write_text("tok-123456\n")
        path = tmp_path / "kafka.toml"
        path.write_text(
            'bootstrap.servers = "k:9092"\n\n[schema_registry]\n'
            'url = "https://sr:8081"\nbearer_auth_token.file = "token"\ntimeout = 3\n'
        )
        path.chmod(0o600)
        config = SchemaRegistryConfig.load(path, environ={})
        assert config.url == "https://sr:8081"
        assert (
            config.bearer_auth_token is not None and config.bearer_auth_token.get() == "tok-123456"
        )
        assert config.timeout == 3.0
        assert "tok-123456" not in repr(config)
        assert KafkaConfig.from_file(path).bootstrap_servers == "k:9092"

    def test_environment_wins_and_names_the_file_through_kafka_config(self, tmp_path: Path) -> None:
        """EVENTWIRE_KAFKA_CONFIG names the file; EVENTWIRE_SCHEMA_REGISTRY_* override it."""
        path = tmp_path / "kafka.properties"
        path.write_text("bootstrap.servers=k:9092\nschema_registry.url=http://file:8081\n")
        environ = {
            "EVENTWIRE_KAFKA_CONFIG": str(path),
            "EVENTWIRE_SCHEMA_REGISTRY_URL": "http://env:8081",
            "EVENTWIRE_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "user:pa55word",
        }
        config = SchemaRegistryConfig.load(environ=environ)
        assert config.url == "http://env:8081"
        assert config.client_conf()["basic.auth.user.info"] == "user:pa55word"
        assert "pa55word" not in repr(config)

    def test_secret_by_variable_reference(self, tmp_path: Path) -> None:
        """basic_auth_user_info.env = "VAR" reads the variable."""
        path = tmp_path / "k.toml"
        path.write_text(
            '[schema_registry]\nurl = "http://sr"\nbasic_auth_user_info.env = "SR_INFO"\n'
        )
        config = SchemaRegistryConfig.load(path, environ={"SR_INFO": "a:b-secret"})
        assert config.basic_auth_user_info is not None
        assert config.basic_auth_user_info.get() == "a:b-secret"

    def test_a_secret_pasted_where_its_file_belongs_is_never_shown(self, tmp_path: Path) -> None:
        """basic_auth_user_info.file = "user:s3cret" (the secret, not a path): the error
        says the file cannot be read and what belongs there, without quoting it."""
        path = tmp_path / "k.toml"
        path.write_text(
            '[schema_registry]\nurl = "http://sr"\nbasic_auth_user_info.file = "user:s3cret-pw"\n'
        )
        with pytest.raises(ConfigurationError, match="must be the path of a file") as caught:
            SchemaRegistryConfig.load(path, environ={})
        assert "s3cret-pw" not in str(caught.value)

    def test_url_credentials_are_masked(self) -> None:
        """A URL with user:password@ is shown masked in repr and in the codec's repr."""
        config = SchemaRegistryConfig(url="https://me:hunter22@sr:8081")
        assert "hunter22" not in repr(config)
        assert "hunter22" in config.secret_values()
        codec = JsonSchemaCodec(config)
        assert "hunter22" not in repr(codec)

    def test_no_url_anywhere(self) -> None:
        """Without a url the error says where to give it."""
        with pytest.raises(ConfigurationError, match="EVENTWIRE_SCHEMA_REGISTRY_URL"):
            SchemaRegistryConfig.load(environ={})

    def test_unknown_key_is_named_without_its_value(self) -> None:
        """An unknown key is refused by name; its value is not shown."""
        with pytest.raises(ConfigurationError, match="'pasword'") as caught:
            SchemaRegistryConfig.load(
                environ={
                    "EVENTWIRE_SCHEMA_REGISTRY_URL": "http://x",
                    "EVENTWIRE_SCHEMA_REGISTRY_PASWORD": "v3ry-s3cret",
                }
            )
        assert "v3ry-s3cret" not in str(caught.value)

    def test_basic_auth_must_be_user_colon_password(self) -> None:
        """A user info without ':' is refused, without being shown."""
        with pytest.raises(ConfigurationError, match="user:password") as caught:
            SchemaRegistryConfig(url="http://x", basic_auth_user_info="justatoken")  # type: ignore[arg-type]
        assert "justatoken" not in str(caught.value)


class TestAvroDerivation:
    def test_mapping_of_every_supported_type(self) -> None:
        """str/int/float/bool/bytes, Optional, list, dict, nested Struct, enums, Literal, time."""
        schema = avro_schema(Order)
        fields = {f["name"]: f for f in schema["fields"]}
        assert schema["name"] == "Order" and schema["namespace"] == __name__
        assert fields["order_id"]["type"] == "string"
        assert fields["total"]["type"] == "double"
        assert fields["paid"] == {"name": "paid", "type": "boolean", "default": False}
        assert fields["note"] == {"name": "note", "type": ["null", "string"], "default": None}
        assert fields["lines"]["type"]["type"] == "array"
        assert fields["lines"]["type"]["items"]["type"] == "record"
        assert fields["color"]["type"]["symbols"] == ["red", "blue"]
        assert fields["color"]["default"] == "red"
        assert fields["priority"]["type"] == "long"
        assert fields["kind"]["type"]["name"] == "Order_kind"
        assert sorted(fields["kind"]["type"]["symbols"]) == ["shop", "web"]
        assert fields["tags"] == {
            "name": "tags",
            "type": {"type": "map", "values": "long"},
            "default": {},
        }
        assert fields["at"]["type"][1] == {"type": "long", "logicalType": "timestamp-micros"}
        assert fields["blob"]["type"] == "bytes"
        fastavro.parse_schema(schema)  # a valid Avro schema

    def test_recursive_type_refers_to_itself_by_name(self) -> None:
        """A Struct that contains itself is a named record referenced by its full name."""
        schema = avro_schema(Node)
        assert schema["fields"][1]["type"] == {"type": "array", "items": f"{__name__}.Node"}
        fastavro.parse_schema(schema)

    def test_unsupported_type_names_the_field(self) -> None:
        """A field typed Any has no Avro form: the error names it and suggests schemas=."""
        with pytest.raises(ConfigurationError, match=r"Loose\.payload.*schemas="):
            avro_schema(Loose)

    def test_json_schema_has_the_type_as_root_with_a_title(self) -> None:
        """The JSON Schema's root is the event type, titled module.QualName."""
        schema = json.loads(json_schema(Order))
        assert schema["title"] == f"{__name__}.Order"
        assert schema["type"] == "object"
        assert "Line" in schema["$defs"]


class Node(msgspec.Struct):
    name: str
    children: list[Node] = []


class Loose(msgspec.Struct):
    payload: Any


def test_import_needs_no_registry_extra() -> None:
    """`import eventwire.schema_registry` works without confluent_kafka.schema_registry; making
    a codec then names the extra to install."""
    code = (
        "import sys; sys.modules['confluent_kafka.schema_registry'] = None\n"
        "import eventwire, eventwire.schema_registry as sr\n"
        "try:\n    sr.JsonSchemaCodec('http://x')\n"
        "except eventwire.ConfigurationError as e:\n    print(e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'eventwire[registry]'" in proc.stdout


@pytest.mark.parametrize("shape", ["struct", "dataclass", "attrs", "pydantic"])
def test_json_schema_codec_takes_every_event_shape(shape: str, mock_client: Any) -> None:
    """JsonSchemaCodec registers each shape's own JSON Schema (pydantic's, by alias, for a
    model) and decodes back to an equal instance of the class."""
    from ..shapes import SHAPES, make

    order_cls = SHAPES[shape][0]
    codec = JsonSchemaCodec(mock_client)
    data = codec.encode_for(make(shape), ctx())
    assert data[0] == 0
    back = codec.decode_from(data, order_cls, ctx())
    assert type(back) is order_cls
    assert back == make(shape)


class TestCarelessConfig:
    """Settings of the wrong type or shape are ConfigurationErrors that name the setting,
    at construction, never a bare Python error at the first publish."""

    def test_url_credentials_go_to_the_client_as_basic_auth_not_in_its_url(self) -> None:
        """The HTTP client logs the URLs it calls: credentials given in the URL are taken
        out of it and sent as basic auth (percent-decoded)."""
        conf = SchemaRegistryConfig(url="http://alice:p%40ss@registry:8081").client_conf()
        assert conf["url"] == "http://registry:8081"
        assert conf["basic.auth.user.info"] == "alice:p@ss"

    @pytest.mark.parametrize(
        ("kwargs", "named"),
        [
            ({"url": b"http://x"}, "url must be a str"),
            ({"url": "http://u:pw@x", "basic_auth_user_info": "a:b"}, "give them once"),
            ({"url": "http://u:a@x,http://v:b@y"}, "different ones"),
            ({"url": "http://x,http://u:pw@y"}, "some registries only"),
            ({"url": "http://x", "basic_auth_user_info": 12345}, "basic_auth_user_info"),
            ({"url": "http://x", "max_retries": "3"}, "max_retries must be a number"),
            ({"url": "http://x", "timeout": 0}, "timeout must be above 0"),
            ({"url": "http://x", "retries_wait_ms": 1.5}, "whole number"),
            ({"url": "http://x", "cache_latest_ttl_sec": float("nan")}, "cache_latest_ttl_sec"),
            ({"url": "http://x", "ssl_key_location": __file__}, "ssl_certificate_location"),
            ({"url": "http://x", "ssl_ca_location": "/nonexistent/ca.pem"}, "does not exist"),
        ],
    )
    def test_a_bad_setting_is_named(self, kwargs: dict[str, Any], named: str) -> None:
        with pytest.raises(ConfigurationError, match=named) as caught:
            SchemaRegistryConfig(**kwargs)
        assert "pw" not in str(caught.value) and "12345" not in str(caught.value)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"url": "http://x", "basic_auth_user_info": "alice:hunter22"},
            {"url": "http://alice:hunter22@x"},
        ],
    )
    def test_the_basic_auth_header_value_is_scrubbed_too(self, kwargs: dict[str, Any]) -> None:
        """A proxy's error page may echo the request's Authorization header: its base64
        form of user:password is among the values masked from messages."""
        import base64

        header = base64.b64encode(b"alice:hunter22").decode()
        assert header in SchemaRegistryConfig(**kwargs).secret_values()

    def test_whole_floats_are_taken_for_counts(self) -> None:
        config = SchemaRegistryConfig(url="http://x", max_retries=3.0, retries_wait_ms=500.0)  # type: ignore[arg-type]
        assert (config.max_retries, config.retries_wait_ms) == (3, 500)

    def test_a_user_name_without_password_in_the_url_sends_no_credentials(self) -> None:
        conf = SchemaRegistryConfig(url="https://user@sr:8081").client_conf()
        assert conf["url"] == "https://sr:8081" and "basic.auth.user.info" not in conf

    def test_a_path_object_is_taken_for_a_file_setting(self) -> None:
        config = SchemaRegistryConfig(url="http://x", ssl_ca_location=Path(__file__))  # type: ignore[arg-type]
        assert config.client_conf()["ssl.ca.location"] == __file__

    @pytest.mark.parametrize("codec_cls", CODECS)
    def test_a_registry_argument_that_is_no_client_is_refused(self, codec_cls: Any) -> None:
        with pytest.raises(ConfigurationError, match="not int"):
            codec_cls(42)


class TestClearErrors:
    def test_a_strategy_that_gives_no_subject_is_named_with_the_remedy(
        self, mock_client: Any
    ) -> None:
        """A subject strategy returning None (or a non-str) fails the publish with an error
        naming the strategy, before anything is registered."""
        codec = JsonSchemaCodec(mock_client, subject_name_strategy=lambda ctx, name: None)
        with pytest.raises(SerializationError, match="gave no subject") as caught:
            codec.encode_for(full_order(), ctx())
        assert "<lambda>" in str(caught.value)
        assert mock_client.get_subjects() == []

    @pytest.mark.parametrize("codec_cls", CODECS)
    def test_decoding_a_record_of_an_unknown_schema_id_names_the_id(
        self, codec_cls: Any, mock_client: Any
    ) -> None:
        """A record written against a schema id this registry does not have: the error names
        the id and says what to check, not advice about auto_register."""
        data = b"\x00" + (4242).to_bytes(4, "big") + b"{}"
        with pytest.raises(SchemaNotFoundError, match="schema id 4242") as caught:
            codec_cls(mock_client).decode_from(data, Order, ctx())
        assert "auto_register" not in str(caught.value)


@pytest.mark.parametrize("codec_cls", CODECS)
def test_threads_encoding_a_type_for_the_first_time_at_once_all_succeed(codec_cls: Any) -> None:
    """confluent-kafka's serializer can be read half-initialised by a second thread during
    its first call; the codec lets one thread make that first call. With a tiny switch
    interval, 8 threads x 100 fresh codecs: every encode succeeds, with one schema id."""
    import threading

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    failures: list[str] = []
    try:
        for trial in range(100):
            codec = codec_cls(SchemaRegistryClient.new_client({"url": f"mock://r{trial}"}))
            barrier = threading.Barrier(8)
            ids: set[bytes] = set()

            def encode(n: int, codec: Any = codec, barrier: Any = barrier, ids: Any = ids) -> None:
                barrier.wait()
                try:
                    ids.add(codec.encode_for(full_order(), ctx())[1:5])
                except Exception as exc:
                    failures.append(repr(exc))

            threads = [threading.Thread(target=encode, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len(ids) <= 1
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
