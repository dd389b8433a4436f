"""The marble run: rounds of links, the handoff rolling from one to the next, until a stop condition.

One `MarbleRun` drives one run of one chain. It decides skips itself (no claude call for a worker the
controller did not assign), renders prompts, runs each link through the `AgentRunner` under the
global cap, reads back the agents' files (bounded), keeps every handoff version, and commits each
link's outcome, the chain's counters and the events in one transaction, so a crash between links
loses nothing and counts nothing twice. People steer it through a `RunControl` (stop, stop now,
pause, resume, answers to BLOCKED alerts); the engine feeds that from the bot, the CLI and other
processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine import evaluate, policy
from engine import event_types as et
from engine import handoff as hp
from engine.approval_desk import ApprovalDesk
from engine.chains import ChainDef, LinkDef
from engine.clock import Clock, Sleeper
from engine.errors import StoreError
from engine.events import Event, EventBus
from engine.limits import next_attempt_at
from engine.link import Attempt, LinkContext, LiveLink, record_end, run_attempt
from engine.notes import add_operator_note
from engine.prompts import build_prompt, format_duration
from engine.records import Record
from engine.run_tasks import RunTasks
from engine.runner import AgentRunner
from engine.settings import Settings
from engine.statefiles import ChainFiles
from engine.states import AGENT_STOPS, ChainStatus, RunStatus
from engine.store import ChainState, Store
from engine.stream import ErrorClass, LinkResult

LinkExecutor = Callable[[LinkContext, Attempt, LiveLink], Awaitable[LinkResult]]

log = logging.getLogger(__name__)

FINISH_TRIES = 5  # the last writes of a run: tries, with pauses of 0.5, 1, 2, 4 s between them
FINISH_RETRY_S = 0.5
INITIAL_HANDOFF = "# {name}\n\n{description}\n\n## Status: READY\nNo work has been done yet; this is the first round.\n"


@dataclass
class RunControl:
    """How people steer a running chain. Mutated by the engine; read by the run."""

    stop_reason: str | None = None
    stop_by: str | None = None
    stop_requested: bool = False
    shutdown: bool = False
    paused: bool = False
    answers: list[tuple[str, str]] = field(default_factory=list)  # (who, text)
    kill: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def request_stop(self, reason: str, *, now: bool, by: str | None) -> None:
        self.stop_requested = True
        self.stop_reason = reason
        self.stop_by = by
        if now:
            self.kill.set()
        self._poke()

    def request_shutdown(self, *, kill_links: bool) -> None:
        self.shutdown = True
        if kill_links:
            self.kill.set()
        self._poke()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self._poke()

    def add_answer(self, who: str, text: str) -> None:
        self.answers.append((who, text))
        self._poke()

    def _poke(self) -> None:
        self.changed.set()

    async def wait_changed(self) -> None:
        await self.changed.wait()
        self.changed.clear()


@dataclass(frozen=True, eq=False, repr=False)
class RunDeps(Record):
    """What a run needs from the engine; all owned elsewhere."""

    settings: Settings
    store: Store
    bus: EventBus
    runner: AgentRunner
    clock: Clock
    sleeper: Sleeper
    slots: asyncio.Semaphore  # the global cap on agent processes
    # Runs one attempt: here (`run_attempt`) or on a worker (engine/remote.py, the distributed mode).
    execute: LinkExecutor = run_attempt


@dataclass(frozen=True, eq=False, repr=False)
class RunOutcome(Record):
    run_id: int
    status: ChainStatus | RunStatus  # the run's end: a chain word, or INTERRUPTED
    reason: str


class _ShutDown(Exception):
    """The engine is shutting down: end the run as interrupted (it resumes on the next start)."""


class MarbleRun:
    def __init__(
        self, deps: RunDeps, chain: ChainDef, control: RunControl, *,
        origin: str, chat_id: int | None = None, requested_by: str | None = None, owner: str,
    ) -> None:
        self.d = deps
        self.chain = chain
        self.control = control
        self.origin = origin
        self.chat_id = chat_id
        self.requested_by = requested_by
        self.owner = owner
        self.files = ChainFiles(deps.settings.state_dir, chain.name)
        self.run_id = 0
        self.cost = 0.0
        self.passes = 0
        self.run_started: datetime = deps.clock.now()
        self.tz = ZoneInfo(deps.settings.timezone) if deps.settings.timezone else deps.clock.now().astimezone().tzinfo
        self.has_controller = any(link.role == "controller" for link in chain.links)
        # The link running now, as views see it. Its attempt's end is written with the link's
        # outcome in one transaction (commit_link), or alone before anything else about it.
        self.live = LiveLink(defer_end=True)
        self.ready = asyncio.Event()  # set once the run is recorded (run_id known)
        # The chain's counters as last changed: a run that ends by an exception (a shutdown, a locked
        # or full store) must finish with these, never with the state it started from.
        self._state: ChainState | None = None
        self._round_written = -1  # round_counter.txt is rewritten when the round changes, not after every link
        self.runs_of: dict[str, int] = {}  # link name -> times it ran in this run (for max_runs)
        self.links_run = 0  # links that ran in this run (for telegram.update_every_n_links)
        self._max_runs_told: set[str] = set()
        self._denied_alerted: set[str] = set()
        self.desk = ApprovalDesk(
            store=deps.store, chain=chain.name, files=self.files, publish=self._publish,
            stopping=lambda: control.stop_requested or control.shutdown, changed=control.wait_changed,
            on_timeout_stop=lambda reason: control.request_stop(reason, now=False, by="approval timeout"),
        )
        self.tasks = RunTasks(pool=chain.task_pool, workdir=self._workdir(), store=deps.store,
                              run_id=lambda: self.run_id, publish=self._publish)

    @property
    def current_link(self) -> str | None:
        return self.live.name

    # ---- plumbing ------------------------------------------------------------------------
    def _publish(self, events: Sequence[Event]) -> None:
        for event in events:
            self.d.bus.publish(event)

    async def _store(self, event: et.StoredEvent) -> None:
        self._publish(await self.d.store.add_events(self.chain.name, self.run_id, [event.new()]))

    def _counters(self, st: ChainState) -> policy.RunCounters:
        return policy.RunCounters(
            rounds_counted=st.rounds_counted, at_round_start=st.next_link == 0, run_started=self.run_started,
            cost_usd=self.cost, consecutive_blocks=st.consecutive_blocks, failed_rounds=st.failed_rounds,
            passes=self.passes,
        )

    # ---- the run -------------------------------------------------------------------------
    async def run(self, state: ChainState) -> RunOutcome:
        self.files.ensure()
        if state.next_link >= len(self.chain.links):
            state = replace(state, next_link=0, round=state.round + 1, round_ran=0, round_failed=0, round_blocked=0)
        current = self.files.read_handoff()
        if current.text is None and current.problem and "missing" in current.problem:
            self.files.write_handoff(INITIAL_HANDOFF.format(name=self.chain.name, description=self.chain.description or ""))
            current = self.files.read_handoff()
        resumed = state.round > 1 or state.next_link > 0
        self.run_id, events = await self.d.store.begin_run(
            self.chain.name, origin=self.origin, chat_id=self.chat_id, requested_by=self.requested_by,
            owner=self.owner, state=state,
            evs=[et.RunStarted(
                round=state.round, link=self.chain.links[state.next_link].name, origin=self.origin,
                chat_id=self.chat_id, by=self.requested_by, resumed=resumed,
                links=len(self.chain.links), max_rounds=self.chain.max_rounds,
                path=state.round_path if any(lk.routes for lk in self.chain.links) else "",  # the card's path
                permissions=tuple(et.LinkPermissions(link=link.name, permissions=link.permissions()) for link in self.chain.links),
            ).new()],
        )
        state = self._state = replace(state, last_run_id=self.run_id, status=ChainStatus.RUNNING, stop_reason=None)
        self.desk.run_id = self.run_id
        self.ready.set()
        self._publish(events)
        if current.text is not None:
            await self.d.store.save_handoff(self.chain.name, self.run_id, None, state.round, "(start)", current.text)
        self.files.write_status(ChainStatus.RUNNING)
        self.files.write_start_time(self.run_started.isoformat(timespec="seconds"))
        self._write_round(state)
        if self.chain.warnings:  # one transaction for all of them: a chain may warn once per link (#14)
            self._publish(await self.d.store.add_events(
                self.chain.name, self.run_id, [et.WarningEvent(message=warning).new() for warning in self.chain.warnings]))
        try:
            stop, state = await self._loop(state)
        except _ShutDown:
            stop, status = policy.Stop(ChainStatus.STOPPED, "llmauto shut down; the chain resumes on the next start"), RunStatus.INTERRUPTED
            return await self._finish(self._latest(state), stop, run_status=status)
        except asyncio.CancelledError:
            await asyncio.shield(self._finish(self._latest(state), policy.Stop(ChainStatus.STOPPED, "cancelled"), run_status=RunStatus.INTERRUPTED))
            raise
        except StoreError as exc:
            log.error("chain %s failed: %s", self.chain.name, exc)
            return await self._finish(self._latest(state), policy.Stop(ChainStatus.FAILED, f"engine error: {exc}"))
        except Exception as exc:
            log.exception("chain %s failed", self.chain.name)
            return await self._finish(self._latest(state), policy.Stop(ChainStatus.FAILED, f"engine error: {exc}"))
        return await self._finish(state, stop)

    def _write_round(self, state: ChainState) -> None:
        """round_counter.txt holds the rounds completed, as the original's did (0 until the first
        round ends); rewritten only when that changes."""
        done = state.round - 1
        if done != self._round_written:
            self.files.write_round(done)
            self._round_written = done

    def _latest(self, fallback: ChainState) -> ChainState:
        return self._state if self._state is not None else fallback

    async def _finish(self, state: ChainState, stop: policy.Stop, *, run_status: RunStatus | None = None) -> RunOutcome:
        status = run_status or stop.status
        with contextlib.suppress(Exception):  # a run ended between a link and its commit: its end as it ran
            await record_end(self.d.store, self.live)
        with contextlib.suppress(Exception):  # an approval message must not stay answerable after the run
            await self.desk.expire_all(f"the run ended ({stop.reason})")
        try:
            self.files.write_status(stop.status)
            self.files.remove_stop_file()  # it stopped this run; the next start must not stop at once
        except OSError as exc:
            log.error("cannot write the state files of %s: %s", self.chain.name, exc)
        finished = et.RunFinished(
            status=stop.status, run_status=status, reason=stop.reason, by=self.control.stop_by,
            cost_usd=round(self.cost, 6), round=state.round, rounds_counted=state.rounds_counted,
            chat_id=self.chat_id, origin=self.origin,
        ).new()
        events = await self._with_retries(
            "record the end of the run", lambda: self.d.store.finish_run(self.run_id, state, status=status, reason=stop.reason, evs=[finished]),
        )
        if events is None:
            # The store refused every try (still locked, disk still full): the run row stays RUNNING
            # with a lease whose owner is about to be gone, so the next start finds it interrupted
            # and resumes it from the counters committed after its last link.
            return RunOutcome(self.run_id, RunStatus.INTERRUPTED, f"{stop.reason} (the end of the run could not be recorded)")
        if run_status == RunStatus.INTERRUPTED:
            await self._with_retries("record the chain as stopped", lambda: self.d.store.put_chain_state(
                replace(state, status=ChainStatus.STOPPED, stop_reason=stop.reason)))
        self._publish(events)
        return RunOutcome(self.run_id, status, stop.reason)

    async def _with_retries(self, what: str, write: Callable[[], Awaitable[list[Event]]]) -> list[Event] | None:
        """A last write of the run, tried FINISH_TRIES times with a growing pause: a database locked
        by another program for a moment must not leave the run looking alive."""
        for attempt in range(FINISH_TRIES):
            try:
                return await write()
            except StoreError as exc:
                if attempt == FINISH_TRIES - 1:
                    log.error("chain %s: cannot %s after %d tries: %s", self.chain.name, what, FINISH_TRIES, exc)
                    return None
                log.warning("chain %s: cannot %s (%s); trying again", self.chain.name, what, exc)
                await self.d.sleeper.sleep(FINISH_RETRY_S * 2 ** attempt, asyncio.Event())
        return None

    async def _loop(self, state: ChainState) -> tuple[policy.Stop, ChainState]:
        while True:
            if self.control.shutdown:
                raise _ShutDown
            if self.control.stop_requested:
                return policy.Stop(ChainStatus.STOPPED, self.control.stop_reason or "stopped"), state
            stop_file = self.files.stop_reason()
            if stop_file is not None:
                return policy.Stop(ChainStatus.STOPPED, f"STOP file: {stop_file}"), state
            state = self._state = await self._apply_answers(state)
            agent_status = self._agent_status()
            stop = policy.stop_before_link(self.chain, self._counters(state), self.d.clock.now(), agent_status=agent_status)
            if stop is not None:
                return stop, state
            if self.control.paused:
                await self._pause()
                continue
            if self.chain.task_pool is not None:
                state, stop = await self.tasks.take(state)
                self._state = state
                if stop is not None:
                    return stop, state
            state, stop = await self._step(state)
            self._state = state
            if stop is not None:
                return stop, state

    def _agent_status(self) -> str | None:
        word = self.files.read_status()
        return word if word in AGENT_STOPS else None

    async def _mark(self, word: str) -> None:
        """A wait begins or ends: the status file for the agents, the store for status views."""
        self.files.write_status(word)
        await self.d.store.set_chain_status(self.chain.name, word)

    async def _pause(self) -> None:
        await self._mark(ChainStatus.PAUSED)
        await self._store(et.Paused(by=self.control.stop_by))
        while self.control.paused and not self.control.stop_requested and not self.control.shutdown:
            await self.control.wait_changed()
        await self._mark(ChainStatus.RUNNING)
        if not self.control.paused:
            await self._store(et.Resumed())

    async def _apply_answers(self, state: ChainState) -> ChainState:
        """People's answers to BLOCKED alerts go into the handoff between links, never during one."""
        while self.control.answers:
            who, text = self.control.answers.pop(0)
            await add_operator_note(self.files, self.d.store, self.tz, self.d.clock.now(), run_id=self.run_id,
                                    round_no=state.round, who=who, text=text)
            if self.files.read_status() == ChainStatus.BLOCKED:
                self.files.write_status(ChainStatus.RUNNING)
            await self._store(et.OperatorNote(by=who, text=text[:2000], round=state.round))
            state = replace(state, consecutive_blocks=0)
        return state

    # ---- one link ------------------------------------------------------------------------
    async def _step(self, state: ChainState) -> tuple[ChainState, policy.Stop | None]:
        idx = state.next_link
        link = self.chain.links[idx]
        before = self.files.read_handoff()
        assignee = hp.assigned(before.text) if before.text else None
        if policy.should_skip(link.role, link.name, link.model, assignee, self.has_controller):
            await self.d.store.skip_link(
                run_id=self.run_id, chain=self.chain.name, round_no=state.round, index=idx, link=link.name,
                role=link.role, model=link.model, reason=f"not assigned (ASSIGNED: {assignee})",
            )
            return await self._after_link(state, link, None, before.text, skipped_for=assignee)
        if link.max_runs is not None and self.runs_of.get(link.name, 0) >= link.max_runs:
            return await self._skip_used_up(state, idx, link, before.text)
        self.runs_of[link.name] = self.runs_of.get(link.name, 0) + 1
        result, attempts, stop = await self._run_with_retries(state, idx, link, before.text)
        interrupted = result.error_class is ErrorClass.KILLED or (
            not result.ok and (self.control.stop_requested or self.control.shutdown)
        )
        if interrupted:
            # A link cut off by a person or a shutdown did not finish its work: put the handoff back
            # as it was before it and leave the chain pointing at it, so the next start re-runs it.
            await record_end(self.d.store, self.live)
            if self.live.link_run_id is not None:
                await self.d.store.set_link_status(self.live.link_run_id, "interrupted")
            if before.text is not None:
                self.files.write_handoff(before.text)
            await self._store(et.LinkFinished(link=link.name, role=link.role, round=state.round,
                              error_class=result.error_class.value, error=result.error_message[:500],
                              duration_s=round(result.duration_s, 3), cost_usd=round(result.cost_usd, 6),
                              attempts=attempts, notify=False, rerun=True, command=link.is_command,
                              run_cost_usd=round(self.cost, 6), headline="", blocked=False))
            return state, stop
        state, after_stop = await self._after_link(state, link, result, before.text, attempts=attempts)
        return state, stop or after_stop

    async def _skip_used_up(
        self, state: ChainState, idx: int, link: LinkDef, before: str | None,
    ) -> tuple[ChainState, policy.Stop | None]:
        """A link that has had its `max_runs` in this run is skipped like an unassigned worker; the
        first time, the handoff tells the controller so, so it assigns the work elsewhere."""
        reason = f"max_runs ({link.max_runs}) used in this run"
        await self.d.store.skip_link(
            run_id=self.run_id, chain=self.chain.name, round_no=state.round, index=idx, link=link.name,
            role=link.role, model=link.model, reason=reason,
        )
        text = before
        if link.name not in self._max_runs_told:
            self._max_runs_told.add(link.name)
            text = (before or "").rstrip("\n") + (
                f"\n\n## llmauto: {link.name} has had its {link.max_runs} run(s) in this run (max_runs) and "
                "is skipped from now on: assign the work to another worker.\n")
            self.files.write_handoff(text)
            await self.d.store.save_handoff(self.chain.name, self.run_id, None, state.round, "(llmauto)", text)
        return await self._after_link(state, link, None, text, skipped_for=reason)

    def _placeholders(self, state: ChainState, link: LinkDef) -> dict[str, str]:
        c = self._counters(state)
        left = policy.rounds_left(self.chain, c)
        t_left = policy.time_left_s(self.chain, c, self.d.clock.now())
        home = str(self.d.settings.home)
        return {
            "HOME": home, "BASH_HOME": home, "CHAIN": self.chain.name, "STATE_DIR": str(self.files.dir),
            "HANDOFF": str(self.files.handoff), "ROUND": str(state.round), "LINK": link.name,
            "ROUNDS_LEFT": "unlimited" if left is None else str(left),
            "TIME_LEFT": format_duration(t_left),
            "DEADLINE": self.chain.deadline.isoformat(timespec="minutes") if self.chain.deadline else "none",
            **self.tasks.placeholders(),
        }

    async def _run_with_retries(
        self, state: ChainState, idx: int, link: LinkDef, handoff_before: str | None
    ) -> tuple[LinkResult, int, policy.Stop | None]:
        values = self._placeholders(state, link)
        now = self.d.clock.now()
        # How long a link usually takes matters only against a time limit (runtime or deadline).
        timed = policy.runtime_end(self.chain, self.run_started) is not None
        typical = await self.d.store.typical_link_seconds(self.chain.name) if timed else None
        wind = policy.wind_down_reason(
            self.chain, self._counters(state), now, is_last_link=idx == len(self.chain.links) - 1, typical_link_s=typical,
        )
        prompt = build_prompt(link.prompt, values, until_full=link.until_full, wind_down_reason=wind)
        model = link.model
        tries = policy.Tries()
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1 and self.live.link_run_id is not None:
                await self.d.store.set_link_status(self.live.link_run_id, "retried")
            timeout = policy.link_timeout_s(link.timeout_s, self.chain, self._counters(state), self.d.clock.now())
            result = await self.d.execute(self._ctx(), Attempt(
                link=link, index=idx, round_no=state.round, model=model, prompt=prompt, values=values,
                number=attempt, timeout_s=timeout), self.live)
            self.cost += result.cost_usd
            decision = policy.after_attempt(
                result.error_class, result.text + " " + result.error_message, link_name=link.name, model=model,
                fallback_model=link.fallback_model, is_command=link.is_command, continue_session=link.continue_session,
                stopping=self.control.stop_requested or self.control.shutdown, tries=tries, stall_s=link.stall_s,
                budget=self.chain.max_cost_usd, cost=self.cost,
            )
            tries = decision.tries
            if decision.then not in (policy.Then.RETURN, policy.Then.STOP) or decision.warning or decision.alert:
                await record_end(self.d.store, self.live)  # not the link's last word: the end as it ran, now
            if decision.warning:
                await self._store(et.WarningEvent(message=decision.warning, link=link.name))
            if decision.alert == "auth":
                await self._store(et.Blocked(link=link.name, round=state.round, kind="auth",
                                             question=f"claude cannot authenticate: {result.error_message}"))
            elif decision.alert == "stalled":
                await self._store(et.Blocked(link=link.name, round=state.round, kind="stalled",
                                             question=f"{link.name} stalled twice (no output for {link.stall_s:g} s)"))
            if decision.then is policy.Then.RESUME_FRESH:
                await self.d.store.set_session(self.chain.name, link.name, None, str(self._workdir()))
            elif decision.then is policy.Then.WAIT_LIMIT:
                await self._wait_for_limit(link, result, tries.limit_waits - 1)
                if self.control.stop_requested or self.control.shutdown:
                    return result, attempt, None
            elif decision.then is policy.Then.FALLBACK:
                model = link.fallback_model
            elif decision.then in (policy.Then.RETURN, policy.Then.STOP):
                return result, attempt, decision.stop

    def _ctx(self) -> LinkContext:
        return LinkContext(
            settings=self.d.settings, store=self.d.store, bus=self.d.bus, runner=self.d.runner, slots=self.d.slots,
            monotonic=self.d.clock.monotonic, chain=self.chain, run_id=self.run_id, kill=self.control.kill,
            desk=self.desk, publish=self._publish,
        )

    def _workdir(self) -> Any:
        return self.chain.workdir or self.d.settings.home

    async def _wait_for_limit(self, link: LinkDef, result: LinkResult, attempt: int) -> None:
        now = self.d.clock.now()
        tz = self.tz or now.tzinfo
        assert tz is not None
        until, known = next_attempt_at(
            now=now, attempt=attempt, message=result.text + " " + result.error_message,
            resets_at_epoch=result.resets_at_epoch, default_tz=tz,
        )
        seconds = (until - now).total_seconds()
        self.files.write_status(ChainStatus.WAITING)
        events = await self.d.store.put_chain_state(
            replace(await self.d.store.chain_state(self.chain.name), status=ChainStatus.WAITING),
            [et.WaitingLimit(
                link=link.name, until=until.isoformat(timespec="seconds"), seconds=round(seconds),
                reset_known=known, message=result.error_message[:300], attempt=attempt + 1,
            ).new()], run_id=self.run_id,
        )
        self._publish(events)
        # Only a stop (or a shutdown) cuts the wait short; a pause or an answer meanwhile does not.
        deadline = self.d.clock.monotonic() + seconds
        remaining = seconds
        while remaining > 0:
            self.control.changed.clear()
            woke = await self.d.sleeper.sleep(remaining, self.control.changed)
            if not woke or self.control.stop_requested or self.control.shutdown:
                break
            remaining = deadline - self.d.clock.monotonic()
        await self._mark(ChainStatus.RUNNING)

    # ---- after a link --------------------------------------------------------------------
    async def _after_link(
        self, state: ChainState, link: LinkDef, result: LinkResult | None, before: str | None,
        *, attempts: int = 0, skipped_for: str | None = None,
    ) -> tuple[ChainState, policy.Stop | None]:
        """Read what the link left behind, evaluate it (`engine/evaluate.py`, pure), write the answer."""
        outcome: evaluate.Ran | evaluate.Skipped = evaluate.Skipped(skipped_for)
        if result is not None:
            outcome = evaluate.Ran(result, attempts, self.live.link_run_id, await self._read_back(before))
        done = evaluate.evaluate(state, link, before, outcome, evaluate.RunFacts(
            chain=self.chain, run_cost_usd=self.cost, links_run=self.links_run,
            denied_alerted=frozenset(self._denied_alerted), redact=self.d.store.redact,
        ))
        if done.put_back is not None:
            self.files.write_handoff(done.put_back)
        if done.reset_status:
            self.files.write_status(ChainStatus.RUNNING)
        if done.denied_alert is not None:
            self._denied_alerted.add(done.denied_alert)
        if done.ran:
            self.links_run += 1
        if done.round_ended:
            self.passes += 1
        state = done.state
        link_run_id = self.live.link_run_id if done.ran else None
        # The attempt's end goes into the same UPDATE as the link's outcome; it stays pending until
        # that commits, so a run that ends on a failed commit still writes it (`_finish`).
        pending = self.live.unfinished
        finished = pending[1] if pending is not None and pending[0] == link_run_id else None
        if finished is None:
            await record_end(self.d.store, self.live)  # none, unless it belongs to another link run
        events = await self.d.store.commit_link(
            state=state, run_id=self.run_id, cost_delta=result.cost_usd if result else 0.0, ran=done.ran,
            passes=self.passes, handoff=done.handoff_version, evs=list(done.events),
            link_run_id=link_run_id, outcome=done.judged_outcome, refusals=done.refusals, finished=finished,
        )
        if finished is not None:
            self.live.unfinished = None
        self._publish(events)
        self._state = state
        self._write_round(state)
        if state.task_outcome:
            state = self._state = await self.tasks.settle(state)
        stop = done.stop
        if done.wait_for_answer:
            stop = await self._wait_for_answer(link)
        return state, stop

    async def _read_back(self, before: str | None) -> evaluate.ReadBack:
        """The handoff and status.txt as the link left them; the last good handoff if it is unreadable."""
        read = self.files.read_handoff()
        last_good = None
        if read.text is None and not before:
            last_good = await self._last_good_handoff()
        return evaluate.ReadBack(handoff=read.text, problem=read.problem, last_good=last_good,
                                 status_word=self.files.read_status())

    async def _last_good_handoff(self) -> str | None:
        versions = await self.d.store.handoff_versions(self.chain.name, 1)
        return versions[0].content if versions else None

    async def _wait_for_answer(self, link: LinkDef) -> policy.Stop | None:
        """on_blocked = wait: hold the chain until a person answers, stops it, or time runs out."""
        await self._mark(ChainStatus.BLOCKED)
        deadline = self.d.clock.monotonic() + self.chain.blocked_wait_s
        while not self.control.answers:
            if self.control.stop_requested or self.control.shutdown:
                return None
            left = deadline - self.d.clock.monotonic()
            if left <= 0:
                await self._store(et.WarningEvent(
                    link=link.name, message=f"no answer to BLOCKED within {format_duration(self.chain.blocked_wait_s)}; going on"))
                break
            self.control.changed.clear()
            await self.d.sleeper.sleep(left, self.control.changed)
        await self._mark(ChainStatus.RUNNING)
        return None

