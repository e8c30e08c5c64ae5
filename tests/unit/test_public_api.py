"""The curated public API does not drift."""

import eventwire


class TestPublicApi:
    def test_all_is_sorted_case_insensitively_and_complete(self) -> None:
        """__all__ is sorted (ignoring case) and every name in it exists."""
        assert eventwire.__all__ == sorted(eventwire.__all__, key=str.lower)
        for name in eventwire.__all__:
            assert hasattr(eventwire, name), name

    def test_issue_named_names_are_importable(self) -> None:
        """The names the README promises are importable from the package root."""
        from eventwire import (  # noqa: F401
            AsyncPublisher,
            DeliveryError,
            EventwireError,
            Publisher,
            Route,
            event,
        )

    def test_every_error_derives_from_the_base(self) -> None:
        """Every exported exception is an EventwireError."""
        for name in eventwire.__all__:
            obj = getattr(eventwire, name)
            if isinstance(obj, type) and issubclass(obj, BaseException):
                assert issubclass(obj, eventwire.EventwireError), name

    def test_metrics_module_keeps_its_prometheus_import_path(self) -> None:
        """serve_prometheus and PrometheusServer stay importable from observability.metrics."""
        from eventwire.observability import metrics, prometheus

        assert metrics.serve_prometheus is prometheus.serve_prometheus is eventwire.serve_prometheus
        assert metrics.PrometheusServer is prometheus.PrometheusServer
        assert eventwire.PrometheusServer is prometheus.PrometheusServer
