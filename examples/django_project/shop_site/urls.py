"""URLs of the example shop."""

from __future__ import annotations

from django.urls import path
from shop_orders import views

urlpatterns = [
    path("orders", views.place_order),
    path("orders/queued", views.queue_order),
]
