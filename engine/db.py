"""The database connection as the store sees it, whichever backend holds the data (issue #15).

`engine.store` writes its SQL once, in SQLite's dialect with `?` placeholders, and talks to a
`Database`: `engine.db_sqlite` (the home's file, the default) or `engine.db_postgres` (when
`LLMAUTO_DATABASE_URL` names a PostgreSQL server), which translates. A backend owns its one
connection, its transaction statements, its schema-version bookkeeping, its "anything new?" counter
(`data_version`) and the wording of its errors; the store owns what the data means.

`open_database` picks the backend; psycopg is imported only when PostgreSQL is asked for, so the
SQLite path (every CLI command) pays nothing for it. A `blocking` database (SQLite through plain
sqlite3) completes every coroutine without suspending, so a one-shot command can drive the store
without an event loop (`engine.loopless`); nothing here imports asyncio unless it is used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from engine.errors import StoreError

T = TypeVar("T")


class Row(Protocol):
    """One result row, readable by position and by column name on both backends."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    """What a statement gives back: the new row's id after an INSERT into a table with an `id`,
    the number of rows an UPDATE or DELETE touched, and the rows of a SELECT."""

    @property
    def lastrowid(self) -> int | None: ...

    @property
    def rowcount(self) -> int: ...

    async def fetchone(self) -> Any: ...

    async def fetchall(self) -> Iterable[Any]: ...


class Database(Protocol):
    """One connection to the store's database. Only `engine.store` uses it."""

    where: str  # how messages name the database: its path, or its URL with the password masked
    blocking: bool  # every statement completes before its coroutine returns: no event loop needed

    @property
    def in_transaction(self) -> bool: ...

    async def prepare(self) -> None:
        """Per-connection settings, and whatever the schema bookkeeping needs before migrating."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """One statement, inside or outside a transaction."""

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """The rows of a read outside a transaction; database errors become StoreError."""

    async def begin(self) -> None:
        """Start a write transaction that excludes every other writer until it ends."""

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    async def schema_version(self) -> int:
        """How many of the numbered migrations were applied (read inside the migration transaction)."""

    async def set_schema_version(self, number: int) -> None: ...

    def migration_statements(self, script: str) -> list[str]:
        """A migration of `engine.migrations`, as statements of this backend's dialect."""

    async def data_version(self) -> int:
        """Changes when a transaction commits (another process's at least)."""

    def explain(self, exc: BaseException) -> str | None:
        """The StoreError text for a database error of this backend; None for anything else."""

    async def close(self) -> None: ...


async def open_database(path: Path, url: str | None, *, busy_timeout_ms: int, blocking: bool = False) -> Database:
    """The SQLite file at `path`, or the PostgreSQL server at `url` when one is given. `blocking`
    asks for a database that needs no event loop: SQLite only (psycopg's async connection is
    the PostgreSQL backend's one way)."""
    if url:
        if blocking:
            raise ValueError("a blocking database is SQLite only")
        try:
            from engine.db_postgres import PostgresDatabase
        except ImportError as exc:
            raise StoreError(f"LLMAUTO_DATABASE_URL is set but psycopg is missing ({exc.name}): "
                             "pip install 'llmauto[distributed]'") from exc
        return await PostgresDatabase.connect(url)
    from engine.db_sqlite import SqliteDatabase

    return await SqliteDatabase.connect(path, busy_timeout_ms=busy_timeout_ms, blocking=blocking)


async def settle(work: Awaitable[T]) -> T:
    """Run `work` to its end even if the caller is cancelled meanwhile (then CancelledError is
    raised after it, whatever its outcome). A statement half-sent when its task was cancelled would
    leave the shared connection unusable, or inside a transaction nobody will end."""
    import asyncio  # here: a blocking database never gets here, and a lean command never imports it

    done = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        await asyncio.wait([done])
        if not done.cancelled():
            done.exception()  # retrieved: the cancel is what the caller hears of
        raise
