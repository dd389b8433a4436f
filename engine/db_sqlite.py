"""The store's default backend: the home's SQLite file (`state/llmauto.db`), through aiosqlite.

Several processes share the file (`serve`, a foreground `chain start`, a CLI `stop`): it is opened
in WAL mode with a busy timeout, and every write transaction is BEGIN IMMEDIATE, so SQLite's single
writer lock makes each one exclude all others (lease taking, control claims, outbox claims and
counters rely on that). The schema version is `PRAGMA user_version`; `PRAGMA data_version` tells
a poller that another connection committed. The file and its folder are private (0600, 0700).

Two ways to talk to the same file, one class: through aiosqlite (a thread per connection, so the
event loop never blocks: `serve`), or `blocking=True`, straight through sqlite3
(`BlockingConnection`: the command line's, `Store.open_for_cli`). A one-shot CLI command (`chain
status`, `reset`, `stop`...) has nothing else to do while a statement runs, and drives the store's
coroutines without an event loop (`engine.loopless`), never importing asyncio, which was a third of
such a command's cost; a foreground `chain start` saves a thread hop per statement (#14).
aiosqlite, and with it asyncio, is imported only when asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.db import Cursor, Row
from engine.errors import StoreError

if TYPE_CHECKING:
    import aiosqlite

log = logging.getLogger(__name__)


class BlockingCursor:
    """A sqlite3 cursor with aiosqlite's awaitable reads, which never suspend."""

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur

    @property
    def lastrowid(self) -> int | None:
        return self._cur.lastrowid

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    async def fetchone(self) -> Any:
        return self._cur.fetchone()

    async def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    async def close(self) -> None:
        self._cur.close()


class BlockingConnection:
    """A sqlite3 connection with the part of aiosqlite's API the backend uses: every coroutine
    completes without suspending, so it needs no event loop (and blocks its caller meanwhile)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> BlockingCursor:
        return BlockingCursor(self._conn.execute(sql, params))

    async def close(self) -> None:
        self._conn.close()


class SqliteDatabase:
    """One connection in autocommit mode (aiosqlite's, or a `BlockingConnection`); the store
    brackets its transactions."""

    def __init__(self, conn: aiosqlite.Connection | BlockingConnection, path: Path, busy_timeout_ms: int) -> None:
        self.conn = conn
        self.path = path
        self.where = str(path)
        self.blocking = isinstance(conn, BlockingConnection)
        self._busy_timeout_ms = busy_timeout_ms

    @classmethod
    async def connect(cls, path: Path, *, busy_timeout_ms: int, blocking: bool = False) -> SqliteDatabase:
        try:
            _private_dir(path.parent)
            _private_files(path)
        except OSError as exc:
            raise StoreError(f"cannot open the database {path}: {exc.strerror or exc}") from exc
        conn: aiosqlite.Connection | BlockingConnection
        try:
            if blocking:
                raw = sqlite3.connect(str(path), isolation_level=None)
                raw.row_factory = sqlite3.Row
                conn = BlockingConnection(raw)
            else:
                import aiosqlite

                conn = await aiosqlite.connect(str(path), isolation_level=None)
                conn.row_factory = aiosqlite.Row
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {path}: {exc}") from exc
        return cls(conn, path, busy_timeout_ms)

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    async def prepare(self) -> None:
        await self.conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        await self.conn.execute("PRAGMA journal_mode = WAL")
        await self.conn.execute("PRAGMA synchronous = NORMAL")

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return await self.conn.execute(sql, params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            cur = await self.conn.execute(sql, params)
            try:
                return list(await cur.fetchall())
            finally:
                await cur.close()
        except sqlite3.OperationalError as exc:
            raise StoreError(_explain(exc, self.path)) from exc

    async def begin(self) -> None:
        try:
            await self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(_explain(exc, self.path)) from exc

    async def commit(self) -> None:
        try:
            await self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(_explain(exc, self.path)) from exc

    async def rollback(self) -> None:
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                await self.conn.execute("ROLLBACK")

    async def schema_version(self) -> int:
        row = await (await self.conn.execute("PRAGMA user_version")).fetchone()
        return int(row[0]) if row else 0

    async def set_schema_version(self, number: int) -> None:
        await self.conn.execute(f"PRAGMA user_version = {int(number)}")

    def migration_statements(self, script: str) -> list[str]:
        return statements(script)

    async def data_version(self) -> int:
        rows = await self.fetchall("PRAGMA data_version")
        return int(rows[0][0]) if rows else 0

    def explain(self, exc: BaseException) -> str | None:
        if isinstance(exc, sqlite3.DatabaseError):
            return f"the database {self.path} cannot be used: {exc}"
        return None

    async def close(self) -> None:
        await self.conn.close()


def statements(script: str) -> list[str]:
    """A migration script split into its statements (no `;` inside the migrations' texts)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def _private_dir(folder: Path) -> None:
    """The state folder: created 0700; an existing looser one is tightened without a note (a
    git checkout makes it 0755, and a note at every first start would be noise)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(folder, 0o700, note=False)


def _private_files(path: Path) -> None:
    """The database holds handoffs and operator notes: 0600 whatever the umask. A new one is
    created 0600 here, before SQLite opens it; SQLite gives the -wal and -shm it creates the
    database's own mode. Existing looser ones (an older llmauto) are tightened, with a note.
    (No umask change: it is process-wide, and agents started meanwhile would inherit it.)"""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        _tighten(file, 0o600)


def _tighten(path: Path, mode: int, *, note: bool = True) -> None:
    try:
        current = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    if current & ~mode & 0o777:
        try:
            os.chmod(path, mode)
        except OSError as exc:
            log.warning("%s is readable by others (mode %s) and cannot be made private: %s",
                        path, oct(current), exc.strerror)
            return
        if note:
            log.warning("%s was readable by others (mode %s); made private (%s)", path, oct(current), oct(mode))


def _explain(exc: sqlite3.Error, path: Path) -> str:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return f"the database {path} is locked by another process for too long ({text})"
    if "full" in text or "disk i/o" in text.lower():
        return f"cannot write the database {path}: is the disk full? ({text})"
    return f"database error on {path}: {text}"
