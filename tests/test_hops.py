"""Verdict routing and task pools in the marble loop (#13), with the in-process scripted runner:
where the marble goes after a verdict, the bounce guard, the round counted once, the hops as
events and notes, the position and bounces surviving a resumed run, and a TODO.md worked through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine import events as ev
from engine.clock import RecordingSleeper
from engine.engine import Engine
from engine.settings import Settings
from engine.statefiles import ChainFiles
from engine.store import Store
from tests.conftest import write_chain
from tests.fakes.scripted_runner import Call, ScriptedRunner, ok

REVIEW: dict[str, Any] = {
    "description": "review loop", "mode": "conditional", "max_rounds": 1,
    "links": [
        {"name": "worker", "model": "m", "prompt": "Work on {HANDOFF}."},
        {"name": "reviewer", "role": "reviewer", "model": "m", "prompt": "Review {HANDOFF}.",
         "routes": {"NEEDS_FIX": "worker", "APPROVED": "next", "REJECTED": "stop"}},
    ],
}


class Rig:
    def __init__(self, engine: Engine, runner: ScriptedRunner, store: Store, settings: Settings) -> None:
        self.engine, self.runner, self.store, self.settings = engine, runner, store, settings

    async def run(self, chain: str) -> Any:
        await self.engine.start_chain(chain, origin="test")
        return await asyncio.wait_for(self.engine.wait(chain), 20)

    async def events(self, chain: str, kind: str | None = None) -> list[Any]:
        out = []
        for run in reversed(await self.store.last_runs(chain, 10)):
            out += [e for e in await self.store.run_events(run.id) if kind is None or e.kind == kind]
        return out


@pytest.fixture
async def rig(settings: Settings, store: Store) -> AsyncIterator[Rig]:
    runner = ScriptedRunner()
    async with Engine(settings, store, runner=runner, sleeper=RecordingSleeper()) as engine:
        yield Rig(engine, runner, store, settings)


def verdict(word: str) -> Any:
    return lambda c: (c.append_handoff(f"\n## Review\nVERDICT: {word}\n"), ok())[1]


def work(c: Call) -> Any:
    c.append_handoff(f"\nworker did round {c.round}\n")
    return ok()


async def test_needs_fix_twice_then_approved_is_one_round(home: Path, rig: Rig) -> None:
    """3 worker runs, 3 reviewer runs, one round counted; each hop an event with its note.
    Checked by making `_advance` ignore the hop (always next_link + 1): red (2 links only)."""
    write_chain(home, "rv", REVIEW)
    rig.runner.default = work
    rig.runner.script("reviewer", verdict("NEEDS_FIX"), verdict("needs-fix"), verdict("APPROVED"))
    outcome = await rig.run("rv")
    assert rig.runner.links_called() == ["worker", "reviewer"] * 3
    assert outcome.status == "COMPLETED" and "max_rounds (1)" in outcome.reason
    state = await rig.store.chain_state("rv")
    assert (state.rounds_counted, state.round, state.round_bounces, state.round_path) == (1, 2, "", "")
    notes = [e.data["note"] for e in await rig.events("rv", ev.ROUTED)]
    assert notes == ["reviewer: NEEDS_FIX → back to worker (1/3)", "reviewer: NEEDS_FIX → back to worker (2/3)",
                     "reviewer: APPROVED → next round"]
    finished = [e.data.get("hop") for e in await rig.events("rv", ev.LINK_FINISHED) if e.data["link"] == "reviewer"]
    assert finished == notes
    assert ChainFiles(rig.settings.state_dir, "rv").round_counter.read_text().strip() == "1"


async def test_the_bounce_guard_blocks_with_an_alert(home: Path, rig: Rig) -> None:
    """The fourth NEEDS_FIX with max_bounces 3 ends the run BLOCKED with the alert's wording.
    Checked by raising the guard (`count > max_bounces + 1` in routing.decide): red."""
    write_chain(home, "rv", {**REVIEW, "max_rounds": 5})
    rig.runner.default = work
    rig.runner.script("reviewer", *[verdict("NEEDS_FIX")] * 6)
    outcome = await rig.run("rv")
    assert rig.runner.links_called() == ["worker", "reviewer"] * 4
    assert outcome.status == "BLOCKED"
    assert "reviewer sent the work back 3 times in round 1" in outcome.reason
    alerts = await rig.events("rv", ev.BLOCKED)
    assert [a.data["kind"] for a in alerts] == ["bounces"]
    assert "reviewer sent the work back 3 times in round 1" in alerts[0].data["question"]
    assert ChainFiles(rig.settings.state_dir, "rv").read_status() == "BLOCKED"


async def test_stop_route_and_unrouted_verdict(home: Path, rig: Rig) -> None:
    """REJECTED → stop ends the run STOPPED; a verdict with no route goes on as without routes."""
    write_chain(home, "rv", {**REVIEW, "max_rounds": 3})
    rig.runner.default = work
    rig.runner.script("reviewer", verdict("MAYBE"), verdict("REJECTED"))
    outcome = await rig.run("rv")
    assert rig.runner.links_called() == ["worker", "reviewer"] * 2
    assert (outcome.status, outcome.reason) == ("STOPPED", "reviewer: REJECTED → stop")
    assert [e.data["verdict"] for e in await rig.events("rv", ev.ROUTED)] == ["REJECTED"]


async def test_an_old_verdict_above_does_not_route_again(home: Path, rig: Rig) -> None:
    """A reviewer that appends no verdict does not reuse the last round's NEEDS_FIX still in the
    handoff. Checked by reading the whole handoff in `hops.read_verdict`: red (a bounce)."""
    write_chain(home, "rv", {**REVIEW, "max_rounds": 1})
    rig.runner.default = work
    rig.runner.script("reviewer", verdict("NEEDS_FIX"), lambda c: (c.append_handoff("\nlooks fine\n"), ok())[1])
    await rig.run("rv")
    assert rig.runner.links_called() == ["worker", "reviewer"] * 2


async def test_a_resumed_run_continues_at_the_routed_link_with_its_bounces(home: Path, rig: Rig) -> None:
    """Stopped right after a bounce, the next start runs the worker (the routed target) and counts
    on from 1 bounce, never the same hop twice. Checked by leaving round_bounces out of
    `_advance`'s state: red (the note says 1/3 again)."""
    write_chain(home, "rv", REVIEW)
    rig.runner.default = work

    def bounce_then_stop(c: Call) -> Any:
        c.append_handoff("\nVERDICT: NEEDS_FIX\n")
        asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(rig.engine.stop_chain("rv", "test", now=False, by="t")))
        return ok()

    rig.runner.script("reviewer", bounce_then_stop, verdict("NEEDS_FIX"), verdict("APPROVED"))
    first = await rig.run("rv")
    assert first.status == "STOPPED"
    state = await rig.store.chain_state("rv")
    assert (state.next_link, state.round_bounces, state.round_path) == (0, '{"worker": 1}', "worker → reviewer")
    second = await rig.run("rv")
    assert second.status == "COMPLETED"
    assert rig.runner.links_called() == ["worker", "reviewer"] * 3
    notes = [e.data["note"] for e in await rig.events("rv", ev.ROUTED)]
    assert notes[1] == "reviewer: NEEDS_FIX → back to worker (2/3)"
    assert (await rig.store.chain_state("rv")).rounds_counted == 1


TODO_CHAIN: dict[str, Any] = {
    "description": "todo", "mode": "conditional", "max_rounds": 10,
    "task_pool": {"type": "file", "path": "TODO.md"},
    "links": [
        {"name": "worker", "model": "m", "prompt": "Do task {TASK_ID}: {TASK} ({TASKS_LEFT} left) in {TASK_FILE}"},
        {"name": "reviewer", "role": "reviewer", "model": "m", "prompt": "Review {TASK}",
         "routes": {"NEEDS_FIX": "worker", "APPROVED": "next", "REJECTED": "blocked"}},
    ],
}


async def test_a_todo_list_is_worked_through_to_all_done(home: Path, rig: Rig) -> None:
    """Each round takes the next open task ({TASK} in the prompt), ticks it on APPROVED, marks a
    REJECTED one [!] and goes on, takes a task added mid-run, and ends ALL_DONE 'task list done'.
    Checked by making `hops.task_outcome` return None for an accepted verdict: red."""
    todo = home / "TODO.md"
    todo.write_text("# Tonight\n- [ ] write the parser\n- [ ] add tests\n- [x] old one\n", encoding="utf-8")
    write_chain(home, "todo", TODO_CHAIN)
    rig.runner.default = work

    def approve_and_add(c: Call) -> Any:
        with todo.open("a", encoding="utf-8") as f:
            f.write("- [ ] added from the phone\n")
        return verdict("APPROVED")(c)

    rig.runner.script("reviewer", verdict("NEEDS_FIX"), approve_and_add, verdict("REJECTED"), verdict("APPROVED"))
    outcome = await rig.run("todo")
    assert (outcome.status, outcome.reason) == ("ALL_DONE", "task list done")
    assert todo.read_text(encoding="utf-8") == (
        "# Tonight\n- [x] write the parser\n- [!] add tests\n- [x] old one\n- [x] added from the phone\n")
    prompts = [c.inv.stdin for c in rig.runner.calls if c.link == "worker"]
    assert "write the parser (2 left)" in prompts[0] and str(todo) in prompts[0]
    assert "add tests" in prompts[2] and "added from the phone (1 left)" in prompts[3]
    kinds = [(e.kind, e.data.get("text")) for e in await rig.events("todo")
             if e.kind in (ev.TASK_STARTED, ev.TASK_DONE, ev.TASK_BLOCKED)]
    assert kinds == [
        (ev.TASK_STARTED, "write the parser"), (ev.TASK_DONE, "write the parser"),
        (ev.TASK_STARTED, "add tests"), (ev.TASK_BLOCKED, "add tests"),
        (ev.TASK_STARTED, "added from the phone"), (ev.TASK_DONE, "added from the phone"),
    ]


async def test_an_empty_pool_ends_at_once(home: Path, rig: Rig) -> None:
    (home / "TODO.md").write_text("- [x] done already\n", encoding="utf-8")
    write_chain(home, "todo", TODO_CHAIN)
    outcome = await rig.run("todo")
    assert (outcome.status, outcome.reason) == ("ALL_DONE", "task list done")
    assert rig.runner.calls == []
