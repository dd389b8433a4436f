"""The real runner against the fake `claude` executable: real subprocesses, real signals."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.claude_cli import agent_env, budget_arg, claude_argv, with_budget
from engine.processes import live_group_members
from engine.runner import Invocation, SubprocessRunner
from engine.stream import ErrorClass, LinkResult, Progress
from tests.fakes.claude_env import fake_claude_bin, fake_env, read_log, write_scenario


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / "state"
        self.state.mkdir()
        self.scenario = tmp / "scenario.json"
        self.log = tmp / "calls.jsonl"
        self.progress: list[Progress] = []
        self.pids: list[int] = []
        self.kill = asyncio.Event()

    def env(self, link: str = "worker", **extra: str) -> dict[str, str]:
        env = fake_env(self.tmp / "config", scenario=self.scenario, log=self.log)
        env.update({"LLMAUTO_LINK": link, "LLMAUTO_ROUND": "1", "LLMAUTO_CHAIN": "t",
                    "LLMAUTO_HANDOFF": str(self.state / "handoff.md"), "LLMAUTO_STATE_DIR": str(self.state)})
        env.update(extra)
        return env

    def scenario_is(self, doc: dict[str, Any]) -> None:
        write_scenario(self.scenario, doc)

    async def run(self, *, timeout_s: float = 30, stall_s: float | None = None, model: str | None = "claude-sonnet-4-6",
                  resume: str | None = None, session_id: str | None = None, argv: tuple[str, ...] | None = None,
                  kind: str = "claude", runner: SubprocessRunner | None = None) -> LinkResult:
        inv = Invocation(
            argv=argv or claude_argv(fake_claude_bin(), model=model, permission_mode="acceptEdits",
                                     allowed_tools=("Read", "Write"), resume=resume, session_id=session_id),
            stdin="do the work", cwd=self.tmp, env=self.env(), timeout_s=timeout_s, stall_s=stall_s, kind=kind,  # type: ignore[arg-type]
        )
        return await (runner or SubprocessRunner(kill_grace_s=1.0)).run(
            inv, on_progress=self.progress.append, on_spawn=self.pids.append, kill=self.kill)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie counts as gone (reaped by init eventually).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


async def test_success_is_parsed_from_stream_json(rig: Rig) -> None:
    rig.scenario_is({"default": {"result": "all good", "handoff": "## Status: DONE\n", "cost": 0.25,
                                 "input_tokens": 100, "output_tokens": 20, "tools": ["Bash"]}})
    result = await rig.run()
    assert result.error_class is ErrorClass.OK
    assert (result.text, result.cost_usd, result.input_tokens, result.output_tokens) == ("all good", 0.25, 100, 20)
    assert result.session_id and result.exit_code == 0
    assert result.model == "claude-sonnet-4-6"
    assert (rig.state / "handoff.md").read_text() == "## Status: DONE\n"
    tools = [p.tool for p in rig.progress if p.kind == "tool"]
    assert "Write" in tools and "Bash" in tools
    writes = [p for p in rig.progress if p.tool == "Write"]
    assert writes[0].target == str(rig.state / "handoff.md")
    call = read_log(rig.log)[0]
    assert call["stdin"] == "do the work"
    assert call["argv"][:5] == ["-p", "--output-format", "stream-json", "--verbose", "--model"] or "--verbose" in call["argv"]


@pytest.mark.parametrize("error, cls", [
    ("rate_limited", ErrorClass.RATE_LIMITED),
    ("overloaded", ErrorClass.OVERLOADED),
    ("auth", ErrorClass.AUTH),
    ("not_logged_in", ErrorClass.AUTH),
    ("api_error", ErrorClass.API_ERROR),
    ("not_found", ErrorClass.NOT_FOUND),
    ("connection_refused", ErrorClass.API_ERROR),
    ("max_turns", ErrorClass.API_ERROR),
    ("crash", ErrorClass.CRASHED),
    ("empty", ErrorClass.CRASHED),
])
async def test_each_failure_gets_its_error_class(rig: Rig, error: str, cls: ErrorClass) -> None:
    rig.scenario_is({"default": {"error": error}})
    result = await rig.run()
    assert result.error_class is cls, result
    assert result.error_message


async def test_rate_limit_reset_time_is_captured(rig: Rig) -> None:
    rig.scenario_is({"default": {"error": "rate_limited", "resets_at": 1_900_000_000, "resets": "3pm (Europe/Berlin)"}})
    result = await rig.run()
    assert result.error_class is ErrorClass.RATE_LIMITED
    assert result.resets_at_epoch == 1_900_000_000
    assert "resets 3pm" in result.text


async def test_api_retries_show_as_progress_and_count_as_life(rig: Rig) -> None:
    # Three retries 1 s apart: 3 s without output, longer than the 2.5 s stall window, so only
    # counting each retry as life keeps the agent alive; the window leaves 1.5 s of margin per gap
    # for a loaded machine (CI runs the suite under coverage).
    rig.scenario_is({"default": {"retries": 3, "retry_delay_s": 1.0}})
    result = await rig.run(stall_s=2.5)
    assert result.ok
    assert [p.kind for p in rig.progress].count("retry") == 3


async def test_timeout_kills_the_whole_process_group(rig: Rig) -> None:
    rig.scenario_is({"default": {"hang": True, "spawn_child": True, "ignore_sigterm": True}})
    result = await rig.run(timeout_s=1.5)
    assert result.error_class is ErrorClass.TIMEOUT
    child = int((rig.state / "fake_child.pid").read_text())
    assert not _pid_alive(child)
    assert live_group_members(rig.pids[0]) == []


async def test_stall_watchdog_kills_a_silent_agent(rig: Rig) -> None:
    rig.scenario_is({"default": {"hang": True}})
    result = await rig.run(stall_s=0.5, timeout_s=30)
    assert result.error_class is ErrorClass.STALLED
    assert result.duration_s < 10


async def test_kill_event_stops_a_hanging_link_within_seconds(rig: Rig) -> None:
    rig.scenario_is({"default": {"hang": True, "spawn_child": True}})
    task = asyncio.create_task(rig.run())
    while not (rig.state / "fake_child.pid").exists() or not rig.progress:
        await asyncio.sleep(0.02)
    rig.kill.set()
    result = await asyncio.wait_for(task, 10)
    assert result.error_class is ErrorClass.KILLED
    assert not _pid_alive(int((rig.state / "fake_child.pid").read_text()))


async def test_background_children_are_reaped_after_a_normal_exit(rig: Rig) -> None:
    rig.scenario_is({"default": {"spawn_child": True}})
    result = await rig.run()
    assert result.ok
    assert not _pid_alive(int((rig.state / "fake_child.pid").read_text()))


async def test_session_id_then_resume(rig: Rig) -> None:
    rig.scenario_is({"default": {"result": "hi"}})
    sid = "4b3f7c2e-1111-4222-8333-444455556666"
    first = await rig.run(session_id=sid)
    assert first.session_id == sid
    second = await rig.run(resume=sid)
    assert second.ok and second.session_id == sid
    missing = await rig.run(resume="00000000-0000-4000-8000-000000000000")
    assert not missing.ok
    assert "no conversation found" in (missing.text + missing.error_message + missing.stderr_tail).lower()


async def test_missing_executable_is_a_clear_crash(rig: Rig) -> None:
    result = await rig.run(argv=("/nonexistent/claude", "-p"))
    assert result.error_class is ErrorClass.CRASHED
    assert "cannot start '/nonexistent/claude'" in result.error_message


async def test_command_link_output_and_exit_code(rig: Rig) -> None:
    code = "import sys; print('line one'); print('line two'); sys.stderr.write('bad thing\\n'); sys.exit(3)"
    result = await rig.run(argv=(sys.executable, "-c", code), kind="command")
    assert result.error_class is ErrorClass.CRASHED
    assert result.text == "line one\nline two"
    assert result.error_message == "exit code 3: bad thing"
    ok = await rig.run(argv=(sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"), kind="command")
    assert ok.ok and ok.text == "DO THE WORK"


def test_agent_env_withholds_the_bot_token_and_claudecode() -> None:
    parent = {"PATH": "/bin", "TELEGRAM_BOT_TOKEN": "123:abc", "CLAUDECODE": "1", "ANTHROPIC_API_KEY": "k", "X": "1"}
    env = agent_env(parent, env_allow=None, link_env={"Y": "2"}, llmauto_vars={"LLMAUTO_LINK": "w"})
    assert env == {"PATH": "/bin", "ANTHROPIC_API_KEY": "k", "X": "1", "Y": "2", "LLMAUTO_LINK": "w"}
    allowed = agent_env(parent, env_allow=("ANTHROPIC_API_KEY",), link_env={}, llmauto_vars={})
    assert allowed == {"PATH": "/bin", "ANTHROPIC_API_KEY": "k"}


def test_claude_argv() -> None:
    argv = claude_argv("claude", model="m", permission_mode="acceptEdits", allowed_tools=("Read", "Write"),
                       fallback_model="f", resume="S")
    assert argv == ("claude", "-p", "--output-format", "stream-json", "--verbose", "--model", "m",
                    "--fallback-model", "f", "--permission-mode", "acceptEdits", "--allowedTools", "Read Write",
                    "--resume", "S")


# ---- the home-wide cap on agent processes (engine/slots.py) ---------------------------------
HOLD_SLOT = (
    "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
    "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(1000)"
)


async def test_slots_are_shared_between_holders_and_handed_on_in_order(tmp_path: Path) -> None:
    """Three waiters of one process behind another holder: only the first polls, the others queue
    behind it, and they get the slot in the order they asked. Checked: with `async with
    self._turn:` in FileSlots.acquire replaced by a no-op context, this fails (all three poll and
    call on_wait)."""
    from engine.slots import FileSlots

    mine, other = FileSlots(tmp_path, 1, poll_s=0.01), FileSlots(tmp_path, 1, poll_s=0.01)
    order: list[str] = []
    asked: list[str] = []
    waited: list[str] = []
    first_waits = asyncio.Event()

    async def worker(name: str) -> None:
        asked.append(name)
        await mine.acquire(lambda: (waited.append(name), first_waits.set()))
        order.append(name)
        mine.release()

    async with other:  # another holder (as if another process): everyone here waits
        assert mine.locked()
        tries, polled_thrice = 0, asyncio.Event()
        take = mine._try_take

        def counted_take() -> bool:
            nonlocal tries
            tries += 1
            if tries >= 3:
                polled_thrice.set()
            return take()

        mine._try_take = counted_take  # type: ignore[method-assign]
        tasks = [asyncio.create_task(worker(n)) for n in ("first", "second", "third")]
        await asyncio.wait_for(first_waits.wait(), 5)  # the first found the slot taken...
        await asyncio.wait_for(polled_thrice.wait(), 5)  # ...and keeps polling it, in vain
        assert asked == ["first", "second", "third"]  # the others asked too, and queue behind it
        assert order == [] and waited == ["first"]
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == ["first", "second", "third"]
    assert not mine.locked() and mine.held == 0
    with pytest.raises(ValueError):
        mine.release()


async def test_a_slot_held_by_a_killed_process_is_free_again(tmp_path: Path) -> None:
    from engine.slots import FileSlots

    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD_SLOT, str(tmp_path / "slot-0.lock"), stdout=asyncio.subprocess.PIPE)
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 10) == b"held\n"
        slots = FileSlots(tmp_path, 1, poll_s=0.01)
        assert slots.locked()
        found_taken = asyncio.Event()
        acquiring = asyncio.create_task(slots.acquire(found_taken.set))
        await asyncio.wait_for(found_taken.wait(), 5)  # it tried, and the live holder keeps it out
        assert not acquiring.done()
        holder.kill()
        await asyncio.wait_for(acquiring, 5)
        assert slots.held == 1
        slots.release()
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()


# ---- --max-budget-usd ------------------------------------------------------------------------
async def test_a_link_over_its_budget_ends_with_the_budget_class(rig: Rig) -> None:
    rig.scenario_is({"default": {"cost": 0.5}})
    argv = with_budget(claude_argv(fake_claude_bin(), model="claude-sonnet-4-6", permission_mode=None,
                                   allowed_tools=("Read",)), 0.2)
    result = await rig.run(argv=argv)
    assert result.error_class is ErrorClass.BUDGET, result
    assert result.error_message == "Reached maximum budget ($0.2)"
    assert result.cost_usd == pytest.approx(0.5)
    within = await rig.run(argv=with_budget(argv, 2.5))
    assert within.ok and read_log(rig.log)[-1]["argv"].count("--max-budget-usd") == 1


def test_budget_argv() -> None:
    base = claude_argv("claude", model="m", permission_mode=None, allowed_tools=("Read", "Write"))
    capped = with_budget(base, 1.23456)
    assert capped[:7] == ("claude", "-p", "--output-format", "stream-json", "--verbose", "--max-budget-usd", "1.2346")
    assert capped[7:] == base[5:]  # before the variadic --allowedTools, which would swallow it
    assert with_budget(capped, 0.5).count("--max-budget-usd") == 1 and "0.5" in with_budget(capped, 0.5)
    assert [budget_arg(x) for x in (2.0, 0.1, 0.00001, -1.0)] == ["2", "0.1", "0.0001", "0.0001"]
    assert with_budget(claude_argv("claude", model=None, permission_mode=None, allowed_tools=None), 3.0) == (
        "claude", "-p", "--output-format", "stream-json", "--verbose", "--max-budget-usd", "3")


async def test_a_slot_released_in_this_process_is_handed_on_without_polling(tmp_path: Path) -> None:
    """Checked: with `self._freed.set()` in FileSlots.release removed, this fails (the waiter
    sleeps out its 60 s poll)."""
    from engine.slots import FileSlots

    slots = FileSlots(tmp_path, 1, poll_s=60)  # a poll would outlast the test
    await slots.acquire()
    waiting = asyncio.Event()
    waiter = asyncio.create_task(slots.acquire(waiting.set))
    await asyncio.wait_for(waiting.wait(), 5)  # it found the slot taken and waits
    slots.release()
    await asyncio.wait_for(waiter, 5)
    assert slots.held == 1
    slots.release()
