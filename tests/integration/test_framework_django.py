"""The Django recipe (examples/django_project) against the real broker.

The real ASGI application (shop_site.asgi: Django wrapped in the lifespan Django does
not have) runs in-process through httpx's ASGITransport, its lifespan run by
asgi-lifespan's LifespanManager; the management command runs through call_command. A
real consumer reads back what reached Kafka. (SIGTERM under uvicorn:
test_framework_sigterm.py.)
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from eventwire import BrokerUnavailableError
from tests.integration import framework_support
from tests.integration.framework_support import closed_port

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "django_project"
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_site.settings")
asgi: Any = importlib.import_module("shop_site.asgi")  # runs django.setup()
publishing: Any = importlib.import_module("shop_orders.publishing")
OrderPlaced = importlib.import_module("shop_orders.events").OrderPlaced

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.core.management import CommandError, call_command  # noqa: E402
from django.test import override_settings  # noqa: E402

LIFESPAN_LIMITS = {"startup_timeout": 60, "shutdown_timeout": 60}


def shop_settings(bootstrap: str, topic: str, **more: Any) -> override_settings:
    return override_settings(
        EVENTWIRE_KAFKA={"bootstrap_servers": bootstrap, **more},
        SHOP_ORDERS_TOPIC=topic,
        EVENTWIRE_SHUTDOWN_TIMEOUT=20,
    )


def read_orders(bootstrap: str, topic: str, expected: int) -> dict[str, Any]:
    return framework_support.read_orders(bootstrap, topic, expected, OrderPlaced)


@pytest.mark.kafka
@pytest.mark.asyncio
async def test_the_async_view_publishes_through_the_publisher_the_lifespan_started(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    """POST /orders (an async Django view) answers 201 with where the broker stored the
    event; a consumer reads it back as the typed OrderPlaced. After shutdown the
    publisher is closed and views get no publisher."""
    with shop_settings(kafka_bootstrap, kafka_topic):
        async with (
            LifespanManager(asgi.application, **LIFESPAN_LIMITS) as manager,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=manager.app), base_url="http://shop"
            ) as client,
        ):
            running = publishing.publisher()
            response = await client.post("/orders", json={"order_id": "o-1", "total": 19.5})
            bad = await client.post("/orders", content=b'{"order_id": 1}')
        assert response.status_code == 201, response.text
        assert bad.status_code == 400 and "bad order" in bad.json()["detail"]
        assert running.closed
        with pytest.raises(ImproperlyConfigured, match="no running eventwire publisher"):
            publishing.publisher()
    body = response.json()
    assert body["topic"] == kafka_topic
    assert read_orders(kafka_bootstrap, kafka_topic, 1) == {"o-1": OrderPlaced("o-1", 19.5)}


@pytest.mark.kafka
@pytest.mark.asyncio
async def test_events_queued_by_the_view_are_flushed_at_shutdown(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    """POST /orders/queued answers 202 before the ack; with linger.ms=2000 they are in
    flight at shutdown, and the lifespan wrapper's flush delivers every one."""
    accepted = [f"o-{i}" for i in range(20)]
    with shop_settings(kafka_bootstrap, kafka_topic, overrides={"linger.ms": 2000}):
        async with (
            LifespanManager(asgi.application, **LIFESPAN_LIMITS) as manager,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=manager.app), base_url="http://shop"
            ) as client,
        ):
            for order_id in accepted:
                r = await client.post("/orders/queued", json={"order_id": order_id, "total": 2.0})
                assert r.status_code == 202, r.text
            running = publishing.publisher()
            assert running.in_flight > 0  # the shutdown flush is what delivers them
    assert running.closed and running.in_flight == 0
    assert sorted(read_orders(kafka_bootstrap, kafka_topic, len(accepted))) == sorted(accepted)


@pytest.mark.asyncio
async def test_the_asgi_start_up_fails_when_kafka_does_not_answer() -> None:
    """The wrapper reports lifespan.startup.failed and raises the BrokerUnavailableError,
    so the server does not start serving without a publisher."""
    app = publishing.PublisherLifespan(asgi.django_application, connect_timeout=1.0)
    with shop_settings(f"127.0.0.1:{closed_port()}", "orders"):
        with pytest.raises(BrokerUnavailableError):
            async with LifespanManager(app, **LIFESPAN_LIMITS):
                pass
        with pytest.raises(ImproperlyConfigured):
            publishing.publisher()


@pytest.mark.asyncio
async def test_without_the_lifespan_a_view_fails_saying_how_to_serve_the_app(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Django's own ASGI handler (no lifespan) cannot publish: the view's request fails
    (500) with ImproperlyConfigured naming the fix, instead of publishing from a
    publisher that nobody would flush."""
    caplog.set_level(logging.ERROR, logger="django.request")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=asgi.django_application), base_url="http://shop"
    ) as client:
        response = await client.post("/orders", json={"order_id": "o-1", "total": 1.0})
    assert response.status_code == 500
    assert any(
        r.exc_info and "serve shop_site.asgi:application" in str(r.exc_info[1])
        for r in caplog.records
    ), caplog.text


@pytest.mark.kafka
def test_the_management_command_publishes_and_waits_for_the_ack(
    kafka_bootstrap: str, kafka_topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`manage.py publish_order o-7 42.5` (via call_command) prints where the broker stored
    the event; a consumer reads it back typed."""
    with shop_settings(kafka_bootstrap, kafka_topic):
        call_command("publish_order", "o-7", "42.5")
    out = capsys.readouterr().out
    assert "published order o-7 as event " in out and f" to {kafka_topic}[" in out, out
    assert read_orders(kafka_bootstrap, kafka_topic, 1) == {"o-7": OrderPlaced("o-7", 42.5)}


def test_the_management_command_fails_with_the_reason_when_kafka_is_down() -> None:
    """A Kafka that does not answer: CommandError naming the order and the broker problem
    (exit status 1 from manage.py), within the connection check's bound."""
    started = time.monotonic()
    with (
        shop_settings(f"127.0.0.1:{closed_port()}", "orders"),
        pytest.raises(CommandError, match=r"order o-7 not published: .*127\.0\.0\.1"),
    ):
        call_command("publish_order", "o-7", "42.5", "--timeout", "2")
    assert time.monotonic() - started < 30
