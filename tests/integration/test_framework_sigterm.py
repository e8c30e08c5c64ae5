"""SIGTERM honoured: each framework recipe runs under uvicorn in a subprocess against the
real broker; the test sends SIGTERM while a client keeps publishing through the app.
Every event the app accepted before the signal reaches the broker (read back by a real
consumer), and the process ends within the shutdown bound.

The apps: examples/fastapi_app.py as FastAPI (``fastapi_app:app``) and as plain
Starlette (``--factory fastapi_app:create_starlette_app``), and the Django project
(``shop_site.asgi:application``, Django wrapped in its lifespan).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from eventwire_devkit.consume import read_topic

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
APPS = {
    "fastapi": ["fastapi_app:app", "--app-dir", str(EXAMPLES)],
    "starlette": ["fastapi_app:create_starlette_app", "--factory", "--app-dir", str(EXAMPLES)],
    "django": ["shop_site.asgi:application", "--app-dir", str(EXAMPLES / "django_project")],
}


class Order(msgspec.Struct, frozen=True):
    """OrderPlaced as a consumer reads it (the apps' own classes live in the subprocess)."""

    order_id: str
    total: float


def read_order_ids(bootstrap: str, topic: str, expected: int) -> list[str]:
    """The order ids of the OrderPlaced events in ``topic``, read by a real consumer."""
    records = read_topic(bootstrap, topic, expected=expected, timeout=60, idle=0.5)
    assert all((r.header("ce_type") or b"").endswith(b".OrderPlaced") for r in records)
    return [msgspec.json.decode(r.value, type=Order).order_id for r in records]


#: uvicorn's own command line, with the root logger at INFO so the app's "shop" log lines
#: (publisher_closing in_flight=N ...) show: uvicorn configures only its own loggers.
UVICORN = (
    "import logging, sys, uvicorn;"
    "logging.basicConfig(level=logging.INFO, stream=sys.stderr,"
    " format='%(levelname)s %(name)s %(message)s');"
    "sys.argv[0] = 'uvicorn'; uvicorn.main()"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize("framework", list(APPS))
def test_sigterm_under_uvicorn_delivers_every_accepted_event_and_exits_in_time(
    framework: str, kafka_bootstrap: str, kafka_topic: str
) -> None:
    """uvicorn runs the app in a subprocess; a client keeps posting to /orders/queued
    while the test sends SIGTERM. Every order answered 202 (accepted) reaches the broker,
    the shutdown flush had events in flight to deliver (linger.ms=2000), and the process
    ends (its lifespan shutdown complete) within the shutdown bound."""
    port, bound = free_port(), 10.0
    env = {
        **os.environ,
        "EVENTWIRE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "EVENTWIRE_KAFKA_LINGER_MS": "2000",
        "SHOP_ORDERS_TOPIC": kafka_topic,
        "SHOP_SHUTDOWN_TIMEOUT": str(bound),
    }
    env.pop("EVENTWIRE_KAFKA_CONFIG", None)
    command = [sys.executable, "-c", UVICORN, *APPS[framework]]
    command += ["--host", "127.0.0.1", "--port", str(port), "--timeout-graceful-shutdown", "5"]
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout or ()), daemon=True)
    reader.start()
    accepted: list[str] = []
    stop = threading.Event()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:  # wait for the start-up (the broker check included)
                try:
                    client.get("/")  # any answer: the app is serving
                    break
                except httpx.TransportError:
                    assert proc.poll() is None and time.monotonic() < deadline, "".join(output)
                    time.sleep(0.1)

            def post_orders() -> None:
                i = 0
                while not stop.is_set():
                    try:
                        r = client.post("/orders/queued", json={"order_id": f"o-{i}", "total": 1})
                    except httpx.TransportError:
                        return  # the server stopped accepting
                    if r.status_code == 202:
                        accepted.append(f"o-{i}")
                    i += 1

            poster = threading.Thread(target=post_orders)
            poster.start()
            while len(accepted) < 50:
                assert poster.is_alive(), "".join(output)
                time.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            code = proc.wait(timeout=bound + 30)
            took = time.monotonic() - signalled
            stop.set()
            poster.join(30)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    log = "".join(output)
    # uvicorn (>= 0.29) ends a graceful shutdown by re-raising the signal it caught, so
    # the process is reported as ended by SIGTERM (-15, shell status 143), after
    # "Application shutdown complete."; an older one exits 0.
    assert code in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log, log
    assert took < bound + 5, f"exit took {took:.1f} s\n{log}"
    closing = [line for line in log.splitlines() if "publisher_closing" in line]
    assert closing, log
    assert int(closing[0].split("in_flight=")[1].split()[0]) > 0, closing  # the flush mattered
    assert "publisher_closed" in log and "not_delivered" not in log, log
    delivered = read_order_ids(kafka_bootstrap, kafka_topic, len(accepted))
    assert len(delivered) == len(set(delivered)), "an order was written twice"
    missing = set(accepted) - set(delivered)
    assert not missing, f"{len(missing)} accepted orders never reached Kafka: {sorted(missing)[:5]}"
