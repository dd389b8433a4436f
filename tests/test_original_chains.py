"""The original llmauto's chain files run unchanged, and their agents can act (issue #10).

A corpus written in the original's format (tests/corpus/original: `chain_name`, `_note` comments,
`prompts` entries of type file and inline `content`, `defaults` with the original's permissions,
`opus_deep_limit`, repeated link names, `telegram.update_every_n_links`, links without a model, bare
prompt keys that name prompts/KEY.txt) is copied into a fresh home and run with llmauto's defaults
on the REAL Claude Code CLI against the loopback mock API. The mock plays agents the way real ones
work: the controller Reads the handoff and Writes it anew with `ASSIGNED: ...` (relative paths
from the home, as the original's prompts give them), workers append their result through Bash,
reading round_counter.txt with the shell.

Checked by breaking the engine: without the default permissions (`GlobalDefaults.permission_mode`
and `allowed_tools` set to None in engine/chains.py) every Write and Bash call is refused and the
test fails on the refusals; with round_counter.txt written as the current round (marble
`_write_round` using `state.round`) it fails on the round lines.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine import events as ev
from engine.engine import Engine
from engine.statefiles import ChainFiles
from engine.store import Store
from tests.conftest import make_settings
from tests.fakes.anthropic_api import MockAnthropic, Reply
from tests.fakes.claude_env import REAL_CLAUDE_MISSING, offline_env, real_claude_bin

pytestmark = [
    pytest.mark.real_claude,
    pytest.mark.skipif(real_claude_bin() is None, reason=REAL_CLAUDE_MISSING),
]

CORPUS = Path(__file__).parent / "corpus" / "original"
_MARKER = re.compile(r"CORPUS-AGENT role=(\w+)(?: handoff=(\S+))?(?: assign=(\S+))?")


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text")


def agent(request: dict[str, Any]) -> Reply:
    """One turn of a scripted agent: find this call's prompt (the last user message with the
    marker: a resumed session sends its whole history first) and take the next step of its role."""
    messages = request.get("messages") or []
    at = max(i for i, m in enumerate(messages) if m.get("role") == "user" and "CORPUS-AGENT" in _text_of(m))
    step = sum(1 for m in messages[at + 1:] if m.get("role") == "assistant")
    match = _MARKER.search(_text_of(messages[at]))
    assert match is not None
    role, handoff, assign = match.groups()
    model = request.get("model")
    if role == "controller":
        assert handoff is not None
        plan = [
            Reply.tool_use("Read", {"file_path": handoff}),
            Reply.tool_use("Write", {"file_path": handoff, "content": (
                f"# Handoff\n## Role: CONTROLLER\nASSIGNED: {assign}\nTASK: the next step\n")}),
        ]
    else:
        target = shlex.quote(handoff) if handoff else '"$(ls state/*/handoff.md)"'
        line = f'- {role} on {model} after $(cat "$(dirname {target})/round_counter.txt") rounds'
        plan = [Reply.bash(f'printf "%s\\n" "{line}" >> {target}', description="Append my result")]
    return plan[step] if step < len(plan) else Reply.text("done")


async def run_original(tmp_path: Path, name: str) -> tuple[Any, list[Any], list[Any], str, str, MockAnthropic]:
    """Copy the corpus into a fresh home, run one chain to its end on the real CLI; returns the
    outcome, the link runs, the events, the handoff, round_counter.txt and the mock."""
    home = tmp_path / "home"
    shutil.copytree(CORPUS, home)
    (home / "state").mkdir()
    (tmp_path / "tmp").mkdir()
    claude = real_claude_bin()
    assert claude is not None
    with MockAnthropic(agent) as api:
        environ = offline_env(api.base_url, tmp_path / "claude-config", home=tmp_path)
        environ["TMPDIR"] = str(tmp_path / "tmp")
        settings = make_settings(home, claude_bin=claude, environ=environ)  # llmauto's defaults, no permissions set
        async with Store.open(settings.db_path) as store, Engine(settings, store) as engine:
            run_id = await engine.start_chain(name, origin="test")
            outcome = await asyncio.wait_for(engine.wait(name), 240)
            rows = await store.link_runs(name, 50)
            events = await store.run_events(run_id)
    files = ChainFiles(home / "state", name)
    return outcome, rows, events, files.read_handoff().text or "", files.round_counter.read_text().strip(), api


def no_refusals(rows: list[Any], events: list[Any]) -> None:
    assert [(r.link, r.refusals) for r in rows if r.refusals] == []
    assert [e.data for e in events if e.kind == ev.TOOL_REFUSED] == []
    assert [(r.link, r.error_class) for r in rows if r.status != "skipped" and r.error_class != "ok"] == []


async def test_controller_worker_loop_assigns_and_only_the_assigned_worker_runs(tmp_path: Path) -> None:
    outcome, rows, events, handoff, counter, api = await run_original(tmp_path, "corpus-controller-loop")
    assert (outcome.status, outcome.reason) == ("COMPLETED", "max_rounds (2) reached")
    no_refusals(rows, events)
    assert [(r.round, r.link, r.status) for r in rows] == [
        (1, "opus-controller", "done"), (1, "opus-worker", "skipped"), (1, "sonnet-worker", "done"),
        (2, "opus-controller", "done"), (2, "opus-worker", "skipped"), (2, "sonnet-worker", "done"),
    ]
    # The controller Wrote the handoff anew (relative path), the sonnet worker appended through Bash,
    # reading round_counter.txt: 0 rounds done during round 1, 1 during round 2 (in the last handoff).
    assert handoff.startswith("# Handoff\n## Role: CONTROLLER\nASSIGNED: sonnet\n")
    assert handoff.rstrip().endswith("- worker on claude-sonnet-4-6 after 1 rounds")
    assert counter == "2"  # completed rounds, as the original's round_counter.txt
    models = [r.body.get("model") for r in api.message_requests()]
    # Only the controller asked as opus (Read, Write, final text: 3 requests a round); the opus
    # worker was never started: the engine skipped it without a claude call.
    assert (models.count("claude-opus-4-6"), models.count("claude-sonnet-4-6")) == (6, 4)
    assert outcome.status == "COMPLETED" and rows[3].session_id == rows[0].session_id  # the controller continues


async def test_defaults_and_opus_deep_limit_of_the_originals_research_chain(tmp_path: Path) -> None:
    outcome, rows, events, handoff, counter, _ = await run_original(tmp_path, "corpus-research")
    assert outcome.status == "COMPLETED"
    no_refusals(rows, events)
    # opus_deep_limit 1: opus-deep runs in round 1; in round 2 it is skipped and the controller told.
    assert [(r.round, r.link, r.status) for r in rows] == [
        (1, "opus-controller", "done"), (1, "opus-deep", "done"),
        (2, "opus-controller", "done"), (2, "opus-deep", "skipped"),
    ]
    assert rows[3].error_message == "max_runs (1) used in this run"
    assert "## llmauto: opus-deep has had its 1 run(s) in this run (max_runs)" in handoff
    assert counter == "2"
    warnings = [e.data["message"] for e in events if e.kind == ev.WARNING]
    assert any("opus_deep_limit: applied as links[1].max_runs = 1" in w for w in warnings)


async def test_once_chain_with_inline_prompts_default_model_and_a_repeated_link(tmp_path: Path) -> None:
    outcome, rows, events, handoff, counter, api = await run_original(tmp_path, "corpus-review-once")
    assert (outcome.status, outcome.reason) == ("COMPLETED", "once pass finished")
    no_refusals(rows, events)
    assert [r.link for r in rows] == ["k1-review", "r-scientist", "k2-review", "r-scientist"]
    assert {r.model for r in rows} == {"claude-sonnet-4-6"}  # defaults.model: no link names one
    assert rows[1].session_id == rows[3].session_id  # one name, `continue`: one claude session
    assert [line for line in handoff.splitlines() if line.startswith("- ")] == [
        "- reviewer on claude-sonnet-4-6 after 0 rounds", "- worker on claude-sonnet-4-6 after 0 rounds",
        "- reviewer on claude-sonnet-4-6 after 0 rounds", "- worker on claude-sonnet-4-6 after 0 rounds",
    ]
    assert counter == "1"
    # telegram.update_every_n_links = 2: a note after the 2nd and the 4th link, whatever the per-link flags say.
    notes = [e.data["link"] for e in events if e.kind == ev.LINK_FINISHED and e.data.get("notify")]
    assert notes == ["r-scientist", "r-scientist"]
    assert [e.data["link"] for e in events if e.kind == ev.LINK_FINISHED][1::2] == notes
    prompts = [r.body for r in api.message_requests()]
    assert any("You are a reviewer. Review the work" in _text_of(m) for b in prompts for m in b.get("messages", []))


async def test_a_refused_tool_is_never_silent(tmp_path: Path) -> None:
    """A chain that allows only Read, an agent that needs Bash: the link ends `denied`, an alert
    names the tool and the field to change, the round counts as not done, and after three such
    rounds the chain ends FAILED instead of looking green all night.

    Checked by breaking the engine: with `_judge_refusals` returning the result unchanged the link
    ends ok and the rounds count (red); without the TOOL_REFUSED events (red)."""
    home = tmp_path / "home"
    for sub in ("chains", "prompts", "state", "tmp"):
        (home / sub).mkdir(parents=True)
    (home / "chains" / "readonly.json").write_text(
        '{"max_rounds": 5, "defaults": {"allowed_tools": ["Read"]}, "links": ['
        '{"name": "worker", "model": "claude-sonnet-4-6", "prompt": "Append your line. '
        'CORPUS-AGENT role=worker handoff=state/readonly/handoff.md"}]}')
    claude = real_claude_bin()
    assert claude is not None
    with MockAnthropic(agent) as api:
        environ = offline_env(api.base_url, tmp_path / "claude-config", home=tmp_path)
        environ["TMPDIR"] = str(home / "tmp")
        settings = make_settings(home, claude_bin=claude, environ=environ)
        async with Store.open(settings.db_path) as store, Engine(settings, store) as engine:
            run_id = await engine.start_chain("readonly", origin="test")
            outcome = await asyncio.wait_for(engine.wait("readonly"), 240)
            rows = await store.link_runs("readonly", 10)
            events = await store.run_events(run_id)
            state = await store.chain_state("readonly")
    assert outcome.status == "FAILED" and "every link failed in 3 rounds" in outcome.reason
    told = 'Bash (printf "%s\\n" "- worker on claude-sonnet-4-6 after $(cat "$…)'
    assert [(r.error_class, r.refusals) for r in rows] == [("denied", told)] * 3
    assert rows[0].error_message == f"claude was refused {rows[0].refusals}; the handoff did not change"
    refused = [e.data for e in events if e.kind == ev.TOOL_REFUSED]
    assert len(refused) == 3 and {r["tool"] for r in refused} == {"Bash"}
    assert refused[0]["target"].endswith('rounds" >> state/readonly/handoff.md')
    alerts = [e.data for e in events if e.kind == ev.BLOCKED]
    assert len(alerts) == 1 and alerts[0]["kind"] == "denied"  # one alert per link and run, not one per round
    assert alerts[0]["field"] == "defaults.allowed_tools" and alerts[0]["tools"] == ["Bash"]
    assert "To let it, add the tool to defaults.allowed_tools in readonly.json" in alerts[0]["question"]
    assert "It may use: Read (dontAsk mode)" in alerts[0]["question"]
    assert (state.rounds_counted, state.failed_rounds) == (0, 3)  # nothing counted as done
    assert not (home / "state" / "readonly" / "handoff.md").read_text().count("- worker")
    from bot.render import blocked_alert

    text = blocked_alert("readonly", alerts[0])
    assert "worker</b>" not in text and "could not act" in text and "<code>defaults.allowed_tools</code>" in text
