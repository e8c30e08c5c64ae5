"""The FastAPI recipe's shutdown log counts every undelivered event, the uncounted too."""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from eventwire import AsyncPublisher, _inflight
from eventwire.transports.memory import MemoryTransport

from .conftest import order

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def fastapi_app(monkeypatch: pytest.MonkeyPatch) -> Any:
    pytest.importorskip("fastapi")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    module = importlib.import_module("fastapi_app")
    yield module
    sys.modules.pop("fastapi_app", None)


def test_the_shutdown_log_counts_failures_past_the_kept_bound(
    fastapi_app: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """More unobserved failures than a publisher keeps: the ERROR line's ``count=`` is
    all of them (kept + ``DeliveryError.not_kept``), as its message says, not only the
    kept ones."""
    monkeypatch.setattr(_inflight, "KEPT_FAILURES", 2)
    caplog.set_level(logging.INFO, logger="shop")

    async def main() -> None:
        transport = MemoryTransport()
        publisher = AsyncPublisher(transport=transport)
        async with fastapi_app.running_publisher(publisher, shutdown_timeout=1):
            transport.fail_next(5, "_MSG_TIMED_OUT")
            futures = [publisher.publish_nowait(order(n)) for n in range(5)]
            await asyncio.wait(futures, timeout=1)

    asyncio.run(main())
    [line] = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == "shop"
    ]
    assert line.startswith("events_not_delivered_at_shutdown count=5 ")
    assert "5 events not delivered" in line
