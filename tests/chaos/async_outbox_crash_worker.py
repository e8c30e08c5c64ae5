"""An asyncio service writing to an outbox until it is SIGKILLed (by the test).

Usage: python async_outbox_crash_worker.py sqlite|postgres PATH_OR_DSN BOOTSTRAP TOPIC LOG

An ``AsyncPublisher(outbox=...)`` with its in-process relay, and concurrently:
* stagers: transactions on the driver's async connection (aiosqlite / psycopg
  AsyncConnection) that insert a domain row and ``stage()`` 3 events, then
  commit -- or, every third one, roll back;
* a publisher: ``publish_nowait()`` bursts of 20 events, awaiting their acks.

Every id is noted in LOG (os.write: it survives a SIGKILL) as it goes:
``S`` staged (its transaction may or may not commit), ``C`` its transaction
committed, ``R`` its transaction is rolled back (before the rollback is sent),
``P`` published, ``A`` acknowledged. Prints RUNNING once events flow.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from typing import Any

import aiosqlite
import msgspec
import psycopg

from eventwire import AsyncPublisher, Route
from eventwire._cloudevents import new_event_id
from eventwire.outbox import OutboxStore, SQLiteOutbox
from eventwire.outbox.postgres import PostgresOutbox


class Tick(msgspec.Struct, frozen=True):
    key: str
    n: int


class Log:
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def note(self, tag: str, ids: list[str]) -> None:
        os.write(self._fd, "".join(f"{tag} {i}\n" for i in ids).encode())


async def main(kind: str, target: str, bootstrap: str, topic: str, log_path: str) -> None:
    log = Log(log_path)
    store: OutboxStore = SQLiteOutbox(target) if kind == "sqlite" else PostgresOutbox(target)
    pub = AsyncPublisher(
        bootstrap,
        routes={Tick: Route(topic=topic, key="key", type_name="chaos.Tick")},
        outbox=store,
        relay_options={"lease_s": 2.0},
    )
    await pub.start()
    flowing = {"C": 0, "A": 0}

    async def connect() -> Any:
        if kind == "sqlite":
            return await aiosqlite.connect(target, timeout=30)
        return await psycopg.AsyncConnection.connect(target)

    def running() -> None:
        if flowing["C"] >= 3 and flowing["A"] >= 20 and flowing["C"] < 1_000_000:
            flowing["C"] = 1_000_000
            print("RUNNING", flush=True)

    async def stager(worker: int) -> None:
        conn = await connect()
        for n in itertools.count():
            ids = [new_event_id() for _ in range(3)]
            log.note("S", ids)
            await conn.execute(f"INSERT INTO orders VALUES ('{worker}-{n}')")
            for seq, ce_id in enumerate(ids):
                tick = Tick(key=f"s{worker}-{seq}", n=n)
                await pub.stage(tick, connection=conn, event_id=ce_id)
            if n % 3 == 2:
                log.note("R", ids)
                await conn.rollback()
            else:
                await conn.commit()
                log.note("C", ids)
                flowing["C"] += 1
                running()
            await asyncio.sleep(0.002)  # leave the SQLite write lock to the publisher too

    async def publisher() -> None:
        for n in itertools.count():
            ids = [new_event_id() for _ in range(20)]
            log.note("P", ids)
            futures = [
                pub.publish_nowait(Tick(key=f"p{i % 4}", n=n), event_id=ce_id)
                for i, ce_id in enumerate(ids)
            ]
            outcomes = await asyncio.gather(*futures, return_exceptions=True)
            acked = [
                i for i, o in zip(ids, outcomes, strict=True) if not isinstance(o, BaseException)
            ]
            log.note("A", acked)
            flowing["A"] += len(acked)
            running()

    stagers = 1 if kind == "sqlite" else 2
    await asyncio.gather(publisher(), *(stager(w) for w in range(stagers)))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
