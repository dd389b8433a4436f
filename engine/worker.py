"""`llmauto worker`: runs links on this host for the distributed mode (issue #15).

A worker is a procrastinate worker with one task, `llmauto.run_link`. For each job it writes the
link's input handoff and status into its own `state/<chain>/`, runs the attempt exactly as the
embedded mode does (`run_attempt`: same runner, watchdog, budget, permissions; its own SQLite
store, state/worker.db, keeps the local link record and claude sessions), and commits the result with the output
handoff and status in one INSERT keyed by (run, round, link index, attempt): a redelivered job
finds its key committed and does nothing.

Caps: `--max-links` is procrastinate's concurrency (this worker); the account-wide cap
(LLMAUTO_MAX_PARALLEL_LINKS) is an advisory lock per agent (engine/account_slots.py).
Stop, stop-now: serve aborts the job; procrastinate cancels the job's task (LISTEN/NOTIFY, with a
polling fallback), which kills the agent's process group through the link's kill event; the result
(`killed`) is still committed, so serve learns the outcome the same way as any other.
Approvals and progress: a claude link with approval rules asks serve (engine/relay.py's
`RelayDesk`: its questions reach the person through serve's desk); the link's progress events go
to serve as NOTIFYs (throttled).
Liveness: procrastinate's own heartbeat (its `procrastinate_workers` table) decides a worker is
lost; our `llmauto_workers` row (host, queues, links running) is for views.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from procrastinate import App, JobContext, PsycopgConnector
from procrastinate.job_context import AbortReason
from procrastinate.schema import SchemaManager
from procrastinate.worker import Worker

from engine.account_slots import AccountSlots
from engine.chains import ChainDef, load_chain
from engine.dist_settings import DistSettings
from engine.errors import LlmautoError
from engine.events import EventBus
from engine.link import Attempt, LinkContext, LiveLink, run_attempt
from engine.linkjob import ANY_QUEUE, TASK_NAME, LinkJob, Outcome
from engine.queue_db import QueueDb
from engine.relay import RelayDesk, relay_progress
from engine.runner import AgentRunner, BudgetedRunner, SubprocessRunner
from engine.settings import Settings
from engine.statefiles import ChainFiles
from engine.store import Store
from engine.stream import ErrorClass, LinkResult

log = logging.getLogger(__name__)

ABORT_POLL_S = 0.5  # procrastinate's fallback when an abort notification is missed


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    name: str
    queues: tuple[str, ...] = ()  # none: ANY_QUEUE (chains that name no runs_on)
    max_links: int = 2

    @property
    def listens(self) -> list[str]:
        """A worker named for queues serves those only (`--queues buildbox,any` for both)."""
        return list(self.queues) or [ANY_QUEUE]


def default_name() -> str:
    return socket.gethostname().split(".")[0] or "worker"


def procrastinate_app(url: str) -> App:
    return App(connector=PsycopgConnector(conninfo=url, min_size=1, max_size=4))


async def prepare(db: QueueDb) -> None:
    """Procrastinate's schema and ours, idempotently (serve and every worker call it on start)."""
    await db.ensure_schema(SchemaManager.get_schema())


class LinkWorker:
    def __init__(self, settings: Settings, dist: DistSettings, options: WorkerOptions, *,
                 runner: AgentRunner | None = None) -> None:
        if dist.queue_url is None:
            raise LlmautoError("llmauto worker needs LLMAUTO_QUEUE_URL (or LLMAUTO_DATABASE_URL): the queue's PostgreSQL")
        self.settings = settings
        self.dist = dist
        self.url: str = dist.queue_url
        self.options = options
        self.runner = runner or SubprocessRunner()
        self.running: dict[int, str] = {}  # procrastinate job id -> "chain/link"
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve jobs until `stop` is set; then let procrastinate stop (running links are aborted,
        uncommitted, and serve queues them again; with LLMAUTO_ON_SHUTDOWN=finish they end first)."""
        # A store of its own (not serve's llmauto.db, which `serve --with-worker` shares the home
        # with): the local record of each attempt and the claude sessions of `continue` links.
        local_db = self.settings.state_dir / "worker.db"
        async with QueueDb.open(self.url) as db, Store.open(local_db, secrets=self.settings.secrets()) as store:
            await prepare(db)
            app = procrastinate_app(self.url)
            handler = _Handler(self, db, store)

            @app.task(name=TASK_NAME, pass_context=True)
            async def run_link(context: JobContext, job: dict[str, Any]) -> None:
                await handler(context, LinkJob.from_json(job))

            async with app.open_async():
                await db.register_worker(self.options.name, socket.gethostname(), self.options.listens,
                                         self.options.max_links)
                worker = Worker(
                    app, queues=self.options.listens, name=self.options.name, concurrency=self.options.max_links,
                    install_signal_handlers=False, update_heartbeat_interval=self.dist.heartbeat_s,
                    stalled_worker_timeout=self.dist.lost_after_s, abort_job_polling_interval=ABORT_POLL_S,
                    fetch_job_polling_interval=1.0,  # jobs are kept: serve reads their status
                    # LLMAUTO_ON_SHUTDOWN: interrupt aborts the running links at once (serve puts
                    # them back in the queue for another worker); finish lets them end first.
                    shutdown_graceful_timeout=0.0 if self.settings.shutdown_kills_links else None,
                )
                working = asyncio.create_task(worker.run(), name="procrastinate-worker")  # type: ignore[no-untyped-call]
                beating = asyncio.create_task(self._heartbeat(db), name="worker-heartbeat")
                self.ready.set()
                waiter = asyncio.create_task(stop.wait())
                await asyncio.wait({waiter, working}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                worker.stop()  # type: ignore[no-untyped-call]
                beating.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beating
                await working
                await db.worker_stopped(self.options.name)

    async def _heartbeat(self, db: QueueDb) -> None:
        while True:
            with contextlib.suppress(Exception):  # a view's nicety; procrastinate's heartbeat decides
                await db.worker_heartbeat(self.options.name, sorted(self.running.values()))
            await asyncio.sleep(self.dist.heartbeat_s)


class _Handler:
    """One job: the input handoff in, the attempt run here, the outcome committed once."""

    def __init__(self, worker: LinkWorker, db: QueueDb, store: Store) -> None:
        self.w = worker
        self.db = db
        self.store = store

    async def __call__(self, context: JobContext, job: LinkJob) -> None:
        job_id = context.job.id or 0
        await self.db.claim(job_id, self.w.options.name)
        if await self.db.outcome(job.key) is not None:
            log.info("job %s (%s) was committed already; nothing to do", job_id, job.key)
            return
        try:
            chain = load_chain(self.w.settings.home, job.chain, settings=self.w.settings)
            link = chain.links[job.key.index]
            if link.name != job.link:
                raise LlmautoError(f"link {job.key.index} of {job.chain} is {link.name} here, not {job.link}: "
                                   "the chain differs between hosts")
        except (LlmautoError, IndexError) as exc:
            failed = LinkResult(error_class=ErrorClass.CRASHED, error_message=f"worker {self.w.options.name}: {exc}")
            await self.db.commit_outcome(job.key, Outcome(result=failed, handoff=job.handoff, status=job.status,
                                                          worker=self.w.options.name))
            return
        self.w.running[job_id] = f"{chain.name}/{link.name}"
        try:
            await self._run(context, chain, job)
        finally:
            self.w.running.pop(job_id, None)

    async def _run(self, context: JobContext, chain: ChainDef, job: LinkJob) -> None:
        files = ChainFiles(self.w.settings.state_dir, chain.name)
        files.ensure()
        if job.handoff is not None:
            files.write_handoff(job.handoff)
        if job.status is not None:
            files.write_status(job.status)
        home = str(self.w.settings.home)
        values = {**job.values, "HOME": home, "BASH_HOME": home, "STATE_DIR": str(files.dir),
                  "HANDOFF": str(files.handoff)}
        link = chain.links[job.key.index]
        attempt = Attempt(link=link, index=job.key.index, round_no=job.key.round_no, model=job.model,
                          prompt=job.localized_prompt(values), values=values, number=job.key.attempt,
                          timeout_s=job.timeout_s)
        kill = asyncio.Event()
        bus = EventBus()  # this attempt's progress, relayed to serve
        desk = RelayDesk(db=self.db, url=self.w.url, key=job.key, worker=self.w.options.name, kill=kill,
                         store=self.store, chain=chain.name, files=files)
        ctx = LinkContext(
            settings=self.w.settings, store=self.store, bus=bus,
            runner=BudgetedRunner(self.w.runner, lambda: job.budget_usd),  # the run's budget, as serve knows it
            slots=AccountSlots(self.w.url, self.w.dist.max_parallel_links), monotonic=time.monotonic,
            chain=chain, run_id=job.key.run_id, kill=kill, desk=desk, publish=_drop,
        )
        relaying = asyncio.create_task(relay_progress(bus.subscribe(), lambda data: self.db.notify_progress(job.key, data)))
        task = asyncio.create_task(run_attempt(ctx, attempt, LiveLink()))
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:  # serve aborted the job (stop now), or this worker stops
            kill.set()
            result = await task
            if context.abort_reason() is AbortReason.USER_REQUEST:
                await self._commit(job, files, result)  # serve waits for it: `killed`
            # else this worker shuts down: nothing committed, serve puts the job back in the queue
            raise
        finally:
            relaying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relaying
        await self._commit(job, files, result)

    async def _commit(self, job: LinkJob, files: ChainFiles, result: LinkResult) -> None:
        outcome = Outcome(result=result, handoff=files.read_handoff().text, status=files.read_status(),
                          worker=self.w.options.name)
        if not await self.db.commit_outcome(job.key, outcome):
            log.warning("%s: another worker committed this attempt first; this result is dropped", job.key)


def _drop(events: Sequence[Any]) -> None:
    """Events of the local record stay local; serve records its own from the outcome."""

