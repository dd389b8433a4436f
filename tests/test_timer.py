"""The scheduler inside serve: firing, overlap, missed-slot catch-up, restarts, schedules added by
another process, `after` schedules. Time is a ManualClock for catch-up; APScheduler's own timing
is checked through its triggers, once end to end with a DateTrigger a second ahead, and its
coalescing and misfire grace with triggers whose slots lie in the past."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger

from bot import render
from engine import events as ev
from engine import timer as timer_module
from engine.clock import ManualClock
from engine.engine import Engine
from engine.errors import ConfigError
from engine.events import Event
from engine.marble import RunOutcome
from engine.schedule_book import Schedule, ScheduleBook
from engine.settings import Settings
from engine.store import ChainState, NewEvent, Store
from engine.stream import LinkResult
from engine.timer import Scheduler
from tests.conftest import make_settings, write_chain
from tests.fakes.scripted_runner import Call, ScriptedRunner, ok
from tests.helpers import Cli

ONCE = {"mode": "once", "links": [{"name": "work", "model": "m", "prompt": "do it"}]}
COMMAND = {"mode": "once", "links": [{"name": "step", "command": ["python3", "-c", "print('hi')"]}]}
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
NEW_YEAR = datetime(2027, 1, 1, tzinfo=UTC)
HOURLY_ON_NEW_YEAR = "0 * 1 1 *"  # many slots on a day the real clock never reaches in a test


class Rig:
    def __init__(self, settings: Settings, store: Store, engine: Engine, runner: ScriptedRunner, clock: ManualClock) -> None:
        self.settings, self.store, self.engine, self.runner, self.clock = settings, store, engine, runner, clock
        self.book = ScheduleBook(store, settings)
        self.queue = engine.bus.subscribe()

    def scheduler(self, **kw: Any) -> Scheduler:
        return Scheduler(self.settings, self.engine, clock=self.clock, **kw)

    async def events(self, kind: str) -> list[Event]:
        return [e for e in await self.store.events_after(0, 10_000) if e.kind == kind]

    async def next_event(self, kind: str) -> Event:
        """The next published event of that kind (waits up to 10 s)."""
        async with asyncio.timeout(10):
            while (event := await self.queue.get()).kind != kind:
                pass
        return event

    async def runs(self, chain: str) -> int:
        return len(await self.store.last_runs(chain, 100))


@pytest.fixture
async def rig(home: Path) -> AsyncIterator[Rig]:
    for name in ("nightly", "build", "tests", "report"):
        write_chain(home, name, ONCE)
    settings = make_settings(home, chat_id=99)
    runner = ScriptedRunner()
    async with Store.open(settings.db_path) as store, Engine(settings, store, runner=runner) as engine:
        yield Rig(settings, store, engine, runner, ManualClock(T0))


async def until(predicate: Callable[[], bool]) -> None:
    """Wait (up to 5 s) for something the scheduler's poller does."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never became true")


async def add(rig: Rig, text: str = "0 2 * * *", **kw: Any) -> Schedule:
    kw.setdefault("now", rig.clock.now())
    schedule, _ = await rig.book.add_cron(kw.pop("chain", "nightly"), text, **kw)
    return schedule


# ---- firing ----------------------------------------------------------------------------------
async def test_fire_starts_the_chain_tells_the_chat_and_records_the_slot(rig: Rig) -> None:
    schedule = await add(rig, tz="Europe/Berlin")
    slot = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    async with rig.scheduler() as scheduler:
        run_id = await scheduler.fire(schedule.id, slot)
        assert run_id is not None
        fired = await rig.next_event(ev.SCHEDULE_FIRED)
        await asyncio.wait_for(rig.engine.wait("nightly"), 10)
        assert await scheduler.fire(schedule.id, slot) is None  # a slot is handled once
    run = await rig.store.run(run_id)
    assert run is not None
    assert (run.origin, run.requested_by, run.chat_id) == ("schedule", f"schedule #{schedule.id}", 99)
    assert (fired.chain, fired.run_id) == ("nightly", run_id)
    assert {k: fired.data[k] for k in ("schedule_id", "chain", "expression", "original", "tz", "chat_id", "run_id", "scheduled_for")} == {
        "schedule_id": schedule.id, "chain": "nightly", "expression": "0 2 * * *", "original": "0 2 * * *",
        "tz": "Europe/Berlin", "chat_id": 99, "run_id": run_id, "scheduled_for": slot.isoformat()}
    row = await rig.book.get(schedule.id)
    assert (row.last_fire, row.last_outcome, row.last_run_id) == (
        "2026-11-25T01:00:00.000+00:00", f"started run #{run_id}", run_id)
    assert await rig.runs("nightly") == 1


async def test_the_schedule_chat_wins_over_the_settings_chat(rig: Rig) -> None:
    schedule = await add(rig, chat_id=7)
    async with rig.scheduler() as scheduler:
        run_id = await scheduler.fire(schedule.id, T0)
        await asyncio.wait_for(rig.engine.wait("nightly"), 10)
    run = await rig.store.run(run_id or 0)
    assert run is not None and run.chat_id == 7
    assert (await rig.events(ev.SCHEDULE_FIRED))[0].data["chat_id"] == 7


async def test_overlap_skip_records_the_reason(rig: Rig) -> None:
    schedule = await add(rig)
    rig.runner.gates["work"] = gate = asyncio.Event()
    async with rig.scheduler() as scheduler:
        await rig.engine.start_chain("nightly", origin="test")
        await rig.runner.started.wait()
        assert await scheduler.fire(schedule.id, T0) is None
        gate.set()
        await asyncio.wait_for(rig.engine.wait("nightly"), 10)
    [skipped] = await rig.events(ev.SCHEDULE_SKIPPED)
    assert skipped.data["reason"] == "nightly is still running"
    assert skipped.data["schedule_id"] == schedule.id and skipped.data["chat_id"] == 99
    assert (await rig.book.get(schedule.id)).last_outcome == "skipped: nightly is still running"
    assert await rig.runs("nightly") == 1


async def test_overlap_queue_starts_once_right_after_the_running_one(rig: Rig) -> None:
    schedule = await add(rig, overlap="queue")
    rig.runner.gates["work"] = gate = asyncio.Event()
    async with rig.scheduler() as scheduler:
        first = await rig.engine.start_chain("nightly", origin="test")
        await rig.runner.started.wait()
        assert await scheduler.fire(schedule.id, T0) is None
        assert (await rig.book.get(schedule.id)).last_outcome.startswith("queued: nightly is still running")  # type: ignore[union-attr]
        # A second slot while one start waits: never a burst.
        assert await scheduler.fire(schedule.id, T0 + timedelta(hours=1)) is None
        [skipped] = await rig.events(ev.SCHEDULE_SKIPPED)
        assert "already queued" in skipped.data["reason"]
        gate.set()
        fired = await rig.next_event(ev.SCHEDULE_FIRED)
        assert fired.data["queued"] is True and fired.data["queued_behind_run"] == first
        assert fired.data["scheduled_for"] == T0.isoformat()
        await asyncio.wait_for(rig.engine.wait("nightly"), 10)
    assert await rig.runs("nightly") == 2


async def test_a_queued_start_is_told_to_the_chat_and_kept_in_the_store(rig: Rig) -> None:
    schedule = await add(rig, overlap="queue")
    rig.runner.gates["work"] = gate = asyncio.Event()
    async with rig.scheduler() as scheduler:
        await rig.engine.start_chain("nightly", origin="test")
        await rig.runner.started.wait()
        assert await scheduler.fire(schedule.id, T0) is None
        queued = await rig.next_event(ev.SCHEDULE_QUEUED)
        assert (queued.chain, queued.data["schedule_id"], queued.data["chat_id"]) == ("nightly", schedule.id, 99)
        assert queued.data["scheduled_for"] == T0.isoformat()
        assert render.event_text("nightly", queued.kind, queued.data) == (
            "⏳ <b>nightly</b> is still running; the scheduled run starts when it ends")
        assert (await rig.book.get(schedule.id)).queued_at == "2026-11-24T12:00:00.000+00:00"
        gate.set()
        await rig.next_event(ev.SCHEDULE_FIRED)
        assert (await rig.book.get(schedule.id)).queued_at is None
        await asyncio.wait_for(rig.engine.wait("nightly"), 10)


async def test_a_queued_start_survives_a_scheduler_restart(rig: Rig) -> None:
    schedule = await add(rig, overlap="queue")
    rig.runner.gates["work"] = gate = asyncio.Event()
    first = await rig.engine.start_chain("nightly", origin="test")
    await rig.runner.started.wait()
    async with rig.scheduler() as scheduler:
        assert await scheduler.fire(schedule.id, T0) is None
    async with rig.scheduler() as scheduler:  # the chain still runs: the start keeps waiting
        await scheduler.settle()
        assert await rig.events(ev.SCHEDULE_FIRED) == []
        gate.set()
        fired = await rig.next_event(ev.SCHEDULE_FIRED)
        await asyncio.wait_for(rig.engine.wait("nightly"), 10)
    assert (fired.data["queued"], fired.data["queued_behind_run"], fired.data["scheduled_for"]) == (
        True, first, T0.isoformat())
    assert await rig.runs("nightly") == 2
    assert (await rig.book.get(schedule.id)).queued_at is None
    async with rig.scheduler() as scheduler:  # handled: nothing more starts
        await scheduler.settle()
    assert await rig.runs("nightly") == 2


async def test_a_queued_start_whose_run_ended_while_serve_was_down_starts_at_once(rig: Rig) -> None:
    schedule = await add(rig, overlap="queue")
    rig.runner.gates["work"] = gate = asyncio.Event()
    await rig.engine.start_chain("nightly", origin="test")
    await rig.runner.started.wait()
    async with rig.scheduler() as scheduler:
        assert await scheduler.fire(schedule.id, T0) is None
    gate.set()
    await asyncio.wait_for(rig.engine.wait("nightly"), 10)  # ends while no scheduler runs
    async with rig.scheduler():
        fired = await rig.next_event(ev.SCHEDULE_FIRED)
        await asyncio.wait_for(rig.engine.wait("nightly"), 10)
    assert (fired.data["queued"], fired.data["queued_behind_run"]) == (True, None)
    assert await rig.runs("nightly") == 2


async def test_a_queued_start_waits_for_the_run_resumed_after_a_full_restart(home: Path) -> None:
    """serve stops (the run is INTERRUPTED), starts again and resumes the run: the queued start
    goes after the resumed run has ended, once."""
    write_chain(home, "nightly", ONCE)
    settings = make_settings(home, chat_id=99)
    clock = ManualClock(T0)
    runner = ScriptedRunner()
    runner.gates["work"] = gate = asyncio.Event()
    async with Store.open(settings.db_path) as store:
        book = ScheduleBook(store, settings)
        schedule, _ = await book.add_cron("nightly", "0 2 * * *", overlap="queue", now=T0)
        async with Engine(settings, store, runner=runner) as engine:
            await engine.start_chain("nightly", origin="test")
            await runner.started.wait()
            async with Scheduler(settings, engine, clock=clock) as scheduler:
                assert await scheduler.fire(schedule.id, T0) is None
        [first] = await store.last_runs("nightly")
        assert first.status == "INTERRUPTED"
        assert (await book.get(schedule.id)).queued_at is not None
        gate.set()
        async with Engine(settings, store, runner=runner) as engine, Scheduler(settings, engine, clock=clock) as scheduler:
            events = engine.bus.subscribe()
            assert await engine.interrupted_chains() == ["nightly"]
            await scheduler.settle()
            assert await store.last_runs("nightly") == [first]  # not before the run is resumed
            resumed = await engine.start_chain("nightly", origin="recovery")  # what serve's recovery does
            async with asyncio.timeout(10):
                while (event := await events.get()).kind != ev.SCHEDULE_FIRED:
                    pass
            await asyncio.wait_for(engine.wait("nightly"), 10)
        assert event.data["queued_behind_run"] == resumed
        runs = await store.last_runs("nightly")
        assert [(r.origin, r.status) for r in runs][1:] == [("recovery", runs[1].status), ("test", "INTERRUPTED")]
        assert runs[0].origin == "schedule" and runs[0].id == event.run_id
        assert (await book.get(schedule.id)).queued_at is None


async def test_pausing_a_schedule_drops_its_queued_start(rig: Rig) -> None:
    schedule = await add(rig, overlap="queue")
    rig.runner.gates["work"] = gate = asyncio.Event()
    async with rig.scheduler() as scheduler:
        await rig.engine.start_chain("nightly", origin="test")
        await rig.runner.started.wait()
        assert await scheduler.fire(schedule.id, T0) is None
        await rig.book.set_enabled(schedule.id, False)
        gate.set()
        await asyncio.wait_for(rig.engine.wait("nightly"), 10)
        await scheduler.settle()
    assert await rig.events(ev.SCHEDULE_FIRED) == [] and await rig.runs("nightly") == 1
    assert (await rig.book.get(schedule.id)).queued_at is None


async def test_a_chain_that_cannot_start_is_reported_as_skipped(rig: Rig, home: Path) -> None:
    schedule = await add(rig)
    (home / "chains" / "nightly.json").unlink()
    async with rig.scheduler() as scheduler:
        assert await scheduler.fire(schedule.id, T0) is None
    [skipped] = await rig.events(ev.SCHEDULE_SKIPPED)
    assert "unknown chain 'nightly'" in skipped.data["reason"]
    assert (await rig.book.get(schedule.id)).last_outcome.startswith("skipped: unknown chain")  # type: ignore[union-attr]


async def test_paused_or_removed_schedules_do_not_fire(rig: Rig) -> None:
    paused = await add(rig)
    removed = await add(rig, "0 3 * * *")
    await rig.book.set_enabled(paused.id, False)
    await rig.book.remove(removed.id)
    async with rig.scheduler() as scheduler:
        assert await scheduler.fire(paused.id, T0) is None
        assert await scheduler.fire(removed.id, T0) is None
    assert await rig.runs("nightly") == 0


# ---- missed slots ----------------------------------------------------------------------------
async def test_catch_up_runs_the_latest_missed_slot_once_and_reports_the_rest(rig: Rig) -> None:
    rig.clock.set(NEW_YEAR + timedelta(minutes=30))
    await add(rig, HOURLY_ON_NEW_YEAR, tz="UTC")
    rig.clock.set(NEW_YEAR + timedelta(hours=5, minutes=20))  # serve was down from 00:30 to 05:20
    async with rig.scheduler():
        [missed] = await rig.events(ev.SCHEDULE_MISSED)
        [fired] = await rig.events(ev.SCHEDULE_FIRED)
        await asyncio.wait_for(rig.engine.wait("nightly"), 10)
    assert (missed.data["missed"], missed.data["first"]) == (4, (NEW_YEAR + timedelta(hours=1)).isoformat())
    assert "nightly</b>: 4 scheduled run(s) missed" in (render.event_text("nightly", missed.kind, missed.data) or "")
    assert fired.data["scheduled_for"] == (NEW_YEAR + timedelta(hours=5)).isoformat()
    assert fired.data["late_s"] == 20 * 60
    assert missed.id < fired.id  # the chat hears of the missed ones first
    # Restart: nothing new (the slot was handled), also a little later.
    async with rig.scheduler():
        pass
    rig.clock.advance(10 * 60)
    async with rig.scheduler():
        pass
    assert len(await rig.events(ev.SCHEDULE_FIRED)) == 1
    assert len(await rig.events(ev.SCHEDULE_MISSED)) == 1
    assert await rig.runs("nightly") == 1



async def test_catch_up_looks_at_the_downtime_only(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A daily schedule after two days down: the catch-up walks its fire times up to now and stops
    (it once computed the 10,081 a minutely schedule may have in a week: 27 years of a daily one,
    a quarter of a second per schedule at every start, with the event loop held)."""
    walked: list[datetime] = []
    real = timer_module.iter_fires

    def counting(spec: Any, after: datetime) -> Any:
        for when in real(spec, after):
            walked.append(when)
            yield when

    monkeypatch.setattr(timer_module, "iter_fires", counting)
    await add(rig, "daily 02:00", tz="UTC")
    rig.clock.advance(timedelta(days=2, hours=1).total_seconds())
    async with rig.scheduler():
        [missed] = await rig.events(ev.SCHEDULE_MISSED)
    assert missed.data["missed"] == 2
    assert len(walked) <= 3, walked  # the two slots, and the first one after now

async def test_a_long_downtime_is_reported_as_at_least_the_last_week(rig: Rig) -> None:
    await add(rig, HOURLY_ON_NEW_YEAR, tz="UTC")  # created on T0, five weeks before New Year
    rig.clock.set(NEW_YEAR + timedelta(hours=5, minutes=20))
    async with rig.scheduler():
        [missed] = await rig.events(ev.SCHEDULE_MISSED)
        [fired] = await rig.events(ev.SCHEDULE_FIRED)
        await asyncio.wait_for(rig.engine.wait("nightly"), 10)
    assert (missed.data["missed"], missed.data["more"], missed.data["first"]) == (5, True, NEW_YEAR.isoformat())
    assert "at least 5 scheduled run(s) missed" in (render.event_text("nightly", missed.kind, missed.data) or "")
    assert fired.data["scheduled_for"] == (NEW_YEAR + timedelta(hours=5)).isoformat()


async def test_a_row_that_no_longer_parses_is_left_alone(rig: Rig) -> None:
    schedule = await add(rig)
    await rig.store.execute("UPDATE schedules SET expression = 'bogus' WHERE id = ?", (schedule.id,))
    async with rig.scheduler() as scheduler:
        assert scheduler.next_run_time(schedule.id) is None
        await scheduler.refresh()


async def test_slots_older_than_the_grace_are_only_reported(rig: Rig) -> None:
    rig.clock.set(NEW_YEAR + timedelta(minutes=30))
    schedule = await add(rig, HOURLY_ON_NEW_YEAR, tz="UTC")
    rig.clock.set(NEW_YEAR + timedelta(hours=5, minutes=20))
    async with rig.scheduler(grace_s=600):
        pass
    [missed] = await rig.events(ev.SCHEDULE_MISSED)
    assert missed.data["missed"] == 5 and missed.data["grace_s"] == 600
    assert await rig.events(ev.SCHEDULE_FIRED) == []
    row = await rig.book.get(schedule.id)
    assert row.last_outcome == "missed 5 firings (more than 10 min late)"
    assert row.last_fire == "2027-01-01T05:00:00.000+00:00"
    async with rig.scheduler(grace_s=600):
        pass
    assert len(await rig.events(ev.SCHEDULE_MISSED)) == 1
    assert await rig.runs("nightly") == 0


@pytest.mark.parametrize(("raw", "seconds"), [
    (None, 3600.0), ("", 3600.0), ("90m", 5400.0), ("2h", 7200.0), ("1h30m", 5400.0), ("45s", 45.0),
    ("5400", 5400.0), ("0", 0.0), (" 2H ", 7200.0), ("1.5h", 5400.0),
])
def test_missed_run_grace_setting(home: Path, raw: str | None, seconds: float) -> None:
    env = {"LLMAUTO_HOME": str(home)} | ({} if raw is None else {"LLMAUTO_MISSED_RUN_GRACE": raw})
    assert Settings.load(env).missed_run_grace_s == seconds


@pytest.mark.parametrize("raw", ["soon", "-5", "10x", "h", "1m2h", "nan", "inf", "-1h"])
def test_an_invalid_missed_run_grace_is_refused_naming_the_variable(home: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match=f"LLMAUTO_MISSED_RUN_GRACE: expected a duration like 90m, 2h or 3600 "
                                          f"\\(seconds\\), got {re.escape(repr(raw))}"):
        Settings.load({"LLMAUTO_HOME": str(home), "LLMAUTO_MISSED_RUN_GRACE": raw})


@pytest.mark.parametrize(("grace", "runs"), [("90m", True), ("1h", False), ("4800", True), ("79m", False)])
async def test_the_missed_run_grace_comes_from_the_settings(rig: Rig, grace: str, runs: bool) -> None:
    """serve was down from 00:30 to 06:20: the 05:00 slot is 80 min late when it starts again."""
    rig.clock.set(NEW_YEAR + timedelta(minutes=30))
    schedule = await add(rig, "0 1-5 1 1 *", tz="UTC")
    rig.clock.set(NEW_YEAR + timedelta(hours=6, minutes=20))
    settings = dataclasses.replace(rig.settings, missed_run_grace_s=Settings.load(
        {"LLMAUTO_HOME": str(rig.settings.home), "LLMAUTO_MISSED_RUN_GRACE": grace}).missed_run_grace_s)
    async with Scheduler(settings, rig.engine, clock=rig.clock) as scheduler:
        assert scheduler.grace_s == settings.missed_run_grace_s
        if runs:
            fired = await rig.next_event(ev.SCHEDULE_FIRED)
            await asyncio.wait_for(rig.engine.wait("nightly"), 10)
    [missed] = await rig.events(ev.SCHEDULE_MISSED)
    assert missed.data["grace_s"] == settings.missed_run_grace_s
    row = await rig.book.get(schedule.id)
    if runs:
        assert fired.data["scheduled_for"] == (NEW_YEAR + timedelta(hours=5)).isoformat()
        assert fired.data["late_s"] == 80 * 60
        assert missed.data["missed"] == 4 and await rig.runs("nightly") == 1
        assert row.last_outcome == f"started run #{fired.run_id}"
    else:
        assert missed.data["missed"] == 5 and await rig.runs("nightly") == 0
        assert row.last_outcome == f"missed 5 firings (more than {settings.missed_run_grace_s / 60:g} min late)"


async def test_slots_while_paused_are_not_missed(rig: Rig) -> None:
    rig.clock.set(NEW_YEAR + timedelta(minutes=30))
    schedule = await add(rig, HOURLY_ON_NEW_YEAR, tz="UTC")
    await rig.book.set_enabled(schedule.id, False)
    rig.clock.set(NEW_YEAR + timedelta(hours=5, minutes=10))
    await rig.book.set_enabled(schedule.id, True, now=rig.clock.now())
    rig.clock.advance(5 * 60)
    async with rig.scheduler():
        pass
    assert await rig.events(ev.SCHEDULE_MISSED) == []
    assert await rig.events(ev.SCHEDULE_FIRED) == []


async def test_slots_due_together_after_a_sleep_start_one_run(rig: Rig) -> None:
    rig.clock.set(NEW_YEAR + timedelta(minutes=30))
    schedule = await add(rig, HOURLY_ON_NEW_YEAR, tz="UTC")
    slots = [NEW_YEAR + timedelta(hours=h) for h in (1, 2, 3)]
    async with rig.scheduler() as scheduler:
        rig.clock.set(slots[-1] + timedelta(seconds=5))
        # What APScheduler hands over when the loop wakes late: 01:00-03:00 coalesced into 03:00,
        # within its misfire grace (test_apscheduler_coalesces_... runs APScheduler itself).
        await scheduler.slot_due(schedule.id, slots[-1])
        fired = await rig.next_event(ev.SCHEDULE_FIRED)
        await asyncio.wait_for(rig.engine.wait("nightly"), 10)
        await scheduler.slot_due(schedule.id, slots[-1])  # the same slot again: ignored
        rig.clock.set(NEW_YEAR + timedelta(hours=9))
        # Hours late: 04:00-05:00 coalesced into 05:00, past the grace (APScheduler's EVENT_JOB_MISSED).
        await scheduler.slot_missed(schedule.id, NEW_YEAR + timedelta(hours=5))
        missed_late = await rig.next_event(ev.SCHEDULE_MISSED)
    assert fired.data["scheduled_for"] == slots[-1].isoformat()
    missed = await rig.events(ev.SCHEDULE_MISSED)
    assert [m.data["missed"] for m in missed] == [2, 2]
    assert missed_late.id == missed[-1].id
    assert await rig.runs("nightly") == 1


class PastSlots(BaseTrigger):  # type: ignore[misc]
    """A trigger whose slots lie in the past: APScheduler finds them all due at once, as after a sleep."""

    def __init__(self, slots: list[datetime]) -> None:
        self.slots = slots

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        return next((t for t in self.slots if previous_fire_time is None or t > previous_fire_time), None)


async def test_apscheduler_coalesces_late_slots_and_applies_the_grace(rig: Rig) -> None:
    """APScheduler itself (no hand-over faked): three hourly slots due together run once, the
    latest, with the two before it reported; a slot found two hours late does not run (its
    misfire_grace_time) and is reported. Made to fail by setting `misfire_grace_time` None in
    engine/timer.py (the stale slot runs build). Setting `coalesce` False does not turn it red:
    the claim (last_fire only moves forward) drops the earlier slots APScheduler would then hand
    over one by one, so a burst is stopped twice."""
    rig.clock.set(NEW_YEAR + timedelta(hours=3, seconds=5))
    async with rig.scheduler(poll_s=60) as scheduler:  # the rows come after the start: no catch-up at load
        at = NEW_YEAR + timedelta(minutes=30)
        hourly = await add(rig, HOURLY_ON_NEW_YEAR, tz="UTC", now=at)
        stale = await add(rig, "0 1 * * *", tz="UTC", chain="build", now=at)
        scheduler._register(hourly.id, PastSlots([NEW_YEAR + timedelta(hours=h) for h in (1, 2, 3)]))
        scheduler._register(stale.id, PastSlots([NEW_YEAR + timedelta(hours=1)]))
        seen: list[Event] = []
        async with asyncio.timeout(10):
            while len(seen) < 3:
                event = await rig.queue.get()
                if event.kind in (ev.SCHEDULE_FIRED, ev.SCHEDULE_MISSED):
                    seen.append(event)
        await asyncio.wait_for(rig.engine.wait("nightly"), 10)
        await scheduler.settle()
    by = {(e.chain, e.kind): e for e in seen}
    assert by["nightly", ev.SCHEDULE_FIRED].data["scheduled_for"] == (NEW_YEAR + timedelta(hours=3)).isoformat()
    assert (by["nightly", ev.SCHEDULE_MISSED].data["missed"], by["nightly", ev.SCHEDULE_MISSED].data["first"]) == (
        2, (NEW_YEAR + timedelta(hours=1)).isoformat())
    assert by["build", ev.SCHEDULE_MISSED].data["missed"] == 1
    assert (await rig.book.get(stale.id)).last_outcome == "missed 1 firing (more than 60 min late)"
    assert len(await rig.events(ev.SCHEDULE_FIRED)) == 1 and len(await rig.events(ev.SCHEDULE_MISSED)) == 2
    assert (await rig.runs("nightly"), await rig.runs("build")) == (1, 0)


# ---- loading, restarts, other processes -------------------------------------------------------
async def test_jobs_follow_the_cron_trigger_and_survive_a_restart(home: Path) -> None:
    for name in ("nightly",):
        write_chain(home, name, ONCE)
    settings = make_settings(home)
    async with Store.open(settings.db_path) as store:
        schedule, _ = await ScheduleBook(store, settings).add_cron("nightly", "0 2 * * *", tz="Europe/Berlin")
    for _ in range(2):  # serve starts, stops, starts again
        async with Store.open(settings.db_path) as store, Engine(settings, store, runner=ScriptedRunner()) as engine, \
                Scheduler(settings, engine) as scheduler:
            book = ScheduleBook(store, settings)
            when = scheduler.next_run_time(schedule.id)
            assert when is not None
            assert when == book.next_fires(await book.get(schedule.id), datetime.now(UTC), 1)[0]
            assert when.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M") == "02:00"


async def test_apscheduler_triggers_fire_once_per_night_across_dst(rig: Rig) -> None:
    schedule = await add(rig, "30 2 * * *", tz="Europe/Berlin")
    spec = schedule.spec()
    assert spec is not None
    berlin = ZoneInfo("Europe/Berlin")
    walls = []
    for start in (datetime(2026, 10, 23, 12, tzinfo=UTC), datetime(2026, 3, 27, 12, tzinfo=UTC)):
        trigger, previous, now = spec.trigger(), None, start
        fires: list[datetime] = []
        for _ in range(4):
            fire = trigger.get_next_fire_time(previous, now)
            assert fire is not None
            fires.append(fire)
            previous = now = fire
        days = [f.astimezone(berlin).date() for f in fires]
        assert [(b - a).days for a, b in itertools.pairwise(days)] == [1, 1, 1]  # one fire a night
        walls.append([f.astimezone(berlin).strftime("%m-%d %H:%M") for f in fires[:3]])
    assert walls == [["10-24 02:30", "10-25 02:30", "10-26 02:30"],  # 02:30 twice on 10-25: the first
                     ["03-28 02:30", "03-29 03:30", "03-30 02:30"]]  # no 02:30 on 03-29: shifted by the gap


async def test_a_schedule_added_by_the_real_cli_is_picked_up_without_restart(rig: Rig, cli: Cli) -> None:
    """`python -m engine schedule add/pause/resume/remove` in another process while the scheduler
    runs here: each change reaches APScheduler within the poll, without a restart."""
    async with rig.scheduler(poll_s=0.02) as scheduler:
        added = await asyncio.to_thread(cli.run, "schedule", "add", "nightly", "15 4 * * *", "--tz", "utc")
        assert added.returncode == 0, added.stderr
        [schedule] = await rig.book.list()
        await until(lambda: scheduler.next_run_time(schedule.id) is not None)
        assert scheduler.next_run_time(schedule.id) == rig.book.next_fires(schedule, rig.clock.now())[0]
        for verb, registered in (("pause", False), ("resume", True), ("remove", False)):
            done = await asyncio.to_thread(cli.run, "schedule", verb, str(schedule.id))
            assert done.returncode == 0, done.stderr
            await until(lambda registered=registered: (scheduler.next_run_time(schedule.id) is not None) == registered)


async def test_apscheduler_fires_a_cron_schedule_at_its_time(rig: Rig) -> None:
    """The real path: the row, the cron trigger refresh() registers, APScheduler's timer, the
    claim, the start. The clock stands two seconds before New Year, so the slot comes in real time."""
    rig.clock.set(NEW_YEAR - timedelta(seconds=2))
    schedule = await add(rig, "0 0 1 1 *", tz="UTC")  # once a year
    async with rig.scheduler() as scheduler:
        assert scheduler.next_run_time(schedule.id) == NEW_YEAR
        started = await rig.next_event(ev.RUN_STARTED)
        outcome = await asyncio.wait_for(rig.engine.wait("nightly"), 10)
        assert scheduler.next_run_time(schedule.id) == NEW_YEAR.replace(year=2028)
    [fired] = await rig.events(ev.SCHEDULE_FIRED)
    assert (started.chain, started.run_id, fired.run_id) == ("nightly", outcome.run_id, outcome.run_id)
    assert fired.data["scheduled_for"] == NEW_YEAR.isoformat() and "late_s" not in fired.data
    assert rig.runner.links_called() == ["work"]
    run = await rig.store.run(outcome.run_id)
    assert run is not None and (run.origin, run.requested_by) == ("schedule", f"schedule #{schedule.id}")
    row = await rig.book.get(schedule.id)
    assert (row.last_fire, row.last_outcome, row.last_run_id) == (
        "2027-01-01T00:00:00.000+00:00", f"started run #{outcome.run_id}", outcome.run_id)


async def test_refresh_makes_an_in_process_change_immediate(rig: Rig) -> None:
    async with rig.scheduler(poll_s=60) as scheduler:
        schedule = await add(rig, "15 4 * * *")
        assert scheduler.next_run_time(schedule.id) is None
        await scheduler.refresh()
        assert scheduler.next_run_time(schedule.id) is not None
        await rig.book.remove(schedule.id)
        await scheduler.refresh()
        assert scheduler.next_run_time(schedule.id) is None


async def test_apscheduler_fires_a_real_command_chain_end_to_end(home: Path) -> None:
    write_chain(home, "nightly", COMMAND)
    settings = make_settings(home)
    async with Store.open(settings.db_path) as store, Engine(settings, store) as engine, \
            Scheduler(settings, engine) as scheduler:
        schedule, _ = await ScheduleBook(store, settings).add_cron("nightly", "0 2 * * *")
        queue = engine.bus.subscribe()
        when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        scheduler._register(schedule.id, DateTrigger(run_date=when, timezone=UTC), job_id="e2e")

        async def fired() -> Event:
            while (event := await queue.get()).kind != ev.SCHEDULE_FIRED:
                pass
            return event

        event = await asyncio.wait_for(fired(), 10)
        outcome = await asyncio.wait_for(engine.wait("nightly"), 20)
        links = await store.run_link_runs(outcome.run_id)
    assert event.data["scheduled_for"] == when.isoformat()
    assert outcome.run_id == event.run_id
    assert [(link.link, link.exit_code) for link in links] == [("step", 0)]


# ---- after another chain ----------------------------------------------------------------------
async def test_after_schedules_fire_when_the_chain_finishes(rig: Rig) -> None:
    plain = await rig.book.add_after("tests", "build")
    picky = await rig.book.add_after("report", "build", only_all_done=True)
    async with rig.scheduler():
        build = await rig.engine.start_chain("build", origin="test")
        status = (await rig.engine.wait("build")).status
        fired = await rig.next_event(ev.SCHEDULE_FIRED)
        await asyncio.wait_for(rig.engine.wait("tests"), 10)
        skipped = await rig.next_event(ev.SCHEDULE_SKIPPED)
        assert status != "ALL_DONE"
        assert (fired.chain, fired.data["schedule_id"], fired.data["after_run_id"]) == ("tests", plain.id, build)
        assert (skipped.chain, skipped.data["schedule_id"]) == ("report", picky.id)
        assert skipped.data["reason"] == f"build ended {status}, not ALL_DONE"
        # Now the build declares ALL_DONE: both follow.
        def all_done(call: Call) -> LinkResult:
            call.write_status("ALL_DONE")
            return ok()

        rig.runner.script("work", all_done)
        await rig.engine.start_chain("build", origin="test")
        assert (await rig.engine.wait("build")).status == "ALL_DONE"
        started = {(await rig.next_event(ev.SCHEDULE_FIRED)).chain for _ in range(2)}
        assert started == {"tests", "report"}
        await asyncio.wait_for(rig.engine.wait("tests"), 10)
        await asyncio.wait_for(rig.engine.wait("report"), 10)
    assert await rig.runs("tests") == 2 and await rig.runs("report") == 1


async def test_an_interrupted_run_does_not_count_as_finished(rig: Rig) -> None:
    await rig.book.add_after("tests", "build")
    async with rig.scheduler() as scheduler:
        scheduler._on_run_end("build", RunOutcome(1, "INTERRUPTED", "llmauto shut down"))
        await scheduler.settle()
    assert await rig.events(ev.SCHEDULE_FIRED) == [] and await rig.runs("tests") == 0


async def test_after_fires_for_a_run_that_finished_in_another_process(rig: Rig) -> None:
    await rig.book.add_after("tests", "build", only_all_done=True)
    async with rig.scheduler(poll_s=0.02):
        async with Store.open(rig.settings.db_path) as other:  # a foreground `llmauto chain start build`
            run_id, _ = await other.begin_run("build", origin="cli", chat_id=None, requested_by="cli:me",
                                              owner="elsewhere:1:abc", state=ChainState(chain="build"), evs=[])
            await other.finish_run(run_id, ChainState(chain="build"), status="ALL_DONE", reason="done",
                                   evs=[NewEvent(ev.RUN_FINISHED, {"status": "ALL_DONE", "run_status": "ALL_DONE"})])
        fired = await rig.next_event(ev.SCHEDULE_FIRED)
        await asyncio.wait_for(rig.engine.wait("tests"), 10)
    assert (fired.chain, fired.data["after_chain"], fired.data["after_run_id"]) == ("tests", "build", run_id)
