"""eventwire._inflight: the ledger that owns every unacknowledged event, and the close gate."""

from __future__ import annotations

import threading
import time

import pytest

from eventwire import DeliveryError, DeliveryFailure, DeliveryHandle, PublisherStateError
from eventwire._inflight import InFlight


def _taken(ledger: InFlight, *, timed_out: bool = False) -> list[DeliveryFailure]:
    """What the next flush()/close() would report (and then forgets)."""
    error = ledger.failures_error(timed_out, "test")
    return list(error.failures) if error is not None else []


class _Report:
    """A delivery report's message (the shape of confluent_kafka.Message)."""

    def __init__(self, partition: int = 0, offset: int = 7) -> None:
        self._partition, self._offset = partition, offset

    def topic(self) -> str:
        return "orders"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_764_489_600_000)


def _handle(ledger: InFlight, n: int = 1) -> DeliveryHandle:
    return DeliveryHandle(ledger, f"id-{n}", "test.Placed", "orders", time.time_ns())


def _tracked(ledger: InFlight, count: int) -> list[DeliveryHandle]:
    handles = [_handle(ledger, n) for n in range(count)]
    for handle in handles:
        ledger.add(handle)
    return handles


class _Hook:
    def __init__(self) -> None:
        self.calls: list[tuple[DeliveryHandle, DeliveryFailure | None]] = []

    def __call__(self, handle: DeliveryHandle, failure: DeliveryFailure | None) -> None:
        self.calls.append((handle, failure))


class TestGate:
    def test_the_gate_lets_sends_in_until_shut(self) -> None:
        """Before shut(), gate() lets a send in, and it leaves no trace after."""
        ledger = InFlight()
        with ledger.gate():
            assert len(ledger.senders) == 1
        assert len(ledger.senders) == 0

    def test_the_gate_refuses_every_send_after_shut(self) -> None:
        """After shut(), gate() raises PublisherStateError, leaving no sender registered."""
        ledger = InFlight()
        assert ledger.shut(timeout=1) is True
        with pytest.raises(PublisherStateError, match="closed"):
            with ledger.gate():
                pytest.fail("a send got past a shut gate")
        assert len(ledger.senders) == 0
        assert ledger.closed is True

    def test_shutting_twice_returns_false(self) -> None:
        """Only the first shut() shuts the gate (and returns True)."""
        ledger = InFlight()
        assert ledger.shut(timeout=1) is True
        assert ledger.shut(timeout=1) is False

    def test_shut_waits_for_a_send_already_past_the_gate(self) -> None:
        """shut() returns only after every send that entered before it has left."""
        ledger = InFlight()
        inside, release = threading.Event(), threading.Event()
        left: list[bool] = []
        left_when_shut_returned: list[bool] = []

        def send() -> None:
            with ledger.gate():
                inside.set()
                release.wait(30)
                left.append(True)

        def close() -> None:
            ledger.shut(timeout=30)
            left_when_shut_returned.append(bool(left))

        sender = threading.Thread(target=send)
        sender.start()
        assert inside.wait(30)
        closer = threading.Thread(target=close)
        closer.start()
        deadline = time.monotonic() + 30
        while not ledger.closed and time.monotonic() < deadline:  # shut() has begun
            time.sleep(0.001)
        release.set()
        sender.join(30)
        closer.join(30)
        assert left_when_shut_returned == [True]


class TestSettle:
    def test_a_report_settles_the_handle_and_runs_each_hook_once(self) -> None:
        """settle() resolves the handle, stops tracking it and calls every hook once; a second
        report for the same handle changes nothing."""
        ledger = InFlight()
        first, second = _Hook(), _Hook()
        ledger.on_settle(first)
        ledger.on_settle(second)
        [handle] = _tracked(ledger, 1)
        ledger.settle(handle, _Report(partition=2, offset=9), None)
        ledger.settle(handle, None, handle.failure_from("_MSG_TIMED_OUT", "late"))
        assert first.calls == second.calls == [(handle, None)]
        assert len(ledger) == 0
        result = handle.result(0)
        assert (result.partition, result.offset) == (2, 9)

    def test_a_failure_is_kept_for_the_next_flush_once(self) -> None:
        """A settled failure nobody observed is reported by the next flush once, then forgotten."""
        ledger = InFlight()
        [handle] = _tracked(ledger, 1)
        failure = handle.failure_from("TOPIC_AUTHORIZATION_FAILED", "no")
        ledger.settle(handle, None, failure)
        assert _taken(ledger) == [failure]
        assert _taken(ledger) == []
        with pytest.raises(DeliveryError):
            handle.result(0)

    def test_a_timed_out_flush_reports_every_unsettled_event(self) -> None:
        """A timed-out flush adds a _FLUSH_TIMEOUT failure per unsettled event,
        which stays tracked."""
        ledger = InFlight()
        handles = _tracked(ledger, 3)
        ledger.settle(handles[0], _Report(), None)
        failures = _taken(ledger, timed_out=True)
        assert [(f.event_id, f.code) for f in failures] == [
            ("id-1", "_FLUSH_TIMEOUT"),
            ("id-2", "_FLUSH_TIMEOUT"),
        ]
        assert len(ledger) == 2

    def test_hooks_registered_later_see_only_later_settlements(self) -> None:
        """on_settle() applies from its registration on."""
        ledger = InFlight()
        early, late = _tracked(ledger, 2)
        ledger.settle(early, _Report(), None)
        hook = _Hook()
        ledger.on_settle(hook)
        ledger.settle(late, _Report(), None)
        assert hook.calls == [(late, None)]


class TestAbandonReleaseDiscard:
    def test_abandon_settles_without_a_flush_failure_and_tells_only_abandon_hooks(
        self,
    ) -> None:
        """abandon() (a send refused at once) settles the handle with its failure, calls only
        hooks registered with abandoned=True, and keeps nothing for flush."""
        ledger = InFlight()
        settled_only, with_abandoned = _Hook(), _Hook()
        ledger.on_settle(settled_only)
        ledger.on_settle(with_abandoned, abandoned=True)
        [handle] = _tracked(ledger, 1)
        failure = handle.failure_from("MSG_SIZE_TOO_LARGE", "too big")
        ledger.abandon(handle, failure)
        assert handle.done() and handle.failure is failure
        assert settled_only.calls == []
        assert with_abandoned.calls == [(handle, failure)]
        assert _taken(ledger) == []
        assert len(ledger) == 0

    def test_abandoning_a_settled_handle_changes_nothing(self) -> None:
        """abandon() after a handle settled neither changes its outcome nor calls hooks."""
        ledger = InFlight()
        hook = _Hook()
        ledger.on_settle(hook, abandoned=True)
        [handle] = _tracked(ledger, 1)
        ledger.settle(handle, _Report(), None)
        ledger.abandon(handle, handle.failure_from("_QUEUE_FULL", "late"))
        assert handle.failure is None
        assert hook.calls == [(handle, None)]

    def test_release_settles_silently(self) -> None:
        """release() (the event is safe elsewhere) settles the handle with the given outcome,
        calls no hook and keeps nothing for flush."""
        ledger = InFlight()
        hook = _Hook()
        ledger.on_settle(hook, abandoned=True)
        [handle] = _tracked(ledger, 1)
        failure = handle.failure_from("_IN_OUTBOX", "")
        ledger.release(handle, failure)
        assert handle.done() and handle.failure is failure
        assert hook.calls == []
        assert _taken(ledger) == []
        assert len(ledger) == 0

    def test_discard_stops_tracking_without_settling(self) -> None:
        """discard() (the send did not enqueue) forgets the handle but leaves it unsettled."""
        ledger = InFlight()
        hook = _Hook()
        ledger.on_settle(hook, abandoned=True)
        [handle] = _tracked(ledger, 1)
        ledger.discard(handle)
        assert len(ledger) == 0
        assert not handle.done()
        assert hook.calls == []
        assert ledger.snapshot() == []


class TestFailAllAndSnapshot:
    def test_fail_all_settles_every_tracked_event_with_the_code(self) -> None:
        """fail_all() fails every tracked event with the code, runs hooks, keeps the failures
        for flush, and returns how many it failed."""
        ledger = InFlight()
        hook = _Hook()
        ledger.on_settle(hook)
        handles = _tracked(ledger, 3)
        assert ledger.fail_all("OUT_OF_ORDER_SEQUENCE_NUMBER", "fatal") == 3
        assert all(h.done() and h._failure is not None for h in handles)  # (not observed)
        assert [h for h, _ in hook.calls] == handles
        failures = _taken(ledger)
        assert [f.code for f in failures] == ["OUT_OF_ORDER_SEQUENCE_NUMBER"] * 3
        assert len(ledger) == 0
        assert ledger.fail_all("_FATAL", "again") == 0

    def test_snapshot_lists_unsettled_events_in_the_order_added(self) -> None:
        """snapshot() (for a re-send) is the unsettled events in the order they were added."""
        ledger = InFlight()
        handles = _tracked(ledger, 5)
        ledger.settle(handles[1], _Report(), None)
        ledger.abandon(handles[3], handles[3].failure_from("_QUEUE_FULL", ""))
        assert ledger.snapshot() == [handles[0], handles[2], handles[4]]
        assert len(ledger) == 3


def _result_raises(handle: DeliveryHandle) -> None:
    with pytest.raises(DeliveryError):
        handle.result(0)


class TestReportedOnce:
    """A failure reaches the application once: flush()/close() report only unobserved ones."""

    @pytest.mark.parametrize(
        "observe",
        [
            pytest.param(_result_raises, id="result-raised"),
            pytest.param(lambda h: h.failed(), id="failed-returned-true"),
            pytest.param(lambda h: h.failure, id="failure-read"),
            pytest.param(lambda h: h.add_done_callback(lambda _h: None), id="late-callback-ran"),
        ],
    )
    def test_an_observed_failure_is_not_reported_again(self, observe: object) -> None:
        """result() raising, failed()/failure telling, or a done-callback running each count
        as observing the failure: the next flush reports nothing."""
        ledger = InFlight()
        [handle] = _tracked(ledger, 1)
        ledger.settle(handle, None, handle.failure_from("TOPIC_AUTHORIZATION_FAILED", "no"))
        observe(handle)  # type: ignore[operator]
        assert ledger.failures_error(False, "flush") is None

    def test_a_callback_registered_before_the_failure_counts_as_observing_it(self) -> None:
        """A done-callback that runs when the event fails is the application being told."""
        ledger = InFlight()
        [handle] = _tracked(ledger, 1)
        seen: list[DeliveryHandle] = []
        handle.add_done_callback(seen.append)
        ledger.settle(handle, None, handle.failure_from("_MSG_TIMED_OUT", "late"))
        assert seen == [handle]
        assert ledger.failures_error(False, "flush") is None

    def test_unobserved_failures_are_reported_once_and_observed_ones_left_out(self) -> None:
        """Of two failures, the one nobody looked at is reported, once; reporting it makes
        it observed, so a later close() does not raise it again."""
        ledger = InFlight()
        seen, unseen = _tracked(ledger, 2)
        for h in (seen, unseen):
            ledger.settle(h, None, h.failure_from("_MSG_TIMED_OUT", "late"))
        with pytest.raises(DeliveryError):
            seen.result(0)
        error = ledger.failures_error(False, "flush")
        assert error is not None
        assert [f.event_id for f in error.failures] == [unseen.event_id]
        assert unseen.observed()
        assert ledger.failures_error(False, "close") is None

    def test_memory_for_unobserved_failures_is_bounded_and_the_rest_counted(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Past KEPT_FAILURES unobserved failures, the rest are counted (and logged once
        as delivery_failures_not_kept), not kept: the flush error says how many."""
        from eventwire._inflight import KEPT_FAILURES

        ledger = InFlight()
        handles = _tracked(ledger, KEPT_FAILURES + 25)
        with caplog.at_level("WARNING", logger="eventwire"):
            for h in handles:
                ledger.settle(h, None, h.failure_from("_MSG_TIMED_OUT", "late"))
        assert len(ledger._failed) == KEPT_FAILURES
        error = ledger.failures_error(False, "flush")
        assert error is not None
        assert len(error.failures) == KEPT_FAILURES and error.not_kept == 25
        assert f"{KEPT_FAILURES + 25} events not delivered" in str(error)
        assert "25 more not kept in memory" in str(error)
        events = [r.msg.get("event") for r in caplog.records if isinstance(r.msg, dict)]
        assert events.count("delivery_failures_not_kept") == 1

    def test_observed_failures_make_room_before_any_is_dropped(self) -> None:
        """A long-lived publisher whose failures are all observed never drops an unobserved
        one: observed failures are let go when the bound is reached."""
        from eventwire._inflight import KEPT_FAILURES

        ledger = InFlight()
        handles = _tracked(ledger, 3 * KEPT_FAILURES)
        for h in handles[:-1]:
            ledger.settle(h, None, h.failure_from("_MSG_TIMED_OUT", "late"))
            assert h.failed()  # the application looks at each one
        last = handles[-1]
        ledger.settle(last, None, last.failure_from("_MSG_TIMED_OUT", "late"))
        assert len(ledger._failed) <= KEPT_FAILURES
        error = ledger.failures_error(False, "flush")
        assert error is not None
        assert [f.event_id for f in error.failures] == [last.event_id]
        assert error.not_kept == 0


class TestHandleShows:
    def test_repr_and_rich_repr_never_show_the_kept_key_or_value(self) -> None:
        """A handle keeps the event's key and value for a re-send; printing it shows neither."""
        from rich.pretty import pretty_repr

        ledger = InFlight()
        handle = _handle(ledger)
        handle._key, handle._value = b"card-4111", b'{"pan":"4111111111111111"}'
        for shown in (repr(handle), pretty_repr(handle)):
            assert "id-1" in shown and "pending" in shown
            assert "4111" not in shown

    def test_handles_compare_and_hash_by_identity(self) -> None:
        """Two handles with the same fields are different events: both stay in the ledger."""
        ledger = InFlight()
        first, second = _handle(ledger), _handle(ledger)
        assert first != second
        ledger.add(first)
        ledger.add(second)
        assert len(ledger) == 2
