"""Run in a subprocess by test_review_regressions: done-callbacks that call the publisher.

A done-callback that calls ``publish()``, ``flush()`` or ``close()`` on a Kafka
publisher once aborted the whole process (confluent-kafka's ``CallState_get``
assertion), so it is tried in a child process against librdkafka's mock cluster.
The child prints one JSON line (its last) saying what happened.

Usage: ``python callback_worker.py MODE`` where MODE is one of
``publish-any``, ``publish-inline``, ``publish-poll`` (the callback publishes a
follow-up event when it runs on any thread / on the publishing thread / on the
``eventwire-poll`` thread), ``flush-inline``, ``flush-poll``, ``close-inline``,
``close-poll`` (the first callback to run on that thread calls flush()/close()).
"""

from __future__ import annotations

import faulthandler
import json
import sys
import threading
import time
from typing import Any

import msgspec

from eventwire import DeliveryError, DeliveryHandle, Publisher, event
from eventwire_devkit.librdkafka import MockCluster

faulthandler.enable()


@event(topic="orders", key="order_id")
class Placed(msgspec.Struct, frozen=True):
    order_id: str
    n: int


def _on_thread(where: str, main: threading.Thread) -> bool:
    current = threading.current_thread()
    if where == "inline":
        return current is main
    if where == "poll":
        return current is not main
    return True


def chained_publishes(pub: Publisher, where: str, count: int) -> dict[str, Any]:
    """Each callback running on ``where`` publishes a follow-up event."""
    main = threading.current_thread()
    lock = threading.Lock()
    state: dict[str, Any] = {"callbacks": 0, "eligible": 0, "errors": []}
    followups: list[DeliveryHandle] = []

    def callback(_handle: DeliveryHandle) -> None:
        with lock:
            state["callbacks"] += 1
        if not _on_thread(where, main):
            return
        with lock:
            state["eligible"] += 1
        try:
            followups.append(pub.publish(Placed(order_id="follow-up", n=0)))
        except Exception as exc:
            with lock:
                state["errors"].append(repr(exc)[:300])

    for n in range(count):
        pub.publish(Placed(order_id=f"k{n % 10}", n=n)).add_done_callback(callback)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            pub.flush(30)
        except DeliveryError as exc:
            state["errors"].extend(f"{f.code}: {f.reason}"[:300] for f in exc.failures)
        if state["callbacks"] == count and all(h.done() for h in list(followups)):
            break
    state["followups"] = len(followups)
    state["followups_delivered"] = sum(h.done() and not h.failed() for h in followups)
    return state


def reentrant_call(pub: Publisher, what: str, where: str) -> dict[str, Any]:
    """The first callback to run on ``where`` calls ``pub.flush(3)`` or ``pub.close()``."""
    main = threading.current_thread()
    info: dict[str, Any] = {}
    called = threading.Event()
    handles: list[DeliveryHandle] = []

    registering = [False]  # True while add_done_callback runs on the main thread

    def callback(_handle: DeliveryHandle) -> None:
        if not _on_thread(where, main) or info:
            return
        if registering[0] and threading.current_thread() is main:
            # The handle had settled already (its report was served inside its own
            # publish()), so add_done_callback ran the callback right here, outside
            # any delivery callback, where flush()/close() are allowed: not the case.
            return
        info["thread"] = threading.current_thread().name
        try:
            if what == "flush":
                pub.flush(3)
            else:
                pub.close()
            info["exc_type"] = None
        except Exception as exc:
            info["exc_type"] = type(exc).__name__
            info["exc_msg"] = str(exc)[:500]
        called.set()

    if where == "inline":
        # A report served inside a later publish() on this thread runs the callback here.
        for n in range(200_000):
            handle = pub.publish(Placed(order_id=f"k{n % 10}", n=n))
            handles.append(handle)
            registering[0] = True
            handle.add_done_callback(callback)
            registering[0] = False
            if called.is_set():
                break
    else:
        handle = pub.publish(Placed(order_id="k", n=0))
        handles.append(handle)
        handle.add_done_callback(callback)
        called.wait(30)
    info["called"] = called.is_set()
    info["published"] = len(handles)
    info["closed_by_callback"] = pub.closed
    return info


def main(mode: str) -> None:
    what, where = mode.split("-")
    with MockCluster() as mock:
        mock.create_topic("orders", partitions=1)
        pub = Publisher(
            mock.bootstrap_servers, source="urn:test", connect_timeout=5, close_timeout=10
        )
        if what == "publish":
            result = chained_publishes(pub, where, 20_000)
        else:
            result = reentrant_call(pub, what, where)
        try:
            pub.close(30)
            result["close_error"] = None
        except DeliveryError as exc:
            result["close_error"] = sorted({f.code for f in exc.failures})
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
