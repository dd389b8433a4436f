"""The distributed mode's own tables in the queue database (PostgreSQL), and the only code that
sees them: results of remote links, the worker registry and which worker holds which job.

Procrastinate owns the queue (`procrastinate_*` tables); these three tables sit beside it:
- `llmauto_link_results`: one row per committed attempt, primary key (run, round, link index,
  attempt, visit). A worker inserts with ON CONFLICT DO NOTHING, so a job delivered twice (a worker
  thought dead that was only slow, a retry after a crash) commits once; the second finds the key
  and does nothing. The row holds the result, the output handoff and status and the worker's
  events: one INSERT, one transaction.
- `llmauto_workers`: each worker's host, queues, caps, links running and own heartbeat, for
  `/workers` and `llmauto worker list`.
- `llmauto_link_claims`: procrastinate job id -> worker name, so a job of a lost worker names it.
- `llmauto_link_asks`: permission questions of remote claude links (engine/relay.py): the worker
  inserts the request (NOTIFY ASK_CHANNEL, payload the job key), serve answers it through its own
  approval desk (NOTIFY ANSWER_CHANNEL, payload the ask's id). Live progress needs no table: it is
  a NOTIFY on PROGRESS_CHANNEL, lost if nobody listens, which is what progress may be.

Portable SQL apart from `ON CONFLICT` (PostgreSQL and SQLite alike). Created idempotently at each
start, with procrastinate's schema, under a transaction-level advisory lock (two processes starting
together do not both create).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from engine.linkjob import JobKey, Outcome

SCHEMA_LOCK = 0x11A7_0015  # advisory lock id taken while creating the schema
DONE_CHANNEL = "llmauto_link_done"
ASK_CHANNEL = "llmauto_link_ask"  # payload: the job key (serve's waiter looks its asks up)
ANSWER_CHANNEL = "llmauto_link_answer"  # payload: the ask's id
PROGRESS_CHANNEL = "llmauto_link_progress"  # payload: {"key", "progress"} as JSON

DDL = """
CREATE TABLE IF NOT EXISTS llmauto_link_results (
    run_id BIGINT NOT NULL,
    round INTEGER NOT NULL,
    link_index INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    visit BIGINT NOT NULL,             -- serve's link-run id: a routed hop back is a new visit
    worker TEXT NOT NULL,
    outcome TEXT NOT NULL,             -- Outcome as JSON
    committed_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    PRIMARY KEY (run_id, round, link_index, attempt, visit)
);
CREATE TABLE IF NOT EXISTS llmauto_workers (
    name TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    queues TEXT NOT NULL,              -- comma-separated
    max_links INTEGER NOT NULL,
    running INTEGER NOT NULL DEFAULT 0,
    running_links TEXT NOT NULL DEFAULT '',
    started_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    heartbeat_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    stopped BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE IF NOT EXISTS llmauto_link_claims (
    job_id BIGINT PRIMARY KEY,
    worker TEXT NOT NULL,
    claimed_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS llmauto_link_asks (
    id BIGSERIAL PRIMARY KEY,
    job_key TEXT NOT NULL,             -- JobKey as text: run/round/index/attempt/visit
    seq INTEGER NOT NULL,              -- the asking worker's count within the attempt
    worker TEXT NOT NULL,
    request TEXT NOT NULL,             -- claude's can_use_tool request and the worker's cwd, JSON
    answer TEXT,                       -- the desk's answer, JSON; NULL while pending
    asked_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    answered_at TIMESTAMP WITH TIME ZONE
);
CREATE INDEX IF NOT EXISTS llmauto_link_asks_pending ON llmauto_link_asks (job_key) WHERE answer IS NULL;
"""


@dataclass(frozen=True, kw_only=True)
class WorkerRow:
    name: str
    host: str
    queues: tuple[str, ...]
    max_links: int
    running: int
    running_links: str
    started_at: datetime
    heartbeat_at: datetime
    stopped: bool
    age_s: float  # seconds since the last heartbeat, by the database's clock

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> WorkerRow:
        return cls(name=row["name"], host=row["host"], queues=tuple(q for q in row["queues"].split(",") if q),
                   max_links=row["max_links"], running=row["running"], running_links=row["running_links"],
                   started_at=row["started_at"], heartbeat_at=row["heartbeat_at"], stopped=row["stopped"],
                   age_s=float(row["age_s"]))


@dataclass(frozen=True, kw_only=True)
class Ask:
    """One relayed permission question: claude's request as the worker got it, and its cwd."""

    id: int
    key: str
    seq: int
    worker: str
    request: dict[str, Any]
    cwd: str


class QueueDb:
    """A small pool on the queue database; every query of the three tables above."""

    def __init__(self, url: str, *, max_size: int = 4) -> None:
        self.url = url
        self.pool: Any = AsyncConnectionPool(url, min_size=1, max_size=max_size, open=False,
                                        kwargs={"autocommit": True, "row_factory": dict_row})

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str, *, max_size: int = 4) -> AsyncIterator[QueueDb]:
        db = cls(url, max_size=max_size)
        await db.pool.open(wait=True)
        try:
            yield db
        finally:
            await db.pool.close()

    async def ensure_schema(self, procrastinate_schema: str) -> None:
        """Procrastinate's schema (if absent) and ours, once, whoever starts first."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            row = await (await conn.execute("SELECT to_regclass('procrastinate_jobs') AS t")).fetchone()
            if row is None or row["t"] is None:
                await conn.execute(procrastinate_schema)  # type: ignore[arg-type]
            await conn.execute(DDL)  # type: ignore[arg-type]

    # ---- results -------------------------------------------------------------------------
    async def commit_outcome(self, key: JobKey, outcome: Outcome) -> bool:
        """Insert the attempt's outcome unless one is committed for the key; wake the waiter.
        True if this call committed it."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO llmauto_link_results (run_id, round, link_index, attempt, visit, worker, outcome) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (key.run_id, key.round_no, key.index, key.attempt, key.visit, outcome.worker,
                 json.dumps(outcome.to_json())),
            )
            committed: bool = cur.rowcount == 1
            if committed:  # delivered at commit, with the row
                await conn.execute("SELECT pg_notify(%s, %s)", (DONE_CHANNEL, str(key)))
            return committed

    async def outcome(self, key: JobKey) -> Outcome | None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(
                "SELECT outcome FROM llmauto_link_results WHERE run_id = %s AND round = %s AND link_index = %s "
                "AND attempt = %s AND visit = %s", (key.run_id, key.round_no, key.index, key.attempt, key.visit),
            )).fetchone()
        return Outcome.from_json(json.loads(row["outcome"])) if row else None

    async def committed_count(self, run_id: int) -> list[tuple[int, int, int]]:
        """(round, link index, commits) of a run: what the tests check is one each."""
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT round, link_index, COUNT(*) AS n FROM llmauto_link_results WHERE run_id = %s "
                "GROUP BY round, link_index ORDER BY round, link_index", (run_id,))).fetchall()
        return [(r["round"], r["link_index"], r["n"]) for r in rows]

    # ---- claims --------------------------------------------------------------------------
    async def claim(self, job_id: int, worker: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO llmauto_link_claims (job_id, worker) VALUES (%s, %s) "
                "ON CONFLICT (job_id) DO UPDATE SET worker = EXCLUDED.worker, claimed_at = NOW()", (job_id, worker))

    async def claimant(self, job_id: int) -> str | None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute("SELECT worker FROM llmauto_link_claims WHERE job_id = %s",
                                            (job_id,))).fetchone()
        return row["worker"] if row else None

    # ---- relayed permission questions and progress (engine/relay.py) ----------------------
    async def add_ask(self, key: JobKey, *, seq: int, worker: str, request: dict[str, Any], cwd: str) -> int:
        """Store a question of the worker's agent and wake serve's waiter; its id."""
        body = json.dumps({"request": request, "cwd": cwd}, default=str)
        async with self.pool.connection() as conn, conn.transaction():
            row = await (await conn.execute(
                "INSERT INTO llmauto_link_asks (job_key, seq, worker, request) VALUES (%s, %s, %s, %s) RETURNING id",
                (str(key), seq, worker, body))).fetchone()
            await conn.execute("SELECT pg_notify(%s, %s)", (ASK_CHANNEL, str(key)))
        assert row is not None
        return int(row["id"])

    async def pending_asks(self, key: JobKey) -> list[Ask]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT id, job_key, seq, worker, request FROM llmauto_link_asks WHERE job_key = %s "
                "AND answer IS NULL ORDER BY id", (str(key),))).fetchall()
        asks = []
        for row in rows:
            body = json.loads(row["request"])
            asks.append(Ask(id=row["id"], key=row["job_key"], seq=row["seq"], worker=row["worker"],
                            request=dict(body.get("request") or {}), cwd=str(body.get("cwd") or "")))
        return asks

    async def answer_ask(self, ask_id: int, answer: dict[str, Any]) -> bool:
        """The answer, once (a later one is dropped), and the asking worker woken. True if stored."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE llmauto_link_asks SET answer = %s, answered_at = NOW() WHERE id = %s AND answer IS NULL",
                (json.dumps(answer, default=str), ask_id))
            stored: bool = cur.rowcount == 1
            if stored:
                await conn.execute("SELECT pg_notify(%s, %s)", (ANSWER_CHANNEL, str(ask_id)))
            return stored

    async def ask_answer(self, ask_id: int) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute("SELECT answer FROM llmauto_link_asks WHERE id = %s",
                                            (ask_id,))).fetchone()
        if row is None or row["answer"] is None:
            return None
        answer: dict[str, Any] = json.loads(row["answer"])
        return answer

    async def notify_progress(self, key: JobKey, progress: dict[str, Any]) -> None:
        """Live progress of a remote link: a NOTIFY only (under PostgreSQL's 8000-byte payload)."""
        payload = json.dumps({"key": str(key), "progress": progress}, default=str)
        async with self.pool.connection() as conn:
            await conn.execute("SELECT pg_notify(%s, %s)", (PROGRESS_CHANNEL, payload))

    # ---- workers -------------------------------------------------------------------------
    async def register_worker(self, name: str, host: str, queues: Sequence[str], max_links: int) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO llmauto_workers (name, host, queues, max_links) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET host = EXCLUDED.host, queues = EXCLUDED.queues, "
                "max_links = EXCLUDED.max_links, running = 0, running_links = '', started_at = NOW(), "
                "heartbeat_at = NOW(), stopped = FALSE", (name, host, ",".join(queues), max_links))

    async def worker_heartbeat(self, name: str, running: Sequence[str]) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE llmauto_workers SET heartbeat_at = NOW(), running = %s, running_links = %s WHERE name = %s",
                (len(running), ", ".join(running), name))

    async def worker_stopped(self, name: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("UPDATE llmauto_workers SET stopped = TRUE, running = 0, running_links = '' "
                               "WHERE name = %s", (name,))

    async def workers(self) -> list[WorkerRow]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                "SELECT *, EXTRACT(EPOCH FROM NOW() - heartbeat_at) AS age_s FROM llmauto_workers "
                "ORDER BY name")).fetchall()
        return [WorkerRow.from_row(r) for r in rows]


def connect(url: str) -> Any:
    """A dedicated autocommit connection (advisory slots, LISTEN): its life is the lock's."""
    return psycopg.AsyncConnection.connect(url, autocommit=True)
