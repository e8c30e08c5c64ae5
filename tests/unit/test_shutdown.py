"""GracefulShutdown records signals, then puts the previous handlers back (issue 10)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from types import FrameType

import pytest

from eventwire import GracefulShutdown


class Recorder:
    """A signal handler that notes the signals it got."""

    def __init__(self) -> None:
        self.got: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.got.append(signum)


@pytest.fixture(autouse=True)
def _keep_handlers() -> Iterator[None]:
    """Whatever a test does, pytest gets its own SIGTERM/SIGINT handlers back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def send_sigterm_and_wait(until: Recorder) -> None:
    """SIGTERM this process, and give the main thread the moment to run the handler."""
    os.kill(os.getpid(), signal.SIGTERM)
    deadline = time.monotonic() + 2
    while not until.got and time.monotonic() < deadline:
        time.sleep(0.001)


class TestSync:
    def test_a_signal_is_recorded_and_the_previous_handler_restored(self) -> None:
        """Inside the block SIGTERM only sets the flag; after it, the custom handler
        is installed again and runs on SIGTERM."""
        custom = Recorder()
        signal.signal(signal.SIGTERM, custom)
        with GracefulShutdown() as shutdown:
            os.kill(os.getpid(), signal.SIGTERM)
            assert shutdown.wait_sync(2)
            assert shutdown.received is signal.SIGTERM
        assert custom.got == []
        assert signal.getsignal(signal.SIGTERM) is custom
        send_sigterm_and_wait(custom)
        assert custom.got == [signal.SIGTERM]


class TestAsyncio:
    def test_the_previous_handler_is_restored_and_runs(self) -> None:
        """After `async with GracefulShutdown()`, SIGTERM's handler is the custom one again
        (not SIG_DFL), and a SIGTERM runs it instead of killing the process."""
        custom = Recorder()
        signal.signal(signal.SIGTERM, custom)

        async def main() -> signal.Signals | None:
            async with GracefulShutdown() as shutdown:
                os.kill(os.getpid(), signal.SIGTERM)
                await asyncio.wait_for(shutdown.wait(), 2)
            return shutdown.received

        assert asyncio.run(main()) is signal.SIGTERM
        assert custom.got == []
        assert signal.getsignal(signal.SIGTERM) is custom
        send_sigterm_and_wait(custom)
        assert custom.got == [signal.SIGTERM]

    def test_the_handler_is_restored_while_the_loop_still_runs(self) -> None:
        """The custom handler is back as soon as the block ends, not only when the loop
        closes."""
        custom = Recorder()
        signal.signal(signal.SIGTERM, custom)

        async def main() -> object:
            async with GracefulShutdown():
                pass
            return signal.getsignal(signal.SIGTERM)

        assert asyncio.run(main()) is custom

    def test_sigint_keeps_keyboard_interrupt(self) -> None:
        """SIGINT gets Python's KeyboardInterrupt handler back, as it had before."""
        signal.signal(signal.SIGINT, signal.default_int_handler)

        async def main() -> None:
            async with GracefulShutdown():
                pass

        asyncio.run(main())
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def test_a_handler_the_loop_had_before_is_restored(self) -> None:
        """A SIGTERM handler added with loop.add_signal_handler before the block (as web
        servers do) handles SIGTERM again after it."""
        got: list[str] = []

        async def main() -> None:
            loop = asyncio.get_running_loop()
            app_stopped = asyncio.Event()

            def app_handler() -> None:
                got.append("app")
                app_stopped.set()

            loop.add_signal_handler(signal.SIGTERM, app_handler)
            try:
                async with GracefulShutdown():
                    pass
                assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
                os.kill(os.getpid(), signal.SIGTERM)
                await asyncio.wait_for(app_stopped.wait(), 2)
            finally:
                loop.remove_signal_handler(signal.SIGTERM)

        asyncio.run(main())
        assert got == ["app"]


class TestTheHandlerTakesNoLock:
    def test_a_signal_while_the_main_thread_holds_the_wait_lock_does_not_deadlock(
        self,
    ) -> None:
        """Python runs the handler between two bytecodes of the main thread, which may be
        inside wait_sync() holding the Event's (non-reentrant) lock: a handler that set the
        Event blocked forever on its own thread's lock (5 of 400 processes hung on one
        SIGTERM). Simulated exactly: the handler runs on a thread that holds that lock."""
        import threading

        shutdown = GracefulShutdown()
        done = threading.Event()

        def handler_inside_wait() -> None:
            with shutdown._event._cond:  # what Event.wait holds when the signal lands
                shutdown._handler(signal.SIGTERM, None)
            done.set()

        threading.Thread(target=handler_inside_wait, daemon=True).start()
        assert done.wait(5), "the signal handler blocked on the lock its thread holds"
        assert shutdown.requested
        assert shutdown.received is signal.SIGTERM

    def test_wait_sync_returns_soon_after_a_real_signal(self) -> None:
        with GracefulShutdown() as shutdown:
            started = time.monotonic()
            os.kill(os.getpid(), signal.SIGTERM)
            assert shutdown.wait_sync(10)
            assert time.monotonic() - started < 5
        assert shutdown.received is signal.SIGTERM

    def test_wait_sync_times_out_without_a_request(self) -> None:
        shutdown = GracefulShutdown()
        started = time.monotonic()
        assert shutdown.wait_sync(0.15) is False
        assert time.monotonic() - started >= 0.14


class TestAsyncioEdges:
    def test_async_with_on_a_worker_threads_loop_says_to_use_the_main_thread(self) -> None:
        """Not asyncio's 'set_wakeup_fd only works in main thread' from deep inside."""
        import threading

        errors: list[BaseException] = []

        async def enter() -> None:
            async with GracefulShutdown():
                pass

        def run() -> None:
            try:
                asyncio.run(enter())
            except BaseException as exc:  # collected for the assertion
                errors.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        worker.join(10)
        assert len(errors) == 1
        assert isinstance(errors[0], RuntimeError)
        assert "GracefulShutdown must be entered in the main thread" in str(errors[0])

    def test_request_after_the_loop_closed_only_records_it(self) -> None:
        """request() is 'safe from any thread': after the block's loop closed too."""

        async def use() -> GracefulShutdown:
            async with GracefulShutdown() as shutdown:
                return shutdown

        shutdown = asyncio.run(use())
        shutdown.request()
        assert shutdown.requested
