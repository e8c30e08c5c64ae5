"""The consumer-side review: structured mode, clipped and unquoted headers, leap seconds,
tombstones with bad headers.

Records are made as in ``test_decode.py``: a real Publisher on the memory transport,
presented as either client's message shape.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from eventwire import DecodeError, Decoder
from eventwire.observability.logging import capture_logs

from .conftest import OrderPlaced, order
from .test_decode import (
    DECODER,
    Headers,
    Make,
    as_aiokafka,
    as_confluent,
    failure,
    moved,
    published,
    replaced,
)

HUGE = "x" * 1_000_000


@pytest.fixture(params=["confluent", "aiokafka"])
def make(request: pytest.FixtureRequest) -> Make:
    return as_confluent if request.param == "confluent" else as_aiokafka


@pytest.fixture
def rendered() -> Iterator[io.StringIO]:
    """What eventwire's loggers write through a plain stdlib handler."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("eventwire")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


class TestStructuredMode:
    """F01: a structured-mode record (only a content-type header, the whole event in the
    value, as the CloudEvents SDKs write it) is named as such, not missing_header."""

    STRUCTURED = (
        b'{"specversion": "1.0", "id": "s1", "type": "tests.unit.conftest.OrderPlaced", '
        b'"source": "/other", "datacontenttype": "application/json", '
        b'"data": {"order_id": "o-1"}}'
    )

    @pytest.mark.parametrize(
        "content_type",
        [
            b"application/cloudevents+json",
            b"application/cloudevents+json; charset=utf-8",
            b"application/cloudevents-batch+json",
        ],
    )
    def test_a_structured_record_without_ce_headers_is_content_type(
        self, make: Make, content_type: bytes
    ) -> None:
        record = moved(published(order(1))[0])
        message = make(record, headers=[("content-type", content_type)], value=self.STRUCTURED)
        err = failure(message)
        assert err.kind == "content_type", err
        assert "is CloudEvents structured mode; this decoder reads binary mode" in err.reason
        assert "missing" not in err.reason

    def test_with_ce_headers_too_it_is_still_named(self, make: Make) -> None:
        record = moved(published(order(1))[0])
        headers = replaced(record, "content-type", b"application/cloudevents+json")
        err = failure(make(record, headers=headers))
        assert err.kind == "content_type" and "structured mode" in err.reason
        assert err.event_id == dict(record.headers)["ce_id"].decode()


class TestHugeHeadersAreClipped:
    """F02: no header value is quoted whole, in the error or in the decode_failed log."""

    @pytest.mark.parametrize(
        ("case", "kind"),
        [
            ("ce_time", "bad_header"),
            ("content-type", "content_type"),
            ("duplicate ce_source", "bad_header"),
            ("duplicate ce_id", "bad_header"),
            ("ce_specversion", "bad_header"),
            ("ce_type", "unknown_type"),
        ],
    )
    def test_the_error_quotes_a_clipped_value(self, make: Make, case: str, kind: str) -> None:
        record = moved(published(order(1))[0])
        headers: Headers
        if case.startswith("duplicate "):
            headers = [*record.headers, (case.split()[1], HUGE.encode())]
        else:
            value = (HUGE if case != "content-type" else "a/" + HUGE).encode()
            headers = [(k, value if k == case else v) for k, v in record.headers]
        err = failure(make(record, headers=headers))
        assert err.kind == kind, err.reason
        assert len(str(err)) < 2_000
        assert "... (1000" in err.reason  # says how long the value was

    def test_the_log_line_clips_event_id_and_event_type(
        self, make: Make, rendered: io.StringIO
    ) -> None:
        record = moved(published(order(1))[0])
        headers = [
            (k, HUGE.encode() if k in {"ce_id", "ce_type"} else v)
            for k, v in record.headers
            if k != "ce_source"
        ]
        with capture_logs("eventwire.consumer") as logs:
            assert DECODER.decode_or_none(make(record, headers=headers)) is None
        (entry,) = logs
        assert entry["kind"] == "missing_header"
        assert len(entry["event_id"]) < 300 and len(entry["event_type"]) < 300
        assert 0 < len(rendered.getvalue()) < 2_000


class TestExtensionValuesAreNotQuoted:
    """F03: extension attributes are arbitrary metadata (tokens, tenants): never quoted."""

    def test_a_conflicting_duplicate_extension_names_the_header_only(
        self, make: Make, rendered: io.StringIO
    ) -> None:
        record = moved(published(order(1))[0])
        headers = [
            *record.headers,
            ("ce_authtoken", b"Bearer s3cr3t-A"),
            ("ce_authtoken", b"Bearer s3cr3t-B"),
        ]
        err = failure(make(record, headers=headers))
        assert err.kind == "bad_header"
        assert "header 'ce_authtoken' appears twice with different values (not shown)" in str(err)
        assert "s3cr3t" not in str(err)
        with capture_logs("eventwire.consumer") as logs:
            assert DECODER.decode_or_none(make(record, headers=headers)) is None
        assert "s3cr3t" not in str(logs) and "s3cr3t" not in rendered.getvalue()

    def test_an_extension_that_is_not_utf8_is_not_quoted(self, make: Make) -> None:
        record = moved(published(order(1))[0])
        headers = [*record.headers, ("ce_authtoken", b"Bearer s3cr3t\xff")]
        err = failure(make(record, headers=headers))
        assert err.kind == "bad_header" and "'ce_authtoken' is not valid UTF-8" in err.reason
        assert "s3cr3t" not in str(err) and "(14 bytes, not shown)" in err.reason


class TestLeapSecond:
    """F05: RFC 3339 allows second 60; a datetime cannot hold it, so it is clamped."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (b"2016-12-31T23:59:60Z", dt.datetime(2016, 12, 31, 23, 59, 59, 999999, dt.UTC)),
            (
                b"2016-12-31T23:59:60.5+00:00",
                dt.datetime(2016, 12, 31, 23, 59, 59, 999999, dt.UTC),
            ),
            (
                b"2017-01-01T08:59:60+09:00",
                dt.datetime(2016, 12, 31, 23, 59, 59, 999999, dt.UTC),
            ),
        ],
    )
    def test_a_leap_second_decodes_as_the_last_microsecond_before_it(
        self, make: Make, text: bytes, expected: dt.datetime
    ) -> None:
        record = moved(published(order(1))[0])
        envelope = DECODER.decode(make(record, headers=replaced(record, "ce_time", text)))
        assert envelope.time == expected and envelope.time.tzinfo is not None

    @pytest.mark.parametrize("text", [b"2016-12-31T23:59:61Z", b"2016-12-31T23:59:60"])
    def test_what_is_not_rfc_3339_is_still_refused(self, make: Make, text: bytes) -> None:
        record = moved(published(order(1))[0])
        err = failure(make(record, headers=replaced(record, "ce_time", text)))
        assert err.kind == "bad_header" and "is not an RFC 3339 timestamp" in err.reason


class TestTombstoneWithBadHeaders:
    """F08: a record without a value is no_value (skip it) whatever its headers hold."""

    @pytest.mark.parametrize("case", ["non-UTF-8 ce_source", "two ce_id values", "both"])
    def test_it_is_no_value(self, make: Make, case: str) -> None:
        record = moved(published(order(1))[0])
        headers: list[tuple[str, Any]] = list(record.headers)
        if case != "two ce_id values":
            headers = replaced(record, "ce_source", b"\xff")
        if case != "non-UTF-8 ce_source":
            headers.append(("ce_id", b"other"))
        err = failure(make(record, value=None, headers=headers))
        assert err.kind == "no_value" and "tombstone" in err.reason
        assert err.event_id == dict(record.headers)["ce_id"].decode()
        assert err.event_type == "tests.unit.conftest.OrderPlaced"

    def test_an_id_that_is_not_utf8_is_read_as_far_as_it_can_be(self, make: Make) -> None:
        record = moved(published(order(1))[0])
        err = failure(make(record, value=None, headers=replaced(record, "ce_id", b"id-\xff")))
        assert err.kind == "no_value" and err.event_id == "id-\ufffd"


def test_a_codec_for_a_structured_content_type_is_still_used() -> None:
    """A decoder given a codec for application/cloudevents+json uses it (as before)."""

    class Unwrap:
        content_type = "application/cloudevents+json"

        def encode(self, value: Any) -> bytes:
            raise NotImplementedError

        def decode(self, data: bytes, cls: type[Any]) -> Any:
            import msgspec

            return msgspec.json.decode(data, type=cls)

    record = moved(published(order(1))[0])
    headers = replaced(record, "content-type", b"application/cloudevents+json")
    decoder: Decoder[OrderPlaced] = Decoder(types=[OrderPlaced], codec=[Unwrap()])
    assert decoder.decode(as_confluent(record, headers=headers)).event == order(1)
    with pytest.raises(DecodeError) as info:  # no ce_* headers: still missing ones
        decoder.decode(as_confluent(record, headers=headers[-1:]))
    assert info.value.kind == "missing_header"
