"""The marble run's logic, with an in-process scripted runner: every stop condition, skips,
retries, waits, BLOCKED handling, handoff history and resumption."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import events as ev
from engine.clock import ManualClock, RecordingSleeper
from engine.engine import Engine
from engine.settings import Settings
from engine.statefiles import ChainFiles
from engine.store import Store
from engine.stream import ErrorClass
from tests.conftest import write_chain
from tests.fakes.scripted_runner import Call, ScriptedRunner, fail, ok

WORKER_REVIEWER = {
    "description": "test loop",
    "max_rounds": 2,
    "links": [
        {"name": "worker", "role": "worker", "model": "m-worker", "prompt": "Work on {HANDOFF}, round {ROUND}, {ROUNDS_LEFT} left."},
        {"name": "reviewer", "role": "reviewer", "model": "m-rev", "prompt": "Review {HANDOFF} as {LINK}."},
    ],
}


class Harness:
    def __init__(self, engine: Engine, runner: ScriptedRunner, store: Store, settings: Settings,
                 clock: ManualClock | None, sleeper: RecordingSleeper) -> None:
        self.engine, self.runner, self.store, self.settings = engine, runner, store, settings
        self.clock, self.sleeper = clock, sleeper
        self.queue = engine.bus.subscribe()

    def files(self, chain: str) -> ChainFiles:
        return ChainFiles(self.settings.state_dir, chain)

    async def run(self, chain: str) -> Any:
        await self.engine.start_chain(chain, origin="test")
        return await asyncio.wait_for(self.engine.wait(chain), 20)

    async def kinds(self, chain: str) -> list[str]:
        runs = await self.store.last_runs(chain, 1)
        return [e.kind for e in await self.store.run_events(runs[0].id)]


@pytest.fixture
async def harness(settings: Settings, store: Store) -> AsyncIterator[Harness]:
    runner = ScriptedRunner()
    sleeper = RecordingSleeper()
    async with Engine(settings, store, runner=runner, sleeper=sleeper) as engine:
        yield Harness(engine, runner, store, settings, None, sleeper)


@pytest.fixture
async def clocked(settings: Settings, store: Store) -> AsyncIterator[Harness]:
    clock = ManualClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    runner = ScriptedRunner()
    sleeper = RecordingSleeper(clock)
    async with Engine(settings, store, runner=runner, clock=clock, sleeper=sleeper) as engine:
        yield Harness(engine, runner, store, settings, clock, sleeper)


async def test_loop_runs_max_rounds_and_records_everything(home: Path, harness: Harness) -> None:
    write_chain(home, "wr", WORKER_REVIEWER)
    harness.runner.default = lambda c: (c.append_handoff(f"\n{c.link} r{c.round}"), ok(cost=0.5))[1]
    outcome = await harness.run("wr")
    assert outcome.status == "COMPLETED"
    assert "max_rounds (2)" in outcome.reason
    assert harness.runner.links_called() == ["worker", "reviewer", "worker", "reviewer"]
    files = harness.files("wr")
    assert files.read_status() == "COMPLETED"
    assert files.round_counter.read_text().strip() == "2"  # rounds completed, as the original counted
    assert "reviewer r2" in (files.read_handoff().text or "")
    runs = await harness.store.last_runs("wr")
    assert runs[0].cost_usd == pytest.approx(2.0)
    assert runs[0].links_run == 4
    links = await harness.store.link_runs("wr", 10)
    assert [(r.round, r.link, r.error_class) for r in links] == [
        (1, "worker", "ok"), (1, "reviewer", "ok"), (2, "worker", "ok"), (2, "reviewer", "ok")]
    # Handoff history: the start snapshot plus one version per link that changed it.
    versions = await harness.store.handoff_versions("wr", 10)
    assert len(versions) == 5
    assert (await harness.store.handoff_after_round("wr", 1)).content.endswith("reviewer r1")  # type: ignore[union-attr]
    kinds = await harness.kinds("wr")
    assert kinds[0] == ev.RUN_STARTED and kinds[-1] == ev.RUN_FINISHED
    assert kinds.count(ev.LINK_FINISHED) == 4 and kinds.count(ev.ROUND_FINISHED) == 2


async def test_placeholders_are_rendered_and_unknown_braces_kept(home: Path, harness: Harness) -> None:
    doc = dict(WORKER_REVIEWER, max_rounds=1)
    doc["links"] = [{"name": "worker", "model": "m", "prompt": "H={HANDOFF} R={ROUND} L={LINK} left={ROUNDS_LEFT} t={TIME_LEFT} d={DEADLINE} c={CHAIN} keep={json}"}]
    write_chain(home, "ph", doc)
    await harness.run("ph")
    prompt = harness.runner.calls[0].inv.stdin
    handoff = harness.files("ph").handoff
    assert f"H={handoff} R=1 L=worker left=1 t=unlimited d=none c=ph keep={{json}}" in prompt


async def test_agent_all_done_stops_the_chain(home: Path, harness: Harness) -> None:
    write_chain(home, "ad", dict(WORKER_REVIEWER, max_rounds=0))
    harness.runner.script("reviewer", lambda c: ok(), lambda c: (c.write_status("ALL_DONE"), ok())[1])
    outcome = await harness.run("ad")
    assert (outcome.status, outcome.reason) == ("ALL_DONE", "an agent declared ALL_DONE")
    assert harness.runner.links_called() == ["worker", "reviewer"] * 2
    assert harness.files("ad").read_status() == "ALL_DONE"


async def test_agent_stopped_word_stops_the_chain(home: Path, harness: Harness) -> None:
    write_chain(home, "st", dict(WORKER_REVIEWER, max_rounds=0))
    harness.runner.script("worker", lambda c: (c.write_status("STOPPED"), ok())[1])
    outcome = await harness.run("st")
    assert outcome.status == "STOPPED"
    assert harness.runner.links_called() == ["worker"]


async def test_worker_not_assigned_is_skipped_without_running(home: Path, harness: Harness) -> None:
    write_chain(home, "ca", {
        "max_rounds": 2,
        "links": [
            {"name": "controller", "role": "controller", "model": "opus", "prompt": "assign"},
            {"name": "opus-worker", "role": "worker", "model": "claude-opus-4-1", "prompt": "work"},
            {"name": "sonnet-worker", "role": "worker", "model": "claude-sonnet-4-6", "prompt": "work"},
        ],
    })
    harness.runner.script("controller", lambda c: (c.write_handoff("plan\nASSIGNED: sonnet\n"), ok())[1],
                          lambda c: (c.write_handoff("plan\nASSIGNED: opus-worker\n"), ok())[1])
    await harness.run("ca")
    assert harness.runner.links_called() == ["controller", "sonnet-worker", "controller", "opus-worker"]
    rows = await harness.store.link_runs("ca", 10)
    assert [(r.link, r.status) for r in rows] == [
        ("controller", "done"), ("opus-worker", "skipped"), ("sonnet-worker", "done"),
        ("controller", "done"), ("opus-worker", "done"), ("sonnet-worker", "skipped")]


async def test_consecutive_blocked_rounds_stop_the_chain(home: Path, harness: Harness) -> None:
    write_chain(home, "bl", dict(WORKER_REVIEWER, max_rounds=10, max_consecutive_blocks=2))
    harness.runner.script("worker", *[lambda c: (c.write_handoff("## Status: BLOCKED\nQUESTION: which DB?\n"), ok())[1]] * 5)
    outcome = await harness.run("bl")
    assert (outcome.status, outcome.reason) == ("BLOCKED", "2 BLOCKED rounds in a row")
    events = await harness.store.run_events((await harness.store.last_runs("bl"))[0].id)
    blocked = [e for e in events if e.kind == ev.BLOCKED]
    # The same BLOCKED handoff again is not alerted twice; the round still counts as blocked.
    assert len(blocked) == 1 and blocked[0].data["question"] == "which DB?"


async def test_a_clear_round_resets_the_block_count(home: Path, harness: Harness) -> None:
    write_chain(home, "bl2", dict(WORKER_REVIEWER, max_rounds=4, max_consecutive_blocks=2))
    blocked = lambda c: (c.write_status("BLOCKED"), ok())[1]  # noqa: E731
    clear = lambda c: (c.write_handoff("## Status: DONE\n"), ok())[1]  # noqa: E731
    harness.runner.script("worker", blocked, clear, blocked, clear)
    outcome = await harness.run("bl2")
    assert outcome.status == "COMPLETED"


async def test_all_failed_rounds_do_not_count_and_end_as_failed(home: Path, harness: Harness) -> None:
    write_chain(home, "ff", dict(WORKER_REVIEWER, max_rounds=2))
    harness.runner.default = lambda c: fail(ErrorClass.CRASHED, "exit code 3")
    outcome = await harness.run("ff")
    assert outcome.status == "FAILED"
    assert "every link failed in 3 rounds" in outcome.reason
    assert len(harness.runner.calls) == 6  # three rounds ran although max_rounds is 2
    st = await harness.store.chain_state("ff")
    assert st.rounds_counted == 0


async def test_a_failed_link_in_a_round_with_successes_counts(home: Path, harness: Harness) -> None:
    write_chain(home, "half", dict(WORKER_REVIEWER, max_rounds=1))
    harness.runner.script("worker", lambda c: fail(ErrorClass.API_ERROR, "boom"))
    outcome = await harness.run("half")
    assert outcome.status == "COMPLETED"
    assert [r.error_class for r in await harness.store.link_runs("half")] == ["api_error", "ok"]


async def test_runtime_limit_measured_from_this_runs_start(home: Path, clocked: Harness) -> None:
    write_chain(home, "rt", dict(WORKER_REVIEWER, max_rounds=0, runtime_hours=1))
    assert clocked.clock is not None
    clock = clocked.clock
    clocked.runner.default = lambda c: (clock.advance(20 * 60), ok())[1]
    outcome = await clocked.run("rt")
    assert (outcome.status, outcome.reason) == ("COMPLETED", "runtime limit of 1 h reached")
    assert len(clocked.runner.calls) == 3


async def test_wind_down_instruction_when_time_runs_short(home: Path, clocked: Harness) -> None:
    write_chain(home, "wd", dict(WORKER_REVIEWER, max_rounds=0, runtime_hours=1))
    assert clocked.clock is not None
    clock = clocked.clock
    clocked.runner.default = lambda c: (clock.advance(20 * 60), ok(duration_s=20 * 60))[1]
    await clocked.run("wd")
    prompts = [c.inv.stdin for c in clocked.runner.calls]
    assert "WIND-DOWN" not in prompts[0]
    assert "WIND-DOWN" in prompts[2]  # 20 min left, links take 20 min


async def test_last_round_gets_wind_down_on_its_last_link(home: Path, harness: Harness) -> None:
    write_chain(home, "wd2", dict(WORKER_REVIEWER, max_rounds=2))
    await harness.run("wd2")
    flags = ["WIND-DOWN" in c.inv.stdin for c in harness.runner.calls]
    assert flags == [False, False, False, True]


async def test_deadline_in_the_past_ends_at_once(home: Path, clocked: Harness) -> None:
    write_chain(home, "dl", dict(WORKER_REVIEWER, deadline="2026-02-01T00:00:00+00:00"))
    outcome = await clocked.run("dl")
    assert outcome.status == "COMPLETED" and "deadline" in outcome.reason
    assert clocked.runner.calls == []


async def test_budget_stops_the_chain(home: Path, harness: Harness) -> None:
    write_chain(home, "bu", dict(WORKER_REVIEWER, max_rounds=0, max_cost_usd=1.0))
    harness.runner.default = lambda c: ok(cost=0.4)
    outcome = await harness.run("bu")
    assert outcome.status == "COMPLETED" and "budget" in outcome.reason
    assert len(harness.runner.calls) == 3


async def test_once_mode_runs_one_pass(home: Path, harness: Harness) -> None:
    write_chain(home, "once", dict(WORKER_REVIEWER, mode="once", max_rounds=0))
    outcome = await harness.run("once")
    assert outcome.status == "COMPLETED" and outcome.reason == "once pass finished"
    assert harness.runner.links_called() == ["worker", "reviewer"]


async def test_deadend_stops_at_the_first_failure(home: Path, harness: Harness) -> None:
    write_chain(home, "de", dict(WORKER_REVIEWER, mode="deadend"))
    harness.runner.script("worker", lambda c: fail(ErrorClass.CRASHED, "exit code 2"))
    outcome = await harness.run("de")
    assert outcome.status == "FAILED" and "dead end at worker" in outcome.reason
    assert harness.runner.links_called() == ["worker"]


async def test_graceful_stop_waits_for_the_current_link(home: Path, harness: Harness) -> None:
    write_chain(home, "gs", dict(WORKER_REVIEWER, max_rounds=0))
    gate = harness.runner.gates["worker"] = asyncio.Event()
    await harness.engine.start_chain("gs", origin="test")
    await harness.runner.started.wait()
    msg = await harness.engine.stop_chain("gs", "tests are red", by="ann")
    assert "after the current link" in msg
    gate.set()
    outcome = await asyncio.wait_for(harness.engine.wait("gs"), 10)
    assert (outcome.status, outcome.reason) == ("STOPPED", "tests are red")
    assert harness.runner.links_called() == ["worker"]
    assert (await harness.store.link_runs("gs"))[0].error_class == "ok"
    view = await harness.engine.view("gs")
    assert view.status == "STOPPED" and view.stop_reason == "tests are red"


async def test_stop_now_kills_the_running_link(home: Path, harness: Harness) -> None:
    write_chain(home, "sn", dict(WORKER_REVIEWER, max_rounds=0))
    harness.runner.gates["worker"] = asyncio.Event()  # never opened
    await harness.engine.start_chain("sn", origin="test")
    await harness.runner.started.wait()
    await harness.engine.stop_chain("sn", "wrong branch", now=True)
    outcome = await asyncio.wait_for(harness.engine.wait("sn"), 10)
    assert outcome.status == "STOPPED"
    assert (await harness.store.link_runs("sn"))[0].error_class == "killed"


async def test_restart_after_stop_resumes_where_it_was(home: Path, harness: Harness) -> None:
    write_chain(home, "rs", dict(WORKER_REVIEWER, max_rounds=2))
    harness.runner.script("reviewer", lambda c: (c.write_status("STOPPED"), ok())[1])
    first = await harness.run("rs")
    assert first.status == "STOPPED"
    harness.files("rs").write_status("READY")
    second = await harness.run("rs")
    assert second.status == "COMPLETED"
    assert [(c.link, c.round) for c in harness.runner.calls] == [
        ("worker", 1), ("reviewer", 1), ("worker", 2), ("reviewer", 2)]


async def test_reset_starts_over(home: Path, harness: Harness) -> None:
    write_chain(home, "re", dict(WORKER_REVIEWER, max_rounds=1))
    harness.runner.default = lambda c: (c.append_handoff("x"), ok())[1]
    await harness.run("re")
    await harness.engine.reset_chain("re")
    assert not harness.files("re").handoff.exists()
    await harness.run("re")
    assert [c.round for c in harness.runner.calls] == [1, 1, 1, 1]


async def test_pause_then_resume(home: Path, harness: Harness) -> None:
    write_chain(home, "pa", dict(WORKER_REVIEWER, max_rounds=1))
    gate = harness.runner.gates["worker"] = asyncio.Event()
    await harness.engine.start_chain("pa", origin="test")
    await harness.runner.started.wait()
    await harness.engine.pause_chain("pa")
    gate.set()
    while (await harness.engine.view("pa")).status != "PAUSED" or harness.files("pa").read_status() != "PAUSED":
        event = await asyncio.wait_for(harness.queue.get(), 5)
        if event.kind == ev.PAUSED:
            break
    assert harness.runner.links_called() == ["worker"]
    await harness.engine.resume_chain("pa")
    outcome = await asyncio.wait_for(harness.engine.wait("pa"), 10)
    assert outcome.status == "COMPLETED"
    assert harness.runner.links_called() == ["worker", "reviewer"]


async def test_rate_limit_waits_for_the_reset_and_reruns_the_same_link(home: Path, clocked: Harness) -> None:
    write_chain(home, "rl", dict(WORKER_REVIEWER, max_rounds=1))
    assert clocked.clock is not None
    reset = clocked.clock.now() + timedelta(hours=2)
    clocked.runner.script("worker", lambda c: fail(ErrorClass.RATE_LIMITED, "usage limit", resets_at_epoch=reset.timestamp()))
    outcome = await clocked.run("rl")
    assert outcome.status == "COMPLETED"
    assert clocked.runner.links_called() == ["worker", "worker", "reviewer"]
    assert clocked.sleeper.waits == [pytest.approx(2 * 3600 + 60)]
    st = await clocked.store.chain_state("rl")
    assert st.rounds_counted == 1
    kinds = await clocked.kinds("rl")
    assert ev.WAITING_LIMIT in kinds


async def test_rate_limit_without_reset_backs_off_exponentially(home: Path, clocked: Harness) -> None:
    write_chain(home, "rb", dict(WORKER_REVIEWER, max_rounds=1))
    clocked.runner.script("worker", *[lambda c: fail(ErrorClass.RATE_LIMITED, "429")] * 3)
    await clocked.run("rb")
    assert clocked.sleeper.waits == [60, 120, 240]


async def test_overload_retries_on_the_fallback_model(home: Path, harness: Harness) -> None:
    doc = dict(WORKER_REVIEWER, max_rounds=1)
    doc["links"] = [{"name": "worker", "model": "big", "fallback_model": "small", "prompt": "p"}]
    write_chain(home, "fb", doc)
    harness.runner.script("worker", lambda c: fail(ErrorClass.OVERLOADED, "529"))
    await harness.run("fb")
    assert [c.argv_value("--model") for c in harness.runner.calls] == ["big", "small"]
    rows = await harness.store.link_runs("fb")
    assert [(r.model, r.error_class, r.attempt) for r in rows] == [("big", "overloaded", 1), ("small", "ok", 2)]


async def test_auth_failure_stops_as_blocked_with_an_alert(home: Path, harness: Harness) -> None:
    write_chain(home, "au", WORKER_REVIEWER)
    harness.runner.script("worker", lambda c: fail(ErrorClass.AUTH, "Failed to authenticate. API Error: 401"))
    outcome = await harness.run("au")
    assert outcome.status == "BLOCKED" and "authentication failed" in outcome.reason
    assert ev.BLOCKED in await harness.kinds("au")
    assert harness.runner.links_called() == ["worker"]


async def test_stalled_link_is_retried_once_then_alerts(home: Path, harness: Harness) -> None:
    write_chain(home, "sl", dict(WORKER_REVIEWER, max_rounds=1))
    harness.runner.script("worker", lambda c: fail(ErrorClass.STALLED), lambda c: fail(ErrorClass.STALLED))
    await harness.run("sl")
    assert harness.runner.links_called() == ["worker", "worker", "reviewer"]
    events = await harness.store.run_events((await harness.store.last_runs("sl"))[0].id)
    assert any(e.kind == ev.BLOCKED and e.data["kind"] == "stalled" for e in events)


async def test_deleted_handoff_is_restored_from_history(home: Path, harness: Harness) -> None:
    write_chain(home, "dh", dict(WORKER_REVIEWER, max_rounds=1))
    harness.runner.script("worker", lambda c: (c.write_handoff("good state\n"), ok())[1])
    harness.runner.script("reviewer", lambda c: (c.handoff.unlink(), ok())[1])
    await harness.run("dh")
    assert harness.files("dh").read_handoff().text == "good state\n"
    events = await harness.store.run_events((await harness.store.last_runs("dh"))[0].id)
    problems = [e.data for e in events if e.kind == ev.HANDOFF_PROBLEM]
    assert problems == [{"link": "reviewer", "problem": "handoff.md is missing (deleted?)", "restored": True}]


@pytest.mark.parametrize("garbage, problem", [
    (b"", "handoff.md is empty"),
    (b"\x00\x01\x02binary", "handoff.md holds binary data (NUL bytes)"),
    (b"\xff\xfe not utf8", "handoff.md is not UTF-8 text (byte 0)"),
])
async def test_garbage_handoff_is_replaced_by_the_last_good_one(home: Path, harness: Harness, garbage: bytes, problem: str) -> None:
    write_chain(home, "gh", dict(WORKER_REVIEWER, max_rounds=1))
    harness.runner.script("worker", lambda c: (c.write_handoff("good\n"), ok())[1])
    harness.runner.script("reviewer", lambda c: (c.handoff.write_bytes(garbage), ok())[1])
    await harness.run("gh")
    assert harness.files("gh").read_handoff().text == "good\n"
    events = await harness.store.run_events((await harness.store.last_runs("gh"))[0].id)
    assert [e.data["problem"] for e in events if e.kind == ev.HANDOFF_PROBLEM] == [problem]


async def test_huge_handoff_is_not_read_whole(home: Path, harness: Harness) -> None:
    write_chain(home, "hh", dict(WORKER_REVIEWER, max_rounds=1))

    def huge(c: Call) -> Any:
        with c.handoff.open("wb") as f:
            f.truncate(300 * 1024 * 1024)  # a sparse 300 MB file: costs no disk
        return ok()

    harness.runner.script("worker", lambda c: (c.write_handoff("good\n"), ok())[1])
    harness.runner.script("reviewer", huge)
    outcome = await harness.run("hh")
    assert outcome.status == "COMPLETED"
    assert harness.files("hh").read_handoff().text == "good\n"


async def test_unknown_status_word_is_reported_and_reset(home: Path, harness: Harness) -> None:
    """The next link finds status.txt reset to RUNNING. Checked: with the
    `self.files.write_status("RUNNING")` after the unknown-word report in engine/marble.py removed,
    this fails (the reviewer still reads BANANA)."""
    write_chain(home, "uw", dict(WORKER_REVIEWER, max_rounds=1))
    seen: list[str | None] = []
    harness.runner.script("worker", lambda c: (c.write_status("BANANA"), ok())[1])
    harness.runner.script("reviewer", lambda c: (seen.append(harness.files("uw").read_status()), ok())[1])
    outcome = await harness.run("uw")
    assert outcome.status == "COMPLETED"
    events = await harness.store.run_events((await harness.store.last_runs("uw"))[0].id)
    assert any("unknown word 'BANANA'" in str(e.data.get("problem")) for e in events)
    assert seen == ["RUNNING"]


async def test_on_blocked_wait_holds_until_an_answer(home: Path, harness: Harness) -> None:
    write_chain(home, "bw", dict(WORKER_REVIEWER, max_rounds=1, on_blocked="wait"))
    harness.runner.script("worker", lambda c: (c.write_handoff("## Status: BLOCKED\nQUESTION: ship it?\n"), ok())[1])
    await harness.engine.start_chain("bw", origin="test")
    while True:
        event = await asyncio.wait_for(harness.queue.get(), 5)
        if event.kind == ev.BLOCKED:
            break
    await harness.engine.answer("bw", "yes, ship it", by="ann")
    outcome = await asyncio.wait_for(harness.engine.wait("bw"), 10)
    assert outcome.status == "COMPLETED"
    reviewer_prompt_handoff = harness.files("bw").read_handoff().text or ""
    assert "## Operator note (ann," in reviewer_prompt_handoff and "yes, ship it" in reviewer_prompt_handoff
    assert harness.runner.links_called() == ["worker", "reviewer"]


async def test_continue_link_keeps_one_session(home: Path, harness: Harness) -> None:
    doc = dict(WORKER_REVIEWER, max_rounds=3)
    doc["links"] = [{"name": "ctl", "role": "controller", "model": "m", "prompt": "p", "continue": True}]
    write_chain(home, "cs", doc)

    def reply(c: Call) -> Any:
        return ok(session_id=c.argv_value("--session-id") or c.argv_value("--resume"))

    harness.runner.default = reply
    await harness.run("cs")
    first = harness.runner.calls[0]
    sid = first.argv_value("--session-id")
    assert sid and first.argv_value("--resume") is None
    assert [c.argv_value("--resume") for c in harness.runner.calls[1:]] == [sid, sid]


async def test_second_start_in_the_same_process_is_refused(home: Path, harness: Harness) -> None:
    from engine.errors import ChainBusy

    write_chain(home, "dup", dict(WORKER_REVIEWER, max_rounds=0))
    harness.runner.gates["worker"] = asyncio.Event()
    await harness.engine.start_chain("dup", origin="test")
    with pytest.raises(ChainBusy, match="already running"):
        await harness.engine.start_chain("dup", origin="test")
    await harness.engine.stop_chain("dup", "done", now=True)
    await harness.engine.wait("dup")


async def test_start_after_all_done_begins_a_new_pass_keeping_the_handoff(home: Path, harness: Harness) -> None:
    write_chain(home, "np", dict(WORKER_REVIEWER, max_rounds=1))
    harness.runner.default = lambda c: (c.append_handoff(f"{c.link}{c.round} "), ok())[1]
    assert (await harness.run("np")).status == "COMPLETED"
    assert (await harness.run("np")).status == "COMPLETED"
    assert [c.round for c in harness.runner.calls] == [1, 1, 1, 1]
    assert (harness.files("np").read_handoff().text or "").endswith("worker1 reviewer1 worker1 reviewer1 ")


async def test_start_after_blocked_resumes_with_a_fresh_block_count(home: Path, harness: Harness) -> None:
    write_chain(home, "rb2", dict(WORKER_REVIEWER, max_rounds=3, max_consecutive_blocks=1))
    harness.runner.script("reviewer", lambda c: (c.write_status("BLOCKED"), ok())[1])
    assert (await harness.run("rb2")).status == "BLOCKED"
    outcome = await harness.run("rb2")
    assert outcome.status == "COMPLETED"
    assert [(c.link, c.round) for c in harness.runner.calls] == [
        ("worker", 1), ("reviewer", 1), ("worker", 2), ("reviewer", 2), ("worker", 3), ("reviewer", 3)]


async def test_two_concurrent_starts_make_one_run(home: Path, harness: Harness) -> None:
    from engine.errors import ChainBusy

    write_chain(home, "race", dict(WORKER_REVIEWER, max_rounds=1))
    results = await asyncio.gather(
        harness.engine.start_chain("race", origin="a"), harness.engine.start_chain("race", origin="b"),
        return_exceptions=True)
    assert sum(isinstance(r, ChainBusy) for r in results) == 1
    await harness.engine.wait("race")
    assert len(await harness.store.last_runs("race")) == 1


async def test_run_end_callbacks_see_the_chain_no_longer_running(home: Path, harness: Harness) -> None:
    write_chain(home, "cb", dict(WORKER_REVIEWER, max_rounds=1))
    seen: list[tuple[str, str, bool]] = []
    done = asyncio.Event()

    def callback(name: str, outcome: Any) -> None:
        seen.append((name, outcome.status, harness.engine.is_running_here(name)))
        done.set()

    harness.engine.on_run_end.append(callback)
    await harness.run("cb")
    await done.wait()
    assert seen == [("cb", "COMPLETED", False)]


async def test_handoff_history_keeps_no_duplicates_but_every_round(home: Path, harness: Harness) -> None:
    """A second pass starts with the handoff the first left: no second copy of it is stored, yet
    the handoff after round 1 of that pass is still found, and diff compares real changes."""
    write_chain(home, "dedup", dict(WORKER_REVIEWER, max_rounds=1))
    harness.runner.script("worker", lambda c: (c.append_handoff("\nworker was here"), ok())[1])
    assert (await harness.run("dedup")).status == "COMPLETED"
    assert (await harness.run("dedup")).status == "COMPLETED"  # nothing changes the handoff
    store = harness.store
    versions = await store.handoff_versions("dedup", 10)
    assert len(versions) == 2  # the first start's snapshot, the worker's change: nothing twice
    assert versions[0].content.endswith("worker was here") and not versions[1].content.endswith("worker was here")
    rows = await store.query("SELECT run_id, link, content, same_as FROM handoffs WHERE chain = 'dedup' ORDER BY id")
    assert [(r["link"], r["same_as"]) for r in rows] == [("(start)", None), ("worker", None), ("(start)", versions[0].id)]
    assert rows[2]["content"] == ""
    second_run = (await store.last_runs("dedup", 1))[0].id
    after_round_1 = await store.handoff_after_round("dedup", 1)
    assert after_round_1 is not None and after_round_1.run_id == second_run
    assert after_round_1.content == versions[0].content
    assert "+worker was here" in await harness.engine.handoff_diff("dedup")


async def test_a_version_equal_to_the_latest_is_recorded_by_reference(store: Store) -> None:
    await store.save_handoff("c", None, None, 1, "a", "same text")
    await store.save_handoff("c", None, None, 2, "b", "same text")
    await store.save_handoff("c", None, None, 3, "c", "other text")
    await store.save_handoff("c", None, None, 4, "d", "same text")  # equal to an older one: a new version
    assert [v.content for v in await store.handoff_versions("c", 10)] == ["same text", "other text", "same text"]
    for round_no, text in ((1, "same text"), (2, "same text"), (3, "other text"), (4, "same text")):
        found = await store.handoff_after_round("c", round_no)
        assert found is not None and found.content == text
    assert (await store.query("SELECT COUNT(*) FROM handoffs WHERE content = 'same text'"))[0][0] == 2



async def test_a_runs_final_handoff_is_found_even_when_it_repeats_an_earlier_run(home: Path, harness: Harness) -> None:
    """What the run report shows: a run that changed nothing recorded a reference to the version
    before it, and that reference resolves to the text."""
    write_chain(home, "fh", dict(WORKER_REVIEWER, max_rounds=1))
    harness.runner.default = lambda c: (c.write_handoff("# fh\nthe work\n"), ok())[1]
    first = await harness.run("fh")
    harness.runner.default = lambda c: ok()  # the second pass leaves the handoff as it is
    second = await harness.run("fh")
    assert first.run_id != second.run_id
    for outcome in (first, second):
        final = await harness.store.run_final_handoff(outcome.run_id)
        assert final is not None and final.content == "# fh\nthe work\n" and final.run_id == outcome.run_id
    assert await harness.store.run_final_handoff(second.run_id + 1) is None

async def test_a_link_ended_by_its_budget_cap_ends_the_run_even_if_its_cost_lands_short(home: Path, harness: Harness) -> None:
    """claude stops at --max-budget-usd between turns; should its reported cost be a little under the
    budget left, the chain still stops instead of starting a link with a few cents of budget."""
    write_chain(home, "bc", dict(WORKER_REVIEWER, max_rounds=5, max_cost_usd=1.0))
    harness.runner.script("worker", lambda c: ok(cost=0.3))
    harness.runner.script("reviewer", lambda c: fail(ErrorClass.BUDGET, "Reached maximum budget ($0.7)", cost_usd=0.69))
    outcome = await harness.run("bc")
    assert (outcome.status, outcome.reason) == ("COMPLETED", "budget of $1.00 used ($0.99)")
    assert harness.runner.links_called() == ["worker", "reviewer"]


async def test_the_originals_stop_file_stops_before_the_next_link(harness: Harness, home: Path) -> None:
    """`state/NAME/STOP` (its text the reason) stops the chain before its next link, like `chain
    stop`, and is removed when the run ends. Checked by breaking marble: without the
    `stop_reason()` check the reviewer runs (red); without `remove_stop_file()` the file stays (red)."""
    write_chain(home, "wr", WORKER_REVIEWER)

    def worker(call: Any) -> Any:
        (call.state_dir / "STOP").write_text("Manuell gestoppt via llmauto\n")
        call.append_handoff("\nworker did it\n")
        return ok()

    harness.runner.script("worker", worker)
    outcome = await harness.run("wr")
    assert (outcome.status, outcome.reason) == ("STOPPED", "STOP file: Manuell gestoppt via llmauto")
    assert harness.runner.links_called() == ["worker"]
    assert not harness.files("wr").stop_file.exists()
    again = await harness.run("wr")  # the next start is not stopped at once: it resumes at the reviewer
    assert again.status == "COMPLETED" and harness.runner.links_called()[1] == "reviewer"


async def test_max_runs_skips_a_link_after_its_runs_and_tells_the_controller(harness: Harness, home: Path) -> None:
    write_chain(home, "mr", {"max_rounds": 3, "links": [
        {"name": "controller", "role": "controller", "model": "m", "prompt": "assign"},
        {"name": "deep", "role": "worker", "model": "m", "prompt": "work", "max_runs": 1}]})
    harness.runner.default = lambda call: ok() if call.link == "deep" else (call.append_handoff("\nASSIGNED: deep\n"), ok())[1]
    outcome = await harness.run("mr")
    assert outcome.status == "COMPLETED"
    assert harness.runner.links_called() == ["controller", "deep", "controller", "controller"]
    handoff = harness.files("mr").read_handoff().text or ""
    assert handoff.count("## llmauto: deep has had its 1 run(s) in this run (max_runs)") == 1
    rows = await harness.store.link_runs("mr", 10)
    assert [r.error_message for r in rows if r.status == "skipped"] == ["max_runs (1) used in this run"] * 2
