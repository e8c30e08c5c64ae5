"""The contenders: who publishes, and how each is run.

Every Python contender is a module with ``throughput(ctx)`` and ``latency(ctx)``
functions (see :class:`bench.contenders._context.RunContext`), run by
:mod:`bench.worker` in its own process. ``java-perf-test`` is run by the runner
itself (:mod:`bench.contenders.java_perf`).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

__all__ = ["CONTENDERS", "Contender", "by_name"]


@dataclass(frozen=True)
class Contender:
    """One contender: its name, implementation module and variant, and what it is."""

    name: str
    module: str
    variant: str = ""
    #: Also run in the latency mode (always) or only in full runs ("full").
    latency: str = "always"
    summary: str = ""
    #: Importable modules it needs beyond eventwire's own dependencies (the bench extra).
    requires: tuple[str, ...] = ()

    def missing(self) -> list[str]:
        """Required modules that are not installed."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    @property
    def is_java(self) -> bool:
        """True for the JVM contender the runner starts itself."""
        return self.module == "java_perf"


CONTENDERS: tuple[Contender, ...] = (
    Contender("raw-confluent", "raw_confluent", summary="bare produce()+poll(0) loop: the ceiling"),
    Contender(
        "raw-ce",
        "raw_ce",
        summary="bare produce()+poll(0) writing eventwire's wire contract (6 CE headers)",
    ),
    Contender(
        "raw-ce-span",
        "raw_ce",
        "span",
        latency="never",
        summary="raw-ce + one OTel SDK span per event (eventwire's attributes, traceparent)",
        requires=("opentelemetry.sdk",),
    ),
    Contender(
        "guide-recipe",
        "guide_recipe",
        summary="guide's publisher: SDK span + structlog per event",
        requires=("opentelemetry.sdk",),
    ),
    Contender("eventwire", "eventwire_sync", summary="Publisher, OTel API only (no SDK)"),
    Contender(
        "eventwire-traced-100",
        "eventwire_sync",
        "traced-100",
        latency="never",
        summary="Publisher + OTel SDK, sample all",
        requires=("opentelemetry.sdk",),
    ),
    Contender(
        "eventwire-traced-1",
        "eventwire_sync",
        "traced-1",
        latency="never",
        summary="Publisher + OTel SDK, ParentBased(1%)",
        requires=("opentelemetry.sdk",),
    ),
    Contender(
        "eventwire-batch-traced-100",
        "eventwire_sync",
        "batch-traced-100",
        latency="never",
        summary="Publisher.publish_many (500 a call) + OTel SDK, sample all: a span per batch",
        requires=("opentelemetry.sdk",),
    ),
    Contender(
        "eventwire-async", "eventwire_async", summary="AsyncPublisher, publish_nowait batches"
    ),
    Contender(
        "aiokafka",
        "aiokafka_producer",
        summary="AIOKafkaProducer, send() batches",
        requires=("aiokafka",),
    ),
    Contender(
        "faststream-aiokafka",
        "faststream_producer",
        "aiokafka",
        latency="full",
        summary="FastStream 0.7 KafkaBroker (aiokafka), awaiting each publish",
        requires=("faststream", "aiokafka"),
    ),
    Contender(
        "faststream-confluent",
        "faststream_producer",
        "confluent",
        latency="full",
        summary="FastStream 0.7 KafkaBroker (confluent-kafka), awaiting each publish",
        requires=("faststream",),
    ),
    Contender(
        "confluent-aio",
        "confluent_aio",
        latency="full",
        summary="confluent_kafka.aio.AIOProducer (no headers)",
    ),
    Contender(
        "kafka-python",
        "kafka_python_producer",
        latency="full",
        summary="kafka.KafkaProducer",
        requires=("kafka",),
    ),
    Contender(
        "java-perf-test", "java_perf", latency="full", summary="Kafka's ProducerPerformance (JVM)"
    ),
)


def by_name(name: str) -> Contender:
    """The contender called ``name``.

    Raises:
        KeyError: no such contender (the message lists them).
    """
    for contender in CONTENDERS:
        if contender.name == name:
            return contender
    raise KeyError(f"unknown contender {name!r}; known: {', '.join(c.name for c in CONTENDERS)}")
