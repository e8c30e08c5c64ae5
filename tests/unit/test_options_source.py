"""F04: ``source=`` (ce_source) must be a URI-reference, as CloudEvents requires.

Other languages' SDKs parse ``ce_source`` as a URI (the Java SDK as a ``java.net.URI``),
so a publisher that wrote ``billing service`` made every event unreadable there.
"""

from __future__ import annotations

import pytest

from eventwire import AsyncPublisher, ConfigurationError, Publisher
from eventwire._uri import uri_reference_problem
from eventwire.testing import MemoryTransport, capture_events

GOOD = [
    "eventwire",  # the default
    "eventwire-test",  # capture_events' default
    "urn:shop",
    "urn:eventwire:demo",
    "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
    "/shop/checkout",
    "../relative/path",
    "//host/path",
    "https://example.com/billing?region=eu#main",
    "https://user@example.com:8443/x",
    "http://[::1]:8080/x",
    "http://[v1.fe]/x",
    "mailto:billing@example.com",
    "tag:example.com,2024:billing",
    "a/b:c",
    "billing%20service",
    "https://example.ir/\u0633\u0641\u0627\u0631\u0634\u200c\u0647\u0627",  # an IRI
]

BAD = [
    ("billing service", "it holds a space"),
    ("http://x y", "it holds a space"),
    ("%%%", "a '%' is not followed by two hex digits"),
    ("100%", "a '%' is not followed by two hex digits"),
    ("a|b", "the character '|'"),
    ("a<b>", "the character '<'"),
    ('say"hi"', "the character '\"'"),
    ("x\\y", "the character '\\\\'"),
    ("{svc}", "the character '{'"),
    ("x\xa0y", "space character U+00A0"),
    ("1a:b", "does not follow the URI grammar"),
    ("http://host:port/", "does not follow the URI grammar"),
    ("http://[::1/", "does not follow the URI grammar"),
    ("http://[1:2]/", "[1:2] is not an IPv6 address"),
]


@pytest.mark.parametrize("source", GOOD)
def test_a_uri_reference_is_accepted(source: str) -> None:
    assert uri_reference_problem(source) is None
    with Publisher(transport=MemoryTransport(), source=source):
        pass


@pytest.mark.parametrize(("source", "problem"), BAD)
def test_a_source_that_is_not_a_uri_reference_is_refused_at_construction(
    source: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        Publisher(transport=MemoryTransport(), source=source)
    message = str(info.value)
    assert message.startswith(f"source (the CloudEvents ce_source) {source!r} is not a URI-")
    assert problem in message
    assert "RFC 3986" in message and "'urn:myorg:billing'" in message


def test_the_async_publisher_and_capture_events_refuse_it_too() -> None:
    with pytest.raises(ConfigurationError, match="is not a URI-reference"):
        AsyncPublisher(transport=MemoryTransport(), source="billing service")
    with (
        pytest.raises(ConfigurationError, match="is not a URI-reference"),
        capture_events(source="billing service"),
    ):
        pass


def test_the_defaults_are_uri_references() -> None:
    with Publisher(transport=MemoryTransport()), capture_events():
        pass


def test_a_huge_source_is_quoted_cut_short() -> None:
    with pytest.raises(ConfigurationError) as info:
        Publisher(transport=MemoryTransport(), source="a b" * 100_000)
    assert len(str(info.value)) < 1_000


def test_a_control_character_keeps_its_own_message() -> None:
    with pytest.raises(ConfigurationError, match="control character"):
        Publisher(transport=MemoryTransport(), source="svc\n")
