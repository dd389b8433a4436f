"""What a remote claude link needs from serve while it runs (issue #15): a person's answer to its
permission questions, and its live progress on serve's card.

Questions. In the embedded mode the runner hands each `can_use_tool` request to the run's
`ApprovalDesk`. On a worker, `RelayDesk` stands in for it: the request (with the worker's cwd) is
a row of `llmauto_link_asks` (NOTIFY), and the worker waits for the answer row (LISTEN, polled as
a fallback); the link's kill event (serve's stop-now, the worker's shutdown) ends the wait with a
deny. On serve, `RelayedAsks` picks up the requests of the job it waits for and answers each
through serve's own desk, so the rules, the question with its buttons, WAITING, the timeout,
"always allow" and the approval events are the embedded ones. A worker lost mid-question: the
open asks are cancelled, their requests expire, the job is retried as any other.

Progress. The worker's progress events (its own bus) go out as NOTIFYs, at most one per
`PROGRESS_EVERY_S` per link (the latest one wins; a refusal goes at once); serve republishes them
on its bus and in the link's `LiveLink`. A NOTIFY nobody hears is lost, which progress may be.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from engine import events as ev
from engine import queue_db
from engine.approval_desk import ApprovalDesk
from engine.chains import LinkDef
from engine.event_types import LiveProgress
from engine.events import Event
from engine.link import Attempt, LinkContext, LiveLink
from engine.linkjob import JobKey
from engine.queue_db import Ask, QueueDb
from engine.runner import PermissionHandler
from engine.statefiles import ChainFiles
from engine.store import Store
from engine.stream import Progress

log = logging.getLogger(__name__)

ANSWER_POLL_S = 1.0  # the worker reads its answer at least this often (a missed NOTIFY costs this)
PROGRESS_EVERY_S = 0.25  # at most 4 progress updates a second per remote link
TEXT_MAX = 500  # progress texts are cut to this (a NOTIFY payload is under 8000 bytes)
STOPPED = {"behavior": "deny", "message": "The link was stopped: denied."}
LOST = "the agent's worker was lost before an answer"


# ---- the worker's side ----------------------------------------------------------------------
class RelayDesk(ApprovalDesk):
    """The desk of a link on a worker: every question goes to serve's desk, through the queue db."""

    def __init__(self, *, db: QueueDb, url: str, key: JobKey, worker: str, kill: asyncio.Event, store: Store,
                 chain: str, files: ChainFiles) -> None:
        async def killed() -> None:
            await kill.wait()

        super().__init__(store=store, chain=chain, files=files, publish=lambda events: None,
                         stopping=kill.is_set, changed=killed, on_timeout_stop=lambda reason: None)
        self.db, self.url, self.key, self.worker, self.kill = db, url, key, worker, kill
        self._seq = 0

    def handler(self, link: LinkDef, *, round_no: int, link_run_id: Callable[[], int | None],
                cwd: str) -> PermissionHandler:
        async def handle(request: Mapping[str, object]) -> dict[str, object]:
            return await self.ask(dict(request), cwd)

        return handle

    async def ask(self, request: dict[str, Any], cwd: str) -> dict[str, object]:
        """Store the question, then wait for serve's answer (or the link's kill: deny)."""
        self._seq += 1
        conn = await queue_db.connect(self.url)
        answered = asyncio.Event()
        try:
            await conn.execute(f"LISTEN {queue_db.ANSWER_CHANNEL}")
            ask_id = await self.db.add_ask(self.key, seq=self._seq, worker=self.worker, request=request, cwd=cwd)
            listener = asyncio.create_task(_wake_on(conn, str(ask_id), answered))
            try:
                while True:
                    answered.clear()  # before the read: an answer after it still wakes the wait
                    answer = await self.db.ask_answer(ask_id)
                    if answer is not None:
                        return answer
                    if self.kill.is_set():
                        await self.db.answer_ask(ask_id, STOPPED)
                        return dict(STOPPED)
                    await _first(answered.wait(), self.kill.wait(), timeout_s=ANSWER_POLL_S)
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await listener
        finally:
            await conn.close()


async def _wake_on(conn: Any, payload: str, event: asyncio.Event) -> None:
    async for note in conn.notifies():
        if note.payload == payload:
            event.set()


async def _first(*waits: Awaitable[Any], timeout_s: float) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def relay_progress(events: asyncio.Queue[Event], send: Callable[[dict[str, Any]], Awaitable[None]], *,
                         every_s: float = PROGRESS_EVERY_S) -> None:
    """Send the progress events of `events`, at most one per `every_s` (the latest; a refusal at
    once), until cancelled. A failed send is dropped: progress never breaks a link."""
    loop = asyncio.get_running_loop()
    last = float("-inf")
    held: dict[str, Any] | None = None
    while True:
        timeout = None if held is None else max(0.0, last + every_s - loop.time())
        event: Event | None
        try:
            event = await asyncio.wait_for(events.get(), timeout)
        except TimeoutError:
            event = None
        if event is not None:
            if event.kind != ev.PROGRESS:
                continue
            held = {k: (v[:TEXT_MAX] if isinstance(v, str) else v) for k, v in event.data.items()}
            if held.get("kind") != "refused" and loop.time() < last + every_s:
                continue
        if held is not None:
            last, data, held = loop.time(), held, None
            try:
                await send(data)
            except Exception as exc:  # a nicety; the link goes on
                log.debug("progress not relayed: %s", exc)


# ---- serve's side ---------------------------------------------------------------------------
class RelayedAsks:
    """serve's side of one remote attempt: each question its agent asks is answered by serve's desk."""

    def __init__(self, db: QueueDb, ctx: LinkContext, at: Attempt, live: LiveLink, key: JobKey) -> None:
        self.db, self.ctx, self.at, self.live, self.key = db, ctx, at, live, key
        self._tasks: dict[int, asyncio.Task[None]] = {}

    async def poll(self) -> None:
        """Start answering the questions that came in since the last look."""
        for ask in await self.db.pending_asks(self.key):
            if ask.id not in self._tasks:
                self._tasks[ask.id] = asyncio.create_task(self._answer(ask), name=f"relayed-ask-{ask.id}")

    async def _answer(self, ask: Ask) -> None:
        handler = self.ctx.desk.handler(self.at.link, round_no=self.at.round_no, cwd=ask.cwd or str(self.ctx.workdir),
                                        link_run_id=lambda: self.live.link_run_id)
        try:
            answer = await handler(ask.request)
        except Exception as exc:  # fail closed, as the runner does
            answer = {"behavior": "deny", "message": f"llmauto could not decide: {exc}"}
        await self.db.answer_ask(ask.id, answer)

    async def end(self, why: str = LOST) -> None:
        """The attempt is over or its worker gone: questions still open are cancelled, their
        requests expire (the chat's question loses its buttons) and the rows say denied."""
        open_ids = [ask_id for ask_id, task in self._tasks.items() if not task.done()]
        for ask_id in open_ids:
            self._tasks[ask_id].cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks = {k: t for k, t in self._tasks.items() if k not in open_ids}
        if not open_ids:
            return
        await self.ctx.desk.expire_all(why, link_run_id=self.live.link_run_id)
        for ask_id in open_ids:
            with contextlib.suppress(Exception):
                await self.db.answer_ask(ask_id, {"behavior": "deny", "message": f"Expired: {why}."})


def show_progress(ctx: LinkContext, live: LiveLink, link: str, data: Mapping[str, Any]) -> None:
    """A worker's progress update as serve's own: in the link's LiveLink and on serve's bus."""
    turns = data.get("turns")
    progress = Progress(str(data.get("kind") or "tool"), tool=data.get("tool"), target=data.get("target"),
                        turns=turns if isinstance(turns, int) else 0, detail=str(data.get("detail") or ""))
    live.progress = progress
    ctx.bus.publish(Event(id=0, kind=ev.PROGRESS, chain=ctx.chain.name, run_id=ctx.run_id, ts="", data=LiveProgress(
        link=link, kind=progress.kind, tool=progress.tool, target=progress.target, turns=progress.turns,
        detail=progress.detail).to_data()))
