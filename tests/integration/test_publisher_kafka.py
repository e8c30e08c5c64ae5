"""Publisher behaviour that only a real broker can show: connection errors, shutdown, lag."""

from __future__ import annotations

import asyncio
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec

from eventwire import (
    AsyncPublisher,
    BrokerUnavailableError,
    DeliveryHandle,
    Publisher,
    PublisherStateError,
    Route,
)
from eventwire_devkit.consume import read_topic

from .conftest import Placed

WORKER = Path(__file__).with_name("shutdown_worker.py")


class TestConnection:
    def test_wrong_bootstrap_port_fails_within_the_connect_timeout(self) -> None:
        """Nothing listening at the bootstrap address: BrokerUnavailableError, bounded."""
        start = time.monotonic()
        try:
            Publisher("127.0.0.1:1", connect_timeout=2)
        except BrokerUnavailableError as exc:
            assert "127.0.0.1:1" in str(exc) and "connect_timeout" in str(exc)
        else:
            raise AssertionError("expected BrokerUnavailableError")
        assert time.monotonic() - start < 10

    def test_unresolvable_bootstrap_host_fails_within_the_connect_timeout(self) -> None:
        """An unknown host name: BrokerUnavailableError naming it, within a bounded time."""
        start = time.monotonic()
        try:
            Publisher("no-such-host.invalid:9092", connect_timeout=2)
        except BrokerUnavailableError as exc:
            assert "no-such-host.invalid" in str(exc)
        else:
            raise AssertionError("expected BrokerUnavailableError")
        assert time.monotonic() - start < 10

    def test_async_connection_check_runs_on_enter(self) -> None:
        """AsyncPublisher checks the broker in a worker thread on `async with`."""

        async def main() -> None:
            async with AsyncPublisher("127.0.0.1:1", connect_timeout=1):
                raise AssertionError("should not get here")

        try:
            asyncio.run(main())
        except BrokerUnavailableError:
            pass
        else:
            raise AssertionError("expected BrokerUnavailableError")


class TestAsyncLoopLag:
    def test_event_loop_keeps_ticking_while_publishing_to_kafka(
        self, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """A 1 ms ticker keeps ticking while 20k events go to the broker: median lag under
        20 ms and no stall of 1 s (what a blocking flush or BufferError wait would cause)."""
        routes = {Placed: Route(topic=kafka_topic, key="order_id")}

        async def main() -> tuple[float, float, int]:
            lags: list[float] = []
            stop = asyncio.Event()

            async def ticker() -> None:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    await asyncio.sleep(0.001)
                    lags.append(time.perf_counter() - t0 - 0.001)

            tick = asyncio.create_task(ticker())
            async with AsyncPublisher(kafka_bootstrap, routes=routes) as pub:
                delivered = 0
                for chunk in range(200):
                    results = await pub.publish_many(
                        Placed(order_id=f"o{n % 50}", seq=n)
                        for n in range(chunk * 100, (chunk + 1) * 100)
                    )
                    delivered += sum(1 for r in results if not isinstance(r, Exception))
            stop.set()
            await tick
            return statistics.median(lags), max(lags), delivered

        median, worst, delivered = asyncio.run(main())
        assert delivered == 20_000
        assert median < 0.02, f"median loop lag {median * 1000:.1f} ms"
        assert worst < 1.0, f"event loop stalled for {worst * 1000:.0f} ms"


class TestGracefulShutdown:
    def test_sigterm_mid_stream_loses_nothing_and_exits_0(
        self, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """SIGTERM while publishing: the loop stops, the flush completes, every event lands."""
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), kafka_bootstrap, kafka_topic, "stream"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "STARTED"
        time.sleep(2.0)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
        lines = out.split()
        assert lines[-1] == "DONE"
        sent = set(lines[:-1])
        assert len(sent) > 100
        consumed = {
            (r.header("ce_id") or b"").decode()
            for r in read_topic(kafka_bootstrap, kafka_topic, expected=len(sent), idle=1.0)
        }
        assert sent - consumed == set(), f"{len(sent - consumed)} events lost"

    def test_sigterm_during_a_stuck_flush_exits_bounded_without_abort(self) -> None:
        """SIGTERM while flush() waits on unreachable brokers: no abort (134), bounded exit,
        and every undelivered event is reported."""
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), "127.0.0.1:1", "orders", "stuck-flush"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "FLUSHING"
        started = time.monotonic()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)  # a second, impatient signal
        out, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - started
        assert proc.returncode == 3, (proc.returncode, err[-2000:])
        assert "FLUSH-REPORTED 1000" in out  # flush listed every straggler
        assert "FAILED 1000 signal=15" in out  # close dropped and reported them all
        assert elapsed < 20


def _slow_key(event: Placed) -> str:
    time.sleep(0.5)
    return event.order_id


class TestCloseGate:
    def test_a_publish_racing_close_is_refused_or_reported_and_not_sent_later(
        self, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """A publish whose key function runs while close() begins raises
        PublisherStateError (and its event never reaches the broker), or is reported."""
        routes = {Placed: Route(topic=kafka_topic, key=_slow_key)}
        pub = Publisher(kafka_bootstrap, routes=routes)
        outcome: dict[str, object] = {}

        def racing_publish() -> None:
            try:
                outcome["handle"] = pub.publish(Placed(order_id="late", seq=1))
            except Exception as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=racing_publish)
        thread.start()
        time.sleep(0.1)  # the key function is running
        pub.close(5)
        thread.join(10)
        if "error" in outcome:
            assert isinstance(outcome["error"], PublisherStateError)
            assert read_topic(kafka_bootstrap, kafka_topic, idle=2.0, timeout=20) == []
        else:
            handle = outcome["handle"]
            assert isinstance(handle, DeliveryHandle)
            assert handle.done(), "publish() returned a handle that close() never settled"


class TestAsyncBackpressureOrder:
    def test_per_key_order_holds_with_a_tiny_local_queue(
        self, kafka_bootstrap: str, kafka_topic: str
    ) -> None:
        """3,000 events over 5 keys through a 20-message local queue: every key's events
        are in the log in publish order, and all are delivered."""
        routes = {Placed: Route(topic=kafka_topic, key="order_id")}

        async def main() -> int:
            async with AsyncPublisher(
                kafka_bootstrap,
                routes=routes,
                overrides={"queue.buffering.max.messages": 20},
            ) as pub:
                futures = [
                    pub.publish_nowait(Placed(order_id=f"k{n % 5}", seq=n)) for n in range(3000)
                ]
                results = await asyncio.gather(*futures)
            return len(results)

        assert asyncio.run(main()) == 3000
        records = read_topic(kafka_bootstrap, kafka_topic, expected=3000, idle=1.0)
        seqs: dict[bytes | None, list[int]] = {}
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            seqs.setdefault(r.key, []).append(msgspec.json.decode(r.value)["seq"])
        assert len(records) == 3000
        for key, seq in seqs.items():
            assert seq == sorted(seq), f"key {key!r} out of order"
