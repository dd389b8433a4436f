"""Crashes, injected for real: SIGKILL of a foreground `chain start` mid-link, then a new start.

Guarantees checked: the orphaned agent process group is killed; the handoff goes back to the last
version the engine committed (the interrupted link may have half-written it); the interrupted link
is re-run; no round is counted twice; no event is lost.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from pathlib import Path

from engine import events as ev
from engine.statefiles import ChainFiles
from engine.store import Store
from tests.conftest import write_chain
from tests.helpers import Cli, gone, wait_for_lease
from tests.test_cli import LOOP

APPEND = (
    "import os, time, random; time.sleep(random.uniform(0, float(os.environ.get('PAUSE', '0.05')))); "
    "open(os.environ['LLMAUTO_HANDOFF'], 'a').write("
    "f\"- {os.environ['LLMAUTO_LINK']} round {os.environ['LLMAUTO_ROUND']}\\n\"); "
    "time.sleep(random.uniform(0, float(os.environ.get('PAUSE', '0.05'))))"
)


async def test_sigkill_mid_link_then_restart_recovers(cli: Cli, home: Path) -> None:
    write_chain(home, "crash", LOOP)
    cli.scenario_is({"links": {
        "worker": [{"hang": True, "spawn_child": True}, {"handoff": "- worker after recovery\n", "handoff_mode": "append"}],
        "reviewer": [{"status": "ALL_DONE"}],
    }})
    files = ChainFiles(home / "state", "crash")
    runner = cli.spawn("chain", "start", "crash")
    await wait_for_lease(home, "crash", runner.pid)
    child_file = files.dir / "fake_child.pid"
    while not child_file.exists():
        await asyncio.sleep(0.02)
    committed = files.read_handoff().text
    runner.send_signal(signal.SIGKILL)
    runner.communicate(timeout=10)
    orphan = int(child_file.read_text())
    assert not gone(orphan), "the agent's group outlives its parent: the case recovery must handle"
    files.handoff.write_text("HALF-WRITTEN by the dying agent", encoding="utf-8")

    again = cli.run("chain", "start", "crash")
    assert again.returncode == 0, again.stderr
    assert gone(orphan)
    assert "recovered" in again.stdout
    text = files.read_handoff().text or ""
    assert "HALF-WRITTEN" not in text
    assert text == (committed or "") + "- worker after recovery\n"
    async with Store.open(home / "state" / "llmauto.db") as store:
        rows = await store.link_runs("crash", 10)
        assert [(r.round, r.link, r.status) for r in rows] == [
            (1, "worker", "interrupted"), (1, "worker", "done"), (1, "reviewer", "done")]
        st = await store.chain_state("crash")
        assert (st.status, st.rounds_counted, st.round) == ("ALL_DONE", 1, 2)
        runs = await store.last_runs("crash")
        assert [r.status for r in runs] == ["ALL_DONE", "INTERRUPTED"]
        first_run_events = [e.kind for e in await store.run_events(runs[1].id)]
        assert first_run_events[:2] == [ev.RUN_STARTED, ev.LINK_STARTED]
        assert ev.RECOVERED in first_run_events


async def test_random_kills_never_count_a_round_twice(cli: Cli, home: Path) -> None:
    """Kill the runner at random points, restart, repeat: the handoff ends with exactly one line
    per (round, link), in order, and the counters match."""
    rounds = 4
    doc = {"max_rounds": rounds, "links": [
        {"name": name, "command": [sys.executable, "-c", APPEND]} for name in ("a", "b", "c")]}
    write_chain(home, "chaos", doc)
    cli.env["PAUSE"] = "0.08"
    rng = random.Random(1234)
    kills = 0
    files = ChainFiles(home / "state", "chaos")
    for _ in range(12):
        runner = cli.spawn("chain", "start", "chaos")
        try:
            await wait_for_lease(home, "chaos", runner.pid, timeout=30)
        except TimeoutError:
            runner.communicate(timeout=30)
            if files.read_status() == "COMPLETED":
                break
            raise
        await asyncio.sleep(rng.uniform(0.0, 0.4))  # the random kill point; correctness must not depend on it
        if runner.poll() is None:
            runner.send_signal(signal.SIGKILL)
            kills += 1
        runner.communicate(timeout=30)
        if files.read_status() == "COMPLETED":
            break
    if files.read_status() != "COMPLETED":
        final = cli.run("chain", "start", "chaos")
        assert final.returncode == 0, final.stderr
    assert kills >= 3
    lines = [ln for ln in (files.read_handoff().text or "").splitlines() if ln.startswith("- ")]
    assert lines == [f"- {link} round {r}" for r in range(1, rounds + 1) for link in ("a", "b", "c")]
    async with Store.open(home / "state" / "llmauto.db") as store:
        st = await store.chain_state("chaos")
        assert (st.rounds_counted, st.round, st.status) == (rounds, rounds + 1, "COMPLETED")
        done = [r for r in await store.link_runs("chaos", 500) if r.status == "done"]
        assert [(r.round, r.link) for r in done] == [(r, link) for r in range(1, rounds + 1) for link in ("a", "b", "c")]
