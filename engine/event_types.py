"""Typed stored events: one frozen value per event kind that crosses a module boundary.

Every stored kind of `engine/events.py` has one (`BY_KIND`; `typed(kind, data)` reads any event),
and so has the published-only `progress`. The engine builds them (`engine/evaluate.py`,
`engine/marble.py`, `engine/approval_desk.py`, `engine/hops.py`) and the views read them
(`bot/render.py`, `bot/notify.py`, `bot/report.py`, `llmauto/textview.py`) instead of building and
reading dicts by hand. This module is the one place that turns a value into the
stored JSON (`to_data`) and back (`from_data`); the stored shape is the one the dicts had, key for
key, so databases written before keep reading and a value read from an old or odd row never raises:
a missing key takes the field's default, a value of the wrong type too (as `.get()` did).

`Event.data` stays the plain mapping it always was (the redacted JSON of the row); a reader that
wants the typed value asks `LinkFinished.from_data(event.data)`.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

from engine import events as ev
from engine.permissions import Refusal
from engine.records import Record
from engine.store import NewEvent

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _coerce(value: Any, hint: Any) -> tuple[bool, Any]:
    """(fits, value): `value` as the field's type, or (False, None) when it does not fit."""
    origin = typing.get_origin(hint)
    if origin is types.UnionType or origin is typing.Union:
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return True, None
        for arg in args:
            if arg is not type(None):
                fits, got = _coerce(value, arg)
                if fits:
                    return True, got
        return False, None
    if hint is Any:
        return True, value
    if hint is bool:
        return (True, value) if isinstance(value, bool) else (False, None)
    if hint is int:
        return (True, value) if isinstance(value, int) and not isinstance(value, bool) else (False, None)
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return (True, float(value)) if ok else (False, None)
    if hint is str:
        return (True, value) if isinstance(value, str) else (False, None)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False, None
        (item,) = typing.get_args(hint)[:1]
        out = []
        for raw in value:
            fits, got = _coerce(raw, item)
            if fits:
                out.append(got)
        return True, tuple(out)
    if isinstance(hint, type) and issubclass(hint, StoredEvent):
        return (True, hint.from_data(value)) if isinstance(value, Mapping) else (False, None)
    return False, None


def _plain(value: Any) -> Any:
    if isinstance(value, StoredEvent):
        return value.to_data()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


class StoredEvent(Record):
    """Base of the typed events: `KIND`, and the JSON both ways (eq, hash and repr: `Record`).

    `OPTIONAL` names fields whose key is left out of the JSON when they are None (the variants of
    an event that never had that key, such as a BLOCKED alert without a `policy`)."""

    KIND: ClassVar[str] = ""
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.name in self.OPTIONAL:
                continue
            out[f.name] = _plain(value)
        return out

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Self:
        hints = _hints(cls)
        kwargs: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name not in data:
                continue
            fits, value = _coerce(data[f.name], hints[f.name])
            if fits:  # else the field's default (every field has one), as `.get()` gave None
                kwargs[f.name] = value
        return cls(**kwargs)

    @classmethod
    def of(cls, data: Self | Mapping[str, Any]) -> Self:
        """The typed value of `data`, whether it is one already or a stored mapping."""
        return data if isinstance(data, cls) else cls.from_data(data)  # type: ignore[arg-type]

    def new(self) -> NewEvent:
        """The event to store."""
        return NewEvent(self.KIND, self.to_data())


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class LinkPermissions(StoredEvent):
    link: str = ""
    permissions: str = ""


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class RunStarted(StoredEvent):
    KIND: ClassVar[str] = ev.RUN_STARTED
    round: int = 1
    link: str = ""
    origin: str = ""
    chat_id: int | None = None
    by: str | None = None
    resumed: bool = False
    links: int = 0
    max_rounds: int | None = None
    path: str = ""  # the round's path so far (a resumed routing chain), for the card
    permissions: tuple[LinkPermissions, ...] = ()


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class RunFinished(StoredEvent):
    KIND: ClassVar[str] = ev.RUN_FINISHED
    status: str | None = None  # the chain's status (what status.txt says)
    run_status: str | None = None  # the run's (INTERRUPTED when a shutdown cut it off)
    reason: str | None = None
    by: str | None = None
    cost_usd: float | None = None  # always stored; None only when read from a row without it
    round: int | None = None  # the round the chain would run next
    rounds_counted: int | None = None
    chat_id: int | None = None
    origin: str | None = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class LinkFinished(StoredEvent):
    """A link ended. A link cut off by a person or a shutdown (`rerun`: it runs again on the next
    start) is stored with fewer keys: the ones it always had."""

    KIND: ClassVar[str] = ev.LINK_FINISHED
    RERUN_KEYS: ClassVar[tuple[str, ...]] = (
        "link", "role", "round", "error_class", "error", "duration_s", "cost_usd", "attempts", "notify", "rerun",
        "command", "run_cost_usd", "headline", "blocked")
    link: str = ""
    role: str = ""
    model: str | None = None
    round: int | None = None
    error_class: str | None = None
    error: str = ""
    duration_s: float | None = None
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    turns: int = 0
    attempts: int = 0
    headline: str = ""
    notify: bool = False
    permission_denials: tuple[str, ...] = ()
    run_cost_usd: float | None = None
    refused: int = 0
    refusals: str = ""  # "Bash ×2, Write (notes.md)"
    tool_calls: int = 0
    blocked: bool = False
    command: bool = False
    hop: str = ""  # the routed hop's note
    verdict: str | None = None
    rerun: bool = False

    def to_data(self) -> dict[str, Any]:
        data = super().to_data()
        if self.rerun:
            return {k: data[k] for k in self.RERUN_KEYS}
        del data["rerun"]
        return data

    @property
    def ok(self) -> bool:
        return self.error_class == "ok"


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Blocked(StoredEvent):
    """An alert: an agent wrote BLOCKED (`kind` agent), a route or the bounce guard blocked the
    chain (routed, bounces), claude refused the tools a link needed (denied: `tools`, `field`),
    or claude cannot authenticate or stalled (auth, stalled: no `policy`)."""

    KIND: ClassVar[str] = ev.BLOCKED
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"policy", "tools", "field"})
    link: str | None = None
    round: int | None = None
    kind: str = "agent"
    question: str | None = None
    policy: str | None = None  # on_blocked: wait | continue | stop
    tools: tuple[str, ...] | None = None
    field: str | None = None  # the chain field that sets the link's tools


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Routed(StoredEvent):
    """A link's verdict chose where the marble goes (#13)."""

    KIND: ClassVar[str] = ev.ROUTED
    link: str = ""
    round: int | None = None
    verdict: str | None = None
    target: str | None = None
    kind: str = ""
    bounce: bool = False
    count: int = 0
    max: int = 0
    note: str = ""
    guard: str | None = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ToolRefused(StoredEvent):
    KIND: ClassVar[str] = ev.TOOL_REFUSED
    link: str = ""
    round: int | None = None
    tool: str = "?"
    target: str | None = None
    message: str = ""

    def refusal(self) -> Refusal:
        return Refusal(tool=self.tool or "?", target=self.target or None, message=self.message)


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ApprovalRequested(StoredEvent):
    KIND: ClassVar[str] = ev.APPROVAL_REQUESTED
    id: int = 0
    link: str = ""
    round: int | None = None
    tool: str = ""
    command: str = ""
    reason: str = ""
    timeout_s: float | None = None
    on_timeout: str = "deny"
    always: bool = False  # "always allow" can be offered


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ApprovalDecided(StoredEvent):
    KIND: ClassVar[str] = ev.APPROVAL_DECIDED
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"always"})
    id: int = 0
    link: str = ""
    tool: str = ""
    status: str = ""  # approved | denied | timed_out | expired
    by: str | None = None
    message: str = ""
    always: bool | None = None  # absent on an expired request




@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class LinkStarted(StoredEvent):
    """A link's attempt starts (a retry is a new one, with `attempt` > 1)."""

    KIND: ClassVar[str] = ev.LINK_STARTED
    link: str = ""
    role: str = ""
    model: str | None = None
    round: int | None = None
    index: int = 0
    attempt: int = 1
    command: bool = False
    session: str | None = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class LinkSkipped(StoredEvent):
    """A link did not run: a worker the controller did not assign, or one whose max_runs are used
    up (`assigned` then says so: it holds the reason, as it always did)."""

    KIND: ClassVar[str] = ev.LINK_SKIPPED
    link: str = ""
    round: int | None = None
    assigned: str | None = None

    @property
    def why(self) -> str:
        """"ASSIGNED: worker-b", or the max_runs reason as it stands."""
        told = self.assigned or ""
        return told if "max_runs" in told else f"ASSIGNED: {told}"


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class RoundFinished(StoredEvent):
    KIND: ClassVar[str] = ev.ROUND_FINISHED
    round: int = 0
    counted: bool = False  # False: every link failed, so the round does not count toward max_rounds
    blocked: bool = False
    links_run: int = 0
    links_failed: int = 0


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class HandoffProblem(StoredEvent):
    """An agent left the handoff unreadable (or status.txt with an unknown word) and what was put back."""

    KIND: ClassVar[str] = ev.HANDOFF_PROBLEM
    link: str = ""
    problem: str = ""
    restored: bool = False


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class WaitingLimit(StoredEvent):
    """A usage limit: the link is tried again at `until` (`reset_known` False: a backoff guess)."""

    KIND: ClassVar[str] = ev.WAITING_LIMIT
    link: str = ""
    until: str = ""
    seconds: int = 0
    reset_known: bool = False
    message: str = ""
    attempt: int = 1


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class WaitingSlot(StoredEvent):
    """A link waits for a free agent slot (LLMAUTO_MAX_PARALLEL_LINKS)."""

    KIND: ClassVar[str] = ev.WAITING_SLOT
    link: str | None = None
    slots: int | None = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Paused(StoredEvent):
    KIND: ClassVar[str] = ev.PAUSED
    by: str | None = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Resumed(StoredEvent):
    KIND: ClassVar[str] = ev.RESUMED


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class StopRequested(StoredEvent):
    KIND: ClassVar[str] = ev.STOP_REQUESTED
    reason: str | None = None
    now: bool = False
    by: str | None = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class OperatorNote(StoredEvent):
    """A person's note went into the handoff (`round` is left out when the chain was not running)."""

    KIND: ClassVar[str] = ev.OPERATOR_NOTE
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"round"})
    by: str | None = None
    text: str = ""
    round: int | None = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Recovered(StoredEvent):
    """A run a crash cut off was found and set to resume."""

    KIND: ClassVar[str] = ev.RECOVERED
    link: str | None = None
    round: int | None = None
    agents_killed: tuple[str, ...] = ()
    handoff_restored: bool = False


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class WarningEvent(StoredEvent):
    """Something a person should know that changes nothing by itself (a chain's warnings, a retry, a reset)."""

    KIND: ClassVar[str] = ev.WARNING
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"link"})
    message: str = ""
    link: str | None = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class TaskStarted(StoredEvent):
    """A round took the task pool's next open task."""

    KIND: ClassVar[str] = ev.TASK_STARTED
    task_id: str | None = None
    text: str = ""
    left: int = 0
    round: int | None = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class TaskDone(StoredEvent):
    """The round's task was ticked off (`problem`: why the pool could not be marked)."""

    KIND: ClassVar[str] = ev.TASK_DONE
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"problem"})
    task_id: str | None = None
    text: str = ""
    round: int | None = None
    problem: str | None = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class TaskBlocked(TaskDone):
    """The round's task stays BLOCKED: marked and skipped from now on."""

    KIND: ClassVar[str] = ev.TASK_BLOCKED


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ScheduleEvent(StoredEvent):
    """What a schedule did (fired, skipped, queued, missed), with the schedule it came from. The
    keys after `scheduled_for` belong to some variants only and are left out when None."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "reason", "queued", "queued_behind_run", "after_run_id", "after_status",
        "missed", "more", "first", "until", "grace_s"})
    schedule_id: int | None = None
    chain: str | None = None
    kind: str | None = None
    expression: str | None = None
    original: str | None = None
    tz: str | None = None
    after_chain: str | None = None
    chat_id: int | None = None
    run_id: int | None = None
    scheduled_for: str | None = None
    reason: str | None = None  # skipped, queued: why
    queued: bool | None = None  # a start that waited for the chain's previous run
    queued_behind_run: int | None = None
    after_run_id: int | None = None  # an `after` schedule: the run it followed and how that ended
    after_status: str | None = None
    missed: int | None = None  # missed: how many firings, at least (`more`), the first one
    more: bool | None = None
    first: str | None = None
    until: str | None = None
    grace_s: float | None = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ScheduleFired(ScheduleEvent):
    KIND: ClassVar[str] = ev.SCHEDULE_FIRED


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ScheduleSkipped(ScheduleEvent):
    KIND: ClassVar[str] = ev.SCHEDULE_SKIPPED


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ScheduleQueued(ScheduleEvent):
    KIND: ClassVar[str] = ev.SCHEDULE_QUEUED


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ScheduleMissed(ScheduleEvent):
    KIND: ClassVar[str] = ev.SCHEDULE_MISSED


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class LiveProgress(StoredEvent):
    """Live progress of a running link (published, never stored): the tool it uses, its turns;
    `kind` "spawned" when the agent starts, "refused" for a refused tool call, "output" for a line
    of a command link."""

    KIND: ClassVar[str] = ev.PROGRESS
    link: str | None = None
    kind: str | None = None
    tool: str | None = None
    target: str | None = None
    turns: int | None = None
    detail: str | None = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class WorkerLost(StoredEvent):
    """#15: the worker running a link went silent (no heartbeat within LLMAUTO_WORKER_LOST_AFTER_S);
    the link runs again from its input handoff on another eligible worker (`retry_on`, when one
    is known)."""

    KIND: ClassVar[str] = ev.WORKER_LOST
    worker: str = ""
    link: str = ""
    round: int = 0
    retry_on: str = ""
    silent_s: float = 0.0


BY_KIND: dict[str, type[StoredEvent]] = {
    cls.KIND: cls for cls in (
        RunStarted, RunFinished, LinkStarted, LinkFinished, LinkSkipped, RoundFinished, Blocked, HandoffProblem,
        WaitingLimit, WaitingSlot, Paused, Resumed, StopRequested, OperatorNote, Recovered, WarningEvent,
        ScheduleFired, ScheduleSkipped, ScheduleQueued, ScheduleMissed, ToolRefused, ApprovalRequested,
        ApprovalDecided, Routed, TaskStarted, TaskDone, TaskBlocked, LiveProgress, WorkerLost)
}


def typed(kind: str, data: Mapping[str, Any]) -> StoredEvent | None:
    """The typed value of a stored event's data, by its kind (None for a kind this version does not know)."""
    cls = BY_KIND.get(kind)
    return cls.from_data(data) if cls is not None else None
