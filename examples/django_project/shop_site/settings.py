"""Settings of the example shop: no database, one app (``shop_orders``), an API view.

The eventwire settings are plain Django settings:

* ``EVENTWIRE_KAFKA``: keyword arguments of :class:`eventwire.KafkaConfig` (e.g.
  ``{"bootstrap_servers": "localhost:9092"}``), or None to load the configuration
  from the ``EVENTWIRE_KAFKA_*`` environment variables (``KafkaConfig.load()``).
* ``SHOP_ORDERS_TOPIC``: the topic of OrderPlaced.
* ``EVENTWIRE_SHUTDOWN_TIMEOUT``: the bound, in seconds, of the flush at shutdown.
"""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver", "shop"]
INSTALLED_APPS = ["shop_orders"]
MIDDLEWARE: list[str] = []  # a JSON API without sessions or CSRF cookies
ROOT_URLCONF = "shop_site.urls"
DATABASES: dict[str, Any] = {}
USE_TZ = True

EVENTWIRE_KAFKA: dict[str, Any] | None = None
SHOP_ORDERS_TOPIC = os.environ.get("SHOP_ORDERS_TOPIC", "orders")
EVENTWIRE_SHUTDOWN_TIMEOUT = float(os.environ.get("SHOP_SHUTDOWN_TIMEOUT", "10"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"shop": {"handlers": ["console"], "level": "INFO"}},
}
