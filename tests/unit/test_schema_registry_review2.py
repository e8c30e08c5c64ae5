"""Schema Registry review 2: outages on decode, URL checks, shared and bounded first lookups,
and accurate errors. A tiny HTTP server on 127.0.0.1 stands in for the registry."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from eventwire import (
    ConfigurationError,
    DecodeError,
    Decoder,
    Publisher,
    Route,
    SerializationContext,
    SerializationError,
)
from eventwire.schema_registry import (
    AvroCodec,
    JsonSchemaCodec,
    RegistryError,
    SchemaIncompatibleError,
    SchemaNotFoundError,
    SchemaRegistryConfig,
    SchemaRegistryUnavailableError,
)
from eventwire.transports.memory import MemoryTransport

CODECS = [JsonSchemaCodec, AvroCodec]


class Order(msgspec.Struct):
    order_id: str


ROUTES = {Order: Route(topic="orders", key="order_id")}
Answer = Callable[[http.server.BaseHTTPRequestHandler], "tuple[int, bytes, str] | None"]


def ctx(topic: str = "orders") -> SerializationContext:
    return SerializationContext(topic)


@pytest.fixture
def fake_registry() -> Iterator[Callable[[Answer], str]]:
    """fake_registry(answer) -> the URL of a server answering each request with
    answer(handler): (status, body, content type), or None when it answered itself."""
    servers: list[http.server.ThreadingHTTPServer] = []
    calls: list[str] = []

    def start(answer: Answer) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                calls.append(f"{self.command} {self.path}")
                out = answer(self)
                if out is None:
                    return
                status, body, content_type = out
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _any

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    start.calls = calls  # type: ignore[attr-defined]
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def js(status: int, obj: object) -> tuple[int, bytes, str]:
    return status, json.dumps(obj).encode(), "application/json"


def good_record(codec_cls: Any) -> Any:
    """A record a publisher wrote with a registry codec (on a mock registry)."""
    transport = MemoryTransport()
    codec = codec_cls(SchemaRegistryClient.new_client({"url": "mock://review2"}))
    with Publisher(transport=transport, codec=codec, routes=ROUTES) as publisher:
        publisher.publish(Order("o-1")).result(timeout=5)
    return transport.records("orders")[0]


class TestDecodeDuringAnOutage:
    """F04: a registry that cannot give the writer's schema is not the record's fault."""

    @pytest.mark.parametrize("codec_cls", CODECS)
    @pytest.mark.parametrize("status", [401, 429, 503])
    def test_a_failing_registry_is_a_retriable_decode_error_not_malformed(
        self, codec_cls: Any, status: int, fake_registry: Any
    ) -> None:
        record = good_record(codec_cls)
        url = fake_registry(lambda req: js(status, {"error_code": status, "message": "nope"}))
        codec = codec_cls(SchemaRegistryConfig(url=url, timeout=2, max_retries=0))
        with pytest.raises(DecodeError) as caught:
            Decoder(routes=ROUTES, codec=codec).decode(record)
        err = caught.value
        assert err.kind == "registry_unavailable" and err.retriable
        assert isinstance(err.__cause__, RegistryError)
        assert "commit past it" in str(err) and "Do not dead-letter it" in str(err)
        assert "outbox" not in str(err)  # no producer wording on the consumer side

    @pytest.mark.parametrize("codec_cls", CODECS)
    def test_decode_or_none_raises_it_and_hands_nothing_to_on_error(self, codec_cls: Any) -> None:
        """Returning None would let the loop commit past a good record: it raises instead."""
        record = good_record(codec_cls)
        codec = codec_cls(SchemaRegistryConfig(url="http://127.0.0.1:9", timeout=1, max_retries=0))
        dead_letters: list[DecodeError] = []
        decoder = Decoder(routes=ROUTES, codec=codec, on_error=dead_letters.append)
        with pytest.raises(DecodeError) as caught:
            decoder.decode_or_none(record)
        assert caught.value.kind == "registry_unavailable"
        assert isinstance(caught.value.__cause__, SchemaRegistryUnavailableError)
        assert dead_letters == []

    def test_an_unknown_schema_id_is_still_the_records_fault(self) -> None:
        record = good_record(JsonSchemaCodec)
        codec = JsonSchemaCodec(SchemaRegistryClient.new_client({"url": "mock://empty"}))
        dead_letters: list[DecodeError] = []
        decoder = Decoder(routes=ROUTES, codec=codec, on_error=dead_letters.append)
        assert decoder.decode_or_none(record) is None
        assert [e.kind for e in dead_letters] == ["malformed_value"]
        assert not dead_letters[0].retriable

    def test_retriable_survives_pickling(self) -> None:
        import pickle

        err = DecodeError(topic="t", partition=0, offset=1, reason="r", kind="registry_unavailable")
        assert pickle.loads(pickle.dumps(err)).retriable


class TestRegistryUrl:
    """F08, F09: a malformed URL never shows its credentials; a query string is refused."""

    @pytest.mark.parametrize(
        "url",
        [
            "http//alice:hunter22@sr:8081",
            "https:/alice:hunter22@sr:8081",
            "https:alice:hunter22@sr:8081",
            "https;//alice:hunter22@sr:8081",
            "https//alice:hunter22@sr/x",
            "http://sr:8081,https//alice:hunter22@sr2",
        ],
    )
    def test_a_malformed_url_is_refused_without_its_credentials(self, url: str) -> None:
        with pytest.raises(ConfigurationError, match="does not start with http") as caught:
            SchemaRegistryConfig(url=url)
        assert "hunter22" not in str(caught.value) and "alice" not in str(caught.value)

    def test_a_malformed_url_from_the_environment_is_refused_without_its_credentials(
        self,
    ) -> None:
        environ = {"EVENTWIRE_SCHEMA_REGISTRY_URL": "https:/alice:hunter22@sr:8081"}
        with pytest.raises(ConfigurationError) as caught:
            SchemaRegistryConfig.load(environ=environ)
        assert "hunter22" not in str(caught.value)

    def test_a_url_without_credentials_is_still_quoted(self) -> None:
        with pytest.raises(ConfigurationError, match="'localhost:8081'"):
            SchemaRegistryConfig(url="localhost:8081")

    @pytest.mark.parametrize(
        "url",
        [
            "http://sr:8081/apis/ccompat/v7?apikey=SuperSecretKey123",
            "https://alice:hunter22@sr:8081/#SuperSecretKey123",
            "http://sr:8081,http://sr2:8081?apikey=SuperSecretKey123",
        ],
    )
    def test_a_query_string_or_fragment_is_refused_without_showing_it(self, url: str) -> None:
        with pytest.raises(ConfigurationError, match="query string") as caught:
            SchemaRegistryConfig(url=url)
        text = str(caught.value)
        assert "SuperSecretKey123" not in text and "hunter22" not in text
        assert "basic_auth_user_info" in text


class TestFirstLookup:
    """F03, F06: one lookup per type and topic at a time, bounded by the timeout."""

    def test_concurrent_first_publishes_share_one_lookup(self, fake_registry: Any) -> None:
        """Eight threads publish a new type at a registry that never answers: they all
        fail after one attempt, not one after another."""
        url = fake_registry(lambda req: time.sleep(30))
        codec = JsonSchemaCodec(SchemaRegistryConfig(url=url, timeout=0.5, max_retries=0))
        barrier = threading.Barrier(8)
        took: list[float] = []
        errors: list[BaseException] = []

        def publish(publisher: Publisher) -> None:
            barrier.wait()
            start = time.monotonic()
            try:
                publisher.publish(Order("o"))
            except SchemaRegistryUnavailableError as exc:
                errors.append(exc)
            took.append(time.monotonic() - start)

        with Publisher(transport=MemoryTransport(), codec=codec, routes=ROUTES) as publisher:
            threads = [threading.Thread(target=publish, args=(publisher,)) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert len(errors) == 8
        assert max(took) < 2.0, sorted(took)  # one 0.5 s attempt, not 8 in turn
        assert len(fake_registry.calls) == 1  # one request for all of them

    def test_a_registry_trickling_its_answer_is_bounded_by_the_timeout(
        self, fake_registry: Any
    ) -> None:
        """timeout bounds the whole request, not each read of a slow answer."""

        def trickle(req: Any) -> None:
            body = b'{"id": 1}' + b" " * 100
            req.send_response(200)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            req.wfile.flush()
            for byte in body:
                req.wfile.write(bytes([byte]))
                req.wfile.flush()
                time.sleep(0.3)

        url = fake_registry(trickle)
        codec = JsonSchemaCodec(SchemaRegistryConfig(url=url, timeout=1, max_retries=0))
        start = time.monotonic()
        with pytest.raises(SchemaRegistryUnavailableError, match="within 1 s"):
            codec.encode_for(Order("o"), ctx())
        assert time.monotonic() - start < 3

    def test_an_outage_is_remembered_briefly_then_asked_again(self, fake_registry: Any) -> None:
        """After an unavailable answer, the next publishes fail at once (retries_max_wait_ms),
        then the registry is asked again and a recovered registry is used."""
        state = {"up": False}

        def answer(req: Any) -> Any:
            if not state["up"]:
                return js(503, {"error_code": 50301, "message": "down"})
            return js(200, {"id": 7})

        url = fake_registry(answer)
        config = SchemaRegistryConfig(url=url, timeout=2, max_retries=0, retries_max_wait_ms=500)
        codec = JsonSchemaCodec(config)
        with pytest.raises(SchemaRegistryUnavailableError):
            codec.encode_for(Order("o"), ctx())
        state["up"] = True
        with pytest.raises(SchemaRegistryUnavailableError):  # remembered
            codec.encode_for(Order("o"), ctx())
        assert len(fake_registry.calls) == 1
        time.sleep(0.6)
        assert codec.encode_for(Order("o"), ctx())[1:5] == (7).to_bytes(4, "big")

    def test_an_events_own_fault_is_not_shared_with_the_other_callers(self) -> None:
        """A lookup failing because of its own event (Avro refuses the value) does not
        fail the other callers' events."""

        class Big(msgspec.Struct):
            n: int

        codec = AvroCodec(SchemaRegistryClient.new_client({"url": "mock://own-fault"}))
        with pytest.raises(SerializationError):
            codec.encode_for(Big(2**70), ctx())
        assert codec.encode_for(Big(1), ctx())[0] == 0


class TestAccurateErrors:
    """F01, F02, F05, F07."""

    def test_a_wrong_base_path_says_so(self, fake_registry: Any) -> None:
        """F01: a 404 without a registry error code is a wrong URL, not 'not registered'."""
        url = fake_registry(lambda req: (404, b"Could not find resource", "text/plain"))
        with pytest.raises(RegistryError) as caught:
            JsonSchemaCodec(url).encode_for(Order("o"), ctx())
        assert not isinstance(caught.value, SchemaNotFoundError)
        assert "base" in str(caught.value) and "/apis/ccompat/v7" in str(caught.value)
        assert "auto_register=True" not in str(caught.value)

    def test_use_latest_version_is_not_told_to_auto_register(self, fake_registry: Any) -> None:
        url = fake_registry(lambda req: js(404, {"error_code": 40401, "message": "no subject"}))
        codec = JsonSchemaCodec(url, use_latest_version=True)
        with pytest.raises(SchemaNotFoundError) as caught:
            codec.encode_for(Order("o"), ctx())
        assert "auto_register=True" not in str(caught.value)
        assert "register the schema first" in str(caught.value)

    @pytest.mark.parametrize(
        ("codec_cls", "mode", "expected", "not_expected"),
        [
            (JsonSchemaCodec, "BACKWARD", "refuse adding one, even an optional one", "default"),
            (JsonSchemaCodec, "FORWARD", "refuse removing", "open content"),
            (AvroCodec, "FORWARD", "for FORWARD", "for BACKWARD"),
            (AvroCodec, "BACKWARD", "for BACKWARD", "for FORWARD"),
        ],
    )
    def test_the_compatibility_advice_matches_format_and_mode(
        self, codec_cls: Any, mode: str, expected: str, not_expected: str, fake_registry: Any
    ) -> None:
        """F02: the hint follows the subject's mode and the schema format."""

        def answer(req: Any) -> Any:
            if req.command == "GET" and "/config" in req.path:
                return js(200, {"compatibilityLevel": mode})
            return js(409, {"error_code": 409, "message": "Incompatible artifact"})

        url = fake_registry(answer)
        with pytest.raises(SchemaIncompatibleError) as caught:
            codec_cls(url).encode_for(Order("o"), ctx())
        assert caught.value.compatibility == mode
        assert expected in str(caught.value) and not_expected not in str(caught.value)

    @pytest.mark.parametrize("codec_cls", CODECS)
    @pytest.mark.parametrize(
        "data", [b"", b"\x00\x00\x00", b"\x01abc", b"{}", b'{"order_id": "o-1"}']
    )
    def test_a_value_that_is_not_confluent_framed_is_named_without_a_registry_call(
        self, codec_cls: Any, data: bytes, fake_registry: Any
    ) -> None:
        """F05: a typed 'not in Confluent's wire format' error; the registry is not asked."""
        url = fake_registry(lambda req: js(500, {"error_code": 50001, "message": "asked"}))
        with pytest.raises(SerializationError, match="not in Confluent's wire format") as caught:
            codec_cls(url).decode_from(data, Order, ctx())
        assert not isinstance(caught.value, RegistryError)
        assert fake_registry.calls == []

    @pytest.mark.parametrize("codec_cls", CODECS)
    @pytest.mark.parametrize(
        "answer",
        [
            (200, b"<html><body>Please log in</body></html>", "text/html"),
            js(200, {"artifactId": "x"}),
        ],
    )
    def test_a_non_registry_answer_is_a_registry_error(
        self, codec_cls: Any, answer: Any, fake_registry: Any
    ) -> None:
        """F07: a 200 that is not a registry's answer is a RegistryError naming the URL."""
        url = fake_registry(lambda req: answer)
        with pytest.raises(RegistryError, match="not a Schema Registry response"):
            codec_cls(url).encode_for(Order("o"), ctx())

    def test_a_long_error_page_is_clipped(self, fake_registry: Any) -> None:
        url = fake_registry(lambda req: (503, b"<html>" + b"x" * 5000 + b"</html>", "text/html"))
        config = SchemaRegistryConfig(url=url, timeout=2, max_retries=0)
        with pytest.raises(SchemaRegistryUnavailableError) as caught:
            JsonSchemaCodec(config).encode_for(Order("o"), ctx())
        assert len(str(caught.value)) < 1500


def test_a_registry_error_of_the_mock_kind_still_maps(monkeypatch: Any) -> None:
    """A registry's own not-found code on decode stays SchemaNotFoundError."""
    client = SchemaRegistryClient.new_client({"url": "mock://codes"})

    def missing(*args: Any, **kwargs: Any) -> Any:
        raise SchemaRegistryError(404, 40403, "Schema not found")

    monkeypatch.setattr(client, "get_schema", missing)
    with pytest.raises(SchemaNotFoundError, match="schema id 5"):
        JsonSchemaCodec(client).decode_from(b"\x00\x00\x00\x00\x05{}", Order, ctx())
