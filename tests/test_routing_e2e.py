"""Verdict routing and task pools end to end with the REAL Claude Code CLI, offline (#13): the
loopback mock API plays the agents, each of which really runs a Bash tool call that appends to the
handoff (and the reviewer its VERDICT line) or works on the TODO.md task."""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine import events as ev
from engine import taskpool
from engine.engine import Engine
from engine.marble import RunOutcome
from engine.store import Store
from engine.tasks import FilePool
from tests.conftest import make_settings, write_chain
from tests.fakes.anthropic_api import MockAnthropic, Reply, has_tool_result, last_user_text
from tests.fakes.claude_env import REAL_CLAUDE_MISSING, offline_env, real_claude_bin

pytestmark = [
    pytest.mark.real_claude,
    pytest.mark.skipif(real_claude_bin() is None, reason=REAL_CLAUDE_MISSING),
]

PROMPT = "You are {LINK}. HANDOFF={HANDOFF} ROUND={ROUND} LINK={LINK} TASK=[{TASK}]"
_FIELDS = re.compile(r"HANDOFF=(\S+) ROUND=(\d+) LINK=(\S+) TASK=\[(.*?)\]", re.S)


def chain_doc(**extra: Any) -> dict[str, Any]:
    return {
        "mode": "conditional", "max_rounds": 5, **extra,
        "defaults": {"allowed_tools": ["Bash"], "timeout_seconds": 120},
        "links": [
            {"name": "worker", "model": "claude-sonnet-4-6", "prompt": PROMPT},
            {"name": "reviewer", "role": "reviewer", "model": "claude-sonnet-4-6", "prompt": PROMPT,
             "routes": {"NEEDS_FIX": "worker", "APPROVED": "next", "REJECTED": "blocked"}},
        ],
    }


def agents(verdicts: list[str], on_review: Callable[[int], None] | None = None) -> Callable[[dict[str, Any]], Reply]:
    """The worker appends a line; the n-th reviewer run appends `VERDICT: verdicts[n]`."""
    reviews = 0

    def respond(request: dict[str, Any]) -> Reply:
        nonlocal reviews
        if has_tool_result(request):
            return Reply.text("done")
        match = _FIELDS.search(last_user_text(request))
        assert match, "the rendered prompt reaches the API"
        handoff, rnd, link, task = match.groups()
        line = f"- {link} r{rnd} on [{task}]"
        if link == "reviewer":
            if on_review is not None:
                on_review(reviews)
            line += f"\nVERDICT: {verdicts[reviews]}"
            reviews += 1
        return Reply.bash(f"printf '%s\\n' {shlex.quote(line)} >> {shlex.quote(handoff)}")

    return respond


async def run_real(home: Path, tmp_path: Path, name: str, respond: Callable[[dict[str, Any]], Reply]) -> tuple[RunOutcome, list[Any], list[Any]]:
    claude = real_claude_bin()
    assert claude is not None
    (tmp_path / "tmp").mkdir(exist_ok=True)
    with MockAnthropic(respond) as api:
        environ = offline_env(api.base_url, tmp_path / "claude-config", home=tmp_path)
        environ["TMPDIR"] = str(tmp_path / "tmp")
        settings = make_settings(home, claude_bin=claude, environ=environ)
        async with Store.open(settings.db_path) as store, Engine(settings, store) as engine:
            await engine.start_chain(name, origin="test")
            outcome = await asyncio.wait_for(engine.wait(name), 300)
            runs = await store.last_runs(name, 1)
            events = await store.run_events(runs[0].id)
            rows = await store.link_runs(name, 50)
    return outcome, events, rows


async def test_reviewer_sends_back_twice_then_approves(home: Path, tmp_path: Path) -> None:
    """3 worker runs, 3 reviewer runs, one round counted, each hop an event and a link note."""
    write_chain(home, "rv", chain_doc(max_rounds=1))
    outcome, events, rows = await run_real(home, tmp_path, "rv", agents(["NEEDS_FIX", "NEEDS_FIX", "APPROVED"]))
    assert (outcome.status, outcome.reason) == ("COMPLETED", "max_rounds (1) reached")
    assert [(r.round, r.link, r.error_class) for r in rows] == [(1, "worker", "ok"), (1, "reviewer", "ok")] * 3
    assert [e.data["note"] for e in events if e.kind == ev.ROUTED] == [
        "reviewer: NEEDS_FIX → back to worker (1/3)", "reviewer: NEEDS_FIX → back to worker (2/3)",
        "reviewer: APPROVED → next round"]
    assert [e.data["counted"] for e in events if e.kind == ev.ROUND_FINISHED] == [True]


async def test_the_bounce_guard_fires_and_alerts(home: Path, tmp_path: Path) -> None:
    write_chain(home, "rv", chain_doc(max_bounces=2))
    outcome, events, rows = await run_real(home, tmp_path, "rv", agents(["NEEDS_FIX"] * 5))
    assert outcome.status == "BLOCKED"
    assert "reviewer sent the work back 2 times in round 1" in outcome.reason
    assert len(rows) == 6  # worker, reviewer, twice back, then the guard
    alert = [e for e in events if e.kind == ev.BLOCKED]
    assert len(alert) == 1 and alert[0].data["kind"] == "bounces"


async def test_a_todo_list_to_all_done(home: Path, tmp_path: Path) -> None:
    """Three tasks: the first approved after one NEEDS_FIX, the second REJECTED (blocked: marked
    [!] and skipped), the third approved; a task added while the chain runs (as /task adds it) is
    taken in turn; the run ends ALL_DONE with every box marked."""
    todo = home / "TODO.md"
    todo.write_text("# Tonight\n- [ ] one\n- [ ] two\n- [ ] three\n", encoding="utf-8")
    write_chain(home, "todo", chain_doc(max_rounds=10, task_pool={"type": "file", "path": "TODO.md"}))

    def add_during_first_review(n: int) -> None:
        if n == 0:
            taskpool.append_task(FilePool(path="TODO.md"), home, "four, from the chat")

    verdicts = ["NEEDS_FIX", "APPROVED", "REJECTED", "APPROVED", "APPROVED"]
    outcome, events, rows = await run_real(home, tmp_path, "todo", agents(verdicts, add_during_first_review))
    assert (outcome.status, outcome.reason) == ("ALL_DONE", "task list done")
    assert todo.read_text(encoding="utf-8") == "# Tonight\n- [x] one\n- [!] two\n- [x] three\n- [x] four, from the chat\n"
    done = [e.data["text"] for e in events if e.kind == ev.TASK_DONE]
    blocked = [e.data["text"] for e in events if e.kind == ev.TASK_BLOCKED]
    assert (done, blocked) == (["one", "three", "four, from the chat"], ["two"])
    assert len(rows) == 10
