"""The scheduler: starts chains from the persisted schedules, inside `llmauto serve`.

APScheduler 3 (`AsyncIOScheduler`) keeps the time: one job per enabled cron schedule, with the
trigger engine/cron.py builds (DST handled there). APScheduler reads the system time; with another
clock (a test's ManualClock) its timeline is shifted to that clock's time at start, running on in
real time, so a test can set the clock just before a slot and watch APScheduler fire it. The store stays the source of truth: the rows
are read at start and re-read every `poll_s` (a few rows: cheaper than being clever), so a schedule
added, paused or removed by the CLI in another process takes effect within a second; in-process
writers (the bot) call `refresh()` to make it immediate.

Firing one slot (`fire`), under one lock so two firings never race each other into `start_chain`:
 1. claim the slot in the store (`ScheduleBook.claim`): a slot is handled once, ever, even with a
    second scheduler on the same database or a catch-up racing APScheduler at the same instant;
 2. `engine.start_chain(origin="schedule")`, then SCHEDULE_FIRED; when the chain is still running,
    `skip` records SCHEDULE_SKIPPED with the reason and `queue` keeps one start waiting for the
    run's end (at most one per chain: never a burst), told as SCHEDULE_QUEUED; any other reason it
    cannot start (invalid chain, store trouble) is a SCHEDULE_SKIPPED too, so the chat is told.

A queued start is kept in the store (`schedules.queued_at`), so it survives a restart of serve: at
start the waiting starts are loaded; one whose chain is free starts at once (its run ended while
serve was down), one whose run was interrupted waits for the resumed run to end, one whose chain
runs in another process waits for that run's RUN_FINISHED.

Missed firings (serve was down, or the machine slept): when a schedule is loaded, and when a job
comes due late, the slots since the last one handled (or since it was added or resumed) are
counted. The most recent one runs once if it is at most `grace_s` old (LLMAUTO_MISSED_RUN_GRACE,
default 1 h); the others are reported in one SCHEDULE_MISSED event with their number.

`after` schedules fire from `engine.on_run_end` for runs in this process, and from the
RUN_FINISHED events other processes write (a foreground `llmauto chain start`). A run that ends
INTERRUPTED (shutdown, crash) did not finish: it neither fires `after` schedules nor a queued start
(which keeps waiting for the resumed run).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from apscheduler.executors.base import BaseExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from engine import events as ev
from engine.clock import Clock, SystemClock
from engine.cron import ScheduleSpec, iter_fires
from engine.engine import Engine
from engine.errors import ChainBusy, LlmautoError
from engine.marble import RunOutcome
from engine.schedule_book import Schedule, ScheduleBook, queued_slot
from engine.settings import Settings
from engine.store import NewEvent

log = logging.getLogger(__name__)

MISSED_LOOKBACK = timedelta(days=7)  # missed slots are counted this far back at most ("more" beyond)
MAX_SLOTS_IN_LOOKBACK = int(MISSED_LOOKBACK.total_seconds() // 60)  # cron fires at most once a minute


class _OnLoopExecutor(BaseExecutor):  # type: ignore[misc]
    """Calls a due job's function on the event loop with the due times appended, instead of
    APScheduler running it: the Scheduler owns (and awaits) the tasks it starts, and learns which
    slot is due. (`_do_submit_job` is APScheduler 3's extension point for executors.)"""

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        job.func(*job.args, list(run_times))
        # Outside submit_job's bookkeeping, which counts the instance after this returns.
        asyncio.get_running_loop().call_soon(self._run_job_success, job.id, [])


class _ShiftedTrigger(BaseTrigger):  # type: ignore[misc]
    """A trigger answering in the scheduler clock's time, placed on APScheduler's (system) time."""

    def __init__(self, inner: Any, offset: timedelta) -> None:
        self.inner = inner
        self.offset = offset  # clock time - system time

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        previous = None if previous_fire_time is None else previous_fire_time + self.offset
        fire = self.inner.get_next_fire_time(previous, now + self.offset)
        return None if fire is None else fire - self.offset  # type: ignore[no-any-return]

    def __str__(self) -> str:
        return f"{self.inner} shifted by {self.offset}"


def _job_id(schedule_id: int) -> str:
    return f"schedule-{schedule_id}"


def _signature(schedule: Schedule) -> tuple[str | None, str | None]:
    """What a registered job depends on; anything else is read from the row at fire time."""
    return (schedule.expression, schedule.tz)


class Scheduler:
    """Fires the schedules of one home; `async with Scheduler(settings, engine):` inside serve."""

    def __init__(
        self, settings: Settings, engine: Engine, *, clock: Clock | None = None,
        grace_s: float | None = None, poll_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = engine.store
        self.book = ScheduleBook(engine.store, settings)
        self.clock = clock or engine.clock
        self.grace_s = settings.missed_run_grace_s if grace_s is None else grace_s
        self.poll_s = poll_s
        self._aps = AsyncIOScheduler(
            timezone=UTC,
            executors={"default": _OnLoopExecutor()},
            # Every due slot reaches us (no coalescing, no misfire drop): `_due` applies the grace.
            job_defaults={"coalesce": False, "max_instances": 1, "misfire_grace_time": None},
        )
        self._jobs: dict[int, tuple[str | None, str | None]] = {}  # schedule id -> _signature
        self._queued: dict[str, tuple[int, datetime]] = {}  # chain -> (schedule id, slot) waiting
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fire_lock = asyncio.Lock()
        self._refresh_lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self._data_version = 0
        self._event_cursor = 0
        self._state = "new"  # new | running | closed
        self._offset = timedelta(0)  # the clock's time minus the system's, fixed at start

    # ---- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> Scheduler:
        if self._state != "new":
            raise LlmautoError("a Scheduler runs once; make a new one")
        self._state = "running"
        if not isinstance(self.clock, SystemClock):
            self._offset = self.clock.now() - datetime.now(UTC)
        try:
            self._event_cursor = await self.store.last_event_id()
            self._data_version = await self.store.data_version()
            self.engine.on_run_end.append(self._on_run_end)
            self._aps.start()
            await self._load_queued()
            await self.refresh()  # loads the rows, catches up missed slots, registers the jobs
        except BaseException:
            await self.aclose()
            raise
        self._poller = asyncio.create_task(self._poll_forever(), name="scheduler-poller")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop firing: remove the run-end hook, stop APScheduler, cancel and await our tasks."""
        if self._state == "closed":
            return
        self._state = "closed"
        with contextlib.suppress(ValueError):
            self.engine.on_run_end.remove(self._on_run_end)
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._aps.running:
            self._aps.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler shuts down in a loop callback: let it run
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._queued.clear()

    # ---- loading -------------------------------------------------------------------------
    async def _load_queued(self) -> None:
        """The starts that were waiting when serve stopped: start those whose chain is free now."""
        interrupted = set(await self.engine.interrupted_chains())
        for schedule in await self.book.list():
            slot = queued_slot(schedule)
            if slot is None:
                continue
            if not schedule.enabled or schedule.chain in self._queued:  # at most one per chain
                await self.book.unqueue(schedule.id)
                continue
            self._queued[schedule.chain] = (schedule.id, slot)
            if schedule.chain not in interrupted:
                self._spawn(self._start_queued(schedule.chain, None), f"queued-{schedule.chain}")

    async def refresh(self) -> None:
        """Re-read the schedules now: register new and resumed ones (after catching up what they
        missed), drop removed and paused ones."""
        async with self._refresh_lock:
            if self._state != "running":
                return
            wanted = {s.id: s for s in await self.book.list() if s.kind == "cron" and s.enabled}
            for schedule_id, signature in list(self._jobs.items()):
                current = wanted.get(schedule_id)
                if current is None or _signature(current) != signature:
                    with contextlib.suppress(JobLookupError):
                        self._aps.remove_job(_job_id(schedule_id))
                    del self._jobs[schedule_id]
            for schedule_id, schedule in wanted.items():
                if schedule_id in self._jobs:
                    continue
                try:
                    spec = schedule.spec()
                    assert spec is not None
                    trigger = spec.trigger()
                except LlmautoError as exc:  # a row written by hand, or by another version
                    log.warning("schedule #%s cannot be used: %s", schedule_id, exc)
                    self._jobs[schedule_id] = _signature(schedule)
                    continue
                await self._catch_up(schedule, spec)
                self._register(schedule_id, trigger)
                self._jobs[schedule_id] = _signature(schedule)

    def _register(self, schedule_id: int, trigger: Any, *, job_id: str | None = None) -> None:
        """One APScheduler job for a schedule (tests add a DateTrigger one under another id)."""
        if self._offset:
            trigger = _ShiftedTrigger(trigger, self._offset)
        self._aps.add_job(
            self._due, trigger=trigger, args=[schedule_id], id=job_id or _job_id(schedule_id),
            name=f"schedule #{schedule_id}", replace_existing=True,
        )

    def next_run_time(self, schedule_id: int) -> datetime | None:
        """When APScheduler will fire this schedule next, in the clock's time (None: not registered)."""
        job = self._aps.get_job(_job_id(schedule_id))
        return None if job is None or job.next_run_time is None else job.next_run_time + self._offset  # type: ignore[no-any-return]

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.refresh()
                version = await self.store.data_version()
                if version != self._data_version:  # another process committed something
                    self._data_version = version
                    await self._foreign_run_ends()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler poller")

    # ---- firing --------------------------------------------------------------------------
    async def fire(self, schedule_id: int, scheduled_for: datetime) -> int | None:
        """Handle one slot of a schedule: start its chain, or record why not.
        Returns the run id, or None when it did not start (skipped, queued, already handled)."""
        return await self._fire(schedule_id, scheduled_for)

    def _due(self, schedule_id: int, run_times: Sequence[datetime] = ()) -> None:
        """APScheduler: slots of a job are due (more than one after the machine slept). The
        executor appends `run_times`; the default only satisfies APScheduler's signature check."""
        if run_times:
            slots = [t + self._offset for t in run_times]
            self._spawn(self._due_slots(schedule_id, slots), f"schedule-{schedule_id}-due")

    async def _due_slots(self, schedule_id: int, run_times: Sequence[datetime]) -> None:
        latest = run_times[-1]
        if (self.clock.now() - latest).total_seconds() <= self.grace_s:
            await self._fire(schedule_id, latest, missed=len(run_times) - 1, first_missed=run_times[0])
        else:
            await self._report_missed(schedule_id, latest, count=len(run_times), first=run_times[0])

    async def _catch_up(self, schedule: Schedule, spec: ScheduleSpec) -> None:
        """Slots that passed while no scheduler ran: the latest once (within grace), the rest told."""
        now = self.clock.now()
        since = schedule.counts_from()
        more = since < now - MISSED_LOOKBACK
        if more:  # a month of minutely slots says nothing more than a week of them
            since = now - MISSED_LOOKBACK
        # One pass over the window, stopping at now: a daily schedule has a handful of slots in
        # it, not the 10,081 a minutely one may have (computing those would hold the loop for a
        # quarter of a second per schedule at every start).
        slots = list(itertools.takewhile(lambda t: t <= now, itertools.islice(iter_fires(spec, since), MAX_SLOTS_IN_LOOKBACK + 1)))
        if not slots:
            return
        latest, first, count = slots[-1], slots[0], len(slots)
        if (now - latest).total_seconds() <= self.grace_s:
            await self._fire(schedule.id, latest, missed=count - 1, first_missed=first, more=more, late=True)
        else:
            await self._report_missed(schedule.id, latest, count=count, first=first, more=more)

    async def _fire(
        self, schedule_id: int, slot: datetime, *, missed: int = 0, first_missed: datetime | None = None,
        more: bool = False, late: bool = False,
    ) -> int | None:
        async with self._fire_lock:
            schedule = await self.book.claim(schedule_id, slot)
            if schedule is None:
                return None
            if missed > 0:
                await self._missed_event(schedule, missed, first_missed or slot, more)
            extra: dict[str, Any] = {}
            if late:
                extra["late_s"] = round((self.clock.now() - slot).total_seconds(), 1)
            return await self._launch(schedule, slot, extra)

    async def _report_missed(
        self, schedule_id: int, latest: datetime, *, count: int, first: datetime, more: bool = False,
    ) -> None:
        async with self._fire_lock:
            schedule = await self.book.claim(schedule_id, latest)
            if schedule is None:
                return
            await self._missed_event(schedule, count, first, more)
            await self.book.record_fire(
                schedule.id, when=latest, run_id=None,
                outcome=f"missed {count}{'+' if more else ''} firing{'s' if count != 1 else ''} "
                        f"(more than {_minutes(self.grace_s)} late)",
            )

    async def _launch(self, schedule: Schedule, slot: datetime, extra: Mapping[str, Any]) -> int | None:
        """Start the schedule's chain now (the slot is claimed), or skip or queue it."""
        chain = schedule.chain
        chat_id = schedule.chat_id or self.settings.chat_id
        try:
            if self.engine.is_running_here(chain):
                raise ChainBusy(f"{chain} is still running")
            run_id = await self.engine.start_chain(
                chain, origin="schedule", chat_id=chat_id, requested_by=f"schedule #{schedule.id}",
            )
        except ChainBusy as exc:
            if extra.get("queued"):  # a waiting start found the chain busy again: it keeps waiting
                self._queued.setdefault(chain, (schedule.id, slot))
                return None
            if schedule.overlap == "queue" and chain not in self._queued:
                self._queued[chain] = (schedule.id, slot)
                await self.book.queue(schedule.id, when=slot, outcome=f"queued: {exc}; starts when that run ends")
                await self._emit(schedule, None, ev.SCHEDULE_QUEUED, slot, {**extra, "reason": str(exc)})
                return None
            reason = f"{exc} (a start is already queued)" if chain in self._queued else str(exc)
            await self._skipped(schedule, slot, reason, extra)
            return None
        except LlmautoError as exc:
            if extra.get("queued"):
                await self.book.unqueue(schedule.id)
            await self._skipped(schedule, slot, str(exc), extra)
            return None
        if extra.get("queued"):
            await self.book.unqueue(schedule.id)
        await self._emit(schedule, run_id, ev.SCHEDULE_FIRED, slot, extra)
        await self.book.record_fire(schedule.id, when=slot, outcome=f"started run #{run_id}", run_id=run_id)
        return run_id

    async def _skipped(self, schedule: Schedule, slot: datetime, reason: str, extra: Mapping[str, Any]) -> None:
        await self._emit(schedule, None, ev.SCHEDULE_SKIPPED, slot, {**extra, "reason": reason})
        await self.book.record_fire(schedule.id, when=slot, outcome=f"skipped: {reason}", run_id=None)

    async def _missed_event(self, schedule: Schedule, count: int, first: datetime, more: bool) -> None:
        await self._emit(schedule, None, ev.SCHEDULE_MISSED, first, {
            "missed": count, "more": more, "first": first.isoformat(), "until": self.clock.now().isoformat(),
            "reason": "llmauto was not running (or the machine slept) at those times",
            "grace_s": self.grace_s,
        })

    async def _emit(
        self, schedule: Schedule, run_id: int | None, kind: str, slot: datetime, extra: Mapping[str, Any],
    ) -> None:
        data: dict[str, Any] = {
            "schedule_id": schedule.id, "chain": schedule.chain, "kind": schedule.kind,
            "expression": schedule.expression, "original": schedule.original, "tz": schedule.tz,
            "after_chain": schedule.after_chain, "chat_id": schedule.chat_id or self.settings.chat_id,
            "run_id": run_id, "scheduled_for": slot.isoformat(), **extra,
        }
        for event in await self.store.add_events(schedule.chain, run_id, [NewEvent(kind, data)]):
            self.engine.bus.publish(event)

    # ---- run ends: queued starts and `after` schedules ------------------------------------
    def _on_run_end(self, chain: str, outcome: RunOutcome) -> None:
        """engine.on_run_end (sync, inside the ending run's task): continue in a task of ours."""
        if self._state == "running":
            self._spawn(self._run_ended(chain, outcome.run_id, outcome.status), f"after-{chain}")

    async def _run_ended(self, chain: str, run_id: int, status: str) -> None:
        if status == "INTERRUPTED":  # not finished: a queued start waits for the resumed run
            return
        await asyncio.sleep(0)  # let the ending run's task finish, so the chain is free here
        await self._start_queued(chain, run_id)
        for schedule in await self.book.list():
            if schedule.kind == "after" and schedule.enabled and schedule.after_chain == chain:
                await self._fire_after(schedule, run_id, status)

    async def _start_queued(self, chain: str, behind_run: int | None) -> None:
        """Start the chain's waiting start, if any (it keeps waiting when the chain is busy)."""
        waiting = self._queued.pop(chain, None)
        if waiting is None:
            return
        schedule_id, slot = waiting
        async with self._fire_lock:
            schedule = await self._current(schedule_id)
            if schedule is None or not schedule.enabled or schedule.queued_at is None:
                if schedule is not None:
                    await self.book.unqueue(schedule_id)
                return
            extra: dict[str, Any] = {"queued": True, "queued_behind_run": behind_run}
            await self._launch(schedule, slot, extra)

    async def _fire_after(self, schedule: Schedule, run_id: int, status: str) -> None:
        now = self.clock.now()
        extra = {"after_run_id": run_id, "after_status": status}
        async with self._fire_lock:
            claimed = await self.book.claim(schedule.id, now, strict=False)
            if claimed is None:
                return
            if claimed.only_all_done and status != "ALL_DONE":
                await self._skipped(claimed, now, f"{claimed.after_chain} ended {status}, not ALL_DONE", extra)
                return
            await self._launch(claimed, now, extra)

    async def _foreign_run_ends(self) -> None:
        """RUN_FINISHED events written by other processes (their runs do not call on_run_end)."""
        while True:
            events = await self.store.events_after(self._event_cursor, limit=500)
            if not events:
                return
            self._event_cursor = events[-1].id
            for event in events:
                if event.kind != ev.RUN_FINISHED or event.run_id is None or event.chain is None:
                    continue
                run = await self.store.run(event.run_id)
                if run is None or run.owner == self.engine.owner:
                    continue
                status = str(event.data.get("run_status") or run.status)
                self._spawn(self._run_ended(event.chain, event.run_id, status), f"after-{event.chain}")

    async def _current(self, schedule_id: int) -> Schedule | None:
        try:
            return await self.book.get(schedule_id)
        except LlmautoError:
            return None

    # ---- tasks ---------------------------------------------------------------------------
    async def settle(self) -> None:
        """Wait until the work the scheduler set off (fires, queued starts, `after` triggers) is
        done, including what that work set off in turn."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("scheduler task %s failed", task.get_name(), exc_info=task.exception())


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min"

