"""End to end with the REAL Claude Code CLI, offline: the engine runs a two-link chain for two
rounds; each agent really executes a Bash tool call (scripted by the loopback mock API) that writes
the handoff, and the reviewer of round 2 writes ALL_DONE."""

from __future__ import annotations

import asyncio
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from engine.engine import Engine
from engine.statefiles import ChainFiles
from engine.store import Store
from tests.conftest import make_settings, write_chain
from tests.fakes.anthropic_api import MockAnthropic, Reply, has_tool_result, last_user_text
from tests.fakes.claude_env import REAL_CLAUDE_MISSING, offline_env, real_claude_bin

pytestmark = [
    pytest.mark.real_claude,
    pytest.mark.skipif(real_claude_bin() is None, reason=REAL_CLAUDE_MISSING),
]

PROMPT = "You are {LINK}. Append your line to the handoff. HANDOFF={HANDOFF} ROUND={ROUND} LINK={LINK} STATE={STATE_DIR}"
_FIELDS = re.compile(r"HANDOFF=(\S+) ROUND=(\d+) LINK=(\S+) STATE=(\S+)")


def responder(request: dict[str, Any]) -> Reply:
    """Turn 1: a Bash call that appends to the handoff (and ends the chain in round 2's review);
    turn 2 (with the tool result): the final text."""
    if has_tool_result(request):
        return Reply.text("done")
    match = _FIELDS.search(last_user_text(request))
    assert match, "the rendered prompt reaches the API"
    handoff, rnd, link, state = match.groups()
    command = f"printf '%s\\n' {shlex.quote(f'- {link} was here in round {rnd}')} >> {shlex.quote(handoff)}"
    if link == "reviewer" and rnd == "2":
        command += f" && echo ALL_DONE > {shlex.quote(state + '/status.txt')}"
    return Reply.bash(command)


async def test_two_links_two_rounds_with_the_real_cli(home: Path, tmp_path: Path) -> None:
    claude = real_claude_bin()
    assert claude is not None
    write_chain(home, "real", {
        "max_rounds": 5,
        "defaults": {"allowed_tools": ["Bash"], "timeout_seconds": 120},
        "links": [
            {"name": "worker", "role": "worker", "model": "claude-sonnet-4-6", "prompt": PROMPT},
            {"name": "reviewer", "role": "reviewer", "model": "claude-sonnet-4-6", "prompt": PROMPT, "continue": True},
        ],
    })
    (tmp_path / "tmp").mkdir()
    with MockAnthropic(responder) as api:
        environ = offline_env(api.base_url, tmp_path / "claude-config", home=tmp_path)
        environ["TMPDIR"] = str(tmp_path / "tmp")
        settings = make_settings(home, claude_bin=claude, environ=environ)
        async with Store.open(settings.db_path) as store, Engine(settings, store) as engine:
            await engine.start_chain("real", origin="test")
            outcome = await asyncio.wait_for(engine.wait("real"), 300)
            rows = await store.link_runs("real", 10)
    assert (outcome.status, outcome.reason) == ("ALL_DONE", "an agent declared ALL_DONE")
    handoff = ChainFiles(settings.state_dir, "real").read_handoff().text or ""
    assert [line for line in handoff.splitlines() if line.startswith("- ")] == [
        "- worker was here in round 1", "- reviewer was here in round 1",
        "- worker was here in round 2", "- reviewer was here in round 2",
    ]
    assert [(r.round, r.link, r.error_class) for r in rows] == [
        (1, "worker", "ok"), (1, "reviewer", "ok"), (2, "worker", "ok"), (2, "reviewer", "ok")]
    assert all(r.session_id for r in rows)
    # The reviewer is a `continue` link: round 2 resumed round 1's session.
    assert rows[1].session_id == rows[3].session_id
    assert rows[0].session_id != rows[2].session_id
    assert len(api.message_requests()) == 8  # two requests (tool call, final text) per link
