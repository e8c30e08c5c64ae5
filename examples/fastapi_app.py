"""FastAPI (and plain Starlette) with eventwire: one AsyncPublisher per process.

The lifespan starts the publisher when the app starts (a Kafka that does not answer
fails the start-up, instead of the first request), hands it to the endpoints through
the lifespan state, and at shutdown flushes and closes it, bounded by
``shutdown_timeout``. What could not be delivered by then is logged at ERROR, each
event named (``DeliveryError``'s message); the shutdown itself completes, so the
server exits.

Two ways to publish from an endpoint:

* ``POST /orders`` awaits the broker's acknowledgement and answers 201 with where the
  event was stored, or 503 saying why it was not (the client may retry).
* ``POST /orders/queued`` answers 202 as soon as the event is queued
  (``publish_nowait``); a failure is logged by a done-callback. The shutdown flush
  delivers what is still in flight, so every event accepted before SIGTERM reaches
  Kafka: uvicorn turns SIGTERM into a graceful shutdown (stop accepting, finish the
  requests in progress, then run the lifespan's shutdown).

Run it (the Kafka settings come from ``EVENTWIRE_KAFKA_*`` variables, e.g.
``EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS``; ``SHOP_ORDERS_TOPIC`` names the topic)::

    EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS=localhost:9092 \\
        uvicorn fastapi_app:app --app-dir examples --timeout-graceful-shutdown 10

``create_starlette_app()`` is the same service on Starlette alone: the lifespan is
Starlette's, so it is the same code.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypedDict

import msgspec
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route as StarletteRoute

from eventwire import (
    AsyncPublisher,
    BackpressureError,
    DeliveryError,
    DeliveryResult,
    KafkaConfig,
    Route,
)

log = logging.getLogger("shop")


class OrderPlaced(msgspec.Struct, frozen=True):
    """The event: routed with ``routes=`` so the topic can come from the environment."""

    order_id: str
    total: float


class PlaceOrder(BaseModel):
    """The request body."""

    order_id: str = Field(min_length=1, max_length=64)
    total: float = Field(ge=0)


class State(TypedDict):
    """What the lifespan gives each request (``request.state.publisher``)."""

    publisher: AsyncPublisher


ConfigFactory = Callable[[], KafkaConfig]


@asynccontextmanager
async def running_publisher(
    publisher: AsyncPublisher, *, shutdown_timeout: float
) -> AsyncIterator[AsyncPublisher]:
    """Start ``publisher``; on exit flush and close it within ``shutdown_timeout`` s.

    Events not delivered by then are logged at ERROR (the DeliveryError names each
    one) rather than raised, so the server's shutdown completes. Under the rule that
    a failure the app already observed (an awaited publish that raised, a
    done-callback that ran) is not raised again by close(), only failures nobody saw
    are logged here.
    """
    await publisher.start()  # the broker check: start-up fails if Kafka does not answer
    try:
        yield publisher
    finally:
        log.info(
            "publisher_closing in_flight=%d timeout=%gs", publisher.in_flight, shutdown_timeout
        )
        try:
            await publisher.close(shutdown_timeout)
        except DeliveryError as exc:
            log.error(
                "events_not_delivered_at_shutdown count=%d %s",
                len(exc.failures) + exc.not_kept,
                exc,
            )
        else:
            log.info("publisher_closed")


def make_lifespan(
    config: ConfigFactory | KafkaConfig | None = None,
    *,
    topic: str | None = None,
    shutdown_timeout: float | None = None,
    **options: Any,
) -> Callable[[Starlette], Any]:
    """A Starlette/FastAPI lifespan owning one AsyncPublisher.

    ``config`` defaults to ``KafkaConfig.load()`` (``EVENTWIRE_KAFKA_*`` variables,
    read at start-up, not at import); ``topic`` to ``$SHOP_ORDERS_TOPIC`` or
    ``"orders"``; ``shutdown_timeout`` to ``$SHOP_SHUTDOWN_TIMEOUT`` or 10 s.
    ``options`` are more AsyncPublisher options (e.g. ``connect_timeout``).
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        kafka = config() if callable(config) else config or KafkaConfig.load()
        timeout = shutdown_timeout
        if timeout is None:
            timeout = float(os.environ.get("SHOP_SHUTDOWN_TIMEOUT", "10"))
        routes = {
            OrderPlaced: Route(
                topic=topic or os.environ.get("SHOP_ORDERS_TOPIC", "orders"), key="order_id"
            )
        }
        publisher = AsyncPublisher(config=kafka, routes=routes, source="urn:shop", **options)
        async with running_publisher(publisher, shutdown_timeout=timeout):
            yield {"publisher": publisher}

    return lifespan


def _log_if_failed(future: asyncio.Future[DeliveryResult]) -> None:
    """The done-callback of a queued publish: the failure is seen (and logged) here."""
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("order_event_not_delivered %s", exc)


async def place(publisher: AsyncPublisher, order: PlaceOrder) -> DeliveryResult:
    """Publish and wait for the broker; HTTP 503 (with the reason) if it failed."""
    try:
        return await publisher.publish(OrderPlaced(order.order_id, order.total))
    except (DeliveryError, BackpressureError) as exc:
        raise HTTPException(503, detail=f"order event not stored: {exc}") from None


def queue(publisher: AsyncPublisher, order: PlaceOrder) -> None:
    """Queue the event; the lifespan's shutdown flush delivers it if it is still in flight."""
    publisher.publish_nowait(OrderPlaced(order.order_id, order.total)).add_done_callback(
        _log_if_failed
    )


def create_app(
    config: ConfigFactory | KafkaConfig | None = None,
    *,
    topic: str | None = None,
    shutdown_timeout: float | None = None,
    **options: Any,
) -> FastAPI:
    """The FastAPI service (arguments as :func:`make_lifespan`)."""
    app = FastAPI(
        lifespan=make_lifespan(config, topic=topic, shutdown_timeout=shutdown_timeout, **options)
    )

    @app.post("/orders", status_code=201)
    async def place_order(order: PlaceOrder, request: Request) -> dict[str, Any]:
        result = await place(request.state.publisher, order)
        return msgspec.to_builtins(result)  # type: ignore[no-any-return]

    @app.post("/orders/queued", status_code=202)
    async def queue_order(order: PlaceOrder, request: Request) -> dict[str, str]:
        queue(request.state.publisher, order)
        return {"order_id": order.order_id, "status": "accepted"}

    return app


async def _body(request: StarletteRequest) -> PlaceOrder | JSONResponse:
    """The request's order, or a 400 response saying what is wrong with it."""
    try:
        return PlaceOrder.model_validate_json(await request.body())
    except ValidationError as exc:
        return JSONResponse({"detail": f"bad order: {exc}"}, status_code=400)


def create_starlette_app(
    config: ConfigFactory | KafkaConfig | None = None,
    *,
    topic: str | None = None,
    shutdown_timeout: float | None = None,
    **options: Any,
) -> Starlette:
    """The same service on Starlette alone (the same lifespan)."""

    async def place_order(request: StarletteRequest) -> JSONResponse:
        order = await _body(request)
        if isinstance(order, JSONResponse):
            return order
        try:
            result = await place(request.state.publisher, order)
        except HTTPException as exc:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        return JSONResponse(msgspec.to_builtins(result), status_code=201)

    async def queue_order(request: StarletteRequest) -> JSONResponse:
        order = await _body(request)
        if isinstance(order, JSONResponse):
            return order
        queue(request.state.publisher, order)
        return JSONResponse({"order_id": order.order_id, "status": "accepted"}, status_code=202)

    return Starlette(
        routes=[
            StarletteRoute("/orders", place_order, methods=["POST"]),
            StarletteRoute("/orders/queued", queue_order, methods=["POST"]),
        ],
        lifespan=make_lifespan(config, topic=topic, shutdown_timeout=shutdown_timeout, **options),
    )


#: ``uvicorn fastapi_app:app``: nothing connects at import; the lifespan does at start-up.
app = create_app()
