"""A Prometheus ``/metrics`` endpoint for eventwire's OpenTelemetry metrics.

:func:`serve_prometheus` starts an HTTP server fed by its own SDK MeterProvider;
hand :attr:`PrometheusServer.meter_provider` to publishers (and relays). The names
it exposes are the contract listed in :data:`eventwire.observability.metrics.PROMETHEUS_NAMES`
(and the table in :mod:`eventwire.observability.metrics`).

The ``prometheus`` extra (``pip install 'eventwire[prometheus]'``) is imported only
when :func:`serve_prometheus` is called, so importing this module never needs it.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry.metrics import MeterProvider

__all__ = ["PrometheusServer", "serve_prometheus"]


class PrometheusServer:
    """A running ``/metrics`` endpoint and the MeterProvider that feeds it.

    Pass :attr:`meter_provider` to publishers (``Publisher(meter_provider=...)``) or
    make it the global provider. :meth:`close` stops the server and the provider.
    """

    def __init__(self, server: Any, thread: threading.Thread, meter_provider: Any, registry: Any):
        self._server = server
        self._thread = thread
        #: An SDK MeterProvider whose only reader is the Prometheus bridge.
        self.meter_provider: MeterProvider = meter_provider
        #: The prometheus_client registry served at ``/metrics``.
        self.registry = registry
        self.addr: str = server.server_address[0]
        self.port: int = int(server.server_port)

    @property
    def url(self) -> str:
        """``http://addr:port/metrics``."""
        return f"http://{self.addr}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and shut the MeterProvider down. Idempotent."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.shutdown()
        server.server_close()
        self._thread.join(timeout=5)
        self.meter_provider.shutdown()  # type: ignore[attr-defined]

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PrometheusServer {self.url}{'' if self._server else ' closed'}>"


def serve_prometheus(
    port: int, addr: str = "127.0.0.1", *, registry: Any = None
) -> PrometheusServer:
    """Serve eventwire's metrics at ``http://addr:port/metrics`` (port 0 picks a free one).

    It builds an OpenTelemetry SDK ``MeterProvider`` with the Prometheus bridge
    (``opentelemetry-exporter-prometheus``'s ``PrometheusMetricReader``) writing to
    ``registry`` (a new private ``prometheus_client.CollectorRegistry`` by default),
    without scope labels or ``target_info``, so the exposition shows exactly the names
    and labels of :data:`eventwire.observability.metrics.PROMETHEUS_NAMES`. Example::

        server = serve_prometheus(9464)
        with Publisher("localhost:9092", meter_provider=server.meter_provider) as pub:
            ...
        server.close()

    Raises:
        ImportError: the ``prometheus`` extra is not installed, or its exporter is
            older than 0.66b0 (``pip install -U 'eventwire[prometheus]'``).
        OSError: the port cannot be bound.
    """
    try:
        from opentelemetry.exporter.prometheus import (  # noqa: PLC0415
            PrometheusMetricReader,
        )
        from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider  # noqa: PLC0415
        from prometheus_client import CollectorRegistry, start_http_server  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"serve_prometheus needs {exc.name}: pip install 'eventwire[prometheus]'",
            name=exc.name,
        ) from exc
    if registry is None:
        registry = CollectorRegistry(auto_describe=True)
    try:
        reader = PrometheusMetricReader(
            disable_target_info=True, scope_info_enabled=False, registry=registry
        )
    except TypeError as exc:  # registry= and scope_info_enabled= came in 0.66b0
        raise ImportError(
            "serve_prometheus needs opentelemetry-exporter-prometheus>=0.66b0 "
            f"(PrometheusMetricReader with registry= and scope_info_enabled=): {exc}. "
            "Upgrade it: pip install -U 'eventwire[prometheus]'",
            name="opentelemetry.exporter.prometheus",
        ) from exc
    provider = SdkMeterProvider(metric_readers=[reader])
    try:
        server, thread = start_http_server(port, addr=addr, registry=registry)
    except OSError:
        provider.shutdown()
        raise
    return PrometheusServer(server, thread, provider, registry)
