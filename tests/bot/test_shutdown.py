"""SIGTERM to a real `llmauto serve` process (LLMAUTO_ON_SHUTDOWN): interrupt kills the running
link now and the next start runs it again; finish lets the link end and records its result."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.settings import Settings
from engine.store import LinkRunRow, RunRow, Store
from tests.bot.conftest import CHAT, OPERATOR, TOKEN
from tests.conftest import write_chain
from tests.fakes.botapi import FakeBotApi
from tests.fakes.gate import GATED_CLAUDE, started
from tests.faults import serve_rig as rig
from tests.helpers import Cli, wait_for_lease

SLOW = {"max_rounds": 1, "links": [{"name": "worker", "model": "claude-sonnet-4-6", "prompt": "work on {HANDOFF}"}]}


@pytest.fixture
async def telegram(cli: Cli) -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(TOKEN) as api:
        api.add_chat(CHAT)
        cli.env.update({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_ALLOWED_USER_IDS": str(OPERATOR),
                        "TELEGRAM_CHAT_ID": str(CHAT), "TELEGRAM_API_BASE_URL": api.base_url,
                        "FAKE_CLAUDE_LOG": str(cli.scenario.with_suffix(".log"))})
        yield api


async def exited(proc: subprocess.Popen[str], timeout: float) -> float:
    """Seconds until the process ended (without blocking the loop the fake Bot API shares)."""
    started = asyncio.get_running_loop().time()
    await rig.exited(proc, timeout)
    return asyncio.get_running_loop().time() - started


async def serving(cli: Cli, api: FakeBotApi) -> subprocess.Popen[str]:
    before = len(api.arrived)
    proc = cli.spawn("serve")
    await api.wait_for(lambda a: "getUpdates" in a.arrived[before:], timeout=30)
    return proc


async def agent_started(cli: Cli, proc: subprocess.Popen[str]) -> None:
    """Until the fake claude of the chain's link runs (it logs its call before sleeping)."""
    await wait_for_lease(cli.home, "slow", proc.pid)
    await rig.until("the agent to start", lambda: calls(cli), 30, proc=proc)


def calls(cli: Cli) -> list[dict[str, object]]:
    log = cli.scenario.with_suffix(".log")
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


async def rows(home: Path, chain: str) -> tuple[list[RunRow], list[LinkRunRow]]:
    async with Store.open(home / "state" / "llmauto.db") as store:
        return list(reversed(await store.last_runs(chain))), await store.link_runs(chain)


async def test_sigterm_interrupts_the_running_link_and_the_next_start_runs_it_again(
        cli: Cli, telegram: FakeBotApi) -> None:
    write_chain(cli.home, "slow", SLOW)
    cli.scenario_is({"links": {"worker": [{"sleep": 60}, {"result": "second go"}]}})
    cli.env["LLMAUTO_ON_SHUTDOWN"] = "interrupt"
    proc = await serving(cli, telegram)
    telegram.user_message(user_id=OPERATOR, text="/start_chain slow")
    await agent_started(cli, proc)
    proc.send_signal(signal.SIGTERM)
    assert await exited(proc, 15) < 10
    runs, links = await rows(cli.home, "slow")
    assert [r.status for r in runs] == ["INTERRUPTED"]
    assert [(lr.link, lr.status) for lr in links] == [("worker", "interrupted")]

    again = await serving(cli, telegram)  # LLMAUTO_RECOVERY=auto: resumes by itself
    await telegram.wait_for_message(CHAT, "slow COMPLETED", timeout=30)
    again.send_signal(signal.SIGTERM)
    await exited(again, 15)
    runs, links = await rows(cli.home, "slow")
    assert [(lr.round, lr.link, lr.status) for lr in links] == [(1, "worker", "interrupted"), (1, "worker", "done")]
    assert [c["link"] for c in calls(cli)] == ["worker", "worker"]


async def bot_stopped(proc: subprocess.Popen[str]) -> None:
    """Until serve has acted on a signal: its bot application says it stopped (on stderr)."""
    assert proc.stderr is not None
    while "Application.stop() complete" not in (line := await asyncio.to_thread(proc.stderr.readline)):
        assert line, "serve ended before its bot stopped"


async def test_sigterm_with_finish_lets_the_running_link_end_and_records_it(
        cli: Cli, telegram: FakeBotApi, tmp_path: Path) -> None:
    """The agent holds (a gate, not a 3 s sleep) until serve has taken the signal in, so the
    signal always lands mid-link. Checked: with `shutdown_kills_links` ignored in Engine.aclose
    (always `kill_links=True`), this fails (the link is recorded interrupted, not done)."""
    gate = tmp_path / "gate"
    write_chain(cli.home, "slow", {**SLOW, "max_rounds": 2})
    cli.scenario_is({"links": {"worker": [{"result": "finished anyway"}, {"result": "round two"}]}})
    cli.env.update(LLMAUTO_ON_SHUTDOWN="finish", CLAUDE_BIN=str(GATED_CLAUDE), CLAUDE_GATE=str(gate))
    proc = await serving(cli, telegram)
    telegram.user_message(user_id=OPERATOR, text="/start_chain slow")
    await rig.until("the agent to start", lambda: started(gate), 30, proc=proc)
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(bot_stopped(proc), 30)
    gate.touch()
    await exited(proc, 30)
    assert proc.returncode == 0
    runs, links = await rows(cli.home, "slow")
    assert [(lr.round, lr.link, lr.status) for lr in links] == [(1, "worker", "done")]
    assert links[0].result_excerpt is not None and "finished anyway" in links[0].result_excerpt
    assert [r.status for r in runs] == ["INTERRUPTED"]  # cut off between links: the next start goes on
    assert len(calls(cli)) == 1


def test_on_shutdown_setting(home: Path) -> None:
    assert Settings.load({}, home=home).shutdown_kills_links
    assert not Settings.load({"LLMAUTO_ON_SHUTDOWN": "Finish"}, home=home).shutdown_kills_links
    with pytest.raises(ConfigError, match="LLMAUTO_ON_SHUTDOWN: expected interrupt or finish"):
        Settings.load({"LLMAUTO_ON_SHUTDOWN": "later"}, home=home)
