"""The FastAPI/Starlette recipe (examples/fastapi_app.py) against the real broker.

The real ASGI app runs in-process through httpx's ASGITransport, with its lifespan run
by asgi-lifespan's LifespanManager: the publisher starts at start-up, the endpoints
publish, the shutdown flushes within its bound, and a real consumer reads back what
reached Kafka. (SIGTERM under uvicorn: test_framework_sigterm.py.)
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from eventwire import BrokerUnavailableError, KafkaConfig
from eventwire_devkit.consume import read_topic
from tests.integration import framework_support
from tests.integration.framework_support import closed_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))
fastapi_app: Any = importlib.import_module("fastapi_app")
OrderPlaced = fastapi_app.OrderPlaced

# The lifespan must run its start-up (the broker check) and its bounded shutdown.
LIFESPAN_LIMITS = {"startup_timeout": 60, "shutdown_timeout": 60}
APPS = {"fastapi": fastapi_app.create_app, "starlette": fastapi_app.create_starlette_app}


def read_orders(bootstrap: str, topic: str, expected: int) -> dict[str, Any]:
    return framework_support.read_orders(bootstrap, topic, expected, OrderPlaced)


@pytest.mark.kafka
@pytest.mark.asyncio
@pytest.mark.parametrize("framework", list(APPS))
async def test_an_endpoint_awaits_the_broker_and_answers_where_the_event_is(
    framework: str, kafka_bootstrap: str, kafka_topic: str
) -> None:
    """POST /orders answers 201 with the topic, partition and offset the broker gave; a
    consumer reads that record back as the typed OrderPlaced (and only it: a bad body
    publishes nothing)."""
    app = APPS[framework](KafkaConfig(kafka_bootstrap), topic=kafka_topic, shutdown_timeout=10)
    async with (
        LifespanManager(app, **LIFESPAN_LIMITS) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://shop"
        ) as client,
    ):
        response = await client.post("/orders", json={"order_id": "o-1", "total": 19.5})
        bad = await client.post("/orders", json={"order_id": "", "total": -1})
    assert response.status_code == 201, response.text
    # a bad body is refused before anything is published (FastAPI's 422, our 400)
    assert bad.status_code == {"fastapi": 422, "starlette": 400}[framework], bad.text
    body = response.json()
    assert body["topic"] == kafka_topic and body["offset"] >= 0 and body["event_id"]
    records = read_topic(kafka_bootstrap, kafka_topic, expected=1, timeout=60, idle=0.5)
    [record] = records
    assert (record.partition, record.offset) == (body["partition"], body["offset"])
    assert record.header("ce_id") == body["event_id"].encode()
    assert read_orders(kafka_bootstrap, kafka_topic, 1) == {"o-1": OrderPlaced("o-1", 19.5)}


@pytest.mark.kafka
@pytest.mark.asyncio
@pytest.mark.parametrize("framework", list(APPS))
async def test_events_still_in_flight_at_shutdown_are_flushed_by_the_lifespan(
    framework: str, kafka_bootstrap: str, kafka_topic: str
) -> None:
    """POST /orders/queued answers 202 before the broker acks; with linger.ms=2000 the
    events are still in flight when the app shuts down, and the lifespan's flush
    delivers every one of them."""
    config = KafkaConfig(kafka_bootstrap, overrides={"linger.ms": 2000})
    app = APPS[framework](config, topic=kafka_topic, shutdown_timeout=20)
    accepted = [f"o-{i}" for i in range(25)]
    async with (
        LifespanManager(app, **LIFESPAN_LIMITS) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://shop"
        ) as client,
    ):
        for order_id in accepted:
            response = await client.post(
                "/orders/queued", json={"order_id": order_id, "total": 1.0}
            )
            assert response.status_code == 202, response.text
        publisher = manager._state["publisher"]
        assert publisher.in_flight > 0  # the shutdown flush is what delivers them
    assert publisher.closed and publisher.in_flight == 0
    delivered = read_orders(kafka_bootstrap, kafka_topic, len(accepted))
    assert sorted(delivered) == sorted(accepted)


@pytest.mark.asyncio
async def test_the_app_does_not_start_when_kafka_does_not_answer() -> None:
    """The lifespan's start-up runs the broker check: a Kafka that is down fails the
    start (BrokerUnavailableError), not the first request."""
    config = KafkaConfig(f"127.0.0.1:{closed_port()}")
    app = fastapi_app.create_app(config, topic="orders", connect_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError):
        async with LifespanManager(app, **LIFESPAN_LIMITS):
            pass
    assert time.monotonic() - started < 30


@pytest.mark.asyncio
async def test_shutdown_is_bounded_and_logs_what_it_could_not_deliver(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With Kafka unreachable after start, a queued event cannot be delivered: the
    shutdown still ends within its bound (2 s, plus margin) and the event is logged at
    ERROR, named; nothing is lost silently."""
    config = KafkaConfig(f"127.0.0.1:{closed_port()}")
    app = fastapi_app.create_app(config, topic="orders", shutdown_timeout=2, connect_timeout=None)
    caplog.set_level(logging.INFO, logger="shop")
    async with (
        LifespanManager(app, **LIFESPAN_LIMITS) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://shop"
        ) as client,
    ):
        response = await client.post("/orders/queued", json={"order_id": "o-1", "total": 1.0})
        assert response.status_code == 202
        started = time.monotonic()
    took = time.monotonic() - started
    assert 1.5 <= took < 10, took
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors, "the undelivered event was not logged"
    assert any("OrderPlaced" in e and "not delivered" in e for e in errors), errors
    # Reported once: the queued endpoint's done-callback logs it, so the lifespan's
    # close() must not raise (and log) it as well.
    assert len([e for e in errors if "OrderPlaced" in e]) == 1, errors


# Issue 17 item 3, "failures reported once": a DeliveryError the app already observed is
# not raised again by close() (before that change, the lifespan logged it again here).
@pytest.mark.asyncio
async def test_a_failure_the_endpoint_reported_is_not_raised_again_at_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An awaited publish that failed is answered 503 with the reason; the shutdown
    then has nothing left to report, so it logs no undelivered event."""
    config = KafkaConfig(f"127.0.0.1:{closed_port()}", overrides={"message.timeout.ms": 1000})
    app = fastapi_app.create_app(config, topic="orders", shutdown_timeout=5, connect_timeout=None)
    caplog.set_level(logging.INFO, logger="shop")
    async with (
        LifespanManager(app, **LIFESPAN_LIMITS) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://shop"
        ) as client,
    ):
        response = await client.post("/orders", json={"order_id": "o-1", "total": 1.0})
        assert response.status_code == 503
        assert "_MSG_TIMED_OUT" in response.json()["detail"]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("publisher_closed") for m in messages), messages
    assert not any("events_not_delivered_at_shutdown" in m for m in messages), messages
