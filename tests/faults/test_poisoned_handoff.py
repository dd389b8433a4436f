"""Issue #12, items 4 and 7: the database is private, and a person's answer cannot poison a chain.

A NUL byte in a BLOCKED answer used to go into handoff.md verbatim; the reader then refused the
file as binary, and the "last good" version it put back held the same NUL, so every later link's
output was thrown away. Now the note is cleaned before it is written, and the store records no
version the reader would refuse.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import sys
from pathlib import Path

from engine.engine import Engine
from engine.settings import Settings
from engine.statefiles import ChainFiles
from engine.store import Store
from tests.conftest import write_chain
from tests.helpers import Cli

APPEND = "import os; open(os.environ['LLMAUTO_HANDOFF'], 'a').write('\\nthe link was here\\n')"


async def test_a_nul_in_an_answer_does_not_poison_the_chain(settings: Settings) -> None:
    """An answer with a NUL, an escape sequence and a bidi override, given while the chain is not
    running (the engine's own path; the running path goes through the same `operator_note`),
    then two more rounds of a link that appends to the handoff: both appends are kept, in the
    file and in the store, and no version holds a NUL. Broke operator_note back to `note.strip()`:
    the file is refused after the answer and this fails."""
    chain = {"max_rounds": 1, "links": [{"name": "w", "command": [sys.executable, "-c", APPEND]}]}
    write_chain(settings.home, "nul", chain)
    async with Store.open(settings.db_path) as store, Engine(settings, store) as engine:
        await engine.start_chain("nul", origin="test")
        await asyncio.wait_for(engine.wait("nul"), 30)
        await engine.answer("nul", "use plan B\x00\x1b[31m \u202edone", by="bob")
        files = ChainFiles(settings.state_dir, "nul")
        read = files.read_handoff()
        assert read.problem is None, read.problem
        assert "use plan B[31m <U+202E>done" in (read.text or "")
        write_chain(settings.home, "nul", {**chain, "max_rounds": 3})
        await engine.start_chain("nul", origin="test")
        await asyncio.wait_for(engine.wait("nul"), 30)
        final = files.read_handoff()
        assert final.problem is None and "use plan B" in (final.text or "")
        after_note = (final.text or "").split("## Operator note", 1)[1]
        assert after_note.count("the link was here") >= 2  # every link of the second run kept
        versions = await store.handoff_versions("nul", 20)
        assert versions[0].content == final.text
        assert all("\x00" not in v.content for v in versions)
        problems = [e for e in await store.chain_events("nul", 200) if e.kind == "handoff_problem"]
        assert problems == []


async def test_the_store_records_no_version_the_reader_would_refuse(store: Store) -> None:
    """A NUL, an empty text, a lone surrogate: not recorded, so the last good version stays the
    last one the reader accepts. Broke `_add_handoff` by removing the refusal: the NUL version
    becomes versions[0] and this fails."""
    await store.save_handoff("c", None, None, 1, "(start)", "# good\n")
    for bad in ("# bad\x00\n", "  \n", "# bad \udc80\n"):
        await store.save_handoff("c", None, None, 1, "(operator)", bad)
    versions = await store.handoff_versions("c", 5)
    assert [v.content for v in versions] == ["# good\n"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_is_created_private_and_an_old_open_one_is_tightened(cli: Cli, home: Path) -> None:
    """A real `chain start` under umask 022 creates state/ 0700 and llmauto.db, -wal, -shm 0600
    (they hold handoffs and operator notes). A database left 0644 by an older llmauto is made
    0600 at the next start, with a note on stderr. Broke `_private_files` (returned at once):
    the database is 0644 and this fails."""
    os.chmod(home / "state", 0o755)
    write_chain(home, "p", {"max_rounds": 1, "links": [{"name": "w", "command": [sys.executable, "-c", "pass"]}]})
    old = os.umask(0o022)
    try:
        out = cli.run("chain", "start", "p")
        assert out.returncode == 0, out.stderr
        db = home / "state" / "llmauto.db"
        assert _mode(home / "state") == 0o700
        assert _mode(db) == 0o600
        # A -wal and -shm exist while a connection is open: look at them from one.
        conn = sqlite3.connect(db)
        try:
            conn.execute("SELECT count(*) FROM runs").fetchone()
            for side in ("llmauto.db-wal", "llmauto.db-shm"):
                assert _mode(home / "state" / side) == 0o600, side
        finally:
            conn.close()
        os.chmod(db, 0o644)
        os.chmod(home / "state", 0o755)
        again = cli.run("chain", "status", "p")
        assert again.returncode == 0, again.stderr
        assert _mode(db) == 0o600 and _mode(home / "state") == 0o700
        assert "was readable by others" in again.stderr and "llmauto.db" in again.stderr
    finally:
        os.umask(old)
