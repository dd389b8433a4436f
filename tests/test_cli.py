"""The `llmauto` command line as users run it: real processes, real signals, a shared database.

Chains here use the fake `claude` (tests/fakes/bin/claude) scripted per link, so runs are fast and
deterministic; waiting is done on the store (the run recorded, the lease taken), never on sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.processes import process_start_token
from engine.store import Store
from llmauto.cli import main
from tests.conftest import write_chain
from tests.helpers import Cli, gone, wait_for_lease

LOOP = {
    "description": "two links",
    "max_rounds": 2,
    "links": [
        {"name": "worker", "model": "claude-sonnet-4-6", "prompt": "work on {HANDOFF}"},
        {"name": "reviewer", "role": "reviewer", "model": "claude-sonnet-4-6", "prompt": "review {HANDOFF}"},
    ],
}


def test_help_and_usage_errors(cli: Cli) -> None:
    out = cli.run("--help")
    assert out.returncode == 0 and "serve" in out.stdout and "chain" in out.stdout
    assert cli.run("chain").returncode == 2
    bogus = cli.run("chain", "start", "../etc/passwd")
    assert bogus.returncode == 2 and "error:" in bogus.stderr


def test_unknown_chain_lists_the_known_ones(cli: Cli) -> None:
    write_chain(cli.home, "alpha", LOOP)
    out = cli.run("chain", "start", "nope")
    assert out.returncode == 2
    assert "unknown chain 'nope'" in out.stderr and "alpha" in out.stderr


def test_validate_reports_and_exits_2(cli: Cli) -> None:
    write_chain(cli.home, "good", LOOP)
    ok = cli.run("chain", "validate", "good")
    assert ok.returncode == 0 and "valid" in ok.stdout
    write_chain(cli.home, "bad", {"links": [{"name": "w", "model": 42, "prompt": "x y"}]})
    bad = cli.run("chain", "validate", "bad")
    assert bad.returncode == 2
    assert "links[0].model" in bad.stderr


def test_foreground_run_to_completion_with_live_view(cli: Cli) -> None:
    write_chain(cli.home, "fg", LOOP)
    cli.scenario_is({"links": {"reviewer": [{"result": "fine"}, {"status": "ALL_DONE"}]}})
    out = cli.run("chain", "start", "fg")
    assert out.returncode == 0, out.stderr
    assert "round 1 · worker [claude-sonnet-4-6] started" in out.stdout
    assert "✓ reviewer: ok" in out.stdout
    assert "ALL_DONE — an agent declared ALL_DONE" in out.stdout
    status = cli.run("chain", "status", "fg")
    assert status.returncode == 0 and "fg: ALL_DONE" in status.stdout
    log = cli.run("chain", "log", "fg", "10")
    assert log.stdout.count("worker") == 2 and log.stdout.count("reviewer") == 2
    listing = cli.run("chain", "list")
    assert "fg" in listing.stdout and "ALL_DONE" in listing.stdout


def test_chain_list_aligns_long_names_and_says_what_is_wrong_with_an_invalid_chain(cli: Cli) -> None:
    """The original's `forschung-kritik-nachlauf` (25 characters) pushed its row out of the columns,
    and an invalid chain read only "invalid chain:". Red with the name column fixed at 24, or with
    the error's first line printed raw."""
    long_name = "forschung-kritik-nachlauf"
    (cli.home / "chains" / f"{long_name}.json").write_text(
        '{"links": [{"name": "a", "prompt": {"path": "prompts/_private/a.txt"}}, {"name": 1}]}')
    write_chain(cli.home, "fg", LOOP)
    rows = cli.run("chain", "list").stdout.splitlines()
    assert [row.index("INVALID" if long_name in row else "READY") for row in rows] == [len(long_name) + 2] * 2
    assert rows[1].endswith("more)") and "invalid chain:" not in rows[1], rows


async def test_stop_from_a_second_process_with_a_reason(cli: Cli) -> None:
    write_chain(cli.home, "long", dict(LOOP, max_rounds=0))
    cli.scenario_is({"default": {"sleep": 0.2}})
    runner = cli.spawn("chain", "start", "long")
    await wait_for_lease(cli.home, "long", runner.pid)
    stop = cli.run("chain", "stop", "long", "tests", "are", "red")
    assert stop.returncode == 0, stop.stderr
    assert "stop requested" in stop.stdout
    out, err = runner.communicate(timeout=30)
    assert runner.returncode == 0, err
    assert "STOPPED — tests are red" in out
    status = cli.run("chain", "status", "long")
    assert "long: STOPPED" in status.stdout and "reason: tests are red" in status.stdout


async def test_second_start_is_refused_while_running(cli: Cli) -> None:
    write_chain(cli.home, "busy", dict(LOOP, max_rounds=0))
    cli.scenario_is({"default": {"sleep": 0.2}})
    runner = cli.spawn("chain", "start", "busy")
    await wait_for_lease(cli.home, "busy", runner.pid)
    second = cli.run("chain", "start", "busy")
    assert second.returncode == 1
    assert f"already running in another process (pid {runner.pid}" in second.stderr
    assert cli.run("chain", "stop", "busy", "--now").returncode == 0
    runner.communicate(timeout=30)


async def test_stop_now_kills_a_hanging_agent_quickly(cli: Cli, home: Path) -> None:
    write_chain(cli.home, "hang", LOOP)
    cli.scenario_is({"default": {"hang": True, "spawn_child": True}})
    runner = cli.spawn("chain", "start", "hang")
    await wait_for_lease(cli.home, "hang", runner.pid)
    child_pid_file = home / "state" / "hang" / "fake_child.pid"
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert cli.run("chain", "stop", "hang", "wrong", "branch", "--now").returncode == 0
    runner.communicate(timeout=30)
    assert loop.time() - started < 10
    assert gone(int(child_pid_file.read_text()))
    log = cli.run("chain", "log", "hang")
    assert "killed" in log.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_ctrl_c_stops_the_foreground_run_and_records_why(cli: Cli, sig: signal.Signals) -> None:
    """Ctrl-C (or SIGTERM) of a foreground run: the stop is recorded, then the process exits
    128 + the signal's number, as shells expect of a program a signal ended."""
    write_chain(cli.home, "int", dict(LOOP, max_rounds=0))
    cli.scenario_is({"default": {"hang": True}})
    runner = cli.spawn("chain", "start", "int")
    await wait_for_lease(cli.home, "int", runner.pid)
    runner.send_signal(sig)
    out, err = runner.communicate(timeout=30)
    assert runner.returncode == 128 + sig.value, err
    assert f"interrupted from the terminal ({sig.name})" in err + out
    status = cli.run("chain", "status", "int")
    assert "int: STOPPED" in status.stdout and sig.name in status.stdout
    async with Store.open(cli.home / "state" / "llmauto.db") as store:
        run = (await store.last_runs("int", 1))[0]
        assert (run.status, run.stop_reason) == ("STOPPED", f"interrupted from the terminal ({sig.name})")


async def test_background_start_outlives_the_command(cli: Cli) -> None:
    write_chain(cli.home, "bg", LOOP)
    cli.scenario_is({"links": {"reviewer": [{"result": "fine"}, {"status": "ALL_DONE"}]}})
    out = cli.run("chain", "start", "bg", "--bg")
    assert out.returncode == 0, out.stderr
    assert "running in the background" in out.stdout
    async with Store.open(cli.home / "state" / "llmauto.db") as store:
        async def finished() -> None:
            while (await store.chain_state("bg")).status != "ALL_DONE":
                await asyncio.sleep(0.05)
        await asyncio.wait_for(finished(), 30)
    assert (cli.home / "state" / "bg" / "run.log").read_text().count("✓") == 4


def test_handoff_history_and_diff(cli: Cli) -> None:
    write_chain(cli.home, "ho", LOOP)
    cli.scenario_is({"links": {
        "worker": [{"handoff": "# Plan\nstep one\n"}, {"handoff": "# Plan\nstep two\n"}],
        "reviewer": [{"handoff": "# Plan\nstep one\nreviewed\n"}, {"handoff": "# Plan\nstep two\nreviewed\n", "status": "ALL_DONE"}],
    }})
    assert cli.run("chain", "start", "ho").returncode == 0
    current = cli.run("chain", "handoff", "ho")
    assert current.stdout == "# Plan\nstep two\nreviewed\n\n"
    first = cli.run("chain", "handoff", "ho", "1")
    assert "step one\nreviewed" in first.stdout
    diff = cli.run("chain", "handoff", "ho", "diff")
    assert "+reviewed" in diff.stdout
    assert cli.run("chain", "handoff", "ho", "x").returncode == 2


def test_reset_then_start_over(cli: Cli) -> None:
    """A reset chain is READY at round 1 with nothing counted and no last run. Checked: with
    `Store.reset_chain` not deleting the chain_state row, this fails ("1 of 1 (1 counted)" stays); before,
    the first check looked for a line the output never prints."""
    write_chain(cli.home, "rs", dict(LOOP, max_rounds=1))
    cli.scenario_is({})
    assert cli.run("chain", "start", "rs").returncode == 0
    done = cli.run("chain", "status", "rs").stdout
    assert "rs: COMPLETED" in done and "rounds done: 1 of 1" in done
    assert (cli.home / "state" / "rs" / "round_counter.txt").read_text().strip() == "1"
    out = cli.run("chain", "reset", "rs")
    assert out.returncode == 0 and "reset" in out.stdout
    again = cli.run("chain", "status", "rs").stdout
    assert "rs: READY" in again and "rounds done: 0 of 1" in again and "last run" not in again
    assert (cli.home / "state" / "rs" / "round_counter.txt").read_text().strip() == "0"  # as the original's reset
    assert cli.run("chain", "start", "rs").returncode == 0
    assert "rounds done: 1 of 1" in cli.run("chain", "status", "rs").stdout


def test_stop_of_a_chain_that_is_not_running(cli: Cli) -> None:
    write_chain(cli.home, "idle", LOOP)
    out = cli.run("chain", "stop", "idle")
    assert out.returncode == 1 and "idle is not running" in out.stderr


def test_pipe_prints_the_answer(cli: Cli) -> None:
    cli.scenario_is({"default": {"result": "forty-two"}})
    out = cli.run("pipe", "what", "is", "the", "answer?", "--model", "claude-haiku-4-5")
    assert (out.returncode, out.stdout) == (0, "forty-two\n")
    cli.scenario_is({"default": {"error": "overloaded"}})
    bad = cli.run("pipe", "hello")
    assert bad.returncode == 1 and "overloaded" in bad.stderr


def test_main_in_process_maps_errors_to_exit_codes(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / "chains" / "broken.json").write_text("{not json", encoding="utf-8")
    assert main(["--home", str(home), "chain", "validate", "broken"]) == 2
    assert "invalid JSON" in capsys.readouterr().err


# A command link that holds its agent slot until the test lets it go, recording its span like
# the fake claude does.
GATE = (
    "import json, os, time; start = time.time()\n"
    "while not os.path.exists(os.environ['GATE']): time.sleep(0.01)\n"
    "open(os.environ['FAKE_CLAUDE_SPANS'], 'a').write(json.dumps({'chain': os.environ['LLMAUTO_CHAIN'], "
    "'link': os.environ['LLMAUTO_LINK'], 'start': start, 'end': time.time()}) + '\\n')"
)


async def test_max_parallel_links_holds_across_processes(cli: Cli, tmp_path: Path) -> None:
    """Two `chain start` processes, cap 1: their agents never overlap in time, and the chain that
    has to wait says so."""
    spans, gate = tmp_path / "spans.jsonl", tmp_path / "gate"
    cli.env.update(LLMAUTO_MAX_PARALLEL_LINKS="1", FAKE_CLAUDE_SPANS=str(spans), GATE=str(gate))
    write_chain(cli.home, "one", {"max_rounds": 1, "links": [
        {"name": "a1", "command": [sys.executable, "-c", GATE]},
        {"name": "a2", "model": "claude-sonnet-4-6", "prompt": "work"}]})
    write_chain(cli.home, "two", {"max_rounds": 1, "links": [
        {"name": "b1", "model": "claude-sonnet-4-6", "prompt": "work"},
        {"name": "b2", "model": "claude-sonnet-4-6", "prompt": "work"}]})
    cli.scenario_is({"default": {"sleep": 0.3}})
    one = cli.spawn("chain", "start", "one")
    await wait_for_lease(cli.home, "one", one.pid)
    two = cli.spawn("chain", "start", "two")
    async with Store.open(cli.home / "state" / "llmauto.db") as store:
        async def two_waits() -> None:
            while not any(e.kind == "waiting_slot" for e in await store.chain_events("two")):
                await asyncio.sleep(0.02)
        await asyncio.wait_for(two_waits(), 30)
    gate.touch()
    (_, err_one), (out_two, err_two) = one.communicate(timeout=60), two.communicate(timeout=60)
    assert (one.returncode, two.returncode) == (0, 0), err_one + err_two
    calls = sorted((json.loads(line) for line in spans.read_text().splitlines()), key=lambda c: c["start"])
    assert sorted(c["link"] for c in calls) == ["a1", "a2", "b1", "b2"]
    for before, after in itertools.pairwise(calls):
        assert after["start"] >= before["end"], f"{after} started while {before} ran"
    assert "b1 waits for a free agent slot (all 1 in use)" in out_two


async def _fabricate_lease(home: Path, chain: str, pid: int, pid_start: str | None) -> None:
    """A fresh lease of `chain` held by `pid` on this host, as if that process ran the chain."""
    async with Store.open(home / "state" / "llmauto.db") as store:
        now = store.stamp()
        await store.execute(
            "INSERT OR REPLACE INTO leases (chain, owner, host, pid, pid_start, acquired_at, heartbeat_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (chain, f"{socket.gethostname()}:{pid}:fabricated", socket.gethostname(), pid, pid_start, now, now),
        )


async def test_a_lease_whose_pid_was_reused_is_taken_over(cli: Cli) -> None:
    """The holder's pid is alive but belongs to another process now (its start time differs):
    the lease is dead and a new start takes it over; with the holder's own start time, refused."""
    write_chain(cli.home, "reuse", dict(LOOP, max_rounds=1))
    cli.scenario_is({})
    sleeper = await asyncio.create_subprocess_exec("sleep", "1000")
    try:
        real_start = process_start_token(sleeper.pid)
        assert real_start is not None
        await _fabricate_lease(cli.home, "reuse", sleeper.pid, real_start)
        refused = cli.run("chain", "start", "reuse")
        assert refused.returncode == 1
        assert f"already running in another process (pid {sleeper.pid}" in refused.stderr

        await _fabricate_lease(cli.home, "reuse", sleeper.pid, str(int(real_start) + 1))
        taken = cli.run("chain", "start", "reuse")
        assert taken.returncode == 0, taken.stderr
        assert "COMPLETED" in taken.stdout
    finally:
        sleeper.kill()
        await sleeper.wait()


ZOMBIE_MAKER = "import subprocess, time; p = subprocess.Popen(['true']); print(p.pid, flush=True); time.sleep(1000)"


async def test_a_lease_held_by_a_zombie_is_taken_over(cli: Cli) -> None:
    write_chain(cli.home, "zombie", dict(LOOP, max_rounds=1))
    cli.scenario_is({})
    # A parent that never reaps its exited child: the child stays a zombie with its start time.
    parent = await asyncio.create_subprocess_exec(sys.executable, "-c", ZOMBIE_MAKER, stdout=asyncio.subprocess.PIPE)
    try:
        assert parent.stdout is not None
        zombie = int(await asyncio.wait_for(parent.stdout.readline(), 10))
        deadline = time.monotonic() + 10
        while not gone(zombie):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        start = process_start_token(zombie)
        assert start is not None
        await _fabricate_lease(cli.home, "zombie", zombie, start)
        taken = cli.run("chain", "start", "zombie")
        assert taken.returncode == 0, taken.stderr
    finally:
        parent.kill()
        await parent.wait()


def test_log_into_a_pipe_closed_early_exits_0_quietly(cli: Cli) -> None:
    """`llmauto chain log NAME | head -1`: more output than a pipe holds, the reader leaves after
    one line; llmauto ends with 0 and no traceback."""
    write_chain(cli.home, "long-log", LOOP)

    async def fill() -> None:
        async with Store.open(cli.home / "state" / "llmauto.db") as store, store.transaction() as db:
            for i in range(3000):
                await db.execute(
                    "INSERT INTO link_runs (run_id, chain, round, link_index, link, role, model, status, "
                    "error_class, started_at, ended_at, duration_s) VALUES (1, 'long-log', ?, 0, 'worker', "
                    "'worker', 'claude-sonnet-4-6', 'done', 'ok', ?, ?, 1.5)",
                    (i + 1, store.stamp(), store.stamp()),
                )

    asyncio.run(fill())
    with subprocess.Popen([sys.executable, "-m", "engine", "chain", "log", "long-log", "3000"], env=cli.env,
                          cwd=cli.home, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            assert b"worker" in proc.stdout.readline()
            proc.stdout.close()
            err = proc.stderr.read()
            assert proc.wait(timeout=30) == 0
            assert err == b""
        finally:
            if proc.poll() is None:
                proc.kill()
