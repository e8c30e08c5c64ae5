"""OpenTelemetry SDK set-ups for the traced contenders.

A real ``TracerProvider`` with a ``BatchSpanProcessor`` (SDK defaults) feeding an
exporter that only counts spans: the cost measured is creating, recording and
queueing spans, not shipping them anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased

__all__ = ["CountingExporter", "Sampling", "finish", "install_sdk"]

Sampling = Literal["all", "1%"]


class CountingExporter(SpanExporter):
    """A no-op exporter that counts what it was given."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Count and drop the batch."""
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release."""


def install_sdk(sampling: Sampling) -> tuple[TracerProvider, CountingExporter]:
    """Install a global SDK TracerProvider (``all``: ALWAYS_ON; ``1%``: parent-based 1%)."""
    sampler: Sampler = ALWAYS_ON if sampling == "all" else ParentBased(TraceIdRatioBased(0.01))
    exporter = CountingExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider, exporter


def finish(provider: TracerProvider, exporter: CountingExporter) -> int:
    """Flush the span processor and return how many spans were exported in total."""
    provider.force_flush(10_000)
    return exporter.exported
