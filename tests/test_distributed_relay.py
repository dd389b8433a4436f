"""A claude link with `approve.ask` rules on a worker (issue #15): its questions reach serve's
approval desk (store, events, WAITING) and the person's answer reaches the agent; its live
progress reaches serve's bus. Real PostgreSQL, a real `llmauto worker` subprocess, the fake
claude (stdio permission protocol; an approved Bash call really runs in the worker's home)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine import events as ev
from engine.events import Event
from tests.conftest import ROOT
from tests.test_distributed import Cluster, serving

COMMAND = "touch approved.txt"


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, pg_url)
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"default": {"result": "done", "tools": [
        {"name": "Bash", "input": {"command": COMMAND, "description": "Make the marker"}, "exec": True}]}}))
    c.extra_env = {"CLAUDE_BIN": str(ROOT / "tests" / "fakes" / "bin" / "claude"),
                   "FAKE_CLAUDE_SCENARIO": str(scenario), "FAKE_CLAUDE_PYTHON": sys.executable,
                   "CLAUDE_CONFIG_DIR": str(tmp_path / "cc")}
    c.chain("gated", {"max_rounds": 1, "approve": {"ask": ["Bash(touch:*)"], "timeout_minutes": 5},
                      "links": [{"name": "w", "model": "claude-sonnet-4-6", "prompt": "Make the marker."}]})
    try:
        yield c
    finally:
        c.close()


async def next_event(events: asyncio.Queue[Event], match: Callable[[Event], bool], timeout: float = 30,
                     seen: list[Event] | None = None) -> Event:
    async def find() -> Event:
        while True:
            event = await events.get()
            if seen is not None:
                seen.append(event)
            if match(event):
                return event
    return await asyncio.wait_for(find(), timeout)


def kind(name: str) -> Callable[[Event], bool]:
    return lambda e: e.kind == name


async def test_a_question_of_a_remote_link_is_asked_on_serve_and_the_approval_reaches_the_agent(cluster: Cluster) -> None:
    """The question is serve's (store, event, WAITING in serve's status); approved there, the
    command runs on the worker and the link ends ok.
    Broken once: `await asks.poll()` removed from RemoteExecutor._wait → no approval_requested
    on serve (timed out, red)."""
    await cluster.start_worker("laptop")
    async with serving(cluster) as (engine, _executor):
        events = engine.bus.subscribe()
        run_id = await engine.start_chain("gated")
        asked = await next_event(events, kind(ev.APPROVAL_REQUESTED))
        assert (asked.data["tool"], asked.data["command"], asked.data["link"]) == ("Bash", COMMAND, "w")
        assert [r.id for r in await engine.pending_approvals("gated")] == [asked.data["id"]]
        assert (cluster.serve_home / "state" / "gated" / "status.txt").read_text().strip() == "WAITING"
        assert not (cluster.homes["laptop"] / "approved.txt").exists()
        await engine.decide_approval("gated", None, approve=True, by="tg:1 (owner)")
        outcome = await asyncio.wait_for(engine.wait("gated"), 30)
        assert outcome.status == "COMPLETED", outcome
        approvals = [(a.status, a.decided_by) for a in await engine.store.run_approvals(run_id)]
        links = [(r.link, r.error_class) for r in await engine.store.run_link_runs(run_id)]
    assert approvals == [("approved", "tg:1 (owner)")]
    assert links == [("w", "ok")]
    assert (cluster.homes["laptop"] / "approved.txt").exists()  # the command really ran, on the worker


async def test_a_denied_question_of_a_remote_link_does_not_run_the_call(cluster: Cluster) -> None:
    """Denied on serve: the worker's agent is refused and goes on; the link ends ok (a person's
    no is a decision). Broken once: `await self.db.answer_ask(ask.id, answer)` → the answer
    never written in RelayedAsks._answer → the worker waits on (timed out, red)."""
    await cluster.start_worker("laptop")
    async with serving(cluster) as (engine, _executor):
        events = engine.bus.subscribe()
        run_id = await engine.start_chain("gated")
        asked = await next_event(events, kind(ev.APPROVAL_REQUESTED))
        await engine.decide_approval("gated", asked.data["id"], approve=False, by="tg:1", message="not tonight")
        outcome = await asyncio.wait_for(engine.wait("gated"), 30)
        assert outcome.status == "COMPLETED", outcome
        approvals = [(a.status, a.message) for a in await engine.store.run_approvals(run_id)]
        links = [(r.link, r.error_class) for r in await engine.store.run_link_runs(run_id)]
    assert approvals == [("denied", "not tonight")]
    assert links == [("w", "ok")]
    assert not (cluster.homes["laptop"] / "approved.txt").exists()


async def test_the_progress_of_a_remote_link_reaches_serves_bus(cluster: Cluster) -> None:
    """While the remote link waits for an answer, serve's bus has had a `progress` event with its
    tool (Bash), for serve's run and link. Broken once: `self._show(note.payload)` removed from
    RemoteExecutor._listen → no progress event (timed out, red)."""
    await cluster.start_worker("laptop")
    async with serving(cluster) as (engine, _executor):
        events = engine.bus.subscribe()
        run_id = await engine.start_chain("gated")
        seen: list[Event] = []

        def bash(e: Event) -> bool:
            return e.kind == ev.PROGRESS and e.data.get("tool") == "Bash"

        await next_event(events, kind(ev.APPROVAL_REQUESTED), seen=seen)
        if not any(map(bash, seen)):  # the question may overtake the (throttled) progress
            await next_event(events, bash, seen=seen)
        tool = next(e for e in seen if bash(e))
        assert (tool.chain, tool.run_id, tool.data["link"], tool.data["kind"]) == ("gated", run_id, "w", "tool")
        await engine.decide_approval("gated", None, approve=True, by="tg:1")
        outcome = await asyncio.wait_for(engine.wait("gated"), 30)
    assert outcome.status == "COMPLETED", outcome


async def test_a_worker_lost_during_a_question_expires_it_and_the_link_is_asked_again_elsewhere(cluster: Cluster) -> None:
    """SIGKILL of the worker whose agent waits for an answer: the question expires on serve, the
    job runs again on the other worker, whose agent asks again; approved, the chain completes.
    Broken once: `await asks.end()` after `_retry_if_lost` removed → the first question stays
    pending (red)."""
    first = await cluster.start_worker("buildbox", max_links=1)
    async with serving(cluster) as (engine, _executor):
        events = engine.bus.subscribe()
        run_id = await engine.start_chain("gated")
        first_ask = await next_event(events, kind(ev.APPROVAL_REQUESTED))
        await cluster.start_worker("laptop", max_links=1)
        first.send_signal(signal.SIGKILL)
        first.wait()
        expired = await next_event(events, kind(ev.APPROVAL_DECIDED))
        assert (expired.data["id"], expired.data["status"]) == (first_ask.data["id"], "expired")
        second_ask = await next_event(events, kind(ev.APPROVAL_REQUESTED))
        assert [r.id for r in await engine.pending_approvals("gated")] == [second_ask.data["id"]]
        await engine.decide_approval("gated", None, approve=True, by="tg:1")
        outcome = await asyncio.wait_for(engine.wait("gated"), 30)
        approvals = [a.status for a in await engine.store.run_approvals(run_id)]
    assert outcome.status == "COMPLETED", outcome
    assert approvals == ["expired", "approved"]
    assert (cluster.homes["laptop"] / "approved.txt").exists()
