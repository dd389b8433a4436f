"""The engine facade's house rules (#14 item 6): one writer of operator notes, stamped in the
home's zone; and the status view reads WAITING, BLOCKED and PAUSED from the store, so a chain run by
another process shows what it is doing. Each test names the line that, broken, made it fail."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from engine.clock import ManualClock
from engine.engine import Engine
from engine.statefiles import ChainFiles
from engine.store import Store
from tests.bot.conftest import append_line
from tests.bot.test_buttons import ALWAYS_BLOCKED
from tests.conftest import make_settings, write_chain
from tests.faults.serve_rig import until
from tests.helpers import Cli
from tests.steering import held_in_another_process, unhandled_controls


async def test_an_operator_note_to_an_idle_chain_is_stamped_in_the_homes_zone(home: Path) -> None:
    """Checked: with engine/notes.py's `stamp` back to `now.isoformat(timespec="minutes")` (the
    UTC stamp Engine._steer wrote), the note says 10:00+00:00 and this fails."""
    write_chain(home, "idle", {"links": [{"name": "w", "command": append_line("x")}]})
    settings = make_settings(home, timezone="Asia/Tokyo")
    clock = ManualClock(datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
    async with Store.open(settings.db_path) as store, Engine(settings, store, clock=clock) as engine:
        assert await engine.answer("idle", "smaller steps", by="ann") == \
            "idle: note added to the handoff (the chain is not running)"
        text = ChainFiles(settings.state_dir, "idle").read_handoff().text or ""
        assert "## Operator note (ann, 2026-12-01T19:00+09:00)\nsmaller steps" in text
        versions = await store.handoff_versions("idle", 1)
        assert versions[0].link == "(operator)" and versions[0].content == text


async def test_a_chain_paused_in_another_process_shows_paused(cli: Cli, home: Path, tmp_path: Path) -> None:
    """A foreground `chain start` in another process is paused from here: the status view (which
    once said RUNNING for it) says PAUSED, and RUNNING again once it resumes. Checked: with the
    `set_chain_status` call removed from MarbleRun._mark, the view says RUNNING and this fails."""
    gate = tmp_path / "gate"
    runner = await held_in_another_process(cli, home, gate)
    try:
        settings = make_settings(home)
        async with Store.open(settings.db_path) as store, Engine(settings, store) as engine:
            assert (await engine.view("far")).status == "RUNNING"
            await engine.pause_chain("far", by="t")
            await until("the other process to take the pause in", lambda: unhandled_controls(settings.db_path) == 0,
                        proc=runner)
            gate.touch()

            async def paused() -> bool:
                return any(e.kind == "paused" for e in await store.chain_events("far"))

            await until("the other process to pause the chain", paused, proc=runner)
            view = await engine.view("far")
            assert (view.status, view.running_here, view.running_elsewhere is not None) == ("PAUSED", False, True)
            await engine.resume_chain("far", by="t")
            _out, err = await asyncio.to_thread(runner.communicate, timeout=60)
            assert runner.returncode == 0, err
            assert (await engine.view("far")).status not in ("PAUSED", "RUNNING", "INTERRUPTED")
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate(timeout=10)


async def test_a_blocked_wait_is_recorded_in_the_store_and_shown_from_there(home: Path) -> None:
    """on_blocked = wait: while the run waits for an answer the store says BLOCKED (what every
    process's status view reads), and RUNNING again once the answer is in. Checked: with
    MarbleRun._wait_for_answer back to `self.files.write_status("BLOCKED")` only, the store still
    says RUNNING and this fails."""
    write_chain(home, "asker", {"max_rounds": 2, "on_blocked": "wait", "blocked_wait_minutes": 10, "links": [
        {"name": "agent", "command": [sys.executable, "-c", ALWAYS_BLOCKED]}]})
    settings = make_settings(home)
    async with Store.open(settings.db_path) as store, Engine(settings, store) as engine:
        await engine.start_chain("asker")

        async def stored(word: str) -> bool:
            return (await store.chain_state("asker")).status == word

        await until("the run to wait for an answer", lambda: stored("BLOCKED"))
        assert (await engine.view("asker")).status == "BLOCKED"
        await engine.answer("asker", "use sqlite", by="ann")
        outcome = await asyncio.wait_for(engine.wait("asker"), 30)
        assert outcome.status not in ("BLOCKED", "FAILED"), outcome
        assert (await engine.view("asker")).status == outcome.status
