"""OpenTelemetry metrics and the Prometheus exposition, on the memory transport.

Every test passes its own MeterProvider explicitly; no global is ever set.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from eventwire import DeliveryError, Publisher
from eventwire.observability.metrics import OUTCOMES, PROMETHEUS_NAMES, make_metrics
from eventwire.observability.prometheus import serve_prometheus
from eventwire.transports.memory import MemoryTransport

from .conftest import order


class Meter:
    """A private SDK MeterProvider read by an in-memory reader."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def points(self, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
        """Data points of instrument ``name``, keyed by sorted attribute items."""
        data = self.reader.get_metrics_data()
        found: dict[tuple[tuple[str, Any], ...], Any] = {}
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        for p in m.data.data_points:
                            found[tuple(sorted((p.attributes or {}).items()))] = p
        return found

    def value(self, name: str, **attrs: str) -> Any:
        point = self.points(name).get(tuple(sorted(attrs.items())))
        return None if point is None else point.value


@pytest.fixture
def meter() -> Iterator[Meter]:
    m = Meter()
    yield m
    m.provider.shutdown()


def publisher(transport: MemoryTransport, meter: Meter, **kwargs: Any) -> Publisher:
    return Publisher(transport=transport, meter_provider=meter.provider, **kwargs)


PUBLISHED = "eventwire.events.published"
DURATION = "eventwire.publish.duration"


class TestOutcomeCounter:
    def test_delivered_and_failed_are_counted_per_topic(
        self, meter: Meter, transport: MemoryTransport
    ) -> None:
        """Each settled event adds 1 to its (topic, outcome) series."""
        pub = publisher(transport, meter)
        for n in range(4):
            pub.publish(order(n))
        transport.fail_next(1)
        pub.publish(order(9))
        with pytest.raises(DeliveryError):
            pub.close(1)
        assert meter.value(PUBLISHED, topic="orders", outcome="delivered") == 4
        assert meter.value(PUBLISHED, topic="orders", outcome="failed") == 1

    def test_synchronous_rejection_counts_as_failed(
        self, meter: Meter, transport: MemoryTransport
    ) -> None:
        """An event refused at publish() is counted once as failed."""
        small = MemoryTransport(max_message_bytes=10)
        with publisher(small, meter) as pub, pytest.raises(DeliveryError):
            pub.publish(order(1))
        assert meter.value(PUBLISHED, topic="orders", outcome="failed") == 1

    def test_retried_and_dead_lettered_can_be_counted(
        self, meter: Meter, transport: MemoryTransport
    ) -> None:
        """count() adds the outcomes other features report; unknown outcomes raise."""
        hooks = make_metrics(meter.provider, lambda: 0)
        assert hooks is not None
        hooks.count("orders", "retried", 3)
        hooks.count("orders-dlq", "dead_lettered")
        with pytest.raises(ValueError, match="outcome"):
            hooks.count("orders", "lost")  # type: ignore[arg-type]
        assert meter.value(PUBLISHED, topic="orders", outcome="retried") == 3
        assert meter.value(PUBLISHED, topic="orders-dlq", outcome="dead_lettered") == 1
        assert set(OUTCOMES) == {"delivered", "failed", "dead_lettered", "retried"}

    def test_counts_survive_a_closed_publisher_on_a_shared_provider(
        self, meter: Meter, transport: MemoryTransport
    ) -> None:
        """Publishers on one MeterProvider share cumulative counters."""
        with publisher(transport, meter) as first:
            first.publish(order(1))
        with publisher(MemoryTransport(), meter) as second:
            second.publish(order(2))
        assert meter.value(PUBLISHED, topic="orders", outcome="delivered") == 2


class TestDurationHistogram:
    def test_one_observation_per_acknowledged_event(
        self, meter: Meter, transport: MemoryTransport
    ) -> None:
        """The unlabelled publish-to-ack histogram counts delivered events, in seconds."""
        pub = publisher(transport, meter)
        for n in range(7):
            pub.publish(order(n))
        transport.fail_next(1)
        pub.publish(order(8))
        with pytest.raises(DeliveryError):
            pub.close(1)
        [(labels, point)] = meter.points(DURATION).items()
        assert labels == ()
        assert point.count == 7
        assert 0 <= point.sum < 7  # seconds, not milliseconds
        assert point.explicit_bounds[0] < 0.01  # buckets sized for seconds


class TestGauges:
    def test_in_flight_counts_unacknowledged_events(
        self, meter: Meter, transport: MemoryTransport
    ) -> None:
        """eventwire.in_flight_events is read at collection time."""
        pub = publisher(transport, meter)
        transport.pause()
        for n in range(3):
            pub.publish(order(n))
        assert meter.value("eventwire.in_flight_events") == 3
        transport.resume()
        assert meter.value("eventwire.in_flight_events") == 0
        pub.close(1)

    def test_librdkafka_statistics_become_gauges(
        self, meter: Meter, transport: MemoryTransport
    ) -> None:
        """rtt (µs -> s), queue bytes and tx errors are taken from the statistics JSON."""
        hooks = make_metrics(meter.provider, lambda: 0)
        assert hooks is not None
        with contextlib.closing(hooks):
            hooks.on_stats(json.dumps(STATS))
            hooks.on_stats("{not json")  # ignored, never raises
            assert meter.value("eventwire.producer.queue_bytes", producer="p#1") == 4096
            assert meter.value(
                "eventwire.broker.rtt", producer="p#1", broker="127.0.0.1:9092/1"
            ) == pytest.approx(0.0025)
            assert (
                meter.value("eventwire.broker.tx_errors", producer="p#1", broker="127.0.0.1:9092/1")
                == 2
            )
            brokers = {dict(k).get("broker") for k in meter.points("eventwire.broker.rtt")}
            assert brokers == {"127.0.0.1:9092/1"}  # bootstrap entry and idle broker skipped
        assert meter.points("eventwire.broker.rtt") == {}  # closed publishers stop reporting


STATS = {
    "name": "p#1",
    "msg_cnt": 3,
    "msg_size": 4096,
    "brokers": {
        "127.0.0.1:9092/bootstrap": {"name": "127.0.0.1:9092/bootstrap", "nodeid": -1},
        "127.0.0.1:9092/1": {
            "name": "127.0.0.1:9092/1",
            "nodeid": 1,
            "txerrs": 2,
            "rtt": {"avg": 2500, "cnt": 10, "min": 100},
        },
        "127.0.0.1:9093/2": {
            "name": "127.0.0.1:9093/2",
            "nodeid": 2,
            "txerrs": 0,
            "rtt": {"avg": 0, "cnt": 0},
        },
    },
}


class TestWithoutProvider:
    def test_no_metrics_work_without_a_real_provider(self, transport: MemoryTransport) -> None:
        """With a no-op provider, or the API's default global, the hook is None."""
        assert make_metrics(NoOpMeterProvider(), lambda: 0) is None
        assert not isinstance(metrics.get_meter_provider(), MeterProvider)
        with Publisher(transport=transport) as pub:
            pub.publish(order(1)).result(1)  # and publishing works without any metrics


class TestPrometheus:
    def test_endpoint_exposes_the_contract_names(self, transport: MemoryTransport) -> None:
        """GET /metrics shows exactly the documented names and only topic/outcome labels."""
        with serve_prometheus(0) as server:
            assert server.port > 0
            with Publisher(transport=transport, meter_provider=server.meter_provider) as pub:
                for n in range(3):
                    pub.publish(order(n))
            text = urllib.request.urlopen(server.url, timeout=5).read().decode()
        assert 'eventwire_events_published_total{outcome="delivered",topic="orders"} 3.0' in text
        assert "eventwire_publish_duration_seconds_count 3.0" in text
        assert re.search(r"^eventwire_in_flight_events 0\.0$", text, re.M)
        assert "otel_scope" not in text and "target_info" not in text
        series = set(re.findall(r"^([a-z_]+)[{ ]", text, re.M))
        assert series == {
            "eventwire_events_published_total",
            "eventwire_publish_duration_seconds_bucket",
            "eventwire_publish_duration_seconds_count",
            "eventwire_publish_duration_seconds_sum",
            "eventwire_in_flight_events",
        }
        assert PROMETHEUS_NAMES["eventwire.events.published"] == "eventwire_events_published_total"

    def test_the_documented_table_is_the_contract(self) -> None:
        """The module docstring's table lists exactly the names of PROMETHEUS_NAMES."""
        import eventwire.observability.metrics as module

        rows = re.findall(
            r"^``(eventwire\.[a-z_.]+)``\s+``(eventwire_[a-z_]+)``", module.__doc__ or "", re.M
        )
        assert dict(rows) == PROMETHEUS_NAMES

    def test_close_stops_serving(self) -> None:
        """After close() the port no longer answers."""
        server = serve_prometheus(0)
        url = server.url
        server.close()
        server.close()  # idempotent
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url, timeout=2)


def test_an_outbox_publishers_relay_does_not_feed_the_producer_gauges(
    meter: Meter, tmp_path: Any
) -> None:
    """With an outbox the publisher adds nothing to the producer-queue and broker gauges
    (the outbox gauges show the backlog): its relay's librdkafka statistics, which used to
    appear there, are not taken."""
    import time

    from eventwire.outbox import SQLiteOutbox

    pub = Publisher(
        "127.0.0.1:1",  # nothing listens: the relay's producer keeps its event queued
        outbox=SQLiteOutbox(tmp_path / "outbox.db"),
        meter_provider=meter.provider,
        overrides={"statistics.interval.ms": 100},
    )
    try:
        pub.publish(order(1))
        time.sleep(1.5)  # fifteen statistics periods of the relay's producer
        assert meter.points("eventwire.producer.queue_bytes") == {}
        assert meter.points("eventwire.broker.rtt") == {}
    finally:
        pub.close(0.2)
