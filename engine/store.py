"""The store: the one database of a home, through one connection per process.

By default the home's SQLite file (`state/llmauto.db`, `engine.db_sqlite`); with
`LLMAUTO_DATABASE_URL=postgresql://...`, a PostgreSQL database (`engine.db_postgres`, issue #15).
Only this module writes SQL (in SQLite's dialect; the PostgreSQL backend translates it). It applies
the numbered migrations on open, and offers intention-revealing methods. Writes that belong
together (a link's result, the chain's counters, the handoff version and the events) commit in one
transaction, so a crash leaves either all of them or none: no round is counted twice.

Secrets never reach the file: opened with `secrets=settings.secrets()`, the store replaces each of
them by `[redacted]` in every text it writes (event payloads, handoff versions, link results and
errors, outbox messages: every parameter of every write goes through `Writer`), whatever an agent
echoed into its handoff or its answer.

On a blocking database (`Store.open(..., blocking=True)`, SQLite through plain sqlite3; the
command line's, see `open_for_cli`) every method completes without suspending: nothing can be
cancelled mid-statement, so `settle` is left out, and a one-shot command drives the store without
an event loop (`engine.loopless`), with no lock and without importing asyncio. Inside a running
loop (a foreground run's tasks) transactions still take the lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

from engine.clock import Clock, SystemClock
from engine.db import Cursor, Database, Row, open_database, settle
from engine.errors import StoreError
from engine.events import Event
from engine.migrations import MIGRATIONS
from engine.records import Record
from engine.redact import Redactor
from engine.statefiles import text_refusal
from engine.states import ChainStatus, RunStatus, status_of

if TYPE_CHECKING:
    from engine.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class Writer:
    """The connection as the body of a transaction sees it: every text parameter is scrubbed of
    the store's secrets on its way into the database."""

    def __init__(self, db: Database, redact: Redactor) -> None:
        self._db = db
        self._redact = redact

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        if self._redact:
            parameters = [self._redact(p) if isinstance(p, str) else p for p in parameters]
        return await self._db.execute(sql, parameters)


def cli_store_blocks(settings: Settings) -> bool:
    """Is the command line's store (`Store.open_for_cli`) blocking? On the home's SQLite file, yes;
    PostgreSQL's backend is async only."""
    return settings.database_url is None


def _loop_running() -> bool:
    """Is an event loop running in this thread? (Never, when nothing imported asyncio.)"""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _at_once(work: Awaitable[T]) -> T:
    """`settle` for a blocking database: its statements cannot be cut off halfway."""
    return await work


def utc_iso(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds")


class _Row(Record):
    """A value type read from one table row: `from_row` picks its fields by name (eq, hash and
    repr: `Record`)."""

    @classmethod
    def from_row(cls, row: Any) -> Self:
        return cls(**{f.name: row[f.name] for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ChainState(_Row):
    chain: str
    status: ChainStatus | RunStatus = ChainStatus.READY  # INTERRUPTED only between a cut-off run's end and STOPPED
    round: int = 1
    next_link: int = 0
    rounds_counted: int = 0
    consecutive_blocks: int = 0
    failed_rounds: int = 0
    round_ran: int = 0
    round_failed: int = 0
    round_blocked: int = 0
    last_run_id: int | None = None
    stop_reason: str | None = None
    updated_at: str = ""
    # #13 (m009): the round's bounces per target link (JSON), its path (link names, ' → '), the
    # round's task id and its outcome still to be written to the pool ('', 'done', 'blocked').
    round_bounces: str = ""
    round_path: str = ""
    task_id: str | None = None
    task_outcome: str = ""

    @classmethod
    def from_row(cls, row: Any) -> Self:
        return replace(super().from_row(row), status=status_of(row["status"]))


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class RunRow(_Row):
    id: int
    chain: str
    status: RunStatus
    origin: str
    chat_id: int | None
    requested_by: str | None
    started_at: str
    ended_at: str | None
    stop_reason: str | None
    cost_usd: float
    links_run: int
    passes: int
    owner: str | None

    @classmethod
    def from_row(cls, row: Any) -> Self:
        return replace(super().from_row(row), status=RunStatus(row["status"]))


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class LinkRunRow(_Row):
    id: int
    run_id: int
    chain: str
    round: int
    link_index: int
    link: str
    role: str
    model: str | None
    status: str
    error_class: str | None
    error_message: str | None
    started_at: str
    ended_at: str | None
    duration_s: float | None
    cost_usd: float
    input_tokens: int
    output_tokens: int
    turns: int
    session_id: str | None
    exit_code: int | None
    pid: int | None
    pid_start: str | None
    current_tool: str | None
    result_excerpt: str | None
    attempt: int
    refusals: str | None = None  # the tool calls claude refused ("Bash ×3 (mkdir …)")


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class HandoffVersion(_Row):
    id: int
    chain: str
    run_id: int | None
    link_run_id: int | None
    round: int
    link: str
    ts: str
    content: str


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Lease(_Row):
    chain: str
    owner: str
    host: str
    pid: int
    acquired_at: str
    heartbeat_at: str
    pid_start: str | None = None  # the holder's start time (see runner.process_start_token)


@dataclass(frozen=True, kw_only=True)
class Control:
    id: int
    chain: str
    action: str
    reason: str | None
    requested_by: str | None
    ts: str


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ApprovalRow(_Row):
    id: int
    run_id: int
    chain: str
    link_run_id: int | None
    round: int
    link: str
    tool: str
    input: str  # JSON
    description: str | None
    suggestions: str | None  # JSON
    status: str  # pending | approved | denied | timed_out | expired
    decided_by: str | None
    decided_at: str | None
    message: str | None
    created_at: str

    @property
    def tool_input(self) -> dict[str, Any]:
        value = json.loads(self.input or "{}")
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class NewEvent:
    """An event to store (the store gives it id and time)."""

    kind: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Overview:
    states: dict[str, ChainState]
    last_run: dict[str, RunRow]
    last_link: dict[str, LinkRunRow]
    running: dict[str, LinkRunRow]
    leases: dict[str, Lease]


class Store:
    """One database connection, owned here; use `async with Store.open_settings(settings) as store:`
    (or `Store.open(path)`). Every time it records comes from `clock` (tests pass a ManualClock);
    no text it writes holds one of `secrets`."""

    def __init__(
        self, db: Database, path: Path, clock: Clock | None = None, secrets: Sequence[str] = (),
    ) -> None:
        self._db = db
        self.path = path
        self.clock: Clock = clock or SystemClock()
        self._lock: contextlib.AbstractAsyncContextManager[Any] = contextlib.nullcontext()
        self._settle: Callable[[Awaitable[Any]], Awaitable[Any]] = _at_once
        if not db.blocking:
            import asyncio

            self._lock, self._settle = asyncio.Lock(), settle
        elif _loop_running():
            # A blocking store used by tasks (a foreground run): its own bodies never suspend, but
            # one that awaits something else inside a transaction must not let another task's in.
            import asyncio

            self._lock = asyncio.Lock()
        self.redact = Redactor(secrets)
        self._writer = Writer(db, self.redact)

    def stamp(self) -> str:
        """Now, as the store records times (UTC ISO 8601, milliseconds)."""
        return utc_iso(self.clock.now())

    # ---- lifecycle -------------------------------------------------------------------------
    @classmethod
    @asynccontextmanager
    async def open(
        cls, path: Path, *, url: str | None = None, busy_timeout_ms: int = 15_000, clock: Clock | None = None,
        secrets: Sequence[str] = (), blocking: bool = False,
    ) -> AsyncIterator[Store]:
        """The SQLite database at `path`, or the PostgreSQL one at `url` when given (then `path`
        only names the home's state). `blocking`: SQLite without an event loop (see the module)."""
        db = await open_database(path, url, busy_timeout_ms=busy_timeout_ms, blocking=blocking)
        try:
            store = cls(db, path, clock, secrets)
            await store._setup()
            yield store
        finally:
            await db.close()

    @classmethod
    def open_settings(
        cls, settings: Settings, *, clock: Clock | None = None, blocking: bool = False,
    ) -> contextlib.AbstractAsyncContextManager[Store]:
        """The database the settings name (`LLMAUTO_DATABASE_URL`, else the home's file)."""
        return cls.open(settings.db_path, url=settings.database_url, clock=clock, secrets=settings.secrets(),
                        blocking=blocking)

    @classmethod
    def open_for_cli(cls, settings: Settings) -> contextlib.AbstractAsyncContextManager[Store]:
        """The store of a command-line process: blocking on SQLite, the async one on PostgreSQL.
        A one-shot command (`chain status`, `stop`, `schedule list`...) then runs without an event
        loop (`engine.loopless`; `llmauto.cli.main` asks `cli_store_blocks`), and a foreground
        `chain start` pays no thread hop per statement: a run's start and each link cost a few
        dozen statements, and each hop to aiosqlite's thread and back cost up to half a
        millisecond (#14). While another process holds the write lock, such a process waits in
        SQLite's busy handler, its display and its agents' pipes paused meanwhile (write
        transactions last milliseconds). `serve` keeps aiosqlite: its bot and its other runs must
        not wait for another process's transaction."""
        return cls.open_settings(settings, blocking=cli_store_blocks(settings))

    async def _setup(self) -> None:
        try:
            await self._db.prepare()
            async with self.transaction() as db:
                version = await self._db.schema_version()
                for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                    for statement in self._db.migration_statements(script):
                        await db.execute(statement)
                    await self._db.set_schema_version(number)
        except Exception as exc:
            explained = self._db.explain(exc)
            if explained is None:
                raise
            raise StoreError(explained) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Writer]:
        """A write transaction that excludes every other writer (SQLite: BEGIN IMMEDIATE;
        PostgreSQL: an advisory lock), serialized within this process; errors become StoreError.

        Safe against cancellation at any point: each transaction statement runs to its end even
        when the awaiting task is cancelled (`settle`), so a cancel during BEGIN or COMMIT cannot
        leave the shared connection inside a transaction, where every later one would fail with
        "cannot start a transaction within a transaction"."""
        async with self._lock:
            try:
                await self._settle(self._db.begin())
            except BaseException:  # cancelled (a failed BEGIN leaves no transaction: a no-op)
                await self._rollback()
                raise
            try:
                yield self._writer
            except BaseException:
                await self._rollback()
                raise
            try:
                await self._settle(self._db.commit())
            except BaseException:  # StoreError, or cancelled
                await self._rollback()  # a no-op when the COMMIT went through
                raise

    async def _rollback(self) -> None:
        if self._db.in_transaction:
            await self._settle(self._db.rollback())

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self._db.fetchall(sql, params)

    async def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None

    async def data_version(self) -> int:
        """Changes when another connection commits: a cheap "anything new?" for pollers (each
        backend says how it knows)."""
        return await self._db.data_version()

    # ---- events --------------------------------------------------------------------------
    async def _insert_event(
        self, db: Writer, chain: str | None, run_id: int | None, ev: NewEvent
    ) -> Event:
        ts = self.stamp()
        # Scrubbed as a value (not as JSON text, where a secret could appear escaped); the event
        # published in this process is the scrubbed one too.
        payload = self.redact.value(dict(ev.data))
        data = json.dumps(payload, default=str, ensure_ascii=False)
        cur = await db.execute(
            "INSERT INTO events (run_id, chain, kind, ts, data) VALUES (?, ?, ?, ?, ?)",
            (run_id, chain, ev.kind, ts, data),
        )
        assert cur.lastrowid is not None
        return Event(id=cur.lastrowid, kind=ev.kind, chain=chain, run_id=run_id, ts=ts, data=payload)

    async def add_events(self, chain: str | None, run_id: int | None, evs: Sequence[NewEvent]) -> list[Event]:
        async with self.transaction() as db:
            return [await self._insert_event(db, chain, run_id, ev) for ev in evs]

    async def events_after(self, after_id: int, limit: int = 500) -> list[Event]:
        rows = await self._fetchall("SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
        return [Event.from_row(r) for r in rows]

    async def chain_events(self, chain: str, limit: int = 50) -> list[Event]:
        rows = await self._fetchall(
            "SELECT * FROM events WHERE chain = ? ORDER BY id DESC LIMIT ?", (chain, limit)
        )
        return [Event.from_row(r) for r in reversed(rows)]

    async def run_events(self, run_id: int) -> list[Event]:
        rows = await self._fetchall("SELECT * FROM events WHERE run_id = ? ORDER BY id", (run_id,))
        return [Event.from_row(r) for r in rows]

    async def last_event_id(self) -> int:
        row = await self._fetchone("SELECT COALESCE(MAX(id), 0) FROM events")
        return int(row[0]) if row else 0

    # ---- chain state ---------------------------------------------------------------------
    async def chain_state(self, chain: str) -> ChainState:
        row = await self._fetchone("SELECT * FROM chain_state WHERE chain = ?", (chain,))
        return ChainState.from_row(row) if row else ChainState(chain=chain)

    async def all_chain_states(self) -> dict[str, ChainState]:
        rows = await self._fetchall("SELECT * FROM chain_state")
        return {r["chain"]: ChainState.from_row(r) for r in rows}

    async def _put_state(self, db: Writer, st: ChainState) -> None:
        names = [f.name for f in fields(ChainState) if f.name != "updated_at"]
        values = [getattr(st, n) for n in names]
        await db.execute(
            f"INSERT OR REPLACE INTO chain_state ({', '.join(names)}, updated_at) "
            f"VALUES ({', '.join('?' for _ in names)}, ?)",
            (*values, self.stamp()),
        )

    async def set_chain_status(self, chain: str, status: str) -> None:
        """Only the status word of a running chain (WAITING, BLOCKED, PAUSED and back to RUNNING),
        so that every process's status view reads it here rather than from status.txt; the rest of
        the row stays as the run last committed it."""
        async with self.transaction() as db:
            await db.execute("UPDATE chain_state SET status = ?, updated_at = ? WHERE chain = ?",
                             (status, self.stamp(), chain))

    async def put_chain_state(self, st: ChainState, evs: Sequence[NewEvent] = (), run_id: int | None = None) -> list[Event]:
        async with self.transaction() as db:
            await self._put_state(db, st)
            return [await self._insert_event(db, st.chain, run_id, ev) for ev in evs]

    async def reset_chain(self, chain: str) -> None:
        """Forget a chain's progress (counters, sessions); its history stays."""
        async with self.transaction() as db:
            await db.execute("DELETE FROM chain_state WHERE chain = ?", (chain,))
            await db.execute("DELETE FROM sessions WHERE chain = ?", (chain,))
            await db.execute("UPDATE controls SET handled_at = ? WHERE chain = ? AND handled_at IS NULL", (self.stamp(), chain))

    # ---- runs ----------------------------------------------------------------------------
    async def begin_run(
        self, chain: str, *, origin: str, chat_id: int | None, requested_by: str | None,
        owner: str, state: ChainState, evs: Sequence[NewEvent],
    ) -> tuple[int, list[Event]]:
        async with self.transaction() as db:
            cur = await db.execute(
                "INSERT INTO runs (chain, status, origin, chat_id, requested_by, started_at, owner) "
                "VALUES (?, 'RUNNING', ?, ?, ?, ?, ?)",
                (chain, origin, chat_id, requested_by, self.stamp(), owner),
            )
            run_id = cur.lastrowid
            assert run_id is not None
            await self._put_state(db, _replace(state, last_run_id=run_id, status=ChainStatus.RUNNING, stop_reason=None))
            events = [await self._insert_event(db, chain, run_id, ev) for ev in evs]
            return run_id, events

    async def finish_run(
        self, run_id: int, state: ChainState, *, status: str, reason: str, evs: Sequence[NewEvent]
    ) -> list[Event]:
        async with self.transaction() as db:
            await db.execute(
                "UPDATE runs SET status = ?, stop_reason = ?, ended_at = ? WHERE id = ?",
                (status, reason, self.stamp(), run_id),
            )
            await self._put_state(db, _replace(state, status=status, stop_reason=reason))
            return [await self._insert_event(db, state.chain, run_id, ev) for ev in evs]

    async def run(self, run_id: int) -> RunRow | None:
        row = await self._fetchone("SELECT * FROM runs WHERE id = ?", (run_id,))
        return RunRow.from_row(row) if row else None

    async def last_runs(self, chain: str | None = None, limit: int = 20) -> list[RunRow]:
        if chain is None:
            rows = await self._fetchall("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = await self._fetchall("SELECT * FROM runs WHERE chain = ? ORDER BY id DESC LIMIT ?", (chain, limit))
        return [RunRow.from_row(r) for r in rows]

    async def open_runs(self) -> list[RunRow]:
        rows = await self._fetchall("SELECT * FROM runs WHERE status = 'RUNNING' ORDER BY id")
        return [RunRow.from_row(r) for r in rows]

    async def mark_run_interrupted(self, run_id: int, evs: Sequence[NewEvent]) -> list[Event]:
        async with self.transaction() as db:
            await db.execute(
                "UPDATE runs SET status = 'INTERRUPTED', ended_at = ?, stop_reason = COALESCE(stop_reason, "
                "'the process running it died') WHERE id = ? AND status = 'RUNNING'",
                (self.stamp(), run_id),
            )
            row = await (await db.execute("SELECT chain FROM runs WHERE id = ?", (run_id,))).fetchone()
            chain = row[0] if row else None
            return [await self._insert_event(db, chain, run_id, ev) for ev in evs]

    async def overview(self, chain: str | None = None) -> Overview:
        """Everything the status views need, for one chain or all, in five indexed queries."""
        where, params = ("WHERE chain = ?", (chain,)) if chain is not None else ("", ())
        states = {r["chain"]: ChainState.from_row(r) for r in await self._fetchall(f"SELECT * FROM chain_state {where}", params)}
        # The latest row per chain by an index seek per chain, so history length does not matter.
        runs = {r["chain"]: RunRow.from_row(r) for r in await self._fetchall(
            "SELECT * FROM runs WHERE id IN (SELECT (SELECT MAX(id) FROM runs x WHERE x.chain = c.chain) "
            f"FROM chain_state c {where.replace('chain', 'c.chain')})", params)}
        links = {r["chain"]: LinkRunRow.from_row(r) for r in await self._fetchall(
            "SELECT * FROM link_runs WHERE id IN (SELECT (SELECT MAX(id) FROM link_runs x WHERE x.chain = c.chain) "
            f"FROM chain_state c {where.replace('chain', 'c.chain')})", params)}
        running: dict[str, LinkRunRow] = {}
        for r in await self._fetchall("SELECT * FROM link_runs WHERE status = 'running' ORDER BY id"):
            if chain is None or r["chain"] == chain:
                running[r["chain"]] = LinkRunRow.from_row(r)
        leases = {r["chain"]: Lease.from_row(r) for r in await self._fetchall(f"SELECT * FROM leases {where}", params)}
        return Overview(states=states, last_run=runs, last_link=links, running=running, leases=leases)

    # ---- link runs -----------------------------------------------------------------------
    async def start_link(
        self, *, run_id: int, chain: str, round_no: int, index: int, link: str, role: str,
        model: str | None, attempt: int, evs: Sequence[NewEvent],
    ) -> tuple[int, list[Event]]:
        async with self.transaction() as db:
            cur = await db.execute(
                "INSERT INTO link_runs (run_id, chain, round, link_index, link, role, model, status, "
                "started_at, attempt) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                (run_id, chain, round_no, index, link, role, model, self.stamp(), attempt),
            )
            assert cur.lastrowid is not None
            events = [await self._insert_event(db, chain, run_id, ev) for ev in evs]
            return cur.lastrowid, events

    async def set_link_process(self, link_run_id: int, pid: int, pid_start: str | None) -> None:
        async with self.transaction() as db:
            await db.execute("UPDATE link_runs SET pid = ?, pid_start = ? WHERE id = ?", (pid, pid_start, link_run_id))

    async def set_link_progress(self, link_run_id: int, current_tool: str | None, turns: int) -> None:
        async with self.transaction() as db:
            await db.execute(
                "UPDATE link_runs SET current_tool = ?, turns = ? WHERE id = ?", (current_tool, turns, link_run_id)
            )

    async def finish_link(
        self, link_run_id: int, *, status: str, model: str | None, error_class: str, error_message: str,
        duration_s: float, cost_usd: float, input_tokens: int, output_tokens: int, turns: int,
        session_id: str | None, exit_code: int | None, excerpt: str, ended_at: str | None = None,
    ) -> None:
        async with self.transaction() as db:
            await self._finish_link(db, link_run_id, status=status, model=model, error_class=error_class,
                                    error_message=error_message, duration_s=duration_s, cost_usd=cost_usd,
                                    input_tokens=input_tokens, output_tokens=output_tokens, turns=turns,
                                    session_id=session_id, exit_code=exit_code, excerpt=excerpt, ended_at=ended_at)

    async def _finish_link(self, db: Writer, link_run_id: int, *, ended_at: str | None = None,
                           refusals: str | None = None, **v: Any) -> None:
        await db.execute(
            "UPDATE link_runs SET status = ?, model = COALESCE(?, model), error_class = ?, error_message = ?, "
            "ended_at = ?, duration_s = ?, cost_usd = ?, input_tokens = ?, output_tokens = ?, turns = ?, "
            "session_id = ?, exit_code = ?, result_excerpt = ?, current_tool = NULL, "
            "refusals = COALESCE(?, refusals) WHERE id = ?",
            (v["status"], v["model"], v["error_class"], v["error_message"], ended_at or self.stamp(), v["duration_s"],
             v["cost_usd"], v["input_tokens"], v["output_tokens"], v["turns"], v["session_id"],
             v["exit_code"], v["excerpt"], refusals, link_run_id),
        )

    async def commit_link(
        self, *, state: ChainState, run_id: int, cost_delta: float, ran: bool, passes: int,
        handoff: tuple[int | None, int, str, str] | None, evs: Sequence[NewEvent], link_run_id: int | None = None,
        outcome: tuple[str, str] | None = None, refusals: str | None = None,
        finished: Mapping[str, Any] | None = None,
    ) -> list[Event]:
        """After a link: the link run marked done (with its final outcome (error class, message)
        when judging the link after it ended changed it, and the refusals it met), the chain's
        counters, the run's totals, the handoff version (link_run_id, round, link, content) and the
        events, in one transaction. `finished`: the link run's end as `finish_link` takes it (and
        `ended_at`), when the run loop left it for this transaction: one UPDATE writes both (#14)."""
        async with self.transaction() as db:
            if link_run_id is not None and finished is not None:
                end = {**finished, "status": "done", "refusals": refusals}
                if outcome is not None:
                    end["error_class"], end["error_message"] = outcome
                await self._finish_link(db, link_run_id, **end)
            elif link_run_id is not None:
                await db.execute("UPDATE link_runs SET status = 'done', refusals = COALESCE(?, refusals) WHERE id = ?",
                                 (refusals, link_run_id))
                if outcome is not None:
                    await db.execute("UPDATE link_runs SET error_class = ?, error_message = ? WHERE id = ?",
                                     (*outcome, link_run_id))
            await self._put_state(db, state)
            await db.execute(
                "UPDATE runs SET cost_usd = cost_usd + ?, links_run = links_run + ?, passes = ? WHERE id = ?",
                (cost_delta, 1 if ran else 0, passes, run_id),
            )
            if handoff is not None:
                link_run_id, round_no, link, content = handoff
                await self._add_handoff(db, state.chain, run_id, link_run_id, round_no, link, content)
            return [await self._insert_event(db, state.chain, run_id, ev) for ev in evs]

    async def skip_link(
        self, *, run_id: int, chain: str, round_no: int, index: int, link: str, role: str, model: str | None, reason: str,
    ) -> int:
        async with self.transaction() as db:
            now = self.stamp()
            cur = await db.execute(
                "INSERT INTO link_runs (run_id, chain, round, link_index, link, role, model, status, error_message, "
                "started_at, ended_at, duration_s) VALUES (?, ?, ?, ?, ?, ?, ?, 'skipped', ?, ?, ?, 0)",
                (run_id, chain, round_no, index, link, role, model, reason, now, now),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    async def link_runs(self, chain: str, limit: int = 20) -> list[LinkRunRow]:
        rows = await self._fetchall("SELECT * FROM link_runs WHERE chain = ? ORDER BY id DESC LIMIT ?", (chain, limit))
        return [LinkRunRow.from_row(r) for r in reversed(rows)]

    async def run_link_runs(self, run_id: int) -> list[LinkRunRow]:
        rows = await self._fetchall("SELECT * FROM link_runs WHERE run_id = ? ORDER BY id", (run_id,))
        return [LinkRunRow.from_row(r) for r in rows]

    async def running_links(self, chain: str | None = None) -> list[LinkRunRow]:
        if chain is None:
            rows = await self._fetchall("SELECT * FROM link_runs WHERE status = 'running' ORDER BY id")
        else:
            rows = await self._fetchall("SELECT * FROM link_runs WHERE status = 'running' AND chain = ? ORDER BY id", (chain,))
        return [LinkRunRow.from_row(r) for r in rows]

    async def unfinished_links(self, chain: str) -> list[LinkRunRow]:
        """Link runs whose outcome was never committed (their process died)."""
        rows = await self._fetchall(
            "SELECT * FROM link_runs WHERE chain = ? AND status IN ('running', 'ended') ORDER BY id", (chain,)
        )
        return [LinkRunRow.from_row(r) for r in rows]

    async def set_link_status(self, link_run_id: int, status: str) -> None:
        async with self.transaction() as db:
            await db.execute("UPDATE link_runs SET status = ? WHERE id = ?", (status, link_run_id))

    async def mark_link_interrupted(self, link_run_id: int) -> None:
        async with self.transaction() as db:
            await db.execute(
                "UPDATE link_runs SET status = 'interrupted', error_class = COALESCE(error_class, 'crashed'), "
                "error_message = COALESCE(error_message, 'the process running the chain died'), "
                "ended_at = COALESCE(ended_at, ?) WHERE id = ? AND status IN ('running', 'ended')",
                (self.stamp(), link_run_id),
            )

    async def typical_link_seconds(self, chain: str, sample: int = 20) -> float | None:
        rows = await self._fetchall(
            "SELECT duration_s FROM link_runs WHERE chain = ? AND status = 'done' AND duration_s IS NOT NULL "
            "ORDER BY id DESC LIMIT ?", (chain, sample),
        )
        values = sorted(float(r[0]) for r in rows)
        return values[len(values) // 2] if values else None

    # ---- handoff history -----------------------------------------------------------------
    async def save_handoff(self, chain: str, run_id: int | None, link_run_id: int | None, round_no: int, link: str, content: str) -> None:
        async with self.transaction() as db:
            await self._add_handoff(db, chain, run_id, link_run_id, round_no, link, content)

    async def _add_handoff(
        self, db: Writer, chain: str, run_id: int | None, link_run_id: int | None, round_no: int, link: str, content: str,
    ) -> None:
        """Record the handoff after a link (or at a run's start). The same text as the chain's
        latest version is not stored again: the row names that version (`same_as`), so `handoff
        NAME N` still finds the handoff of every round, and `diff` compares real changes."""
        content = self.redact(content)  # compared as it is stored
        problem = text_refusal(content)
        if problem is not None:
            # The reader would refuse it; recorded, it would be put back as the last good version
            # and refused again after every link.
            log.warning("%s: handoff after %s not recorded: %s", chain, link, problem)
            return
        latest = await (await db.execute(
            "SELECT id, content FROM handoffs WHERE chain = ? AND same_as IS NULL ORDER BY id DESC LIMIT 1", (chain,)
        )).fetchone()
        same_as = latest["id"] if latest is not None and latest["content"] == content else None
        await db.execute(
            "INSERT INTO handoffs (chain, run_id, link_run_id, round, link, ts, content, same_as) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (chain, run_id, link_run_id, round_no, link, self.stamp(), "" if same_as is not None else content, same_as),
        )

    async def handoff_versions(self, chain: str, limit: int = 2) -> list[HandoffVersion]:
        """The chain's latest distinct versions, newest first."""
        rows = await self._fetchall(
            f"SELECT {_HANDOFF_COLUMNS} FROM handoffs h WHERE h.chain = ? AND h.same_as IS NULL ORDER BY h.id DESC LIMIT ?",
            (chain, limit),
        )
        return [HandoffVersion.from_row(r) for r in rows]

    async def run_final_handoff(self, run_id: int) -> HandoffVersion | None:
        """The last handoff version a run recorded (a repeat of an earlier version resolved to it)."""
        row = await self._fetchone(f"SELECT {_HANDOFF_RESOLVED} WHERE h.run_id = ? ORDER BY h.id DESC LIMIT 1", (run_id,))
        return HandoffVersion.from_row(row) if row else None

    async def handoff_after_round(self, chain: str, round_no: int) -> HandoffVersion | None:
        row = await self._fetchone(
            f"SELECT {_HANDOFF_RESOLVED} WHERE h.chain = ? AND h.round = ? ORDER BY h.id DESC LIMIT 1", (chain, round_no)
        )
        return HandoffVersion.from_row(row) if row else None

    async def handoff_before(self, chain: str, link_run_id: int) -> HandoffVersion | None:
        """The last version taken before that link run started (for re-running it after a crash)."""
        row = await self._fetchone(
            f"SELECT {_HANDOFF_RESOLVED} WHERE h.chain = ? AND (h.link_run_id IS NULL OR h.link_run_id < ?) "
            "ORDER BY h.id DESC LIMIT 1",
            (chain, link_run_id),
        )
        return HandoffVersion.from_row(row) if row else None

    # ---- sessions ------------------------------------------------------------------------
    async def session(self, chain: str, link: str, cwd: str) -> str | None:
        row = await self._fetchone("SELECT session_id, cwd FROM sessions WHERE chain = ? AND link = ?", (chain, link))
        if row is None or row["cwd"] != cwd:
            return None
        return str(row["session_id"])

    async def set_session(self, chain: str, link: str, session_id: str | None, cwd: str) -> None:
        async with self.transaction() as db:
            if session_id is None:
                await db.execute("DELETE FROM sessions WHERE chain = ? AND link = ?", (chain, link))
            else:
                await db.execute(
                    "INSERT OR REPLACE INTO sessions (chain, link, session_id, cwd, updated_at) VALUES (?, ?, ?, ?, ?)",
                    (chain, link, session_id, cwd, self.stamp()),
                )

    # ---- leases --------------------------------------------------------------------------
    async def lease(self, chain: str) -> Lease | None:
        row = await self._fetchone("SELECT * FROM leases WHERE chain = ?", (chain,))
        return Lease.from_row(row) if row else None

    async def leases(self) -> list[Lease]:
        return [Lease.from_row(r) for r in await self._fetchall("SELECT * FROM leases")]

    async def try_acquire_lease(
        self, chain: str, *, owner: str, host: str, pid: int, holder_dead: bool, pid_start: str | None = None,
    ) -> Lease | None:
        """Take the chain's lease; returns the other holder's lease when it is held and alive."""
        async with self.transaction() as db:
            row = await (await db.execute("SELECT * FROM leases WHERE chain = ?", (chain,))).fetchone()
            if row is not None and row["owner"] != owner and not holder_dead:
                return Lease.from_row(row)
            now = self.stamp()
            await db.execute(
                "INSERT OR REPLACE INTO leases (chain, owner, host, pid, pid_start, acquired_at, heartbeat_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (chain, owner, host, pid, pid_start, now, now),
            )
            return None

    async def heartbeat(self, owner: str) -> None:
        async with self.transaction() as db:
            await db.execute("UPDATE leases SET heartbeat_at = ? WHERE owner = ?", (self.stamp(), owner))

    async def release_lease(self, chain: str, owner: str) -> None:
        async with self.transaction() as db:
            await db.execute("DELETE FROM leases WHERE chain = ? AND owner = ?", (chain, owner))

    # ---- controls (stop / pause / resume / answer from any process) -----------------------
    async def add_control(self, chain: str, action: str, reason: str | None, requested_by: str | None) -> int:
        async with self.transaction() as db:
            cur = await db.execute(
                "INSERT INTO controls (chain, action, reason, requested_by, ts) VALUES (?, ?, ?, ?, ?)",
                (chain, action, reason, requested_by, self.stamp()),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    async def take_controls(self, chains: Sequence[str]) -> list[Control]:
        if not chains:
            return []
        marks = ", ".join("?" for _ in chains)
        # A read first: polled four times a second, this must not take the write lock for nothing.
        if not await self._fetchall(f"SELECT 1 FROM controls WHERE handled_at IS NULL AND chain IN ({marks}) LIMIT 1", tuple(chains)):
            return []
        async with self.transaction() as db:
            rows = list(await (await db.execute(
                f"SELECT * FROM controls WHERE handled_at IS NULL AND chain IN ({marks}) ORDER BY id", tuple(chains)
            )).fetchall())
            if rows:
                await db.execute(
                    f"UPDATE controls SET handled_at = ? WHERE id IN ({', '.join('?' for _ in rows)})",
                    (self.stamp(), *[r["id"] for r in rows]),
                )
        return [Control(id=r["id"], chain=r["chain"], action=r["action"], reason=r["reason"],
                        requested_by=r["requested_by"], ts=r["ts"]) for r in rows]

    async def discard_controls(self, chain: str) -> None:
        async with self.transaction() as db:
            await db.execute("UPDATE controls SET handled_at = ? WHERE chain = ? AND handled_at IS NULL", (self.stamp(), chain))

    # ---- approvals (tool calls waiting for a person) ----------------------------------------
    async def add_approval(
        self, *, run_id: int, chain: str, link_run_id: int | None, round_no: int, link: str, tool: str,
        tool_input: Mapping[str, Any], description: str | None, suggestions: Any, event: Callable[[int], NewEvent],
    ) -> tuple[int, list[Event]]:
        """A new pending request, and its event (made from the new id), in one transaction."""
        async with self.transaction() as db:
            cur = await db.execute(
                "INSERT INTO approvals (run_id, chain, link_run_id, round, link, tool, input, description, suggestions, "
                "status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                (run_id, chain, link_run_id, round_no, link, tool, json.dumps(dict(tool_input), ensure_ascii=False),
                 description, json.dumps(suggestions) if suggestions is not None else None, self.stamp()),
            )
            approval_id = cur.lastrowid
            assert approval_id is not None
            return approval_id, [await self._insert_event(db, chain, run_id, event(approval_id))]

    async def decide_approval(
        self, approval_id: int, *, status: str, by: str | None, message: str | None, evs: Sequence[NewEvent] = (),
    ) -> list[Event] | None:
        """Record a decision if the request is still pending; None when it was decided already."""
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, message = ? WHERE id = ? AND status = 'pending'",
                (status, by, self.stamp(), message, approval_id),
            )
            if cur.rowcount != 1:
                return None
            row = await (await db.execute("SELECT chain, run_id FROM approvals WHERE id = ?", (approval_id,))).fetchone()
            assert row is not None
            return [await self._insert_event(db, row["chain"], row["run_id"], ev) for ev in evs]

    async def approval(self, approval_id: int) -> ApprovalRow | None:
        row = await self._fetchone("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        return ApprovalRow.from_row(row) if row else None

    async def pending_approvals(self, chain: str | None = None) -> list[ApprovalRow]:
        if chain is None:
            rows = await self._fetchall("SELECT * FROM approvals WHERE status = 'pending' ORDER BY id")
        else:
            rows = await self._fetchall("SELECT * FROM approvals WHERE status = 'pending' AND chain = ? ORDER BY id", (chain,))
        return [ApprovalRow.from_row(r) for r in rows]

    async def run_approvals(self, run_id: int) -> list[ApprovalRow]:
        rows = await self._fetchall("SELECT * FROM approvals WHERE run_id = ? ORDER BY id", (run_id,))
        return [ApprovalRow.from_row(r) for r in rows]

    # ---- raw access for the bot's outbox and the scheduler (in their own modules) ----------
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int | None:
        async with self.transaction() as db:
            cur = await db.execute(sql, params)
            return cur.lastrowid

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self._fetchall(sql, params)


# A history row with its text: its own, or that of the version it repeats (`same_as`).
_HANDOFF_COLUMNS = "h.id, h.chain, h.run_id, h.link_run_id, h.round, h.link, h.ts, h.content"
_HANDOFF_RESOLVED = (
    "h.id, h.chain, h.run_id, h.link_run_id, h.round, h.link, h.ts, COALESCE(o.content, h.content) AS content "
    "FROM handoffs h LEFT JOIN handoffs o ON o.id = h.same_as"
)


def _replace(st: ChainState, **changes: Any) -> ChainState:
    from dataclasses import replace

    return replace(st, **changes)
