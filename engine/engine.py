"""The engine facade: what the CLI, the bot and the scheduler call.

`Engine` owns the running chains of this process (one task each), its share of the home-wide cap
on agent processes (`engine/slots.py`), the leases that keep a chain in one process at a time
(`engine/leases.py`: taken, checked and recovered there), and a poller that carries requests from
other processes (a CLI `stop` while `serve` runs the chain) to the runs here. Each run gets the
shared dependencies plus two of its own: its view of the slots (which reports a wait) and a runner
that caps every claude call at the chain's budget left (`--max-budget-usd`). It is an async
context manager: leaving it stops (or lets finish) the runs and releases the leases.

asyncio, the slots and the run machinery are imported by the methods that run chains: a one-shot
command (`chain status`, `reset`, `stop`) uses the facade without an event loop, on a blocking
store (`engine.loopless`), and never imports them (#14, tests/test_lean_start.py).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import tzinfo
from types import TracebackType
from typing import TYPE_CHECKING

from engine import events as ev
from engine.chains import ChainDef, chain_names, chain_path, load_chain
from engine.clock import Clock, RealSleeper, Sleeper, SystemClock
from engine.errors import ChainBusy, LlmautoError
from engine.events import EventBus
from engine.leases import Leases, expire_approvals, recover
from engine.records import Record
from engine.settings import Settings
from engine.statefiles import ChainFiles
from engine.statefiles import remove as remove_state_file
from engine.states import ChainStatus, RunStatus
from engine.store import (
    ApprovalRow,
    ChainState,
    LinkRunRow,
    NewEvent,
    Overview,
    RunRow,
    Store,
)

if TYPE_CHECKING:
    # The run machinery (the loop, the runner, the stream parser, ...) is imported when a run
    # starts, not with the facade: reading commands (`chain status`, `reset`) stay fast (#14).
    import asyncio

    from engine.event_types import StoredEvent
    from engine.marble import LinkExecutor, MarbleRun, RunDeps, RunOutcome
    from engine.runner import AgentRunner
    from engine.slots import FileSlots

log = logging.getLogger(__name__)

CONTROL_POLL_S = 0.25
HEARTBEAT_S = 5.0
# What a chain's stored status says while a run holds it; with no live holder, it was cut off.
LIVE_STATUSES = (ChainStatus.RUNNING, ChainStatus.WAITING, ChainStatus.BLOCKED, ChainStatus.PAUSED)


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ChainView(Record):
    """Everything `status` shows about one chain."""

    name: str
    description: str
    status: ChainStatus | RunStatus  # INTERRUPTED: a live word in the store, but no process runs it
    round: int
    next_link: str | None
    rounds_counted: int
    max_rounds: int
    running_here: bool
    running_elsewhere: str | None  # the lease owner, when another process runs it
    current_link: str | None
    current_link_since: str | None
    current_tool: str | None
    last_run: RunRow | None
    last_link: LinkRunRow | None
    stop_reason: str | None
    error: str | None = None  # the chain file is invalid


class Engine:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        runner: AgentRunner | None = None,
        clock: Clock | None = None,
        sleeper: Sleeper | None = None,
        bus: EventBus | None = None,
        shutdown_kills_links: bool = True,
        execute: LinkExecutor | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus or EventBus()
        self.clock = clock or SystemClock()
        self._runner = runner
        self._sleeper = sleeper or RealSleeper()
        self._execute = execute  # the distributed mode runs links on workers (engine/remote.py)
        self.leases = Leases(store, self.clock)
        self.owner = self.leases.owner  # this process, as leases and runs name it
        self.shutdown_kills_links = shutdown_kills_links
        self._runs: dict[str, tuple[MarbleRun, asyncio.Task[RunOutcome]]] = {}
        self._starting: set[str] = set()
        self._defs: dict[str, tuple[tuple[int, int], ChainDef | None, str | None]] = {}
        self._background: asyncio.Task[None] | None = None
        self._notes: set[asyncio.Task[None]] = set()  # events emitted from sync callbacks
        self._closed = False
        self.on_run_end: list[Callable[[str, RunOutcome], None]] = []

    @functools.cached_property
    def slots(self) -> FileSlots:
        """The cap on agent processes, which holds across every process of this home (serve,
        chain start)."""
        from engine.slots import FileSlots

        return FileSlots(self.settings.state_dir / "slots", self.settings.max_parallel_links)

    @functools.cached_property
    def deps(self) -> RunDeps:
        """What every run here shares; built when the first run starts, which is when the run
        machinery is imported."""
        from engine.marble import RunDeps
        from engine.runner import SubprocessRunner

        return RunDeps(
            settings=self.settings, store=self.store, bus=self.bus, runner=self._runner or SubprocessRunner(),
            clock=self.clock, sleeper=self._sleeper, slots=self.slots,
            **({"execute": self._execute} if self._execute is not None else {}),
        )

    # ---- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> Engine:
        import asyncio

        self._background = asyncio.create_task(self._poll_forever(), name="engine-poller")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for run, _task in list(self._runs.values()):
            run.control.request_shutdown(kill_links=self.shutdown_kills_links)
        if not (self._runs or self._notes or self._background):
            return  # used without its context and never ran a chain (a one-shot command)
        import asyncio

        if self._runs:
            await asyncio.gather(*(task for _, task in self._runs.values()), return_exceptions=True)
        if self._notes:
            await asyncio.gather(*self._notes, return_exceptions=True)
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background

    # ---- chains --------------------------------------------------------------------------
    def load(self, name: str) -> ChainDef:
        return load_chain(self.settings.home, name, tz=self._tz(), settings=self.settings)

    def _tz(self) -> tzinfo | None:
        if not self.settings.timezone:
            return None
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.settings.timezone)

    def chain_names(self) -> list[str]:
        return chain_names(self.settings.home)

    def is_running_here(self, name: str) -> bool:
        entry = self._runs.get(name)
        return entry is not None and not entry[1].done()

    def running_here(self) -> list[str]:
        return [name for name in self._runs if self.is_running_here(name)]

    async def start_chain(
        self, name: str, *, origin: str = "cli", chat_id: int | None = None, requested_by: str | None = None,
    ) -> int:
        """Validate, take the lease, recover an interrupted run, and start the chain as a task.
        Returns the new run's id once it is recorded."""
        import asyncio

        from engine.marble import MarbleRun, RunControl
        from engine.runner import BudgetedRunner
        from engine.slots import WaitingSlots

        chain = self.load(name)
        if self._closed:
            raise LlmautoError(f"{chain.name} not started: llmauto is shutting down")
        if self.is_running_here(chain.name) or chain.name in self._starting:
            raise ChainBusy(f"{chain.name} is already running")
        self._starting.add(chain.name)  # reserved before the first await: two starts cannot both pass
        try:
            holder = await self.leases.take(chain.name)
            if holder is not None:
                raise ChainBusy(f"{chain.name} is already running in another process ({holder})")
            try:
                self._publish(await recover(self.store, self.settings.state_dir, chain.name))
                state = self._next_run_state(await self.store.chain_state(chain.name))
                await self.store.discard_controls(chain.name)  # requests left for an earlier run do not apply
            except BaseException:
                await self.leases.release(chain.name)
                raise
            control = RunControl()

            def waiting_for_slot() -> None:
                self._note_slot_wait(run)

            def budget_left() -> float | None:
                if chain.max_cost_usd is None:
                    return None
                return chain.max_cost_usd - run.cost

            deps = replace(
                self.deps, slots=WaitingSlots(self.slots, waiting_for_slot),
                runner=BudgetedRunner(self.deps.runner, budget_left),
            )
            run = MarbleRun(deps, chain, control, origin=origin, chat_id=chat_id, requested_by=requested_by, owner=self.owner)
            task = asyncio.create_task(self._drive(run, state), name=f"chain-{chain.name}")
            self._runs[chain.name] = (run, task)
            task.add_done_callback(functools.partial(self._run_done, chain.name))
        finally:
            self._starting.discard(chain.name)
        ready = asyncio.create_task(run.ready.wait())
        await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if task.done() and not run.ready.is_set():
            task.result()  # raises what went wrong before the run was recorded
        return run.run_id

    def _note_slot_wait(self, run: MarbleRun) -> None:
        """A link of `run` waits because every agent slot of the home is taken: say so (once per
        wait), so a chain that seems idle explains itself."""
        import asyncio

        from engine import event_types as et

        task = asyncio.create_task(self._emit(
            run.chain.name, run.run_id, et.WaitingSlot(link=run.current_link, slots=self.slots.count),
        ))
        self._notes.add(task)
        task.add_done_callback(self._notes.discard)

    @staticmethod
    def _next_run_state(state: ChainState) -> ChainState:
        """Where a new run begins. After a finished run (ALL_DONE, COMPLETED) a new pass starts at
        round 1 with the handoff kept (the marble rolls on); after a stop, a crash, BLOCKED or
        FAILED the chain resumes at the link where it was. Either way a person chose to start it,
        so the BLOCKED and failed-round streaks start from zero."""
        if state.status in (ChainStatus.ALL_DONE, ChainStatus.COMPLETED):
            return ChainState(chain=state.chain, last_run_id=state.last_run_id)
        return replace(state, consecutive_blocks=0, failed_rounds=0)

    async def _drive(self, run: MarbleRun, state: ChainState) -> RunOutcome:
        import asyncio

        try:
            return await run.run(state)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.leases.release(run.chain.name))

    def _run_done(self, name: str, task: asyncio.Task[RunOutcome]) -> None:
        """Run-end callbacks, called once the run's task is done (so the chain no longer counts as
        running here)."""
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                log.error("chain %s ended with an error: %s", name, task.exception())
            return
        outcome = task.result()
        for callback in self.on_run_end:
            try:
                callback(name, outcome)
            except Exception:
                log.exception("run-end callback failed")

    async def wait(self, name: str) -> RunOutcome:
        entry = self._runs.get(name)
        if entry is None:
            raise LlmautoError(f"{name} is not running in this process")
        return await entry[1]

    # ---- interrupted runs ----------------------------------------------------------------
    def _publish(self, events: list[ev.Event]) -> None:
        for event in events:
            self.bus.publish(event)

    async def interrupted_chains(self) -> list[str]:
        """Chains whose last run was cut off (crash, or shutdown with links killed)."""
        names = []
        states = await self.store.all_chain_states()
        for name, st in states.items():
            if st.last_run_id is None:
                continue
            run = await self.store.run(st.last_run_id)
            if run is None:
                continue
            if run.status == RunStatus.INTERRUPTED:
                names.append(name)
            elif run.status == RunStatus.RUNNING:
                lease = await self.store.lease(name)
                if lease is None or self.leases.is_dead(lease):
                    names.append(name)
        return sorted(names)

    # ---- steering ------------------------------------------------------------------------
    async def stop_chain(self, name: str, reason: str | None = None, *, now: bool = False, by: str | None = None) -> str:
        reason = (reason or "").strip() or "stopped by request"
        entry = self._runs.get(name)
        if entry is not None and not entry[1].done():
            entry[0].control.request_stop(reason, now=now, by=by)
            from engine import event_types as et

            await self._emit(name, entry[0].run_id, et.StopRequested(reason=reason, now=now, by=by))
            return f"{name}: stopping {'now' if now else 'after the current link'} ({reason})"
        if not await self._running_elsewhere(name):
            raise LlmautoError(f"{name} is not running")
        await self.store.add_control(name, "stop_now" if now else "stop", reason, by)
        return f"{name}: stop requested {'now' if now else 'after the current link'} ({reason})"

    async def pause_chain(self, name: str, *, by: str | None = None) -> str:
        return await self._steer(name, "pause", None, by)

    async def resume_chain(self, name: str, *, by: str | None = None) -> str:
        return await self._steer(name, "resume", None, by)

    async def answer(self, name: str, text: str, *, by: str) -> str:
        """A person's answer to a BLOCKED alert: goes into the handoff as an operator note."""
        return await self._steer(name, "answer", text, by)

    async def _steer(self, name: str, action: str, text: str | None, by: str | None) -> str:
        entry = self._runs.get(name)
        if entry is not None and not entry[1].done():
            self._apply(entry[0], action, text, by)
        elif await self._running_elsewhere(name):
            await self.store.add_control(name, action, text, by)
        elif action == "answer":
            from engine.notes import add_operator_note

            await add_operator_note(
                ChainFiles(self.settings.state_dir, name), self.store, self._tz(), self.clock.now(), run_id=None,
                round_no=(await self.store.chain_state(name)).round, who=by or "operator", text=text or "",
            )
            from engine import event_types as et

            await self._emit(name, None, et.OperatorNote(by=by, text=(text or "")[:2000]))
            return f"{name}: note added to the handoff (the chain is not running)"
        else:
            raise LlmautoError(f"{name} is not running")
        verb = {"pause": "pausing (after the current link)", "resume": "resuming", "answer": "answer added to the handoff"}[action]
        return f"{name}: {verb}"

    def _apply(self, run: MarbleRun, action: str, text: str | None, by: str | None) -> None:
        if action == "stop":
            run.control.request_stop(text or "stopped by request", now=False, by=by)
        elif action == "stop_now":
            run.control.request_stop(text or "stopped by request", now=True, by=by)
        elif action == "pause":
            run.control.stop_by = by
            run.control.set_paused(True)
        elif action == "resume":
            run.control.set_paused(False)
        elif action == "answer":
            run.control.add_answer(by or "operator", text or "")
        elif action == "approval":
            import json

            from engine.approvals import Decision

            try:
                d = json.loads(text or "{}")
                run.desk.decide(int(d["id"]), Decision(bool(d["approve"]), by or "operator", d.get("message"),
                                                       bool(d.get("always"))))
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring a malformed approval control for %s: %r", run.chain.name, text)

    # ---- approvals ---------------------------------------------------------------------------
    async def pending_approvals(self, name: str | None = None) -> list[ApprovalRow]:
        return await self.store.pending_approvals(name)

    async def decide_approval(
        self, name: str, approval_id: int | None, *, approve: bool, by: str, message: str | None = None,
        always: bool = False,
    ) -> str:
        """A person's answer to a tool call waiting for approval (no id: the chain's only one). The
        run that asked gets it, in this process or through the store in the one running the chain."""
        from engine.approvals import Decision

        row = await self._approval_to_decide(name, approval_id)
        what = "approved" + (" (and allowed for the rest of the run)" if always else "") if approve else "denied"
        decision = Decision(approve, by, (message or "").strip() or None, always and approve)
        entry = self._runs.get(name)
        if entry is not None and not entry[1].done() and entry[0].run_id == row.run_id:
            if not entry[0].desk.decide(row.id, decision):
                raise LlmautoError(f"request #{row.id} has expired")
            return f"{name}: request #{row.id} {what}"
        if await self._running_elsewhere(name):
            import json

            await self.store.add_control(name, "approval", json.dumps({
                "id": row.id, "approve": approve, "message": decision.message, "always": decision.always}), by)
            return f"{name}: request #{row.id} {what}"
        await self._expire_approvals(name, "the run that asked has ended")
        raise LlmautoError(f"request #{row.id} has expired: the run that asked has ended")

    async def _approval_to_decide(self, name: str, approval_id: int | None) -> ApprovalRow:
        self.load(name)
        if approval_id is not None:
            row = await self.store.approval(approval_id)
            if row is None or row.chain != name:
                raise LlmautoError(f"{name} has no approval request #{approval_id}")
            if row.status != "pending":
                raise LlmautoError(f"request #{row.id} has expired: it was {row.status.replace('_', ' ')}"
                                   + (f" by {row.decided_by}" if row.decided_by and row.status in ("approved", "denied") else ""))
            return row
        pending = await self.store.pending_approvals(name)
        if not pending:
            raise LlmautoError(f"{name} has no request waiting for approval")
        if len(pending) > 1:
            raise LlmautoError(f"{name} has {len(pending)} requests waiting: give the id ("
                               + ", ".join(f"#{r.id} {r.tool}" for r in pending) + ")")
        return pending[0]

    async def _expire_approvals(self, name: str, why: str) -> None:
        self._publish(await expire_approvals(self.store, name, why))

    async def _emit(self, chain: str, run_id: int | None, event: StoredEvent | NewEvent) -> None:
        new = event if isinstance(event, NewEvent) else event.new()
        self._publish(await self.store.add_events(chain, run_id, [new]))

    async def _running_elsewhere(self, name: str) -> str | None:
        return await self.leases.check(name)

    async def reset_chain(self, name: str) -> str:
        self.load(name)
        if self.is_running_here(name) or await self._running_elsewhere(name):
            raise ChainBusy(f"{name} is running: stop it before a reset")
        await self.store.reset_chain(name)
        files = ChainFiles(self.settings.state_dir, name)
        for path in (files.handoff, files.status, files.round_counter, files.start_time, files.stop_file):
            remove_state_file(path)
        files.ensure()
        files.write_status(ChainStatus.READY)
        files.write_round(0)  # rounds completed, as the original's reset wrote it
        # The stored shape of et.WarningEvent, built here without importing the typed events:
        # `chain reset` stays a lean command (#14, tests/test_lean_start.py).
        await self._emit(name, None, NewEvent(ev.WARNING, {"message": f"{name} was reset: it starts over from round 1"}))
        return f"{name}: reset; the next start begins at round 1 with a fresh handoff"

    # ---- reading -------------------------------------------------------------------------
    async def view(self, name: str) -> ChainView:
        chain, error = self._definition(name, cached=False)
        snapshot = await self.store.overview(name)
        if chain is None and name not in snapshot.states and name not in snapshot.last_run:
            self.load(name)  # raises the UnknownChain / BadChainName it is
        return self._make_view(name, chain, error, snapshot)

    async def views(self) -> list[ChainView]:
        """All chains in one go: a handful of queries, definitions cached by file mtime."""
        snapshot = await self.store.overview()
        names = sorted(set(self.chain_names()) | set(snapshot.states))
        out = []
        for name in names:
            chain, error = self._definition(name, cached=True)
            out.append(self._make_view(name, chain, error, snapshot))
        return out

    def _definition(self, name: str, *, cached: bool) -> tuple[ChainDef | None, str | None]:
        try:
            path = chain_path(self.settings.home, name)
            stat = path.stat()
        except (LlmautoError, OSError) as exc:
            return None, str(exc)
        key = (stat.st_mtime_ns, stat.st_size)
        hit = self._defs.get(name)
        if cached and hit is not None and hit[0] == key:
            return hit[1], hit[2]
        try:
            chain, error = self.load(name), None
        except LlmautoError as exc:
            chain, error = None, str(exc)
        self._defs[name] = (key, chain, error)
        return chain, error

    def _make_view(self, name: str, chain: ChainDef | None, error: str | None, snap: Overview) -> ChainView:
        st = snap.states.get(name) or ChainState(chain=name)
        here = self.is_running_here(name)
        elsewhere = None if here else self.leases.held_elsewhere(snap.leases.get(name))
        running = snap.running.get(name)
        current = running if running is not None and (here or elsewhere) else None
        next_link = None
        if chain is not None and chain.links:
            next_link = chain.links[min(st.next_link, len(chain.links) - 1)].name
        # The run records RUNNING, WAITING, BLOCKED and PAUSED in the store as it enters and
        # leaves them, so this reads the same for a chain run here or by another process.
        status: ChainStatus | RunStatus = st.status
        if here and self._runs[name][0].control.paused:
            status = ChainStatus.PAUSED  # also while it is still "pausing after the current link"
        elif status in LIVE_STATUSES and not (here or elsewhere):
            status = RunStatus.INTERRUPTED
        return ChainView(
            name=name, description=chain.description if chain else "", status=status, round=st.round,
            next_link=next_link, rounds_counted=st.rounds_counted, max_rounds=chain.max_rounds if chain else 0,
            running_here=here, running_elsewhere=elsewhere,
            current_link=current.link if current else None,
            current_link_since=current.started_at if current else None,
            current_tool=current.current_tool if current else None,
            last_run=snap.last_run.get(name), last_link=snap.last_link.get(name),
            stop_reason=st.stop_reason, error=error,
        )

    async def handoff_text(self, name: str, round_no: int | None = None) -> tuple[str, str]:
        """(title, text) of the current handoff, or of the one after `round_no`. The file is the
        agents' own: what it shows is scrubbed of secrets like everything the store keeps, since it
        goes to chats and terminals."""
        self.load(name)
        if round_no is not None:
            version = await self.store.handoff_after_round(name, round_no)
            if version is None:
                raise LlmautoError(f"{name}: no handoff recorded for round {round_no}")
            return f"{name}: handoff after round {round_no} ({version.link}, {version.ts[:16]})", version.content
        read = ChainFiles(self.settings.state_dir, name).read_handoff()
        if read.text is None:
            versions = await self.store.handoff_versions(name, 1)
            if versions:
                return f"{name}: last good handoff ({read.problem})", versions[0].content
            raise LlmautoError(f"{name}: no handoff yet ({read.problem})")
        return f"{name}: current handoff", self.store.redact(read.text)

    async def handoff_diff(self, name: str) -> str:
        self.load(name)
        versions = await self.store.handoff_versions(name, 2)
        if len(versions) < 2:
            raise LlmautoError(f"{name}: fewer than two handoff versions recorded")
        newer, older = versions
        from engine import handoff as hp

        text = hp.diff(older.content, newer.content)
        return text or "(no change)"

    async def log(self, name: str, n: int = 10) -> list[LinkRunRow]:
        self.load(name)
        return await self.store.link_runs(name, n)

    # ---- background ----------------------------------------------------------------------
    async def _poll_forever(self) -> None:
        """Carry controls from other processes to the runs here; keep the leases fresh."""
        import asyncio

        last_beat = 0.0
        while True:
            try:
                names = self.running_here()
                if names:
                    for control in await self.store.take_controls(names):
                        entry = self._runs.get(control.chain)
                        if entry is not None:
                            self._apply(entry[0], control.action, control.reason, control.requested_by)
                            if control.action in ("stop", "stop_now"):
                                from engine import event_types as et

                                await self._emit(control.chain, entry[0].run_id, et.StopRequested(
                                    reason=control.reason, now=control.action == "stop_now", by=control.requested_by))
                    mono = self.clock.monotonic()
                    if mono - last_beat >= HEARTBEAT_S:
                        last_beat = mono
                        await self.leases.heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("engine poller")
            await asyncio.sleep(CONTROL_POLL_S)

