"""Phone approvals, engine side, on the REAL Claude Code CLI against the loopback mock API (#11).

A link whose chain says `approve.ask` runs claude with the stdio permission protocol; the mock
API makes the agent call Bash with a command an ask rule matches. The request is stored and
announced (`approval_requested`); a person's decision reaches claude; the agent's next request to
the API shows what it got back (the tool's output, or the deny reason).

Checked by breaking the code: with `_settled_by_claude` returning allowed_tools unchanged, claude
settles Bash itself and nothing is asked (red); with the runner not pausing its watchdog while a
request waits (`asking.waiting` ignored in SubprocessRunner.run) the 20 s wait is killed as a
stall (red).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine import events as ev
from engine.engine import Engine
from engine.events import Event
from engine.store import Store
from tests.conftest import make_settings, write_chain
from tests.fakes.anthropic_api import MockAnthropic, Reply, tool_results
from tests.fakes.claude_env import REAL_CLAUDE_MISSING, offline_env, real_claude_bin

pytestmark = [
    pytest.mark.real_claude,
    pytest.mark.skipif(real_claude_bin() is None, reason=REAL_CLAUDE_MISSING),
]

COMMAND = "cd . && touch approved.txt"  # compound: claude's own ask rules let `cd x && ...` through


def agent(request: dict[str, Any]) -> Reply:
    results = tool_results(request)
    if results:
        return Reply.text("agent saw: " + json.dumps(results[0].get("content")))
    return Reply.bash(COMMAND, description="Create the release marker")


@dataclass
class Rig:
    home: Path
    engine: Engine
    store: Store
    api: MockAnthropic
    events: asyncio.Queue[Event]

    async def next_event(self, kind: str, timeout: float = 60) -> Event:
        async def find() -> Event:
            while True:
                event = await self.events.get()
                if event.kind == kind:
                    return event
        return await asyncio.wait_for(find(), timeout)

    def agent_saw(self) -> str:
        seen = [r.body for r in self.api.message_requests() if tool_results(r.body)]
        return json.dumps(tool_results(seen[-1])[0].get("content")) if seen else ""


@pytest.fixture
async def rig(home: Path, tmp_path: Path) -> AsyncIterator[Rig]:
    claude = real_claude_bin()
    assert claude is not None
    (tmp_path / "tmp").mkdir()
    with MockAnthropic(agent) as api:
        environ = offline_env(api.base_url, tmp_path / "claude-config", home=tmp_path)
        environ["TMPDIR"] = str(tmp_path / "tmp")
        settings = make_settings(home, claude_bin=claude, environ=environ)
        async with Store.open(settings.db_path) as store, Engine(settings, store) as engine:
            yield Rig(home, engine, store, api, engine.bus.subscribe())


def chain(home: Path, **approve: Any) -> None:
    write_chain(home, "release", {"mode": "once", "links": [{
        "name": "worker", "model": "claude-sonnet-4-6", "prompt": "Make the release marker.",
        "stall_seconds": approve.pop("stall_seconds", 600),
    }], "approve": {"ask": ["Bash(touch:*)", "Bash(git push:*)"], **approve}})


async def test_an_approved_call_runs(rig: Rig) -> None:
    chain(rig.home)
    await rig.engine.start_chain("release", origin="test")
    asked = await rig.next_event(ev.APPROVAL_REQUESTED)
    assert (asked.data["tool"], asked.data["command"], asked.data["reason"]) == ("Bash", COMMAND, "Create the release marker")
    assert [r.id for r in await rig.engine.pending_approvals("release")] == [asked.data["id"]]
    assert (rig.home / "state" / "release" / "status.txt").read_text().strip() == "WAITING"
    said = await rig.engine.decide_approval("release", None, approve=True, by="tg:1 (owner)")
    assert said == f"release: request #{asked.data['id']} approved"
    outcome = await asyncio.wait_for(rig.engine.wait("release"), 60)
    assert outcome.status == "COMPLETED"
    assert (rig.home / "approved.txt").exists()  # the command really ran
    decided = await rig.next_event(ev.APPROVAL_DECIDED)
    assert (decided.data["status"], decided.data["by"]) == ("approved", "tg:1 (owner)")
    row = (await rig.store.link_runs("release", 1))[0]
    assert (row.error_class, row.refusals) == ("ok", None)
    with pytest.raises(Exception, match="has expired: it was approved by tg:1"):
        await rig.engine.decide_approval("release", asked.data["id"], approve=False, by="late")


async def test_a_denied_call_does_not_run_and_the_agent_reads_why(rig: Rig) -> None:
    chain(rig.home)
    await rig.engine.start_chain("release", origin="test")
    asked = await rig.next_event(ev.APPROVAL_REQUESTED)
    await rig.engine.decide_approval("release", asked.data["id"], approve=False, by="tg:1", message="no releases tonight")
    await asyncio.wait_for(rig.engine.wait("release"), 60)
    assert not (rig.home / "approved.txt").exists()
    assert "no releases tonight" in rig.agent_saw()  # the deny message reached the model as the tool_result
    row = (await rig.store.link_runs("release", 1))[0]
    assert row.refusals is None  # a person's "no" is a decision, not a refusal by the rules


async def test_no_answer_applies_on_timeout(rig: Rig) -> None:
    chain(rig.home, timeout_minutes=0.02, on_timeout="stop_chain")  # 1.2 s
    run_id = await rig.engine.start_chain("release", origin="test")
    outcome = await asyncio.wait_for(rig.engine.wait("release"), 60)
    assert outcome.status == "STOPPED" and "no answer to the approval request #1 within 1.2s" in outcome.reason
    assert not (rig.home / "approved.txt").exists()
    assert [(a.status, a.decided_by) for a in await rig.store.run_approvals(run_id)] == [("timed_out", "timeout")]
    assert "No answer within 1.2s: denied and the chain stops." in rig.agent_saw()


async def test_a_stop_now_during_the_wait_ends_the_link_at_once(rig: Rig) -> None:
    chain(rig.home)
    run_id = await rig.engine.start_chain("release", origin="test")
    await rig.next_event(ev.APPROVAL_REQUESTED)
    loop = asyncio.get_running_loop()
    asked_at = loop.time()
    await rig.engine.stop_chain("release", "not tonight", now=True, by="tg:1")
    outcome = await asyncio.wait_for(rig.engine.wait("release"), 30)
    assert outcome.status == "STOPPED" and loop.time() - asked_at < 10
    assert not (rig.home / "approved.txt").exists()
    assert [a.status for a in await rig.store.run_approvals(run_id)] in (["denied"], ["expired"])
    assert await rig.engine.pending_approvals("release") == []


async def test_the_stall_watchdog_does_not_kill_a_link_that_waits_for_approval(rig: Rig) -> None:
    """stall_seconds 5, an answer after 20 s: the link goes on and succeeds."""
    chain(rig.home, stall_seconds=5)
    await rig.engine.start_chain("release", origin="test")
    await rig.next_event(ev.APPROVAL_REQUESTED)
    await asyncio.sleep(20)  # the point of the test: a long silence while a person decides
    await rig.engine.decide_approval("release", None, approve=True, by="tg:1")
    outcome = await asyncio.wait_for(rig.engine.wait("release"), 60)
    assert outcome.status == "COMPLETED" and (rig.home / "approved.txt").exists()
    row = (await rig.store.link_runs("release", 1))[0]
    assert row.error_class == "ok" and row.attempt == 1


async def test_deny_rules_alone_are_applied(rig: Rig) -> None:
    """A chain whose `approve` has only `deny` rules (no `ask`): the matching call is refused by
    the runner, nobody is asked, and the agent reads the rule's reason. Broken once: the old
    `ApprovalRules.__bool__` (true only with ask rules): the loader dropped the section and claude,
    allowed Bash, ran the touch (red)."""
    write_chain(rig.home, "release", {"mode": "once", "links": [{
        "name": "worker", "model": "claude-sonnet-4-6", "prompt": "Make the release marker.",
    }], "approve": {"deny": ["Bash(touch:*)"]}})
    await rig.engine.start_chain("release", origin="test")
    await asyncio.wait_for(rig.engine.wait("release"), 60)
    assert not (rig.home / "approved.txt").exists()
    assert "approve.deny" in rig.agent_saw()
    assert await rig.store.pending_approvals("release") == []
    assert [e for e in await rig.store.chain_events("release", 200) if e.kind == ev.APPROVAL_REQUESTED] == []
