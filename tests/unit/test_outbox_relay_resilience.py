"""The outbox relay survives its store's and its transport's errors, and says when it cannot run."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eventwire import EventwireError, Publisher
from eventwire.observability.logging import capture_logs
from eventwire.outbox import OutboxRelay, SQLiteOutbox
from eventwire.transports.memory import MemoryTransport

from .conftest import order
from .test_outbox_relay import entry


class FlakyStore:
    """A SQLiteOutbox whose chosen methods raise ``database is locked`` for a while."""

    def __init__(self, inner: SQLiteOutbox) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self._failures: dict[str, float] = {}
        self._lock = threading.Lock()

    def fail(self, method: str, times: float = 1) -> None:
        """Make the next ``times`` calls of ``method`` raise (``math.inf``: until healed)."""
        with self._lock:
            self._failures[method] = times

    def heal(self) -> None:
        with self._lock:
            self._failures.clear()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls[name] += 1
                failing = self._failures.get(name, 0) > 0
                if failing:
                    self._failures[name] -= 1
            if failing:
                raise sqlite3.OperationalError("database is locked")
            return attr(*args, **kwargs)

        return call


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` s pass; its last value."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


@pytest.fixture
def store(tmp_path: Path) -> FlakyStore:
    return FlakyStore(SQLiteOutbox(tmp_path / "outbox.db"))


def fast_relay(store: FlakyStore, transport: MemoryTransport, **kwargs: Any) -> OutboxRelay:
    return OutboxRelay(
        store,  # type: ignore[arg-type]
        lambda: transport,
        idle_interval_s=0.01,
        base_backoff_s=0.01,
        max_backoff_s=0.02,
        **kwargs,
    )


class TestRelaySurvivesStoreErrors:
    def test_a_locked_database_at_cleanup_does_not_stop_the_relay(self, store: FlakyStore) -> None:
        """One 'database is locked' from cleanup() leaves the relay thread running: events
        committed afterwards are still sent."""
        store.fail("cleanup")
        transport = MemoryTransport()
        relay = fast_relay(store, transport)
        relay._last_cleanup = -math.inf  # cleanup is due at the first round
        relay.start()
        try:
            assert wait_until(lambda: store.calls["cleanup"] >= 1)
            store.inner.add([entry(n) for n in range(3)])
            assert wait_until(lambda: len(transport.records("orders")) == 3)
        finally:
            relay.stop(5)
        assert [r.value for r in transport.records("orders")] == [b"v0", b"v1", b"v2"]

    def test_failing_claims_are_retried_and_logged_once(self, store: FlakyStore) -> None:
        """Five failed claims in a row: the relay backs off, logs the error once (and its
        recovery once), counts all five, then ships everything."""
        store.inner.add([entry(n) for n in range(3)])
        store.fail("claim_batch", 5)
        transport = MemoryTransport()
        relay = fast_relay(store, transport)
        with capture_logs() as logs:
            relay.start()
            try:
                assert wait_until(lambda: len(transport.records("orders")) == 3)
            finally:
                relay.stop(5)
        failing = [e for e in logs if e["event"] == "outbox_relay_failing"]
        assert [(e["step"], e["error"]) for e in failing] == [
            ("round", "OperationalError: database is locked")
        ]
        assert [e["failures"] for e in logs if e["event"] == "outbox_relay_recovered"] == [5]
        assert relay.stats.errors == 5
        assert relay.problem() is None

    def test_a_failing_mark_sent_resends_after_the_lease_without_losing_the_event(
        self, store: FlakyStore
    ) -> None:
        """If marking an acked entry sent fails, the relay goes on; the entry is sent again
        (same ce_id) once its lease ends, and then marked sent."""
        store.inner.add([entry(1)])
        store.fail("mark_sent")
        transport = MemoryTransport()
        relay = fast_relay(store, transport, lease_s=0.2)
        relay.start()
        try:
            assert wait_until(lambda: store.inner.status().pending == 0)
        finally:
            relay.stop(5)
        assert [r.header("ce_id") for r in transport.records("orders")] == [b"id-1", b"id-1"]

    def test_a_failing_transport_factory_is_retried(self, store: FlakyStore) -> None:
        """After a fatal producer error, a factory that fails once is called again later;
        the entry still lands on the new transport."""
        store.inner.add([entry(1)])
        made: list[MemoryTransport] = []
        failures = [RuntimeError("cannot resolve broker")]

        def factory() -> MemoryTransport:
            if made and failures:
                raise failures.pop()
            made.append(MemoryTransport())
            if len(made) == 1:
                made[0].set_fatal()
            return made[-1]

        relay = OutboxRelay(
            store,  # type: ignore[arg-type]
            factory,
            idle_interval_s=0.01,
            base_backoff_s=0.01,
            max_backoff_s=0.02,
        )
        relay.start()
        try:
            assert wait_until(lambda: len(made) == 2 and len(made[1].records("orders")) == 1)
        finally:
            relay.stop(5)
        assert relay.stats.errors == 1
        assert relay.stats.transport_restarts == 1

    def test_the_heartbeat_carries_the_last_error(self, store: FlakyStore) -> None:
        """While its rounds fail, the relay's heartbeat in the store says why."""
        store.fail("claim_batch", math.inf)
        relay = fast_relay(store, MemoryTransport())
        relay.start()
        try:
            assert wait_until(lambda: bool(store.inner.status().relays))
            [beat] = store.inner.status().relays
        finally:
            relay.stop(5)
        assert beat.owner == relay.owner
        assert "database is locked" in (beat.last_error or "")


class TestALongOutage:
    def test_the_relay_survives_more_than_1024_failing_loops_in_a_row(
        self, store: FlakyStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Each failing loop backs off at most 10 s, so 1025 of them is under 3 hours of a
        database outage; the relay must still be running, and ship once it ends."""
        from eventwire.outbox import relay as relay_module

        monkeypatch.setattr(relay_module, "MAX_ERROR_BACKOFF_S", 0.0)  # the loops, not the waits
        store.inner.add([entry(1)])
        store.fail("claim_batch", 1100)
        transport = MemoryTransport()
        relay = fast_relay(store, transport)
        relay.start()
        try:
            assert wait_until(lambda: len(transport.records("orders")) == 1, timeout=60)
            assert relay.running
        finally:
            relay.stop(5)
        assert relay.stats.errors >= 1100


class TestAStoppedRelayLeavesNoStaleHeartbeat:
    """Each relay process has its own owner name (host:pid:id), so a heartbeat left by
    every restart or deploy would show as STALE in ``outbox status`` for a day."""

    def test_a_relay_stopped_on_purpose_deletes_its_heartbeat(self, store: FlakyStore) -> None:
        relay = fast_relay(store, MemoryTransport())
        relay.start()
        try:
            assert wait_until(lambda: bool(store.inner.status().relays))
        finally:
            relay.stop(5)
        assert store.inner.status().relays == ()

    def test_a_relay_whose_loop_died_keeps_its_heartbeat(self, store: FlakyStore) -> None:
        """A BaseException ends run() without the goodbye: STALE then tells the truth."""
        relay = fast_relay(store, MemoryTransport())
        rounds: list[int] = []

        def round_then_die() -> int:
            rounds.append(1)
            if len(rounds) > 1:  # the first loop has written the heartbeat
                raise KeyboardInterrupt
            return 0

        relay._run_round = round_then_die  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            relay.run()
        assert len(rounds) == 2
        assert [beat.owner for beat in store.inner.status().relays] == [relay.owner]


class TestARelayThatDeliversNothingSaysSo:
    """A Kafka outage raises nothing in the relay's loop (its rounds enqueue, the reports
    fail, the entries wait for their retry), so without a word of its own the relay
    would report ``ok`` while the backlog grows."""

    def test_its_last_error_and_heartbeat_name_the_delivery_error_until_one_delivers(
        self, tmp_path: Path
    ) -> None:
        """A round with nothing delivered and entries to retry shows as ``delivery: ...``
        in last_error() and the heartbeat (logged once, not counted as a loop error, not a
        problem() for flush()); the first round that delivers clears it, logged as a
        recovery."""
        store = SQLiteOutbox(tmp_path / "o.db")
        store.add([entry(1), entry(2, key="other")])
        transport = MemoryTransport()
        transport.fail_next(4, "_TRANSPORT", "broker down")
        relay = OutboxRelay(store, lambda: transport, base_backoff_s=0.0, max_backoff_s=0.0)
        with capture_logs() as logs:
            assert relay.run_once() == 2
            assert relay.run_once() == 2
            error = relay.last_error()
            relay._heartbeat()
            [beat] = store.status().relays
            assert relay.problem() is None
            assert relay.stats.errors == 0
            assert relay.drain(timeout=5)
        assert error is not None and error.startswith("delivery: no event of the last round")
        assert "_TRANSPORT: broker down" in error
        assert beat.last_error == error
        assert relay.last_error() is None
        events = [
            (e["event"], e.get("step")) for e in logs if e["event"].startswith("outbox_relay")
        ]
        assert events == [
            ("outbox_relay_not_delivering", None),
            ("outbox_relay_recovered", "delivery"),
        ]

    def test_the_state_ends_when_nothing_is_left_to_retry(self, tmp_path: Path) -> None:
        """An entry retried (state set), then given up to its dead-letter topic: nothing
        waits any more, so the state ends, though no event of the topic was delivered."""
        store = SQLiteOutbox(tmp_path / "o.db")
        store.add([entry(1)])
        transport = MemoryTransport()
        transport.fail_next(2, "_MSG_TIMED_OUT")
        relay = OutboxRelay(
            store, lambda: transport, max_attempts=2, base_backoff_s=0.0, max_backoff_s=0.0
        )
        relay.run_once()
        assert (relay.last_error() or "").startswith("delivery: ")
        relay.run_once()
        assert relay.stats.dead_lettered == 1
        assert relay.last_error() is None

    def test_a_round_that_delivers_some_events_is_not_flagged(self, tmp_path: Path) -> None:
        """One failed entry among delivered ones is a retry, not a relay that delivers nothing."""
        store = SQLiteOutbox(tmp_path / "o.db")
        store.add([entry(1), entry(2, key="other")])
        transport = MemoryTransport()
        transport.fail_next(1, "_MSG_TIMED_OUT")
        relay = OutboxRelay(store, lambda: transport, base_backoff_s=0.0, max_backoff_s=0.0)
        relay.run_once()
        assert relay.stats.retried == 1
        assert relay.last_error() is None


class TestFlushDoesNotPretend:
    def test_flush_raises_when_the_relay_keeps_failing(self, store: FlakyStore) -> None:
        """With an outbox whose claims keep failing, flush() raises RelayFailingError naming
        the error instead of returning as if the relay were only slow."""
        store.fail("claim_batch", math.inf)
        pub = Publisher(
            transport=MemoryTransport(),
            outbox=store,  # type: ignore[arg-type]
            relay_options={"base_backoff_s": 0.01, "max_backoff_s": 0.02},
        )
        handle = pub.publish(order(1))
        with pytest.raises(EventwireError, match="database is locked") as raised:
            pub.flush(0.5)
        assert type(raised.value).__name__ == "RelayFailingError"
        store.heal()
        assert handle.result(timeout=20).topic == "orders"
        pub.flush(5)
        pub.close(5)

    @pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
    def test_flush_and_close_raise_when_the_relay_thread_died(self, store: FlakyStore) -> None:
        """If the relay thread is gone, flush() and close() raise RelayFailingError saying
        so, while the event stays pending in the outbox."""
        pub = Publisher(transport=MemoryTransport(), outbox=store, relay=True)  # type: ignore[arg-type]
        relay = pub._outbox.relay  # type: ignore[union-attr]
        assert relay is not None
        original = store.inner.claim_batch

        def die(*args: Any, **kwargs: Any) -> Any:
            raise SystemExit("relay killed")

        store.inner.claim_batch = die  # type: ignore[method-assign]
        assert wait_until(lambda: relay._thread is not None and not relay._thread.is_alive())
        pub.publish(order(1))
        with pytest.raises(EventwireError, match="died") as raised:
            pub.flush(5)
        assert type(raised.value).__name__ == "RelayFailingError"
        store.inner.claim_batch = original  # type: ignore[method-assign]
        with pytest.raises(EventwireError, match="died"):
            pub.close(0)
        assert store.inner.status().pending == 1


class TestOutboxStatusShowsRelays:
    def test_status_shows_a_failing_relay_and_its_error(
        self, store: FlakyStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`eventwire outbox status` lists the relay from its heartbeat, FAILING with the
        error of its rounds."""
        from eventwire.cli import outbox as cli

        store.fail("claim_batch", math.inf)
        relay = fast_relay(store, MemoryTransport())
        relay.start()
        try:  # (while it runs: a relay that stops deletes its heartbeat)
            assert wait_until(lambda: bool(store.inner.status().relays))
            text = self._status(cli, store.inner.path, monkeypatch)
        finally:
            relay.stop(5)
        assert relay.owner in text
        assert "FAILING" in text
        assert "database is locked" in text

    def test_status_shows_a_relay_that_delivers_nothing_apart_from_a_failing_one(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A heartbeat whose only error is ``delivery: ...`` shows NOT DELIVERING with the
        error; one with a failing step besides shows FAILING."""
        from eventwire.cli import outbox as cli

        store = SQLiteOutbox(tmp_path / "o.db")
        store.add([entry(1)])
        transport = MemoryTransport()
        transport.fail_next(1, "_MSG_TIMED_OUT", "timed out; broker down?")  # a "; " inside
        relay = OutboxRelay(store, lambda: transport, base_backoff_s=60.0)
        relay.run_once()
        relay._heartbeat()  # the heartbeat a running relay writes, from the real text
        [beat] = store.status().relays
        assert (beat.last_error or "").startswith("delivery: no event of the last round")
        assert "; broker down?" in (beat.last_error or "")
        text = self._status(cli, store.path, monkeypatch)
        assert "NOT DELIVERING" in text
        assert "FAILING" not in text
        store.heartbeat(relay.owner, "round: OperationalError: locked; delivery: none (x)")
        text = self._status(cli, store.path, monkeypatch)
        assert "FAILING" in text
        assert "NOT DELIVERING" not in text

    def test_status_flags_a_relay_that_stopped_beating_as_stale(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A relay whose last heartbeat is older than STALE_AFTER_S is shown STALE."""
        from eventwire.cli import outbox as cli

        store = SQLiteOutbox(tmp_path / "o.db")
        store.heartbeat("host:1:dead", None)
        monkeypatch.setattr(cli, "STALE_AFTER_S", -1.0)
        text = self._status(cli, store.path, monkeypatch)
        assert "host:1:dead" in text
        assert "STALE" in text

    def test_status_says_when_no_relay_reported(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With no heartbeat in the store, status says that no relay has reported."""
        from eventwire.cli import outbox as cli

        store = SQLiteOutbox(tmp_path / "o.db")
        assert "none has reported" in self._status(cli, store.path, monkeypatch)

    @staticmethod
    def _status(cli: Any, path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
        import io

        from rich.console import Console

        buffer = io.StringIO()
        monkeypatch.setattr(cli, "out", Console(file=buffer, width=250))
        cli.status(sqlite=str(path), postgres=None)
        return buffer.getvalue()


class _SilentBroker(MemoryTransport):
    """Holds every report (paused) and, like librdkafka, flush() waits its whole timeout."""

    def flush(self, timeout: float) -> int:
        if super().flush(0):
            time.sleep(timeout)
        return super().flush(0)


def test_a_round_waiting_for_a_silent_broker_keeps_beating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round waits up to ack_timeout (30 s by default) for its acks; it wrote no heartbeat
    meanwhile, so `eventwire outbox status` showed a relay waiting on a dead broker as not
    running ("none has reported") and then STALE. It now beats every HEARTBEAT_INTERVAL_S
    while it waits."""
    import eventwire.outbox.relay as relay_module

    monkeypatch.setattr(relay_module, "HEARTBEAT_INTERVAL_S", 0.1)
    inner = SQLiteOutbox(tmp_path / "o.db")
    inner.add([entry(1)])
    beats: list[float] = []
    real_beat = inner.heartbeat

    def counting_beat(owner: str, error: str | None = None) -> None:
        beats.append(time.monotonic())
        real_beat(owner, error)

    inner.heartbeat = counting_beat  # type: ignore[method-assign]
    transport = _SilentBroker()
    transport.pause()
    relay = OutboxRelay(inner, lambda: transport, ack_timeout=2.0, idle_interval_s=0.01)
    relay.start()
    try:
        assert wait_until(lambda: len(beats) >= 5, timeout=10)
        assert relay.stats.rounds == 0  # all of them during the first round's wait
        [beat] = inner.status().relays
        assert beat.age_s < 1.0
    finally:
        transport.resume()
        relay.stop(5)
        inner.close()


def test_rounds_on_a_transport_whose_flush_does_not_wait_end_at_once(tmp_path: Path) -> None:
    """MemoryTransport.pause holds reports and its flush() returns at once: a round then
    ends as before (retried later), rather than spinning for the whole ack_timeout."""
    inner = SQLiteOutbox(tmp_path / "o.db")
    inner.add([entry(1)])
    transport = MemoryTransport()
    transport.pause()
    relay = OutboxRelay(
        inner, lambda: transport, ack_timeout=30.0, idle_interval_s=0.01, base_backoff_s=0.01
    )
    relay.start()
    try:
        assert wait_until(lambda: relay.stats.rounds >= 2, timeout=10)
    finally:
        transport.resume()
        relay.stop(5)
        inner.close()


class TestStopWhileAnotherProcessHoldsTheLock:
    """SIGTERM while another process held the SQLite write lock: the relay's thread waits
    in SQLite for up to busy_timeout_s, holding the store's connection; the stop (and the
    store's close, the heartbeat's delete) waited behind it, far past stop_timeout_s."""

    @staticmethod
    def _locked(path: Path) -> sqlite3.Connection:
        locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN IMMEDIATE")
        locker.execute("UPDATE eventwire_outbox SET attempts = attempts")
        return locker

    def test_stop_and_close_keep_the_stop_timeout(self, tmp_path: Path) -> None:
        store = SQLiteOutbox(tmp_path / "o.db", busy_timeout_s=10)
        store.add([entry(1)])
        locker = self._locked(store.path)
        try:
            relay = OutboxRelay(store, MemoryTransport).start()
            time.sleep(0.5)  # the thread's claim now waits for the lock
            started = time.monotonic()
            deadline = started + 1.0
            relay.stop(1.0)
            with capture_logs() as logs:
                store.close(timeout=deadline - time.monotonic())
            took = time.monotonic() - started
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert took < 3.0  # it waited the claim's busy timeout (10 s) before
        assert any(e["event"] == "outbox_store_not_closed" for e in logs)
        store.close()  # a second close does nothing

    def test_forget_relay_waits_no_longer_than_told(self, tmp_path: Path) -> None:
        store = SQLiteOutbox(tmp_path / "o.db", busy_timeout_s=10)
        store.heartbeat("r1")
        locker = self._locked(store.path)
        try:
            started = time.monotonic()
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                store.forget_relay("r1", timeout_s=0.3)
            assert time.monotonic() - started < 3.0
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        with store._lock:  # another thread of this store inside SQLite
            started = time.monotonic()
            assert store.forget_relay("r1", timeout_s=0.3) is False
            assert time.monotonic() - started < 3.0
        assert [b.owner for b in store.status().relays] == ["r1"]
        assert store.forget_relay("r1", timeout_s=1.0) is True
        assert store.status().relays == ()
        assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
        store.close()

    def test_a_relay_stopped_past_its_deadline_keeps_its_heartbeat_and_says_so(
        self, tmp_path: Path
    ) -> None:
        store = SQLiteOutbox(tmp_path / "o.db", busy_timeout_s=1)
        store.add([entry(1)])
        relay = OutboxRelay(store, MemoryTransport)
        relay._stop_deadline = time.monotonic() - 1  # as stop() leaves it, once past
        relay._stop.set()
        with capture_logs() as logs:
            relay.run()
        [kept] = [e for e in logs if e["event"] == "outbox_relay_heartbeat_kept"]
        # observability review 2, F05: the store was not busy; the deadline had passed
        assert kept["reason"] == "the stop timeout ran out before the relay's last round ended"
        store.close()

    def test_a_busy_store_at_stop_keeps_the_heartbeat_and_says_the_store_was_busy(
        self, tmp_path: Path
    ) -> None:
        store = SQLiteOutbox(tmp_path / "o.db", busy_timeout_s=1)
        relay = OutboxRelay(store, MemoryTransport)
        relay._stop_deadline = time.monotonic() + 0.3
        relay._stop.set()
        with store._lock, capture_logs() as logs:  # another thread of the store in SQLite
            relay.run()
        [kept] = [e for e in logs if e["event"] == "outbox_relay_heartbeat_kept"]
        assert kept["reason"] == "the store was busy past the stop timeout"
        store.close()
