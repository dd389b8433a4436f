"""The distributed mode's `LinkExecutor` (issue #15): serve's side of a link run by a worker.

`MarbleRun` calls `deps.execute(ctx, attempt, live)`; in the embedded mode that is `run_attempt`,
here it is a `RemoteExecutor`: record the link's start in serve's store (as `run_attempt` does),
enqueue a procrastinate job on the chain's `runs_on` queue (or `any`) with everything a worker
needs, wait for the committed outcome, write the output handoff and status into serve's own
`state/<chain>/` and record the end. `_after_link` then reads the files as after a local link, so
the run loop does not know where the agent ran.

While it waits it watches three things: the outcome (woken by NOTIFY at the worker's commit, with
a poll as a fallback), the run's kill event (stop now: the job is aborted; the worker kills the
agent and commits `killed`), and the job's worker's heartbeat (procrastinate's stalled jobs: a
worker silent for LLMAUTO_WORKER_LOST_AFTER_S is lost; a `worker_lost` event tells the chat and
the job goes back to the queue, to run from the same input handoff on another worker).

A claude link with approval rules asks its questions through the queue db: they are answered here,
by serve's own desk (engine/relay.py), while the wait goes on; a lost worker's open questions
expire. The worker's live progress arrives as NOTIFYs and is republished on serve's bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from procrastinate import App
from procrastinate.jobs import Status

from engine import event_types as et
from engine import events as ev
from engine import queue_db
from engine.dist_settings import DistSettings
from engine.link import Attempt, LinkContext, LiveLink, flush_progress
from engine.linkjob import ANY_QUEUE, TASK_NAME, JobKey, LinkJob, Outcome
from engine.queue_db import QueueDb, WorkerRow
from engine.relay import RelayedAsks, show_progress
from engine.runner import BudgetedRunner
from engine.statefiles import ChainFiles
from engine.store import NewEvent
from engine.stream import ErrorClass, LinkResult
from engine.worker import prepare, procrastinate_app

log = logging.getLogger(__name__)

POLL_S = 1.0  # the outcome is looked up at least this often (a missed NOTIFY costs this much)
ENDED = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.ABORTED})


class RemoteExecutor:
    def __init__(self, app: App, db: QueueDb, dist: DistSettings) -> None:
        self.app = app
        self.db = db
        self.dist = dist
        self._waiters: dict[str, asyncio.Event] = {}
        self._progress: dict[str, Callable[[dict[str, Any]], None]] = {}  # job key -> show it
        self._listening: asyncio.Task[None] | None = None

    @classmethod
    @asynccontextmanager
    async def open(cls, dist: DistSettings) -> AsyncIterator[RemoteExecutor]:
        assert dist.queue_url is not None
        async with QueueDb.open(dist.queue_url) as db:
            await prepare(db)
            app = procrastinate_app(dist.queue_url)
            async with app.open_async():
                executor = cls(app, db, dist)
                await executor.abort_orphans()
                listening = asyncio.Event()
                executor._listening = asyncio.create_task(executor._listen(listening), name="link-done-listener")
                await listening.wait()
                try:
                    yield executor
                finally:
                    executor._listening.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await executor._listening

    async def abort_orphans(self) -> int:
        """Jobs left by a serve that died (crash, SIGKILL): nobody waits for them, and the run they
        belong to resumes as a new run (engine recovery) that enqueues its link again. Aborted,
        so their agents stop instead of running twice. (One serve per queue database.)"""
        manager = self.app.job_manager
        orphans = [job.id for status in ("todo", "doing")
                   for job in await manager.list_jobs_async(task=TASK_NAME, status=status) if job.id is not None]
        for job_id in orphans:
            await manager.cancel_job_by_id_async(job_id, abort=True)
        if orphans:
            log.warning("aborted %d link job(s) left by an earlier serve", len(orphans))
        return len(orphans)

    async def _listen(self, ready: asyncio.Event) -> None:
        """Wake the waiter of each committed attempt (NOTIFY sent in the worker's commit) and of
        each relayed question; hand each relayed progress update to its link."""
        assert self.dist.queue_url is not None
        conn = await queue_db.connect(self.dist.queue_url)
        try:
            for channel in (queue_db.DONE_CHANNEL, queue_db.ASK_CHANNEL, queue_db.PROGRESS_CHANNEL):
                await conn.execute(f"LISTEN {channel}")
            ready.set()
            async for note in conn.notifies():
                if note.channel == queue_db.PROGRESS_CHANNEL:
                    self._show(note.payload)
                    continue
                waiter = self._waiters.get(note.payload)
                if waiter is not None:
                    waiter.set()
        finally:
            ready.set()
            await conn.close()

    def _show(self, payload: str) -> None:
        try:
            note = json.loads(payload)
            show = self._progress.get(str(note["key"]))
            if show is not None:
                show(dict(note["progress"]))
        except (ValueError, KeyError, TypeError) as exc:  # a malformed note costs one update
            log.debug("progress note dropped: %s", exc)

    async def __call__(self, ctx: LinkContext, at: Attempt, live: LiveLink) -> LinkResult:
        link = at.link
        files = ChainFiles(ctx.settings.state_dir, ctx.chain.name)
        before, status = files.read_handoff().text, files.read_status()
        model = at.model if link.command is None else "command"
        link_run_id, events = await ctx.store.start_link(
            run_id=ctx.run_id, chain=ctx.chain.name, round_no=at.round_no, index=at.index, link=link.name,
            role=link.role, model=model, attempt=at.number,
            evs=[NewEvent(ev.LINK_STARTED, {
                "link": link.name, "role": link.role, "model": at.model, "round": at.round_no, "index": at.index,
                "attempt": at.number, "command": link.command is not None, "session": None,
                "queue": ctx.chain.runs_on or ANY_QUEUE,
            })],
        )
        live.link_run_id = link_run_id
        ctx.publish(events)
        live.name, live.progress, live.started_mono = link.name, None, ctx.monotonic()
        job = LinkJob(chain=ctx.chain.name, key=JobKey(run_id=ctx.run_id, round_no=at.round_no, index=at.index,
                                                      attempt=at.number, visit=link_run_id),
                      link=link.name, model=at.model, prompt=at.prompt, values=at.values, timeout_s=at.timeout_s,
                      handoff=before, status=status,
                      budget_usd=ctx.runner.budget_left() if isinstance(ctx.runner, BudgetedRunner) else None)
        asks = RelayedAsks(self.db, ctx, at, live, job.key) if link.command is None and link.approval else None
        self._progress[str(job.key)] = lambda data: show_progress(ctx, live, link.name, data)
        flusher = asyncio.create_task(flush_progress(ctx.store, live, link_run_id))  # the tool, for /status
        try:
            outcome = await self._run(ctx, job, asks)
        finally:
            self._progress.pop(str(job.key), None)
            flusher.cancel()
            if asks is not None:
                await asyncio.shield(asks.end("the link ended before an answer"))
            live.name = live.started_mono = None
        if outcome.handoff is not None and outcome.handoff != before:
            files.write_handoff(outcome.handoff)
        if outcome.status is not None and outcome.status != status:
            files.write_status(outcome.status)
        result = outcome.result
        await ctx.store.finish_link(
            link_run_id, status="ended", model=result.model if link.command is None else None,
            error_class=result.error_class.value, error_message=result.error_message,
            duration_s=round(result.duration_s, 3), cost_usd=result.cost_usd, input_tokens=result.input_tokens,
            output_tokens=result.output_tokens, turns=result.turns, session_id=result.session_id,
            exit_code=result.exit_code, excerpt=result.text[-2000:],
        )
        return result

    async def _run(self, ctx: LinkContext, job: LinkJob, asks: RelayedAsks | None) -> Outcome:
        key = str(job.key)
        woken = self._waiters[key] = asyncio.Event()
        current = [await self._defer(ctx, job)]  # the job id now (a worker's shutdown re-defers)
        try:
            return await self._wait(ctx, job, current, woken, asks)
        except asyncio.CancelledError:  # serve stops: the agent must not run on unwatched
            with contextlib.suppress(Exception):
                await asyncio.shield(self.app.job_manager.cancel_job_by_id_async(current[0], abort=True))
            raise
        finally:
            self._waiters.pop(key, None)

    async def _defer(self, ctx: LinkContext, job: LinkJob) -> int:
        deferrer = self.app.configure_task(TASK_NAME, queue=ctx.chain.runs_on or ANY_QUEUE)
        return await deferrer.defer_async(job=job.to_json())  # type: ignore[arg-type]

    async def _wait(self, ctx: LinkContext, job: LinkJob, current: list[int], woken: asyncio.Event,
                    asks: RelayedAsks | None) -> Outcome:
        aborted = False
        loop = asyncio.get_running_loop()
        next_check = loop.time() + self.dist.heartbeat_s
        while True:
            job_id = current[0]
            outcome = await self.db.outcome(job.key)
            if outcome is not None:
                return outcome
            if ctx.kill.is_set() and not aborted:
                aborted = True
                await self.app.job_manager.cancel_job_by_id_async(job_id, abort=True)
            status = await self.app.job_manager.get_job_status_async(job_id)
            if status in ENDED:
                outcome = await self.db.outcome(job.key)
                if outcome is not None:
                    return outcome
                if status is Status.ABORTED and not aborted:  # its worker shut down mid-link
                    if asks is not None:
                        await asks.end()
                    await self._tell_lost(ctx, job, job_id, silent=False)
                    current[0] = await self._defer(ctx, job)  # the same attempt, as a new job
                    continue
                error = ErrorClass.KILLED if aborted else ErrorClass.CRASHED
                return Outcome(result=LinkResult(error_class=error, error_message=f"the job ended {status.value} "
                                                 "without a result"), handoff=None, status=None, worker="")
            if loop.time() >= next_check:
                next_check = loop.time() + self.dist.heartbeat_s
                if await self._retry_if_lost(ctx, job, job_id) and asks is not None:
                    await asks.end()
            woken.clear()
            if asks is not None:  # after the clear: a question asked from now on wakes the wait
                await asks.poll()
            waits = [asyncio.create_task(woken.wait())]
            if not aborted:
                waits.append(asyncio.create_task(ctx.kill.wait()))
            try:
                await asyncio.wait(waits, timeout=min(POLL_S, max(0.05, next_check - loop.time())),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()

    async def _retry_if_lost(self, ctx: LinkContext, job: LinkJob, job_id: int) -> bool:
        """procrastinate's stalled jobs: those of workers silent for LOST_AFTER. Ours goes back to
        its queue (the same job: its id stays). True if it was lost."""
        stalled = await self.app.job_manager.get_stalled_jobs(
            task_name=TASK_NAME, seconds_since_heartbeat=self.dist.lost_after_s)
        lost = next((j for j in stalled if j.id == job_id), None)
        if lost is None:
            return False
        await self._tell_lost(ctx, job, job_id, silent=True)
        await self.app.job_manager.retry_job(lost)
        return True

    async def _tell_lost(self, ctx: LinkContext, job: LinkJob, job_id: int, *, silent: bool) -> None:
        """The job's worker is gone (silent: lost; else it shut down mid-link): the chat is told
        which worker, and which one likely takes the link over."""
        worker = await self.db.claimant(job_id) or "?"
        queue = ctx.chain.runs_on or ANY_QUEUE
        retry_on = pick_worker(await self.db.workers(), queue=queue, not_=worker, lost_after_s=self.dist.lost_after_s)
        event = et.WorkerLost(worker=worker, link=job.link, round=job.key.round_no, retry_on=retry_on or "",
                              silent_s=self.dist.lost_after_s if silent else 0.0).new()
        ctx.publish(await ctx.store.add_events(ctx.chain.name, ctx.run_id, [event]))
        log.warning("worker %s lost during %s/%s; job %d back in queue %s", worker, job.chain, job.link, job_id, queue)


def pick_worker(workers: list[WorkerRow], *, queue: str, not_: str, lost_after_s: float) -> str | None:
    """The worker most likely to take a retried job: alive, serving the queue, least busy."""
    alive = [w for w in workers if not w.stopped and w.age_s < lost_after_s and w.name != not_
             and queue in w.queues and w.running < w.max_links]
    alive.sort(key=lambda w: (w.running, w.name))
    return alive[0].name if alive else None


