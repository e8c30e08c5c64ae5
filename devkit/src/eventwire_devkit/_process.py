"""Child processes (Kafka nodes, PostgreSQL) that do not outlive the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable

__all__ = ["pdeathsig_preexec"]

_PR_SET_PDEATHSIG = 1


def pdeathsig_preexec(
    sig: signal.Signals = signal.SIGKILL, *, then: Callable[[], None] | None = None
) -> Callable[[], None] | None:
    """Return a ``preexec_fn`` making the child get ``sig`` when this process dies.

    ``then`` runs first in the child (e.g. dropping privileges: a change of user clears
    the parent-death signal, so it is set after). Linux delivers the signal when the
    *thread* that forked the child exits, so this is only armed from the main thread
    (elsewhere, and off Linux, the result is ``then`` alone, or None).
    """
    if not sys.platform.startswith("linux") or (
        threading.current_thread() is not threading.main_thread()
    ):
        return then
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return then
    parent = os.getpid()
    number = int(sig)

    def preexec() -> None:
        if then is not None:
            then()
        prctl(_PR_SET_PDEATHSIG, number, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec
