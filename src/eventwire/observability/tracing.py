"""OpenTelemetry tracing: one PRODUCER span per event, ended by the broker's answer.

eventwire uses the OpenTelemetry *API* only; which SDK (if any) records spans is the
application's choice, made through ``Publisher(tracer_provider=..., propagator=...)``
or the global provider and propagator. Both are resolved when the publisher is
created, so configure OpenTelemetry before creating publishers.

What a traced event gets (messaging semantic conventions, Kafka flavour):

* a span named ``send <topic>``, kind PRODUCER, whose parent is the caller's current
  context, with ``messaging.system=kafka``, ``messaging.operation.name=send``,
  ``messaging.operation.type=send``, ``messaging.destination.name``,
  ``messaging.message.id`` (the ``ce_id``), ``messaging.kafka.message.key`` and
  ``messaging.message.body.size``;
* on the broker's ack, ``messaging.destination.partition.id`` (a string) and
  ``messaging.kafka.offset``; on failure, status ERROR with the failure's description,
  ``error.type`` = the Kafka error name (``MSG_SIZE_TOO_LARGE``, ``_MSG_TIMED_OUT``...)
  and an exception event;
* W3C ``traceparent``/``tracestate`` (and ``baggage``) record headers, written by the
  propagator after the CloudEvents headers.

The span starts in ``publish()`` and ends exactly once, when the event settles: its
delivery report, a fatal-error or ``close()`` sweep, or a synchronous rejection
(too large, queue full past ``enqueue_timeout``, fatal producer).

Without an SDK nothing is done per event beyond reading the current context. With
an SDK's stock sampler an event that is not sampled costs no span either (eventwire
takes the sampler's decision itself); with any other sampler ``start_span`` runs for
every event. The README's "Observability" section gives the costs.

**A sampled-out root (choice):** when the caller has no valid span context and the
span is not sampled, **nothing is injected**. There is no trace to continue: the
trace id would exist nowhere else, and a ``...-00`` traceparent would only make
parent-based consumers drop their own traces. When the caller *does* have a valid
(sampled or not) span context, it is always propagated.
"""

from __future__ import annotations

import contextvars
import functools
import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Setter, TextMapPropagator
from opentelemetry.trace import (
    NonRecordingSpan,
    NoOpTracerProvider,
    ProxyTracerProvider,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TracerProvider,
)

from eventwire.observability import instrumentation_version

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

    from eventwire._errors import DeliveryFailure
    from eventwire._handle import DeliveryHandle
    from eventwire.transports.base import ReportMessage

__all__ = ["HeaderSetter", "Tracing", "current_context", "finish_span", "make_tracing"]


def _context_reader() -> Callable[[], Context]:
    """``opentelemetry.context.get_current``, minus two calls for the stock runtime.

    The API's default runtime context keeps the current Context in one ContextVar,
    and ``get_current()`` is that variable's ``get()``. Any other runtime (chosen
    with ``OTEL_PYTHON_CONTEXT``) gets the API function.
    """
    from opentelemetry.context.contextvars_context import (  # noqa: PLC0415
        ContextVarsRuntimeContext,
    )

    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and isinstance(var, contextvars.ContextVar):
        reader: Callable[[], Context] = var.get
        if reader() is otel_context.get_current():
            return reader
    return otel_context.get_current


_get_current = _context_reader()
#: ``opentelemetry.context.get_current``, as fast as it can be read (see above).
current_context = _get_current
_get_current_span = trace.get_current_span
_set_span_in_context = trace.set_span_in_context
_PRODUCER = SpanKind.PRODUCER
_TRACE_ID_LIMIT: Final = (1 << 64) - 1


class HeaderSetter(Setter[list[tuple[str, bytes]]]):
    """Writes propagation fields into Kafka headers, as ``(str, bytes)`` tuples appended."""

    def set(self, carrier: list[tuple[str, bytes]], key: str, value: str) -> None:
        """Append header ``key`` with ``value`` encoded as UTF-8."""
        carrier.append((key, value.encode()))


_SETTER: Final = HeaderSetter()


class Tracing:
    """The tracing hooks of one publisher: propagation only, or spans as well.

    ``start`` runs in ``publish()`` after the record is built; :func:`finish_span`
    runs once when the event settles, only for recording spans (``handle._on_end``).
    """

    __slots__ = ("_draw", "_names", "_propagator", "_root_bound", "_shortcut", "_tracer", "spans")

    def __init__(self, tracer: trace.Tracer | None, propagator: TextMapPropagator | None) -> None:
        self._tracer = tracer
        self._propagator = propagator
        self._names: dict[str, str] = {}
        #: False when no SDK is configured: the publisher only propagates.
        self.spans = tracer is not None
        shortcut = _SamplingShortcut.for_tracer(tracer) if tracer is not None else None
        self._shortcut = shortcut
        # A root span is sampled iff ``draw() & (2**64-1) < _root_bound``; None: ask
        # the SDK (no shortcut) or, without an SDK, do nothing for roots.
        self._root_bound: int | None = None
        self._draw: Callable[[], int] = _no_draw
        if shortcut is not None and shortcut.root_bound <= _TRACE_ID_LIMIT:
            self._root_bound = shortcut.root_bound
            self._draw = shortcut.drawer()

    # -- publish ---------------------------------------------------------------------
    def start(
        self, handle: DeliveryHandle, key: bytes | None, headers: list[tuple[str, bytes]], size: int
    ) -> None:
        """Start the event's span (if sampled) and inject the trace context into ``headers``."""
        ctx = _get_current()
        if ctx:  # an empty context (the usual case without an SDK) has no span
            parent = _get_current_span(ctx).get_span_context()
            if parent.is_valid:
                self._start_child(ctx, parent, handle, key, headers, size=size)
                return
        bound = self._root_bound
        if bound is not None:  # the sampling shortcut for a root span
            tid = self._draw()
            if (tid & _TRACE_ID_LIMIT) >= bound:
                return  # a sampled-out root: nothing to record or continue (see above)
            assert self._shortcut is not None
            self._shortcut.hand_over(tid)
        elif self._tracer is None:
            return  # no SDK and no trace to continue
        self._record(ctx, handle, key, headers, size=size, has_parent=False)

    def _start_child(
        self,
        ctx: Context,
        parent: SpanContext,
        handle: DeliveryHandle,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        *,
        size: int,
    ) -> None:
        shortcut = self._shortcut
        if self._tracer is None or (shortcut is not None and not shortcut.admit_child(parent)):
            self._inject(headers, ctx)  # pass the caller's context through unchanged
            return
        self._record(ctx, handle, key, headers, size=size, has_parent=True)

    def _record(
        self,
        ctx: Context,
        handle: DeliveryHandle,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        *,
        size: int,
        has_parent: bool,
    ) -> None:
        tracer = self._tracer
        assert tracer is not None
        topic = handle.topic
        name = self._names.get(topic)
        if name is None:
            name = self._names[topic] = f"send {topic}"
        span = tracer.start_span(name, ctx, _PRODUCER)
        if span.is_recording():
            handle._on_end = functools.partial(finish_span, span)
            attributes: dict[str, str | int] = {
                "messaging.system": "kafka",
                "messaging.operation.name": "send",
                "messaging.operation.type": "send",
                "messaging.destination.name": topic,
                "messaging.message.id": handle.event_id,
                "messaging.message.body.size": size,
            }
            if key is not None:
                attributes["messaging.kafka.message.key"] = key.decode("utf-8", "replace")
            span.set_attributes(attributes)
        elif not has_parent:
            return  # a sampled-out root: nothing to continue (see the module docstring)
        self._inject(headers, _set_span_in_context(span, ctx))

    def _inject(self, headers: list[tuple[str, bytes]], ctx: Context) -> None:
        propagator = self._propagator or propagate.get_global_textmap()
        propagator.inject(headers, ctx, _SETTER)


def _no_draw() -> int:  # pragma: no cover - never called: _root_bound is None then
    return 0


def finish_span(span: Span, msg: ReportMessage | None, failure: DeliveryFailure | None) -> None:
    """End a recording span with the broker's answer (called exactly once per span)."""
    if failure is None:
        if msg is not None:
            span.set_attributes(
                {
                    "messaging.destination.partition.id": str(msg.partition()),
                    "messaging.kafka.offset": msg.offset() or 0,
                }
            )
    else:
        description = failure.describe()
        span.set_attribute("error.type", failure.code)
        span.add_event(
            "exception",
            {"exception.type": "eventwire.DeliveryError", "exception.message": description},
        )
        span.set_status(Status(StatusCode.ERROR, description))
    span.end()


def make_tracing(
    tracer_provider: TracerProvider | None, propagator: TextMapPropagator | None
) -> Tracing:
    """Build the hooks for a publisher from its arguments (or the global provider)."""
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    if isinstance(provider, ProxyTracerProvider | NoOpTracerProvider):
        return Tracing(None, propagator)
    tracer = provider.get_tracer("eventwire", instrumentation_version())
    if isinstance(tracer, trace.NoOpTracer):  # e.g. an SDK disabled by OTEL_SDK_DISABLED
        return Tracing(None, propagator)
    return Tracing(tracer, propagator)


class _Handoff:
    """Wraps the SDK tracer's id generator so the next root span takes a pre-drawn id.

    The shortcut draws a trace id, decides with it, and -- only when the span will be
    sampled -- hands that same id to ``start_span`` so the SDK's sampler sees it too.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._local = threading.local()

    def generate_span_id(self) -> int:
        return int(self._inner.generate_span_id())

    def generate_trace_id(self) -> int:
        local = self._local
        tid: int = getattr(local, "tid", 0)
        if tid:
            local.tid = 0
            return tid
        return int(self._inner.generate_trace_id())

    def is_trace_id_random(self) -> bool:
        check = getattr(self._inner, "is_trace_id_random", None)
        return bool(check()) if check is not None else False

    def drawer(self) -> Callable[[], int]:
        """The inner generator's ``generate_trace_id``, minus a frame for the default.

        For the SDK's RandomIdGenerator that is ``random.getrandbits(128)`` called
        directly (it only redraws the invalid id 0, which the hand-over treats as
        "none" and the SDK then redraws itself).
        """
        inner = self._inner
        try:
            from opentelemetry.sdk.trace.id_generator import (  # noqa: PLC0415
                RandomIdGenerator,
            )
        except ImportError:  # pragma: no cover
            RandomIdGenerator = None  # type: ignore[assignment,misc]
        if RandomIdGenerator is not None and type(inner) is RandomIdGenerator:
            return functools.partial(random.getrandbits, 128)
        return inner.generate_trace_id  # type: ignore[no-any-return]

    def hand_over(self, tid: int) -> None:
        self._local.tid = tid


class _SamplingShortcut:
    """Decides ``sampled?`` for the SDK's stock samplers without building a span.

    ``root_bound``: a root span is sampled iff ``trace_id & (2**64-1) < root_bound``
    (``2**64`` for always). ``follow_parent``: with a valid parent, its sampled flag
    decides (ParentBased with default delegates); otherwise the parent's trace id is
    compared with ``root_bound``, as TraceIdRatioBased does.
    """

    __slots__ = ("_follow_parent", "_handoff", "root_bound")

    def __init__(self, root_bound: int, follow_parent: bool, handoff: _Handoff) -> None:
        self.root_bound = root_bound
        self._follow_parent = follow_parent
        self._handoff = handoff

    def drawer(self) -> Callable[[], int]:
        """A function drawing root trace ids exactly as the SDK's id generator would."""
        return self._handoff.drawer()

    def hand_over(self, tid: int) -> None:
        """Make the next root span ``start_span`` creates (on this thread) use ``tid``."""
        self._handoff.hand_over(tid)

    def admit_child(self, parent: SpanContext) -> bool:
        """True if a span with this valid parent will be sampled."""
        if self._follow_parent:
            return bool(parent.trace_flags & TraceFlags.SAMPLED)
        return (parent.trace_id & _TRACE_ID_LIMIT) < self.root_bound

    def decide(self, parent: SpanContext | None, tid: int) -> bool:
        """The shortcut's decision for a given trace id (used by the self-check)."""
        if parent is not None:
            return self.admit_child(parent)
        return (tid & _TRACE_ID_LIMIT) < self.root_bound

    @classmethod
    def for_tracer(cls, tracer: Any) -> _SamplingShortcut | None:
        """A shortcut for ``tracer``'s sampler, or None if it is not a stock one."""
        sampler = getattr(tracer, "sampler", None)
        id_generator = getattr(tracer, "id_generator", None)
        if sampler is None or id_generator is None:
            return None
        shape = _sampler_shape(sampler)
        if shape is None:
            return None
        root_bound, follow_parent = shape
        handoff = id_generator if isinstance(id_generator, _Handoff) else _Handoff(id_generator)
        shortcut = cls(root_bound, follow_parent, handoff)
        if not _agrees(shortcut, sampler):
            return None
        tracer.id_generator = handoff
        return shortcut


def _sampler_shape(sampler: Any) -> tuple[int, bool] | None:
    try:
        from opentelemetry.sdk.trace import sampling  # noqa: PLC0415 - the SDK is optional
    except ImportError:  # pragma: no cover - a non-SDK provider with a "sampler"
        return None
    follow_parent = False
    if type(sampler) is sampling.ParentBased:
        delegates = (
            getattr(sampler, "_remote_parent_sampled", None),
            getattr(sampler, "_remote_parent_not_sampled", None),
            getattr(sampler, "_local_parent_sampled", None),
            getattr(sampler, "_local_parent_not_sampled", None),
        )
        defaults = (sampling.ALWAYS_ON, sampling.ALWAYS_OFF) * 2
        if any(d is not e for d, e in zip(delegates, defaults, strict=True)):
            return None
        sampler = getattr(sampler, "_root", None)
        follow_parent = True
    if sampler is sampling.ALWAYS_ON:
        return _TRACE_ID_LIMIT + 1, follow_parent
    if sampler is sampling.ALWAYS_OFF:
        return 0, follow_parent
    if type(sampler) is sampling.TraceIdRatioBased:
        return int(sampler.bound), follow_parent
    return None


def _agrees(shortcut: _SamplingShortcut, sampler: Any) -> bool:
    """Compare the shortcut with the real sampler on probe trace ids and parents."""
    rng = random.Random(0x5EED)
    bound = shortcut.root_bound
    probes = [rng.getrandbits(128) | 1 for _ in range(48)]
    if 0 < bound <= _TRACE_ID_LIMIT:  # ids just either side of the ratio bound
        probes += [(7 << 64) | (bound - 1), (7 << 64) | bound]
    try:
        for tid in probes:
            parents: list[SpanContext | None] = [None]
            for remote in (False, True):
                for flags in (TraceFlags.DEFAULT, TraceFlags.SAMPLED):
                    parents.append(SpanContext(tid, 0x1234, remote, TraceFlags(flags)))
            for parent in parents:
                ctx = None if parent is None else _set_span_in_context(NonRecordingSpan(parent))
                real = sampler.should_sample(ctx, tid, "send probe", _PRODUCER)
                if real.decision.is_sampled() != shortcut.decide(parent, tid):
                    return False
                if real.attributes or (real.trace_state and len(real.trace_state)):
                    return False  # the sampler adds data the SDK must see: no shortcut
    except Exception:  # a sampler that fails on probes gets no shortcut
        return False
    return True
