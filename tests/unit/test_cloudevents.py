"""CloudEvents headers and UUIDv7 event ids."""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time
import uuid
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventwire import _cloudevents
from eventwire._cloudevents import HeaderTemplate, _ce_time, new_event_id, rfc3339_millis


class TestEventId:
    def test_is_a_version_7_rfc_9562_uuid(self) -> None:
        """Event ids parse as UUIDs with version 7 and the RFC variant."""
        u = uuid.UUID(new_event_id())
        assert u.version == 7
        assert u.variant == uuid.RFC_4122

    def test_embeds_the_unix_millisecond_timestamp(self) -> None:
        """The first 48 bits are the creation time in Unix milliseconds."""
        before = time.time_ns() // 1_000_000
        u = uuid.UUID(new_event_id())
        after = time.time_ns() // 1_000_000
        assert before <= u.int >> 80 <= after

    def test_ids_are_unique(self) -> None:
        """100k ids made in a tight loop never collide."""
        ids = {new_event_id() for _ in range(100_000)}
        assert len(ids) == 100_000

    def test_ids_sort_by_time_across_milliseconds(self) -> None:
        """Ids from a later millisecond sort after ids from an earlier one."""
        assert new_event_id(1_000) < new_event_id(1_001) < new_event_id(2**40)


class TestTime:
    @given(st.integers(min_value=0, max_value=253402300799999))
    def test_rfc3339_matches_datetime(self, ms: int) -> None:
        """ce_time equals datetime's own ISO format of the same instant, in UTC with Z."""
        expected = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
        parsed = dt.datetime.fromisoformat(rfc3339_millis(ms).replace("Z", "+00:00"))
        assert abs((parsed - expected).total_seconds()) < 0.001
        assert rfc3339_millis(ms).endswith("Z")


class TestHeaderTemplate:
    def test_builds_the_binary_mode_kafka_binding_headers(self) -> None:
        """Headers are ce_specversion, ce_id, ce_type, ce_source, ce_time, content-type."""
        t = HeaderTemplate(
            type_name="com.x.Placed", source="urn:svc", content_type="application/json"
        )
        headers = dict(t.build("id-1", 0, [("traceparent", b"00-abc")]))
        assert headers == {
            "ce_specversion": b"1.0",
            "ce_id": b"id-1",
            "ce_type": b"com.x.Placed",
            "ce_source": b"urn:svc",
            "ce_time": b"1970-01-01T00:00:00.000Z",
            "content-type": b"application/json",
            "traceparent": b"00-abc",
        }


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def reference_rfc3339(ms: int) -> str:
    """The slow, cache-free formatter the cached ones must agree with."""
    instant = _EPOCH + dt.timedelta(milliseconds=ms)
    return f"{instant:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def preempted_call(
    func: Callable[[int], object], a_ms: int, b_ms: int, pause_at: int
) -> tuple[object, object, bool]:
    """Call ``func(a_ms)`` on a thread that stops before its ``pause_at``-th line in
    eventwire._cloudevents; while it is stopped, call ``func(b_ms)`` here to the end.

    Returns both results and whether the thread did stop (False: it finished in
    fewer lines). This is a thread switch at one exact point, made deterministic.
    """
    paused, resume = threading.Event(), threading.Event()
    lines = 0

    def in_module(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal lines
        if event == "line":
            lines += 1
            if lines == pause_at:
                paused.set()
                resume.wait(5)
        return in_module

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        return in_module if frame.f_code.co_filename == _cloudevents.__file__ else None

    results: dict[str, object] = {}

    def run_a() -> None:
        sys.settrace(tracer)
        try:
            results["a"] = func(a_ms)
        finally:
            sys.settrace(None)

    thread = threading.Thread(target=run_a)
    thread.start()
    while not paused.wait(0.01) and thread.is_alive():
        pass
    stopped = paused.is_set()
    results["b"] = func(b_ms)
    resume.set()
    thread.join(5)
    return results["a"], results["b"], stopped


# Another millisecond of the same second, another second, and the same millisecond.
_PAIRS = [
    (1_764_480_000_123, 1_764_480_000_456),
    (1_764_480_000_123, 1_764_480_007_456),
    (1_764_480_000_123, 1_764_480_000_123),
]


class TestTimeCachesUnderThreads:
    """Regression tests for issue 10: the one-entry time caches under threads."""

    @pytest.mark.parametrize(
        ("func", "expected"),
        [
            (rfc3339_millis, reference_rfc3339),
            (_ce_time, lambda ms: reference_rfc3339(ms).encode()),
        ],
        ids=["rfc3339_millis", "_ce_time"],
    )
    @pytest.mark.parametrize(("a_ms", "b_ms"), _PAIRS)
    def test_a_thread_switch_at_any_line_gives_each_caller_its_own_time(
        self, func: Callable[[int], object], expected: Callable[[int], object], a_ms: int, b_ms: int
    ) -> None:
        """Whichever line of the cache code a caller is stopped at while another caller
        formats another time, both get their own time, and so do later callers."""
        pause_at = 0
        while True:
            pause_at += 1
            func(1_000_000_000_999)  # a third time in the cache: both callers miss
            got_a, got_b, stopped = preempted_call(func, a_ms, b_ms, pause_at)
            assert (pause_at, got_a, got_b) == (pause_at, expected(a_ms), expected(b_ms))
            assert (pause_at, func(a_ms), func(b_ms)) == (pause_at, expected(a_ms), expected(b_ms))
            if not stopped:
                break
        assert pause_at > 3  # every line of the miss path was a switch point

    def test_many_threads_formatting_different_times_each_get_their_own(self) -> None:
        """Eight threads building CloudEvents headers for their own timestamps, with thread
        switches as often as CPython allows, always get their own ce_time."""
        template = HeaderTemplate(type_name="t", source="s", content_type="c")
        wrong: list[tuple[int, bytes]] = []
        start = threading.Barrier(8)

        def work(n: int) -> None:
            # Each thread has its own millisecond (and second, for half of them).
            times = [1_764_480_000_000 + n * 1_001, 1_764_480_000_000 + n * 7]
            refs = {ms: reference_rfc3339(ms).encode() for ms in times}
            start.wait()
            for i in range(20_000):
                ms = times[i % 2]
                got = dict(template.build("id", ms))["ce_time"]
                if got != refs[ms] or rfc3339_millis(ms).encode() != refs[ms]:
                    wrong.append((ms, got))

        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            sys.setswitchinterval(interval)
        assert wrong == []
