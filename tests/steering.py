"""A chain held mid-link by another process (a foreground `chain start`), for tests that steer it
from here (pause, answer, resume) through the store's controls."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from tests.bot.conftest import append_line
from tests.conftest import write_chain
from tests.fakes.gate import holding_command, started
from tests.faults.serve_rig import until
from tests.helpers import Cli, wait_for_lease


async def held_in_another_process(cli: Cli, home: Path, gate: Path, name: str = "far") -> subprocess.Popen[str]:
    """`name` runs link a (held until `gate` exists), then b (appends "b ran"), in a `chain start`
    process of its own; returns once link a runs."""
    write_chain(home, name, {"max_rounds": 1, "links": [
        {"name": "a", "command": holding_command(gate)}, {"name": "b", "command": append_line("b ran")}]})
    runner = cli.spawn("chain", "start", name)
    await wait_for_lease(home, name, runner.pid)
    await until("link a to start", lambda: started(gate), proc=runner)
    return runner


def unhandled_controls(db: Path) -> int:
    """Controls (stop, pause, answer, ...) the running process has not taken in yet."""
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM controls WHERE handled_at IS NULL").fetchone()[0])
