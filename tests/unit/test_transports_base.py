"""eventwire.transports.base: the defaults every transport inherits, factory_of and send_within.

(The promises each transport keeps are in tests/integration/test_transport_contract.py.)
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from eventwire.transports.base import (
    BaseTransport,
    DeliveryCallback,
    SendRejected,
    factory_of,
    send_within,
)
from eventwire.transports.memory import MemoryTransport


class Minimal(BaseTransport):
    """A transport implementing only what BaseTransport requires."""

    def __init__(self) -> None:
        super().__init__()
        self.closed_with: list[float] = []

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        on_delivery: DeliveryCallback,
    ) -> None:
        raise NotImplementedError

    def flush(self, timeout: float) -> int:
        return 0

    def close(self, timeout: float) -> int:
        self.closed_with.append(timeout)
        return 0

    def fire(self, code: str) -> None:
        self._report_fatal(code, f"reason of {code}")

    def warn(self, code: str) -> None:
        self._report_error(code, f"reason of {code}")


class TestDefaults:
    def test_a_minimal_transport_has_every_capability(self) -> None:
        """A transport with only send/flush/close answers every other capability with its
        documented default."""
        transport = Minimal()
        transport.wake()
        transport.surface_fatal()
        transport.wait_for_space(0)
        assert transport.check_connection(1) is None
        assert transport.queue_length() is None
        assert transport.recreate() is None

    def test_abandon_closes_at_once_by_default(self) -> None:
        """The default abandon() is close(0)."""
        transport = Minimal()
        transport.abandon()
        assert transport.closed_with == [0]

    def test_fatal_and_error_listeners_hear_their_own_kind(self) -> None:
        """_report_fatal tells every on_fatal listener; _report_error every on_error one."""
        transport = Minimal()
        fatal: list[tuple[str, str]] = []
        errors: list[tuple[str, str]] = []
        transport.on_fatal(lambda c, r: fatal.append((c, r)))
        transport.on_fatal(lambda c, r: fatal.append((c, r)))
        transport.on_error(lambda c, r: errors.append((c, r)))
        transport.fire("_FATAL")
        transport.warn("_TRANSPORT")
        assert fatal == [("_FATAL", "reason of _FATAL")] * 2
        assert errors == [("_TRANSPORT", "reason of _TRANSPORT")]

    def test_send_rejected_carries_code_reason_and_fatality(self) -> None:
        """SendRejected names the code and reason in its message; fatal is False by default."""
        error = SendRejected("MSG_SIZE_TOO_LARGE", "too big")
        assert (error.code, error.reason, error.fatal) == ("MSG_SIZE_TOO_LARGE", "too big", False)
        assert str(error) == "MSG_SIZE_TOO_LARGE: too big"
        assert SendRejected("_FATAL", "x", fatal=True).fatal is True


class TestFactoryOf:
    def test_the_first_call_returns_the_given_transport(self) -> None:
        """factory_of(t)() is t itself."""
        transport = MemoryTransport()
        assert factory_of(transport)() is transport

    def test_later_calls_recreate_the_latest_transport(self) -> None:
        """Each later call returns a new transport re-created from the previous one, writing
        to the same log."""
        first = MemoryTransport()
        make = factory_of(first)
        made = [make(), make(), make()]
        assert made[0] is first
        assert len({id(t) for t in made}) == 3
        made[2].send("orders", b"k", b"v", [], lambda _e, _m: None)
        assert [r.value for r in first.records("orders")] == [b"v"]

    def test_a_transport_that_cannot_be_recreated_raises_send_rejected(self) -> None:
        """From the second call on, a transport whose recreate() is None raises
        SendRejected(_FATAL) naming its type."""
        make = factory_of(Minimal())
        make()
        with pytest.raises(SendRejected, match="Minimal cannot be re-created") as info:
            make()
        assert info.value.code == "_FATAL"


class TestSendWithin:
    def test_a_send_that_enqueues_at_once_does_not_wait(self) -> None:
        """send_within returns True after one try when the first send enqueues."""
        waits: list[float] = []
        assert send_within(lambda: True, waits.append, time.monotonic() + 10) is True
        assert waits == []

    def test_it_waits_for_space_between_tries_until_a_send_enqueues(self) -> None:
        """While sends find the queue full it waits for space (at most 50 ms a time) and
        returns True once one enqueues."""
        tries = iter([False, False, True])
        waits: list[float] = []
        assert send_within(lambda: next(tries), waits.append, time.monotonic() + 10) is True
        assert len(waits) == 2
        assert all(0 < w <= 0.05 for w in waits)

    def test_it_gives_up_at_the_deadline(self) -> None:
        """A queue that stays full until the deadline makes send_within return False."""
        tries: list[None] = []

        def full() -> bool:
            tries.append(None)
            return False

        assert send_within(full, lambda _s: None, time.monotonic() - 1) is False
        assert len(tries) == 1
