"""Backends for the shared behaviour tests: the memory transport and the real broker."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import pytest

from eventwire import AsyncPublisher, Publisher, Route
from eventwire.transports.memory import MemoryTransport


class Placed(msgspec.Struct, frozen=True):
    order_id: str
    seq: int
    note: str = ""


class _Record(Protocol):
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    def header(self, name: str) -> bytes | None: ...


@dataclass
class Backend:
    """One place to publish to, and a way to read back what landed there."""

    name: str
    topic: str
    bootstrap: str | None = None
    memory: MemoryTransport | None = None
    opened: list[Any] = field(default_factory=list)

    def routes(self) -> dict[type, Route]:
        return {Placed: Route(topic=self.topic, key="order_id", type_name="test.Placed")}

    def publisher(self, **kwargs: Any) -> Publisher:
        pub = Publisher(self.bootstrap, transport=self.memory, routes=self.routes(), **kwargs)
        self.opened.append(pub)
        return pub

    def async_publisher(self, **kwargs: Any) -> AsyncPublisher:
        return AsyncPublisher(self.bootstrap, transport=self.memory, routes=self.routes(), **kwargs)

    def read(self, expected: int) -> Sequence[_Record]:
        if self.memory is not None:
            return self.memory.records(self.topic)
        from eventwire_devkit.consume import read_topic

        assert self.bootstrap is not None
        return read_topic(self.bootstrap, self.topic, expected=expected, timeout=60, idle=0.5)


@pytest.fixture(params=["memory", "kafka"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The same test runs on the memory transport and on the real local broker."""
    if request.param == "memory":
        b = Backend("memory", "orders-mem", memory=MemoryTransport(partitions=3))
    else:
        topic = request.getfixturevalue("kafka_topic")
        b = Backend("kafka", topic, bootstrap=request.getfixturevalue("kafka_bootstrap"))
    yield b
    for pub in b.opened:
        if not pub.closed:
            pub.close(10)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A private PostgreSQL server (Debian's package) for the session; skips if absent.

    In strict mode (``--eventwire-strict`` / ``EVENTWIRE_DEVKIT_STRICT=1``) it fails instead.
    """
    from eventwire_devkit.postgres import LocalPostgres, PostgresUnavailableError
    from eventwire_devkit.pytest_plugin import unavailable

    server = LocalPostgres()
    try:
        server.start()
    except PostgresUnavailableError as exc:
        unavailable(f"PostgreSQL unavailable: {exc}")
    yield server.dsn
    server.close()
