"""Agents misbehaving for real (the fake `claude` and command links as real subprocesses): usage
limits, hangs, stalls, crashes, broken handoffs. The engine must record, report and carry on."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import events as ev
from engine.clock import Sleeper
from engine.engine import Engine
from engine.settings import Settings
from engine.statefiles import ChainFiles
from engine.store import Store
from tests.conftest import make_settings, write_chain
from tests.fakes.claude_env import read_log, write_scenario


class GateSleeper:
    """Records each wait and holds it until the test lets it go (to look at the chain meanwhile)."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()

    async def sleep(self, seconds: float, wake: asyncio.Event) -> bool:
        self.waits.append(seconds)
        self.waiting.set()
        done = asyncio.create_task(self.release.wait())
        woke = asyncio.create_task(wake.wait())
        await asyncio.wait({done, woke}, return_when=asyncio.FIRST_COMPLETED)
        done.cancel()
        woke.cancel()
        self.release.clear()
        self.waiting.clear()
        return wake.is_set()


class Rig:
    def __init__(self, home: Path, tmp: Path, store: Store, settings: Settings, engine: Engine, sleeper: GateSleeper) -> None:
        self.home, self.tmp, self.store, self.settings, self.engine, self.sleeper = home, tmp, store, settings, engine, sleeper
        self.queue = engine.bus.subscribe()

    def files(self, chain: str) -> ChainFiles:
        return ChainFiles(self.settings.state_dir, chain)

    async def next_event(self, kind: str) -> ev.Event:
        while True:
            event = await asyncio.wait_for(self.queue.get(), 30)
            if event.kind == kind:
                return event

    async def events(self, chain: str) -> list[ev.Event]:
        return await self.store.chain_events(chain, 500)


@pytest.fixture
async def rig(home: Path, tmp_path: Path) -> AsyncIterator[Rig]:
    scenario = tmp_path / "scenario.json"
    write_scenario(scenario, {})
    settings = make_settings(home, environ={
        "FAKE_CLAUDE_SCENARIO": str(scenario), "CLAUDE_CONFIG_DIR": str(tmp_path / "cfg"),
        "FAKE_CLAUDE_PYTHON": sys.executable,
    })
    sleeper = GateSleeper()
    async with Store.open(settings.db_path) as store:
        s: Sleeper = sleeper
        async with Engine(settings, store, sleeper=s) as engine:
            yield Rig(home, tmp_path, store, settings, engine, sleeper)


def scenario(rig: Rig, doc: dict[str, Any]) -> None:
    write_scenario(rig.tmp / "scenario.json", doc)


TWO = {"max_rounds": 1, "links": [
    {"name": "worker", "model": "claude-sonnet-4-6", "fallback_model": "claude-haiku-4-5", "prompt": "work"},
    {"name": "reviewer", "role": "reviewer", "model": "claude-sonnet-4-6", "prompt": "review"},
]}


async def test_usage_limit_puts_the_chain_in_waiting_until_the_reset(rig: Rig) -> None:
    reset = datetime.now(UTC) + timedelta(hours=3)
    scenario(rig, {"links": {"worker": [{"error": "rate_limited", "resets_at": int(reset.timestamp())}]}})
    write_chain(rig.home, "lim", TWO)
    await rig.engine.start_chain("lim", origin="test")
    waiting = await rig.next_event(ev.WAITING_LIMIT)
    await rig.sleeper.waiting.wait()
    assert rig.files("lim").read_status() == "WAITING"
    assert (await rig.engine.view("lim")).status == "WAITING"
    assert waiting.data["reset_known"] is True
    assert rig.sleeper.waits[0] == pytest.approx(3 * 3600 + 60, abs=5)
    rig.sleeper.release.set()
    outcome = await asyncio.wait_for(rig.engine.wait("lim"), 30)
    assert outcome.status == "COMPLETED"
    rows = await rig.store.link_runs("lim")
    assert [(r.link, r.error_class, r.status) for r in rows] == [
        ("worker", "rate_limited", "retried"), ("worker", "ok", "done"), ("reviewer", "ok", "done")]
    assert (await rig.store.chain_state("lim")).rounds_counted == 1


async def test_usage_limit_text_reset_is_parsed(rig: Rig) -> None:
    scenario(rig, {"links": {"worker": [{"error": "rate_limited", "resets": "3pm (Europe/Berlin)"}]}})
    write_chain(rig.home, "lim2", TWO)
    await rig.engine.start_chain("lim2", origin="test")
    waiting = await rig.next_event(ev.WAITING_LIMIT)
    until = datetime.fromisoformat(waiting.data["until"])
    assert until.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin")).strftime("%H:%M") == "15:01"
    rig.sleeper.release.set()
    assert (await asyncio.wait_for(rig.engine.wait("lim2"), 30)).status == "COMPLETED"


async def test_stop_during_a_limit_wait_ends_at_once(rig: Rig) -> None:
    scenario(rig, {"links": {"worker": [{"error": "rate_limited"}]}})
    write_chain(rig.home, "lim3", TWO)
    await rig.engine.start_chain("lim3", origin="test")
    await rig.sleeper.waiting.wait()
    await rig.engine.stop_chain("lim3", "not tonight")
    outcome = await asyncio.wait_for(rig.engine.wait("lim3"), 30)
    assert (outcome.status, outcome.reason) == ("STOPPED", "not tonight")
    assert (await rig.store.chain_state("lim3")).next_link == 0  # the worker runs again next time


async def test_overload_falls_back_to_the_fallback_model(rig: Rig) -> None:
    scenario(rig, {"links": {"worker": {"fail_models": {"claude-sonnet-4-6": "overloaded"}}}})
    write_chain(rig.home, "ov", TWO)
    await rig.engine.start_chain("ov", origin="test")
    assert (await asyncio.wait_for(rig.engine.wait("ov"), 30)).status == "COMPLETED"
    rows = await rig.store.link_runs("ov")
    assert [(r.link, r.model, r.error_class) for r in rows] == [
        ("worker", "claude-sonnet-4-6", "overloaded"), ("worker", "claude-haiku-4-5", "ok"), ("reviewer", "claude-sonnet-4-6", "ok")]


async def test_auth_error_stops_as_blocked(rig: Rig) -> None:
    scenario(rig, {"default": {"error": "auth"}})
    write_chain(rig.home, "au", TWO)
    await rig.engine.start_chain("au", origin="test")
    outcome = await asyncio.wait_for(rig.engine.wait("au"), 30)
    assert outcome.status == "BLOCKED" and "authentication failed" in outcome.reason
    assert rig.files("au").read_status() == "BLOCKED"


async def test_hanging_agent_is_killed_by_the_stall_watchdog_retried_then_alerted(rig: Rig) -> None:
    scenario(rig, {"links": {"worker": [{"hang": True, "spawn_child": True}, {"hang": True}]}})
    doc = {"max_rounds": 1, "links": [
        {"name": "worker", "model": "claude-sonnet-4-6", "prompt": "work", "stall_seconds": 0.5},
        {"name": "reviewer", "role": "reviewer", "model": "claude-sonnet-4-6", "prompt": "review"},
    ]}
    write_chain(rig.home, "hang", doc)
    await rig.engine.start_chain("hang", origin="test")
    outcome = await asyncio.wait_for(rig.engine.wait("hang"), 30)
    assert outcome.status == "COMPLETED"  # the chain carried on
    rows = await rig.store.link_runs("hang")
    assert [(r.link, r.error_class) for r in rows] == [("worker", "stalled"), ("worker", "stalled"), ("reviewer", "ok")]
    alerts = [e for e in await rig.events("hang") if e.kind == ev.BLOCKED]
    assert alerts and alerts[0].data["kind"] == "stalled"
    from tests.helpers import gone

    assert gone(int((rig.files("hang").dir / "fake_child.pid").read_text()))


async def test_link_timeout_kills_even_a_chatty_agent(rig: Rig) -> None:
    scenario(rig, {"links": {"worker": [{"sleep": 30, "heartbeat_s": 0.1}]}})
    doc = {"max_rounds": 1, "links": [{"name": "worker", "model": "claude-sonnet-4-6", "prompt": "w", "timeout_seconds": 1, "stall_seconds": 0.5}]}
    write_chain(rig.home, "to", doc)
    await rig.engine.start_chain("to", origin="test")
    await asyncio.wait_for(rig.engine.wait("to"), 30)
    rows = await rig.store.link_runs("to")
    assert rows[0].error_class == "timeout" and (rows[0].duration_s or 99) < 5


@pytest.mark.parametrize("code, problem", [
    ("import os; os.remove(os.environ['LLMAUTO_HANDOFF'])", "handoff.md is missing (deleted?)"),
    ("import os; open(os.environ['LLMAUTO_HANDOFF'], 'w').close()", "handoff.md is empty"),
    ("import os; open(os.environ['LLMAUTO_HANDOFF'], 'wb').write(bytes(range(256)) * 4)", "handoff.md holds binary data (NUL bytes)"),
    ("import os; f = open(os.environ['LLMAUTO_HANDOFF'], 'wb'); f.truncate(400 * 1024 * 1024)",
     "handoff.md is 419,430,400 bytes, over the 1,048,576-byte limit"),
])
async def test_broken_handoff_keeps_the_last_good_one(rig: Rig, code: str, problem: str) -> None:
    doc = {"max_rounds": 2, "links": [
        {"name": "good", "command": [sys.executable, "-c",
                                     "import os; open(os.environ['LLMAUTO_HANDOFF'], 'a').write('good line\\n')"]},
        {"name": "vandal", "command": [sys.executable, "-c", code]},
    ]}
    write_chain(rig.home, "vandal", doc)
    await rig.engine.start_chain("vandal", origin="test")
    outcome = await asyncio.wait_for(rig.engine.wait("vandal"), 30)
    assert outcome.status == "COMPLETED"
    text = rig.files("vandal").read_handoff().text or ""
    assert text.count("good line") == 2  # each round's good work kept, the vandalism undone
    problems = [e.data["problem"] for e in await rig.events("vandal") if e.kind == ev.HANDOFF_PROBLEM]
    assert problems == [problem, problem]


async def test_crashing_command_is_recorded_and_the_chain_goes_on(rig: Rig) -> None:
    doc = {"max_rounds": 2, "links": [
        {"name": "flaky", "command": [sys.executable, "-c", "raise SystemExit('tests are red')"]},
        {"name": "fine", "command": [sys.executable, "-c", "print('ok')"]},
    ]}
    write_chain(rig.home, "crashy", doc)
    await rig.engine.start_chain("crashy", origin="test")
    assert (await asyncio.wait_for(rig.engine.wait("crashy"), 30)).status == "COMPLETED"
    rows = await rig.store.link_runs("crashy")
    assert [(r.link, r.error_class) for r in rows] == [("flaky", "crashed"), ("fine", "ok")] * 2
    assert rows[0].error_message == "exit code 1: tests are red"


async def test_missing_claude_fails_fast_with_a_clear_reason(home: Path, tmp_path: Path) -> None:
    settings = make_settings(home, claude_bin=str(tmp_path / "no-such-claude"))
    write_chain(home, "nobin", TWO)
    async with Store.open(settings.db_path) as store, Engine(settings, store) as engine:
        await engine.start_chain("nobin", origin="test")
        outcome = await asyncio.wait_for(engine.wait("nobin"), 30)
        rows = await store.link_runs("nobin", 50)
    assert outcome.status == "FAILED" and "every link failed in 3 rounds" in outcome.reason
    assert "cannot start" in (rows[0].error_message or "")


async def test_a_pause_or_an_answer_during_a_limit_wait_does_not_end_the_wait(rig: Rig) -> None:
    scenario(rig, {"links": {"worker": [{"error": "rate_limited"}]}})
    write_chain(rig.home, "lim4", TWO)
    await rig.engine.start_chain("lim4", origin="test")
    await rig.sleeper.waiting.wait()
    await rig.engine.answer("lim4", "fyi", by="ann")  # wakes the sleeper, which must go back to waiting
    while len(rig.sleeper.waits) < 2:
        await asyncio.sleep(0.01)
    assert len(await rig.store.link_runs("lim4")) == 1  # the worker was not re-run early
    rig.sleeper.release.set()
    assert (await asyncio.wait_for(rig.engine.wait("lim4"), 30)).status == "COMPLETED"


# Replaces a state file by something that is not a regular file (argv: file, kind, link target).
SABOTAGE = """
import os, sys
path = os.path.join(os.environ['LLMAUTO_STATE_DIR'], sys.argv[1])
if os.path.lexists(path):
    os.remove(path)
kind = sys.argv[2]
if kind == 'fifo':
    os.mkfifo(path)
elif kind == 'directory':
    os.mkdir(path)
    open(os.path.join(path, 'inside.txt'), 'w').write('mine')
elif kind == 'device':  # /dev/zero's twin: reading it never ends (needs root)
    import stat
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))
else:
    os.symlink(sys.argv[3], path)
"""


@pytest.mark.parametrize("target", ["handoff.md", "status.txt"])
@pytest.mark.parametrize("kind, what", [
    ("fifo", "a FIFO"), ("directory", "a directory"), ("device", "a device"),
    ("symlink-to-fifo", "a symlink out of the home"), ("symlink-to-device", "a symlink out of the home"),
])
async def test_a_state_file_replaced_by_a_fifo_directory_or_symlink_is_refused(rig: Rig, target: str, kind: str, what: str) -> None:
    """The engine neither hangs on a FIFO nor follows a link out of the home: it reports the
    problem, keeps the last good handoff (or writes a good status) and the run goes on."""
    if kind == "device" and os.geteuid() != 0:
        pytest.skip("creating a device node needs root")
    outside = rig.tmp / "outside-fifo"
    if not outside.exists():
        os.mkfifo(outside)
    link_to = {"symlink-to-fifo": str(outside), "symlink-to-device": "/dev/zero"}.get(kind, "")
    doc = {"max_rounds": 2, "links": [
        {"name": "good", "command": [sys.executable, "-c",
                                     "import os; open(os.environ['LLMAUTO_HANDOFF'], 'a').write('good line\\n')"]},
        {"name": "vandal", "command": [sys.executable, "-c", SABOTAGE, target, kind.split("-")[0], link_to]},
        {"name": "after", "model": "claude-sonnet-4-6", "prompt": "carry on"},
    ]}
    write_chain(rig.home, "sab", doc)
    await rig.engine.start_chain("sab", origin="test")
    outcome = await asyncio.wait_for(rig.engine.wait("sab"), 30)
    assert outcome.status == "COMPLETED"
    files = rig.files("sab")
    assert files.handoff.is_file() and not files.handoff.is_symlink()
    assert files.status.is_file() and not files.status.is_symlink()
    assert (files.read_handoff().text or "").count("good line") == 2
    assert files.read_status() == "COMPLETED"
    problems = [e.data["problem"] for e in await rig.events("sab") if e.kind == ev.HANDOFF_PROBLEM]
    if target == "handoff.md":
        assert len(problems) == 2 and all(p.startswith(f"handoff.md is {what}") for p in problems), problems
    else:
        assert problems == [f"status.txt has an unknown word {f'<{what.upper()}>'!r}"] * 2
    rows = await rig.store.link_runs("sab")
    assert [(r.link, r.error_class) for r in rows] == [("good", "ok"), ("vandal", "ok"), ("after", "ok")] * 2
    if kind == "directory":  # moved aside, not deleted
        kept = [p for p in files.dir.iterdir() if p.name.startswith(f".{target}.not-a-file-")]
        assert kept and all((p / "inside.txt").read_text() == "mine" for p in kept)


async def test_each_claude_call_is_capped_at_the_budget_left(home: Path, tmp_path: Path) -> None:
    """max_cost_usd $1: the worker spends $0.30, so the reviewer runs with --max-budget-usd 0.7;
    it overspends, claude ends it (error class budget) and the budget rule stops the chain."""
    scenario_path, log = tmp_path / "scenario.json", tmp_path / "calls.jsonl"
    write_scenario(scenario_path, {"links": {"worker": {"cost": 0.3}, "reviewer": {"cost": 0.9}}})
    settings = make_settings(home, environ={
        "FAKE_CLAUDE_SCENARIO": str(scenario_path), "FAKE_CLAUDE_LOG": str(log),
        "CLAUDE_CONFIG_DIR": str(tmp_path / "cfg"), "FAKE_CLAUDE_PYTHON": sys.executable,
    })
    write_chain(home, "budget", {"max_rounds": 5, "max_cost_usd": 1.0, "links": [
        {"name": "worker", "model": "claude-sonnet-4-6", "prompt": "work"},
        {"name": "tests", "command": [sys.executable, "-c", "print('green')"]},
        {"name": "reviewer", "role": "reviewer", "model": "claude-sonnet-4-6", "prompt": "review"},
    ]})
    async with Store.open(settings.db_path) as store, Engine(settings, store) as engine:
        await engine.start_chain("budget", origin="test")
        outcome = await asyncio.wait_for(engine.wait("budget"), 30)
        rows = await store.link_runs("budget")
        finished = [e for e in await store.chain_events("budget") if e.kind == ev.LINK_FINISHED]
    assert (outcome.status, outcome.reason) == ("COMPLETED", "budget of $1.00 used ($1.20)")
    assert [(r.link, r.error_class) for r in rows] == [("worker", "ok"), ("tests", "ok"), ("reviewer", "budget")]
    assert rows[2].error_message == "Reached maximum budget ($0.7)"
    assert finished[-1].data["error_class"] == "budget"
    budgets = [c["argv"][c["argv"].index("--max-budget-usd") + 1] for c in read_log(log)]
    assert budgets == ["1", "0.7"]
