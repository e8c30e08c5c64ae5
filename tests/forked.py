"""Run a function in an ``os.fork()`` child and get its answer back (bounded)."""

from __future__ import annotations

import json
import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any


def in_forked_child(body: Callable[[], Any], timeout: float = 20.0) -> Any:
    """``body()``'s JSON-able result in a forked child; its exception's repr as an error.

    The child ends with ``os._exit`` (no atexit hooks, no parent state flushed twice).
    A child still running after ``timeout`` s (e.g. deadlocked on a lock it inherited
    held) is killed and the call fails the test.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        try:
            answer: Any = {"result": body()}
        except BaseException as exc:  # reported to the parent, not raised here
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            os.write(write, json.dumps(answer, default=repr).encode())
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([read], [], [], max(0.0, left))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"the forked child did not answer within {timeout} s")
            chunk = os.read(read, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    answer = json.loads(b"".join(chunks) or b"{}")
    if "error" in answer:
        raise AssertionError(f"the forked child raised {answer['error']}")
    return answer.get("result")
