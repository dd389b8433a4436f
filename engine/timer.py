"""The timer: fires the persisted schedules inside `llmauto serve`, with APScheduler 3 doing the timing.

What APScheduler does (`AsyncIOScheduler` on the running loop, one job per enabled cron schedule,
its default AsyncIOExecutor running our coroutine on the loop):
- waiting for the next fire time of each job's trigger, and nothing else wakes us for cron;
- `coalesce=True`: slots that came due together (the machine slept, the loop was blocked) are
  handed over once, the latest;
- `misfire_grace_time` = LLMAUTO_MISSED_RUN_GRACE: a latest slot older than that does not run;
  APScheduler sends EVENT_JOB_MISSED, which we report (`slot_missed`);
- `max_instances=1`: a schedule's next slot while its previous one is still starting is dropped
  (and counted as missed when the next one runs).
APScheduler does not pass the slot to the job function; the EVENT_JOB_SUBMITTED listener notes it
(it runs before the job's task takes its first step), and `_job` takes it from there.

What stays ours, and why:
- The trigger (`CronSpecTrigger`, engine/cron_trigger.py) instead of APScheduler's CronTrigger, whose
  `from_crontab` counts weekdays from Monday (`1-5` is Tuesday to Saturday), ANDs day and weekday,
  and fires a daily 02:30 twice on the fall-back night: cron.py's trigger keeps the README's
  promise that a DST change neither skips nor doubles a run, and agrees with the fire times the
  CLI and the bot show.
- The clock shift (`_ShiftedTrigger`): APScheduler 3.11 reads `datetime.now()` itself (in
  `BaseScheduler._process_jobs` and in the executors' misfire check) and takes no clock. With an
  injected clock (a test's ManualClock) each trigger is placed on the system timeline by the
  difference of the two at start, so APScheduler's timing, coalescing and grace all run on; a
  test sets the clock just before a slot and watches APScheduler fire it. With the system clock
  the shift is zero and the triggers go in unwrapped.
- The claim (`ScheduleBook.claim`, in the store): a slot is handled once, ever, also with a second
  scheduler on the same database, after a restart, or when the catch-up at load and APScheduler
  meet at the same instant. APScheduler's memory job store knows nothing of other processes, and
  a persistent APScheduler job store would be a second copy of the schedules table.
- The catch-up at load (`_catch_up`): APScheduler starts its jobs from now; the slots that passed
  while serve was down are only known from the store (`last_fire`, `armed_at`). The same rule as
  APScheduler's is applied to them: the latest runs once if it is at most `grace_s` old, the
  others (counted back a week at most) are reported in one SCHEDULE_MISSED, never a burst. It is
  done before `__aenter__` returns, so serve's first moments see its outcome.
- The poll (`poll_s`, default 1 s): a schedule added, paused or removed by the CLI in another
  process must reach a running serve at once; SQLite tells no one, so the rows are re-read (a few
  rows) and the jobs follow. In-process writers (the bot) call `refresh()` to make it immediate.
  The same poll reads the RUN_FINISHED events other processes write.
- Overlap (`skip` / `queue`): whether the *chain* is running (here or in another process) is the
  engine's knowledge, not APScheduler's (max_instances counts only its own job). A queued start is
  kept in the store (`schedules.queued_at`) and survives a restart of serve: at start one whose
  chain is free starts at once, one whose run was interrupted waits for the resumed run to end,
  one whose chain runs in another process waits for that run's RUN_FINISHED.
- `after` schedules fire on run ends, which APScheduler has no trigger for: from
  `engine.on_run_end` for runs in this process, and from the RUN_FINISHED events of other
  processes. A run that ends INTERRUPTED (shutdown, crash) did not finish: it neither fires `after`
  schedules nor a queued start.

Firing one slot (`fire`), under one lock so two firings never race each other into `start_chain`:
claim the slot, then `engine.start_chain(origin="schedule")` and SCHEDULE_FIRED; when the chain is
still running `skip` records SCHEDULE_SKIPPED and `queue` keeps one start waiting (at most one per
chain), told as SCHEDULE_QUEUED; any other reason it cannot start is a SCHEDULE_SKIPPED too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from apscheduler.events import (
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from engine import event_types as et
from engine import events as ev
from engine.clock import Clock, SystemClock
from engine.cron import ScheduleSpec, iter_fires
from engine.engine import Engine
from engine.errors import ChainBusy, LlmautoError
from engine.marble import RunOutcome
from engine.schedule_book import Schedule, ScheduleBook, queued_slot
from engine.settings import Settings
from engine.states import RunStatus
from engine.store import NewEvent

log = logging.getLogger(__name__)

MISSED_LOOKBACK = timedelta(days=7)  # missed slots are counted this far back at most ("more" beyond)
MAX_SLOTS_IN_LOOKBACK = int(MISSED_LOOKBACK.total_seconds() // 60)  # cron fires at most once a minute


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
        self._aps = AsyncIOScheduler(timezone=UTC, job_defaults={
            "coalesce": True,  # slots due together (the machine slept) are handed over once, the latest
            "misfire_grace_time": aps_grace(self.grace_s),  # older than that: EVENT_JOB_MISSED, no run
            "max_instances": 1,  # a slot while this schedule's previous one is still starting is dropped
        })
        self._aps.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        self._aps.add_listener(self._on_missed, EVENT_JOB_MISSED)
        self._jobs: dict[int, tuple[str | None, str | None]] = {}  # schedule id -> _signature
        self._job_schedule: dict[str, int] = {}  # APScheduler job id -> schedule id
        self._due_at: dict[str, datetime] = {}  # APScheduler job id -> the slot it was submitted for
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
        """One APScheduler job for a schedule (tests and the bench add a DateTrigger one under
        another id)."""
        if self._offset:
            trigger = _ShiftedTrigger(trigger, self._offset)
        job_id = job_id or _job_id(schedule_id)
        self._job_schedule[job_id] = schedule_id
        self._aps.add_job(
            self._job, trigger=trigger, args=[job_id], id=job_id, name=f"schedule #{schedule_id}",
            replace_existing=True,
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

    def _on_submitted(self, event: JobSubmissionEvent) -> None:
        """APScheduler hands a due job to its executor: note the slot (coalesced: the latest) for
        `_job`, which APScheduler calls without it. The listener runs before the job's task does."""
        self._due_at[event.job_id] = event.scheduled_run_times[-1] + self._offset

    async def _job(self, job_id: str) -> None:
        """APScheduler: a slot is due and within its misfire grace."""
        slot = self._due_at.pop(job_id, None)
        schedule_id = self._job_schedule.get(job_id)
        if slot is not None and schedule_id is not None and self._state == "running":
            # Our task (settle() waits for it, aclose() cancels it); awaited so that max_instances
            # counts this slot until its chain has started. Its failure is logged once, by _task_done.
            await asyncio.wait([self._spawn(self.slot_due(schedule_id, slot), f"schedule-{schedule_id}-due")])

    def _on_missed(self, event: JobExecutionEvent) -> None:
        """APScheduler: the (latest) due slot is older than the misfire grace; it did not run."""
        self._due_at.pop(event.job_id, None)
        schedule_id = self._job_schedule.get(event.job_id)
        if schedule_id is not None and self._state == "running":
            slot = event.scheduled_run_time + self._offset
            self._spawn(self.slot_missed(schedule_id, slot), f"schedule-{schedule_id}-missed")

    async def slot_due(self, schedule_id: int, slot: datetime) -> None:
        """Run a due slot; the slots before it that nobody handled (the machine slept through
        them: APScheduler coalesced them into this one) are reported as missed first."""
        earlier, more = await self._unhandled(schedule_id, slot, inclusive=False)
        await self._fire(schedule_id, slot, missed=len(earlier), first_missed=earlier[0] if earlier else None, more=more)

    async def slot_missed(self, schedule_id: int, slot: datetime) -> None:
        """Report a slot APScheduler found too late, with the unhandled ones before it."""
        slots, more = await self._unhandled(schedule_id, slot, inclusive=True)
        slots = slots or [slot]
        await self._report_missed(schedule_id, slots[-1], count=len(slots), first=slots[0], more=more)

    async def _unhandled(self, schedule_id: int, until: datetime, *, inclusive: bool) -> tuple[list[datetime], bool]:
        """The schedule's slots after the last one handled, up to `until`, and whether more lie
        beyond MISSED_LOOKBACK."""
        schedule = await self._current(schedule_id)
        try:
            spec = None if schedule is None else schedule.spec()
        except LlmautoError:
            spec = None
        if schedule is None or spec is None:
            return [], False
        return _slots_since(spec, schedule.counts_from(), until, inclusive=inclusive)

    async def _catch_up(self, schedule: Schedule, spec: ScheduleSpec) -> None:
        """Slots that passed while no scheduler ran: the latest once (within grace), the rest told."""
        now = self.clock.now()
        slots, more = _slots_since(spec, schedule.counts_from(), now, inclusive=True)
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
        if status == RunStatus.INTERRUPTED:  # not finished: a queued start waits for the resumed run
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
            if claimed.only_all_done and status != RunStatus.ALL_DONE:
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
                status = str(et.RunFinished.from_data(event.data).run_status or run.status)
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

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("scheduler task %s failed", task.get_name(), exc_info=task.exception())


def aps_grace(grace_s: float) -> int:
    """LLMAUTO_MISSED_RUN_GRACE as APScheduler's misfire_grace_time, which must be a whole number
    of seconds above zero: a grace of 0 ("never catch up") still lets a slot run that APScheduler
    hands over a moment late, as it always does."""
    return max(1, math.ceil(grace_s))


def _slots_since(spec: ScheduleSpec, since: datetime, until: datetime, *, inclusive: bool) -> tuple[list[datetime], bool]:
    """Fire times in (since, until] (or (since, until)), looking back MISSED_LOOKBACK at most.
    One pass that stops at `until`: a daily schedule has a handful of slots in a week, not the
    10,081 a minutely one may have (computing those would hold the loop for a quarter of a
    second per schedule)."""
    more = since < until - MISSED_LOOKBACK
    if more:  # a month of minutely slots says nothing more than a week of them
        since = until - MISSED_LOOKBACK
    fires = itertools.islice(iter_fires(spec, since), MAX_SLOTS_IN_LOOKBACK + 1)
    slots = list(itertools.takewhile(lambda t: t <= until if inclusive else t < until, fires))
    return slots, more


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min"

