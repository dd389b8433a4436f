"""The life of one attempt of one link: what the agent gets (its environment, its argv, its claude
session), the record of its start and end in the store, and the agent process itself, run under the
home-wide cap on agent processes with its progress published live and flushed to the store.

The run loop (engine/marble.py) decides which link runs, retries and what follows; this module only
runs the attempt it is handed, through a narrow `LinkContext`, and returns the result with the id of
its `link_runs` row. It imports nothing from the run loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import event_types as et
from engine import events as ev
from engine.approval_desk import ApprovalDesk
from engine.approvals import Rule
from engine.chains import ChainDef, LinkDef
from engine.claude_cli import agent_env, claude_argv
from engine.events import Event, EventBus
from engine.processes import process_start_token
from engine.prompts import render
from engine.records import Record
from engine.runner import AgentRunner, Invocation, PermissionHandler
from engine.settings import Settings
from engine.store import Store
from engine.stream import LinkResult, Progress

log = logging.getLogger(__name__)

PROGRESS_FLUSH_S = 1.0
FILE_EDITING = frozenset({"Edit", "Write", "MultiEdit", "NotebookEdit"})


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class LinkContext(Record):
    """What an attempt needs from its run: all of it owned elsewhere."""

    settings: Settings
    store: Store
    bus: EventBus
    runner: AgentRunner
    slots: asyncio.Semaphore
    monotonic: Callable[[], float]
    chain: ChainDef
    run_id: int
    kill: asyncio.Event
    desk: ApprovalDesk
    publish: Callable[[Sequence[Event]], None]

    @property
    def workdir(self) -> Path:
        return self.chain.workdir or self.settings.home


@dataclass
class LiveLink:
    """The attempt in progress, as the run's views read it (None fields: none running)."""

    name: str | None = None
    started_mono: float | None = None  # when its agent started (after any wait for a slot)
    progress: Progress | None = None
    link_run_id: int | None = None
    # Set by a run loop that records the attempt's end itself (`Store.finish_link`'s arguments and
    # `ended_at`): `run_attempt` then leaves it in `unfinished` instead of a transaction of its own,
    # and the loop writes it with the link's outcome in one (`Store.commit_link(finished=...)`), or
    # on its own (`record_end`) before anything else is recorded for the link (#14).
    defer_end: bool = False
    unfinished: tuple[int, dict[str, Any]] | None = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Attempt(Record):
    """One attempt to run: which link, on which model, with which prompt and placeholder values."""

    link: LinkDef
    index: int
    round_no: int
    model: str | None
    prompt: str
    values: dict[str, str]
    number: int
    timeout_s: float


async def run_attempt(ctx: LinkContext, at: Attempt, live: LiveLink) -> LinkResult:
    """Record the start, run the agent (under the slots), record the end; `live` follows it."""
    link = at.link
    inv, kind, session_note = await _invocation(ctx, at, live)
    link_run_id, events = await ctx.store.start_link(
        run_id=ctx.run_id, chain=ctx.chain.name, round_no=at.round_no, index=at.index, link=link.name,
        role=link.role, model=at.model if kind == "claude" else "command", attempt=at.number,
        evs=[et.LinkStarted(
            link=link.name, role=link.role, model=at.model, round=at.round_no, index=at.index,
            attempt=at.number, command=kind == "command", session=session_note,
        ).new()],
    )
    live.link_run_id = link_run_id
    ctx.publish(events)
    live.name, live.progress = link.name, None
    flusher = asyncio.create_task(flush_progress(ctx.store, live, link_run_id))
    recorders: list[asyncio.Task[None]] = []

    def on_progress(progress: Progress) -> None:
        live.progress = progress
        ctx.bus.publish(Event(id=0, kind=ev.PROGRESS, chain=ctx.chain.name, run_id=ctx.run_id, ts="", data=et.LiveProgress(
            link=link.name, kind=progress.kind, tool=progress.tool, target=progress.target,
            turns=progress.turns, detail=progress.detail,
        ).to_data()))

    def on_spawn(pid: int) -> None:
        # The agent's pid (and its start time) at once, for crash recovery.
        recorders.append(asyncio.create_task(ctx.store.set_link_process(link_run_id, pid, process_start_token(pid))))

    try:
        async with ctx.slots:
            live.started_mono = ctx.monotonic()
            # Live only (not stored): the agent starts now, which a card that showed the link
            # waiting for a slot wants to know.
            on_progress(Progress("spawned"))
            task = asyncio.create_task(ctx.runner.run(inv, on_progress=on_progress, on_spawn=on_spawn, kill=ctx.kill))
            try:
                result = await asyncio.shield(task)
            except asyncio.CancelledError:
                ctx.kill.set()
                await asyncio.shield(task)
                raise
            finally:
                await asyncio.gather(*recorders, return_exceptions=True)
    finally:
        flusher.cancel()
        live.name = live.started_mono = None
    if link.continue_session and result.session_id and kind == "claude":
        await ctx.store.set_session(ctx.chain.name, link.name, result.session_id, str(ctx.workdir))
    end: dict[str, Any] = dict(
        status="ended", model=result.model if kind == "claude" else None,
        error_class=result.error_class.value, error_message=result.error_message,
        duration_s=round(result.duration_s, 3), cost_usd=result.cost_usd, input_tokens=result.input_tokens,
        output_tokens=result.output_tokens, turns=result.turns, session_id=result.session_id,
        exit_code=result.exit_code, excerpt=result.text[-2000:], ended_at=ctx.store.stamp(),
    )
    if live.defer_end:
        live.unfinished = (link_run_id, end)
    else:
        await ctx.store.finish_link(link_run_id, **end)
    return result


async def record_end(store: Store, live: LiveLink) -> None:
    """Write the end of the attempt that `run_attempt` left in `live.unfinished`, if any."""
    if live.unfinished is not None:
        link_run_id, end = live.unfinished
        live.unfinished = None
        await store.finish_link(link_run_id, **end)


async def _invocation(ctx: LinkContext, at: Attempt, live: LiveLink) -> tuple[Invocation, str, str | None]:
    """The process to start: (invocation, "claude" or "command", the claude session it uses)."""
    link, values = at.link, at.values
    env = agent_env(
        ctx.settings.environ, env_allow=ctx.chain.env_allow, link_env=link.env,
        llmauto_vars={
            "LLMAUTO_CHAIN": ctx.chain.name, "LLMAUTO_LINK": link.name, "LLMAUTO_ROUND": str(at.round_no),
            "LLMAUTO_HANDOFF": values["HANDOFF"], "LLMAUTO_STATE_DIR": values["STATE_DIR"],
            "LLMAUTO_HOME": values["HOME"],
        },
    )
    workdir = ctx.workdir
    if link.command is not None:
        argv = tuple(render(arg, values) for arg in link.command)
        inv = Invocation(argv=argv, stdin=at.prompt, cwd=workdir, env=env, timeout_s=at.timeout_s,
                         stall_s=link.stall_s, kind="command")
        return inv, "command", None
    resume = new_session = None
    if link.continue_session:
        resume = await ctx.store.session(ctx.chain.name, link.name, str(workdir))
        if resume is None:
            new_session = str(uuid.uuid4())
            await ctx.store.set_session(ctx.chain.name, link.name, new_session, str(workdir))
    ask = bool(link.approval)
    argv = claude_argv(
        ctx.settings.claude_bin, model=at.model, permission_mode=asking_mode(link) if ask else link.permission_mode,
        allowed_tools=settled_by_claude(link) if ask else link.allowed_tools, resume=resume,
        session_id=new_session, ask=ask,
    )
    on_permission: PermissionHandler | None = None
    if ask:
        on_permission = ctx.desk.handler(link, round_no=at.round_no, cwd=str(workdir),
                                         link_run_id=lambda: live.link_run_id)
    inv = Invocation(argv=argv, stdin=at.prompt, cwd=workdir, env=env, timeout_s=at.timeout_s, stall_s=link.stall_s,
                     kind="claude", on_permission=on_permission)
    return inv, "claude", resume or new_session


async def flush_progress(store: Store, live: LiveLink, link_run_id: int) -> None:
    """The current tool into the store about once a second, for views in other processes."""
    written: Progress | None = None
    while True:
        await asyncio.sleep(PROGRESS_FLUSH_S)
        progress = live.progress
        if progress is not None and progress is not written and progress.tool:
            with contextlib.suppress(Exception):  # progress is a nicety; never let it break the run
                await store.set_link_progress(link_run_id, f"{progress.tool} {progress.target or ''}".strip(),
                                              progress.turns)
            written = progress


def asking_mode(link: LinkDef) -> str:
    """The permission mode of a link with approval rules: claude must ask the runner about what it
    does not settle itself, which it never does in dontAsk (the runner then refuses what no rule
    allows, as dontAsk would)."""
    mode = link.permission_mode or "default"
    if mode == "acceptEdits" and (link.approval.asked_tools() | {r.tool for r in link.approval.deny}) & FILE_EDITING:
        return "default"  # acceptEdits would settle file edits in the cwd itself: the rules must see them
    return "default" if mode == "dontAsk" else mode


def settled_by_claude(link: LinkDef) -> tuple[str, ...]:
    """allowed_tools without the tools that approve.ask or approve.deny rules name: claude would
    settle every call of those (and its own `ask` rules miss `cd x && git push`), so they go to the
    runner, which matches each call."""
    withheld = link.approval.asked_tools() | {r.tool for r in link.approval.deny}
    kept = []
    for text in link.allowed_tools or ():
        try:
            tool = Rule.parse(text).tool
        except ValueError:
            continue
        if tool not in withheld and not ({"Edit", "Write"} & withheld and tool in ("Edit", "Write", "MultiEdit")):
            kept.append(text)
    return tuple(kept)
