"""The account-wide cap on agent processes in the distributed mode: N PostgreSQL advisory locks.

A link takes slot i of N by holding `pg_try_advisory_lock(NAMESPACE, i)` on a connection of its
own for the life of its agent. A worker that dies (SIGKILL, power cut) loses its connection and
PostgreSQL releases the lock with it, so a crash never leaks a slot. The per-worker cap
(`--max-links`, procrastinate's concurrency) sits on top. Used as `async with slots:` in place of
the home-wide `FileSlots` (engine/slots.py), which `run_attempt` takes the same way.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from engine import queue_db

NAMESPACE = 0x11A7  # the first key of every slot lock (the second is the slot number)
POLL_S = 0.1  # a full account retries this often (a lock freed elsewhere sends no signal)


class AccountSlots(asyncio.Semaphore):
    """N slots shared by every process on the queue database. One instance per link attempt
    (it holds that attempt's connection)."""

    def __init__(self, url: str, count: int, *, poll_s: float = POLL_S) -> None:
        super().__init__(count)
        self.url = url
        self.count = count
        self.poll_s = poll_s
        self.slot: int | None = None
        self._conn: Any = None

    async def acquire(self) -> bool:  # type: ignore[override]
        conn = await queue_db.connect(self.url)
        try:
            while True:
                for i in range(self.count):
                    cur = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (NAMESPACE, i))
                    row = await cur.fetchone()
                    if row is not None and row[0]:
                        self.slot, self._conn = i, conn
                        return True
                await asyncio.sleep(self.poll_s)
        except BaseException:
            await conn.close()
            raise

    def release(self) -> None:
        conn, self._conn, self.slot = self._conn, None, None
        if conn is not None:  # closing the connection frees its locks
            self._closing = asyncio.ensure_future(conn.close())

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        conn, self._conn, self.slot = self._conn, None, None
        if conn is not None:
            await conn.close()


async def held(url: str) -> int:
    """Slots held now, account-wide (for tests and `/workers`)."""
    conn = await queue_db.connect(url)
    try:
        cur = await conn.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
                                 "AND granted", (NAMESPACE,))
        row = await cur.fetchone()
        return int(row[0]) if row else 0
    finally:
        await conn.close()
