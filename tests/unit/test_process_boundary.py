"""Publishers, outbox stores and relays are made in each process, never copied into one.

Pickling one (``multiprocessing`` with the spawn or forkserver start method, a
``ProcessPoolExecutor`` argument, ``copy.copy``) raises a TypeError that names the
class and says what to do, instead of "cannot pickle '_thread.lock' object". (PostgresOutbox: in
tests/integration/test_outbox_postgres.py, as it needs a server.)
"""

from __future__ import annotations

import copy
import multiprocessing
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventwire import AsyncPublisher, Publisher
from eventwire.outbox import OutboxRelay, SQLiteOutbox
from eventwire.transports.memory import MemoryTransport


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteOutbox]:
    store = SQLiteOutbox(tmp_path / "outbox.db")
    yield store
    store.close()


def _use(obj: object) -> None:  # the target of a spawned process (never runs)
    raise AssertionError(f"{obj!r} reached the child")


class TestPickling:
    def test_a_publisher_says_to_create_one_per_process(self) -> None:
        publisher = Publisher(transport=MemoryTransport())
        try:
            with pytest.raises(TypeError, match=r"^Publisher cannot be pickled") as caught:
                pickle.dumps(publisher)
            assert "Create one Publisher per process" in str(caught.value)
        finally:
            publisher.close()

    def test_an_async_publisher_too(self) -> None:
        publisher = AsyncPublisher(transport=MemoryTransport())
        with pytest.raises(TypeError, match="Create one AsyncPublisher per process"):
            pickle.dumps(publisher)

    def test_a_sqlite_store_says_to_open_it_by_path(self, store: SQLiteOutbox) -> None:
        with pytest.raises(TypeError, match=r"SQLiteOutbox\(path\)"):
            pickle.dumps(store)
        with pytest.raises(TypeError, match=r"^SQLiteOutbox cannot be pickled"):
            copy.copy(store)

    def test_a_relay_says_to_create_it_where_it_runs(self, store: SQLiteOutbox) -> None:
        relay = OutboxRelay(store, MemoryTransport)
        with pytest.raises(TypeError, match="in the process that runs it"):
            pickle.dumps(relay)

    def test_a_spawned_process_is_refused_with_the_explanation(self, store: SQLiteOutbox) -> None:
        """What a user of multiprocessing sees: the explanation, raised by start()."""
        child = multiprocessing.get_context("spawn").Process(target=_use, args=(store,))
        with pytest.raises(TypeError, match=r"Create the store in each process from its path"):
            child.start()
        assert child.pid is None  # refused before a process was started
