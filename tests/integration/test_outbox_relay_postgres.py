"""The outbox relay on a real PostgreSQL server that drops its connection mid-run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from eventwire.outbox import OutboxEntry, OutboxRelay
from eventwire.outbox.postgres import PostgresOutbox
from eventwire.transports.memory import MemoryTransport

RELAY_APP = "eventwire-relay-under-test"


def entries(start: int, count: int) -> list[OutboxEntry]:
    return [
        OutboxEntry(
            f"id-{n}", "T", "orders", b"k", f"v{n}".encode(), (("ce_id", f"id-{n}".encode()),)
        )
        for n in range(start, start + count)
    ]


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` s pass; its last value."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


@pytest.fixture
def admin(postgres_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection on a database without outbox tables."""
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        for table in ("eventwire_outbox", "eventwire_outbox_relays"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        yield conn


def test_the_relay_ships_events_committed_after_its_connection_was_killed(
    admin: psycopg.Connection[Any], postgres_dsn: str
) -> None:
    """pg_terminate_backend on the relay's connection while it runs: the relay thread
    survives, reconnects, and events committed afterwards still arrive, in order."""
    writer = PostgresOutbox(postgres_dsn)
    relay_store = PostgresOutbox(f"{postgres_dsn}?application_name={RELAY_APP}")
    transport = MemoryTransport()
    relay = OutboxRelay(
        relay_store, lambda: transport, idle_interval_s=0.05, base_backoff_s=0.05
    ).start()
    try:
        writer.add(entries(0, 5))
        assert wait_until(lambda: len(transport.records("orders")) == 5)
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (RELAY_APP,),
        ).fetchall()
        assert killed == [(True,)]
        writer.add(entries(5, 5))
        assert wait_until(lambda: len(transport.records("orders")) == 10)
    finally:
        relay.stop(10)
        relay_store.close()
        writer.close()
    assert [r.value for r in transport.records("orders")] == [f"v{n}".encode() for n in range(10)]
