"""eventwire._options: the options both publishers take, declared and checked once."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from eventwire import AsyncPublisher, ConfigurationError, Publisher
from eventwire._options import Options, PublisherOptions, resolve_options
from eventwire.transports.memory import MemoryTransport


class TestNames:
    def test_an_unknown_option_is_a_type_error_listing_the_valid_names(self) -> None:
        """An unknown option raises TypeError naming it and every valid option."""
        with pytest.raises(TypeError) as info:
            resolve_options(None, {"enque_timeout": 5})
        message = str(info.value)
        assert "enque_timeout" in message
        for name in ("bootstrap_servers", "enqueue_timeout", "transport", "producer_restarts"):
            assert name in message

    @pytest.mark.parametrize("publisher", [Publisher, AsyncPublisher])
    def test_both_publishers_refuse_an_unknown_option(self, publisher: Any) -> None:
        """Publisher and AsyncPublisher raise the same TypeError for an unknown option."""
        with pytest.raises(TypeError, match="unknown publisher option.*retries"):
            publisher(transport=MemoryTransport(), retries=3)

    def test_the_typed_options_and_the_checked_options_are_the_same_set(self) -> None:
        """Every option in PublisherOptions has a default in Options, and no other exists."""
        declared = set(PublisherOptions.__annotations__) | {"bootstrap_servers"}
        assert declared == {f.name for f in dataclasses.fields(Options)}


class TestDefaults:
    def test_no_options_give_the_documented_defaults(self) -> None:
        """Without options: reliable profile, json, 30 s enqueue and close, 10 s connect,
        3 restarts, no breaker, source eventwire."""
        options = resolve_options(None, {})
        assert (options.profile, options.codec, options.source) == ("reliable", "json", "eventwire")
        assert (options.enqueue_timeout, options.close_timeout) == (30.0, 30.0)
        assert options.connect_timeout == 10.0
        assert options.producer_restarts == 3
        assert options.circuit_breaker is False

    def test_given_values_are_kept(self) -> None:
        """Given options override the defaults; the bootstrap servers are carried along."""
        transport = MemoryTransport()
        options = resolve_options(
            "h:9092", {"enqueue_timeout": 0, "connect_timeout": None, "transport": transport}
        )
        assert options.bootstrap_servers == "h:9092"
        assert options.enqueue_timeout == 0
        assert options.connect_timeout is None
        assert options.transport is transport


class TestValues:
    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("enqueue_timeout", -1),
            ("close_timeout", -0.5),
            ("connect_timeout", 0),
            ("connect_timeout", -3),
            ("producer_restarts", -1),
            ("producer_restarts", 1.5),
            ("producer_restarts", True),
            ("source", ""),
            ("transport", object()),
        ],
    )
    def test_a_bad_value_is_a_configuration_error_naming_the_option(
        self, name: str, value: Any
    ) -> None:
        """An out-of-range or wrongly typed value raises ConfigurationError naming the option."""
        with pytest.raises(ConfigurationError, match=name):
            resolve_options(None, {name: value})

    def test_a_bad_value_is_refused_before_anything_is_built(self) -> None:
        """A publisher with a bad option raises ConfigurationError and never uses its transport."""
        transport = MemoryTransport()
        with pytest.raises(ConfigurationError, match="close_timeout"):
            Publisher(transport=transport, close_timeout=-1)
        assert transport.records() == []
        assert not transport.closed

    @pytest.mark.parametrize("name", ["enqueue_timeout", "close_timeout"])
    def test_zero_timeouts_are_allowed(self, name: str) -> None:
        """enqueue_timeout and close_timeout may be 0 (do not wait)."""
        assert getattr(resolve_options(None, {name: 0}), name) == 0


def test_profile_with_a_config_is_refused_naming_where_it_goes() -> None:
    """profile= together with config= would be ignored: ConfigurationError says where the
    profile belongs."""
    from eventwire import ConfigurationError, KafkaConfig, Publisher

    with pytest.raises(ConfigurationError, match="KafkaConfig"):
        Publisher(config=KafkaConfig("h:1"), profile="low_latency", connect_timeout=None)
