"""Async views that publish: one awaits the broker, one answers as soon as it is queued."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from eventwire import BackpressureError, DeliveryError, DeliveryResult
from shop_orders import publishing
from shop_orders.events import OrderPlaced

log = logging.getLogger("shop")


class PlaceOrder(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The request body."""

    order_id: str
    total: float


def _order(request: HttpRequest) -> OrderPlaced | JsonResponse:
    try:
        body = msgspec.json.decode(request.body, type=PlaceOrder)
    except msgspec.DecodeError as exc:
        return JsonResponse({"detail": f"bad order: {exc}"}, status=400)
    return OrderPlaced(body.order_id, body.total)


@require_POST
async def place_order(request: HttpRequest) -> JsonResponse:
    """Publish and wait for the broker: 201 with where it is stored, or 503 with why not."""
    order = _order(request)
    if isinstance(order, JsonResponse):
        return order
    try:
        result = await publishing.publisher().publish(order)
    except (DeliveryError, BackpressureError) as exc:
        return JsonResponse({"detail": f"order event not stored: {exc}"}, status=503)
    return JsonResponse(msgspec.to_builtins(result), status=201)


def _log_if_failed(future: asyncio.Future[DeliveryResult]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("order_event_not_delivered %s", exc)


@require_POST
async def queue_order(request: HttpRequest) -> JsonResponse:
    """Queue the event and answer 202; the lifespan's shutdown flush delivers it."""
    order = _order(request)
    if isinstance(order, JsonResponse):
        return order
    publishing.publisher().publish_nowait(order).add_done_callback(_log_if_failed)
    return JsonResponse({"order_id": order.order_id, "status": "accepted"}, status=202)
