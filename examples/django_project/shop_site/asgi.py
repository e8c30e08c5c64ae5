"""The ASGI application: Django, plus the ASGI lifespan Django does not have.

Django's ASGI handler refuses ``lifespan`` connections, so the server (uvicorn,
hypercorn, daphne...) would never tell it the process starts or stops. This module
wraps it in :class:`~shop_orders.publishing.PublisherLifespan`, which answers the
lifespan protocol itself: at start-up it starts the process's AsyncPublisher (a Kafka
that does not answer fails the start-up), at shutdown it flushes and closes it within
``EVENTWIRE_SHUTDOWN_TIMEOUT``. Every other connection goes to Django.

    uvicorn shop_site.asgi:application --app-dir examples/django_project
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_site.settings")

django_application = get_asgi_application()  # sets Django up before the app's modules load

from shop_orders.publishing import PublisherLifespan  # noqa: E402

application = PublisherLifespan(django_application)
