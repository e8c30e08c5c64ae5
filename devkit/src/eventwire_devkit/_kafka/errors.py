"""Typed errors raised by :mod:`eventwire_devkit.kafka` (re-exported there)."""

from __future__ import annotations

__all__ = [
    "ClusterStartError",
    "JarFetchError",
    "JavaNotFoundError",
    "KafkaClusterError",
    "MavenNotFoundError",
]

_PUBLIC_MODULE = "eventwire_devkit.kafka"


class KafkaClusterError(Exception):
    """Base class: the local Kafka cluster could not be provided or operated."""

    __module__ = _PUBLIC_MODULE


class JavaNotFoundError(KafkaClusterError):
    """No usable Java (>= 17): ``JAVA_HOME`` (when set) names none, or PATH has none."""

    __module__ = _PUBLIC_MODULE


class MavenNotFoundError(KafkaClusterError):
    """The Kafka jars are not cached and ``mvn`` is not available to fetch them."""

    __module__ = _PUBLIC_MODULE


class JarFetchError(KafkaClusterError):
    """Maven ran but did not produce a usable Kafka classpath."""

    __module__ = _PUBLIC_MODULE


class ClusterStartError(KafkaClusterError):
    """A node failed to format, start, or become ready within the timeout."""

    __module__ = _PUBLIC_MODULE
