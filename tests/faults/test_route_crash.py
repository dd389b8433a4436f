"""A crash mid-bounce, injected for real (#13): a foreground `chain start` of a planner → worker →
reviewer chain whose reviewer routes NEEDS_FIX back to the worker is SIGKILLed while the worker of
the bounced round runs. The next start resumes at the routed target (the worker, not the planner),
with the round and the bounce count as committed before the kill: the hop is never counted twice.

Lines broken to see it fail: `_next_run_state` in engine/engine.py returning
`replace(state, round_bounces="", ...)` (the resumed run forgets the bounce: the second NEEDS_FIX
says 1/2, not 2/2, and a third would pass the guard); the same returning `replace(state,
next_link=0, ...)` (the planner runs again); and the `"path": state.round_path ...` entry of
RUN_STARTED in engine/marble.py (the resumed run's card would start with an empty path).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from engine import events as ev
from engine.statefiles import ChainFiles
from engine.store import Store
from tests.conftest import ROOT, write_chain
from tests.helpers import Cli, gone, wait_for_lease

ROUTE_AGENT = ROOT / "tests" / "fakes" / "route_agent.py"


def agent(role: str, box: Path, *verdicts: str) -> list[str]:
    return [sys.executable, str(ROUTE_AGENT), role, str(box), *([",".join(verdicts)] if verdicts else [])]


async def test_sigkill_mid_bounce_resumes_at_the_routed_link_and_counts_the_hop_once(cli: Cli, home: Path,
                                                                                      tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.mkdir()
    write_chain(home, "bounce", {"mode": "conditional", "max_rounds": 1, "max_bounces": 2, "links": [
        {"name": "planner", "command": agent("planner", box)},
        {"name": "worker", "command": agent("worker", box)},
        {"name": "reviewer", "role": "reviewer", "command": agent("reviewer", box, "NEEDS_FIX", "NEEDS_FIX", "APPROVED"),
         "routes": {"NEEDS_FIX": "worker", "APPROVED": "next"}}]})
    runner = cli.spawn("chain", "start", "bounce")
    await wait_for_lease(home, "bounce", runner.pid)
    waits = box / "worker-waits"
    while not waits.exists() or not waits.read_text():  # the bounced round's worker runs (and waits)
        await asyncio.sleep(0.02)
    runner.send_signal(signal.SIGKILL)
    runner.communicate(timeout=10)
    orphan = int(waits.read_text())
    db = home / "state" / "llmauto.db"
    async with Store.open(db) as store:
        st = await store.chain_state("bounce")
        assert (st.round, st.next_link, st.round_bounces, st.round_path) == (
            1, 1, '{"worker": 1}', "planner → worker → reviewer")

    again = cli.run("chain", "start", "bounce")
    assert again.returncode == 0, again.stderr
    assert gone(orphan), "the killed run's worker is killed on recovery"
    assert "recovered" in again.stdout
    text = ChainFiles(home / "state", "bounce").read_handoff().text or ""
    lines = [ln for ln in text.splitlines() if ln.startswith(("- ", "VERDICT"))]
    assert lines == ["- planner 0", "- worker 0", "- reviewer 0", "VERDICT: NEEDS_FIX",  # before the kill
                     "- worker 2", "- reviewer 1", "VERDICT: NEEDS_FIX",  # the killed worker 1 wrote nothing
                     "- worker 3", "- reviewer 2", "VERDICT: APPROVED"]
    async with Store.open(db) as store:
        rows = await store.link_runs("bounce", 20)
        assert [(r.round, r.link, r.status) for r in rows] == [
            (1, "planner", "done"), (1, "worker", "done"), (1, "reviewer", "done"), (1, "worker", "interrupted"),
            (1, "worker", "done"), (1, "reviewer", "done"), (1, "worker", "done"), (1, "reviewer", "done")]
        st = await store.chain_state("bounce")
        assert (st.status, st.round, st.rounds_counted, st.round_bounces, st.round_path) == ("COMPLETED", 2, 1, "", "")
        runs = await store.last_runs("bounce")
        assert [r.status for r in runs] == ["COMPLETED", "INTERRUPTED"]
        notes = [e.data["note"] for r in reversed(runs) for e in await store.run_events(r.id) if e.kind == ev.ROUTED]
        assert notes == ["reviewer: NEEDS_FIX → back to worker (1/2)", "reviewer: NEEDS_FIX → back to worker (2/2)",
                         "reviewer: APPROVED → next round"]
        resumed = next(e for e in await store.run_events(runs[0].id) if e.kind == ev.RUN_STARTED)
        assert (resumed.data["link"], resumed.data["resumed"], resumed.data["path"]) == (
            "worker", True, "planner → worker → reviewer")
        assert [e.data["round"] for r in runs for e in await store.run_events(r.id) if e.kind == ev.ROUND_FINISHED] == [1]
