"""One AsyncPublisher per process, owned by the ASGI lifespan; the settings it reads.

* :class:`PublisherLifespan` wraps Django's ASGI application and answers the ASGI
  lifespan protocol: ``start()`` at start-up, ``close()`` at shutdown.
* :func:`publisher` is what views call. Outside an ASGI server with lifespan (e.g.
  ``manage.py runserver``, WSGI) it raises ImproperlyConfigured saying so, instead
  of publishing from a publisher nobody will flush.
* Management commands are synchronous and short-lived: they use a
  :class:`eventwire.Publisher` in a ``with`` block (:func:`routes`, :func:`kafka_config`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from eventwire import AsyncPublisher, DeliveryError, KafkaConfig, Route
from shop_orders.events import OrderPlaced

log = logging.getLogger("shop")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_publisher: AsyncPublisher | None = None


def kafka_config() -> KafkaConfig:
    """``KafkaConfig(**settings.EVENTWIRE_KAFKA)``, or ``KafkaConfig.load()`` if it is None."""
    given = getattr(settings, "EVENTWIRE_KAFKA", None)
    return KafkaConfig(**given) if given is not None else KafkaConfig.load()


def routes() -> dict[type, Route]:
    """The app's routes (the topic is the ``SHOP_ORDERS_TOPIC`` setting)."""
    return {OrderPlaced: Route(topic=settings.SHOP_ORDERS_TOPIC, key="order_id")}


def publisher() -> AsyncPublisher:
    """The process's running AsyncPublisher (for views).

    Raises:
        ImproperlyConfigured: the ASGI lifespan did not start it.
    """
    if _publisher is None or _publisher.closed:
        raise ImproperlyConfigured(
            "no running eventwire publisher: serve shop_site.asgi:application with an ASGI "
            "server that runs the lifespan (uvicorn's default --lifespan auto), which starts "
            "it; runserver and WSGI do not"
        )
    return _publisher


async def start(**options: Any) -> AsyncPublisher:
    """Create and start the process's publisher (``options``: more AsyncPublisher options)."""
    global _publisher  # noqa: PLW0603 - one publisher per process, by design
    candidate = AsyncPublisher(config=kafka_config(), routes=routes(), source="urn:shop", **options)
    await candidate.start()  # the broker check: start-up fails if Kafka does not answer
    _publisher = candidate
    return candidate


async def close() -> None:
    """Flush and close the publisher within ``EVENTWIRE_SHUTDOWN_TIMEOUT`` s.

    Events not delivered by then are logged at ERROR (the DeliveryError names each
    one) rather than raised, so the server's shutdown completes.
    """
    global _publisher
    current, _publisher = _publisher, None
    if current is None:
        return
    timeout = float(settings.EVENTWIRE_SHUTDOWN_TIMEOUT)
    log.info("publisher_closing in_flight=%d timeout=%g", current.in_flight, timeout)
    try:
        await current.close(timeout)
    except DeliveryError as exc:
        log.error(
            "events_not_delivered_at_shutdown count=%d %s", len(exc.failures) + exc.not_kept, exc
        )
    else:
        log.info("publisher_closed")


class PublisherLifespan:
    """An ASGI app: Django for HTTP and websockets; the lifespan protocol handled here.

    ``options`` are passed to :func:`start` (e.g. ``connect_timeout``).
    """

    def __init__(self, app: ASGIApp, **options: Any) -> None:
        self.app = app
        self.options = options

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await start(**self.options)
                except Exception as exc:
                    # As Starlette does: report the failure, then raise it (the server exits).
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    raise
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await close()
                except Exception as exc:
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    raise
                await send({"type": "lifespan.shutdown.complete"})
                return
