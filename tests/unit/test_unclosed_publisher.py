"""A publisher never closed, with events in flight at interpreter exit, is reported
(``publisher_not_closed``) instead of losing them without a word."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import pytest

from eventwire import AsyncPublisher, DeliveryError, Publisher, _unclosed
from eventwire.observability.logging import capture_logs
from eventwire.transports.memory import MemoryTransport

from .conftest import order

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def only_these_publishers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exit check sees only the publishers the test creates (not other tests')."""
    monkeypatch.setattr(_unclosed, "_open", weakref.WeakSet())


@pytest.mark.usefixtures("only_these_publishers")
class TestAPublisherNeverClosed:
    def test_the_exit_check_warns_of_each_open_publisher_with_events_in_flight(self) -> None:
        """The exit hook logs publisher_not_closed (count, topics, hint) for a publisher
        never closed with events in flight; not for a closed one, nor an idle one."""
        unclosed, idle, closed = MemoryTransport(), MemoryTransport(), MemoryTransport()
        for transport in (unclosed, closed):
            transport.pause()
        left_open = Publisher(transport=unclosed)
        left_open_idle = Publisher(transport=idle)
        done = Publisher(transport=closed)
        for n in range(3):
            left_open.publish(order(n))
        done.publish(order(9))
        with pytest.raises(DeliveryError):
            done.close(0)
        try:
            with capture_logs() as logs:
                _unclosed._report_unclosed()
            warnings = [e for e in logs if e["event"] == "publisher_not_closed"]
            assert [(w["log_level"], w["in_flight"], w["topics"]) for w in warnings] == [
                ("warning", 3, "orders")
            ]
            assert "close()" in warnings[0]["hint"]
        finally:
            unclosed.resume()
            left_open.close(1)
            left_open_idle.close(1)

    def test_the_exit_check_counts_the_async_backlog_and_never_raises(self) -> None:
        """An AsyncPublisher's events waiting for room count as in flight; a publisher
        whose count raises is skipped, the others still reported, nothing raised."""
        transport = MemoryTransport()
        transport.pause()
        pub = AsyncPublisher(transport=transport)
        broken = Publisher(transport=MemoryTransport())

        def boom() -> int:
            raise RuntimeError("boom")

        broken._core.held_elsewhere = boom
        try:
            pub._core.held_elsewhere = lambda: 2  # (two events waiting for room)

            async def main() -> None:
                pub.publish_nowait(order(1))

            asyncio.run(main())
            with capture_logs() as logs:
                _unclosed._report_unclosed()
            counts = [e["in_flight"] for e in logs if e["event"] == "publisher_not_closed"]
            assert counts == [3]
        finally:
            broken.close(0)
            transport.resume()
            asyncio.run(pub.close(1))

    @pytest.mark.parametrize("mode", ["sync", "async", "closed"])
    def test_at_exit_the_warning_goes_to_stderr_and_stdout_stays_empty(self, mode: str) -> None:
        """In a real interpreter exit with no logging configured: the warning reaches
        stderr (Python's last-resort handler), never stdout; a closed publisher is quiet."""
        script = textwrap.dedent(
            """
            import asyncio, sys
            import msgspec
            from eventwire import AsyncPublisher, DeliveryError, Publisher, event
            from eventwire.transports.memory import MemoryTransport

            @event(topic="exit-orders", key="order_id")
            class Placed(msgspec.Struct):
                order_id: str

            transport = MemoryTransport()
            transport.pause()  # never acknowledged
            mode = sys.argv[1]
            if mode == "async":
                async def main():
                    pub = AsyncPublisher(transport=transport)
                    for n in range(2):
                        pub.publish_nowait(Placed(str(n)))
                asyncio.run(main())  # the loop ends, the publisher is never closed
            else:
                pub = Publisher(transport=transport)
                for n in range(2):
                    pub.publish(Placed(str(n)))
                if mode == "closed":
                    try:
                        pub.close(0)
                    except DeliveryError:
                        pass
            """
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), *sys.path])}
        proc = subprocess.run(
            [sys.executable, "-c", script, mode],
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == ""
        if mode == "closed":
            assert "publisher_not_closed" not in proc.stderr
        else:
            assert "publisher_not_closed in_flight=2 topics=exit-orders" in proc.stderr
            assert "Traceback" not in proc.stderr
