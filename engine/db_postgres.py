"""The store's PostgreSQL backend (issue #15): `LLMAUTO_DATABASE_URL=postgresql://...`, psycopg 3
async. Imported only when that variable is set (`engine.db.open_database`).

One connection per process, in autocommit mode; the store's `transaction()` sends BEGIN and COMMIT
itself. Statements arrive in SQLite's dialect and are translated by `engine.pg_sql`. Rows read by
position and by column name (`PgRow`), as sqlite3's do.

Concurrency. On SQLite every write transaction is BEGIN IMMEDIATE: one writer at a time in the
whole home, and each transaction sees every commit before it. Here every write transaction takes
the same transaction-scoped advisory lock first (`pg_advisory_xact_lock`, per database), right
after BEGIN, so the guarantee is the same, across processes and hosts; reads outside transactions
take no lock, as on SQLite. Under READ COMMITTED each statement after the lock sees every commit
made before it was granted. So every write path of the store is safe the way it was on SQLite:
- the lease (`try_acquire_lease`): read the holder, then replace it, with no other writer between;
- `take_controls`: select the unhandled controls and mark them handled in one locked transaction, so
  two processes never both take a control;
- the outbox (`bot.outbox_store`): enqueue with the cursor move, `mark_sent` (a row is done once, its
  `text = ?` test sees the latest edit), `retry_later`'s `attempts + 1`;
- schedule slots (`ScheduleBook.claim`): the conditional UPDATE of `last_fire`;
- counters (`commit_link`: `cost_usd + ?`, `links_run + ?`) and approvals (`decide_approval` only
  while pending);
- migrations: the same lock, so two processes opening a new database migrate it once.
llmauto's writes are few and short (a link's result, an event, a heartbeat), so one writer at a
time costs nothing that matters, and it keeps one rule for both backends.

`data_version`: SQLite's `PRAGMA data_version` changes when another connection commits. Here
every write transaction bumps a counter row (`llmauto_schema.data_version`) just before COMMIT,
under the lock; pollers compare it as they did. It changes on this process's commits too, which a
poller only takes as "look again".

The schema version (SQLite's `PRAGMA user_version`) is `llmauto_schema.version`, the same number:
how many of `engine.migrations.MIGRATIONS` were applied.

Text: PostgreSQL refuses NUL characters in text, which an agent's output can hold; they are
stored as U+FFFD (the rest of the text kept), not refused.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import RowMaker

from engine import dburl
from engine.db import Cursor, Row, settle
from engine.errors import StoreError
from engine.migrations import MIGRATIONS
from engine.pg_sql import Translator, ddl, schema_of

# The advisory lock every write transaction takes (any constant; per database).
WRITE_LOCK = 0x6C6C6D6175746F  # "llmauto"
CONNECT_TIMEOUT_S = 10

_TRANSLATOR = Translator(schema_of(MIGRATIONS))
_BOOKKEEPING = (
    "CREATE TABLE IF NOT EXISTS llmauto_schema ("
    " one INTEGER PRIMARY KEY DEFAULT 1 CHECK (one = 1),"
    " version INTEGER NOT NULL DEFAULT 0,"
    " data_version BIGINT NOT NULL DEFAULT 0)"
)


class PgRow(tuple[Any, ...]):
    """A row readable as `row[0]` and `row["name"]`, like sqlite3.Row (and `dict(row)`)."""

    _names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: Any) -> RowMaker[PgRow]:
    names = {c.name: i for i, c in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> PgRow:
        row = PgRow(values)
        row._names = names
        return row

    return make


class PgCursor:
    """A statement's outcome, read eagerly (the statement ran to its end under `settle`)."""

    def __init__(self, rows: list[Row], rowcount: int, lastrowid: int | None) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    async def fetchone(self) -> Row | None:
        return self._rows[0] if self._rows else None

    async def fetchall(self) -> list[Row]:
        return list(self._rows)


class PostgresDatabase:
    def __init__(self, conn: psycopg.AsyncConnection[Any], url: str) -> None:
        self.conn = conn
        self.where = f"PostgreSQL {dburl.mask(url)}"
        self.blocking = False
        self._secret = dburl.password(url)

    @classmethod
    async def connect(cls, url: str) -> PostgresDatabase:
        problem = dburl.check(url)
        if problem is not None:
            raise StoreError(problem)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                conn = await psycopg.AsyncConnection.connect(
                    url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, row_factory=_row_factory,
                )
        except (psycopg.Error, ValueError) as exc:
            text = _scrub(str(exc).strip(), dburl.password(url))
            raise StoreError(f"cannot connect to PostgreSQL at {dburl.mask(url)} ({dburl.VARIABLE}): {text}") from exc
        return cls(conn, url)

    @property
    def in_transaction(self) -> bool:
        return self.conn.info.transaction_status != TransactionStatus.IDLE

    async def prepare(self) -> None:
        await self.begin()
        try:
            await self._run(_BOOKKEEPING, None)
            await self._run("INSERT INTO llmauto_schema (one) VALUES (1) ON CONFLICT DO NOTHING", None)
            await self._run("COMMIT", None)
        except BaseException:
            await self.rollback()
            raise

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        text, returns_id = _TRANSLATOR.statement(sql)
        cursor = await self._run(text, [_value(p) for p in params])
        lastrowid = int((await cursor.fetchone())[0]) if returns_id and cursor.rowcount == 1 else None  # type: ignore[index]
        return PgCursor(await cursor.fetchall(), cursor.rowcount, lastrowid)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(await (await self.execute(sql, params)).fetchall())

    async def _run(self, text: str, params: Sequence[Any] | None) -> PgCursor:
        async def run() -> PgCursor:
            cur = self.conn.cursor()
            try:
                await cur.execute(text, params)  # type: ignore[arg-type]
                rows: list[Row] = list(await cur.fetchall()) if cur.description is not None else []
                return PgCursor(rows, cur.rowcount, None)
            finally:
                await cur.close()

        try:
            return await settle(run())
        except psycopg.Error as exc:
            raise StoreError(self._explain(exc)) from exc

    async def begin(self) -> None:
        await self._run(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})", None)

    async def commit(self) -> None:
        await self._run("UPDATE llmauto_schema SET data_version = data_version + 1; COMMIT", None)

    async def rollback(self) -> None:
        if self.in_transaction and not self.conn.closed:
            try:
                await settle(self.conn.execute("ROLLBACK"))
            except psycopg.Error:
                pass

    async def schema_version(self) -> int:
        rows = await (await self._run("SELECT version FROM llmauto_schema", None)).fetchall()
        return int(rows[0][0]) if rows else 0

    async def set_schema_version(self, number: int) -> None:
        await self._run("UPDATE llmauto_schema SET version = %s", [int(number)])

    def migration_statements(self, script: str) -> list[str]:
        return ddl(script)

    async def data_version(self) -> int:
        rows = await (await self._run("SELECT data_version FROM llmauto_schema", None)).fetchall()
        return int(rows[0][0]) if rows else 0

    def explain(self, exc: BaseException) -> str | None:
        if isinstance(exc, psycopg.Error):
            return self._explain(exc)
        return None

    def _explain(self, exc: psycopg.Error) -> str:
        text = _scrub(str(exc).strip(), self._secret)
        if isinstance(exc, psycopg.OperationalError):
            return f"the database {self.where} cannot be reached ({dburl.VARIABLE}): {text}"
        return f"database error on {self.where}: {text}"

    async def close(self) -> None:
        await self.conn.close()


def _value(p: Any) -> Any:
    """A parameter as PostgreSQL takes what SQLite took: NUL-free text, booleans as 0/1."""
    if isinstance(p, str):
        return p.replace("\x00", "\ufffd") if "\x00" in p else p
    if isinstance(p, bool):
        return int(p)
    return p


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text
