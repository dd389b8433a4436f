"""The schedule book: persisted rules for starting a chain by itself, and the only code that sees their table.

A schedule is either `cron` (a 5-field expression or a readable form such as "daily 02:00", in a
time zone; engine/cron.py parses them) or `after` (start the chain whenever another chain finishes,
optionally only when it ended ALL_DONE). The store is the source of truth: `ScheduleBook` reads and
writes the rows, from the CLI (llmauto/schedule_cli.py), the bot or `serve`; the running timer
(engine/timer.py) notices changes from any process and fires the rows.

Two bookkeeping columns make firing safe across restarts and processes:
- `last_fire` is the latest firing slot handled (started, skipped, queued or reported missed). A
  slot is *claimed* by moving `last_fire` forward in one UPDATE before anything runs, so a slot
  never starts two runs, even with two schedulers on one database.
- `armed_at` is when the schedule was added or last resumed: firings before it (or while it was
  paused) are not "missed" when `serve` starts again.
- `queued_at` is the slot of a firing (overlap `queue`) that found the chain running and waits to
  start when that run ends, even across a restart of `serve`; pausing the schedule drops it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from engine.chains import NAME_PATTERN
from engine.errors import ScheduleError
from engine.records import Record
from engine.settings import Settings
from engine.store import Store, utc_iso

if TYPE_CHECKING:
    from engine.cron import ScheduleSpec

# engine/cron.py (the rules and their fire times) is imported by the methods that use it: a
# chain with no cron schedule shows its `status` without it (#14, whole-process cost).

OVERLAP_POLICIES = ("skip", "queue")


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Schedule(Record):
    id: int
    chain: str
    kind: str  # cron | after
    expression: str | None  # kind cron: the normalized 5-field expression
    original: str | None  # kind cron: what the user typed
    tz: str | None  # kind cron: IANA zone name
    after_chain: str | None  # kind after: fire when this chain finishes
    only_all_done: bool
    enabled: bool
    overlap: str  # skip | queue
    created_by: str | None
    chat_id: int | None
    created_at: str
    last_fire: str | None  # UTC ISO of the latest firing slot handled
    last_outcome: str | None
    last_run_id: int | None
    armed_at: str | None = None
    queued_at: str | None = None  # UTC ISO of a slot waiting for the running run to end

    @classmethod
    def from_row(cls, row: Any) -> Schedule:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["only_all_done"] = bool(values["only_all_done"])
        values["enabled"] = bool(values["enabled"])
        return cls(**values)

    def spec(self) -> ScheduleSpec | None:
        """The parsed cron rule (None for an `after` schedule)."""
        if self.kind != "cron" or not self.expression:
            return None
        from engine.cron import parse_schedule

        return parse_schedule(self.expression, default_tz=self.tz or "UTC")

    def description(self) -> str:
        if self.kind == "after":
            only = " with ALL_DONE" if self.only_all_done else ""
            return f"after {self.after_chain} finishes{only}"
        try:
            spec = self.spec()
        except ScheduleError as exc:  # a row edited by hand: show it, do not fail the listing
            return f"{self.expression!r} (unusable: {exc})"
        from engine.cron import describe

        return describe(spec) if spec is not None else (self.original or self.expression or "?")

    def counts_from(self) -> datetime:
        """Firings after this moment count: the last one handled, or when it was (re)armed."""
        marks = [parse_iso(s) for s in (self.last_fire, self.armed_at or self.created_at) if s]
        return max(marks)


Schedules = list[Schedule]
Times = list[datetime]


class ScheduleBook:
    """Reads and writes the schedules table; validates what users type."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    # ---- adding --------------------------------------------------------------------------
    async def add_cron(
        self, chain: str, text: str, *, tz: str | None = None, overlap: str = "skip",
        created_by: str | None = None, chat_id: int | None = None, now: datetime | None = None,
    ) -> tuple[Schedule, Times]:
        """Add a cron schedule; returns it and its next three fire times. `tz` (the CLI's --tz) and
        a `tz=` in the text may both be given only when they name the same zone (in any case)."""
        name = self._check_chain(chain)
        _check_overlap(overlap)
        from engine.cron import parse_schedule

        spec = parse_schedule(text, tz=tz, default_tz=self.zone(None))
        await self._refuse_duplicate(name, "cron", spec.expression, spec.tz)
        now = now or self.store.clock.now()
        stamp = utc_iso(now)
        new_id = await self.store.execute(
            "INSERT INTO schedules (chain, kind, expression, original, tz, overlap, created_by, chat_id, "
            "created_at, armed_at) VALUES (?, 'cron', ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, spec.expression, spec.original, spec.tz, overlap, created_by, chat_id, stamp, stamp),
        )
        assert new_id is not None
        schedule = await self.get(new_id)
        return schedule, self.next_fires(schedule, now, 3)

    async def add_after(
        self, chain: str, after_chain: str, *, only_all_done: bool = False,
        created_by: str | None = None, chat_id: int | None = None, overlap: str = "skip",
    ) -> Schedule:
        """Start `chain` whenever `after_chain` finishes (with ALL_DONE only, if asked)."""
        name = self._check_chain(chain)
        after = self._check_chain(after_chain)
        _check_overlap(overlap)
        if name == after:
            raise ScheduleError(f"{name} cannot run after itself: that would loop forever")
        loop = _after_path(await self.list(), start=name, goal=after)
        if loop is not None:
            cycle = " → ".join([after, *loop])
            raise ScheduleError(f"running {name} after {after} would loop forever: {cycle}")
        await self._refuse_duplicate(name, "after", after, None)
        new_id = await self.store.execute(
            "INSERT INTO schedules (chain, kind, after_chain, only_all_done, overlap, created_by, chat_id, "
            "created_at, armed_at) VALUES (?, 'after', ?, ?, ?, ?, ?, ?, ?)",
            (name, after, int(only_all_done), overlap, created_by, chat_id, self.store.stamp(), self.store.stamp()),
        )
        assert new_id is not None
        return await self.get(new_id)

    def zone(self, tz: str | None) -> str:
        """The zone a new schedule uses: the one given, else LLMAUTO_TIMEZONE, else the machine's."""
        from engine.cron import canonical_zone
        from engine.zones import local_timezone_name

        return canonical_zone(tz or self.settings.timezone or local_timezone_name())

    async def _refuse_duplicate(self, chain: str, kind: str, rule: str, tz: str | None) -> None:
        """Two equal schedules would only ever skip each other."""
        for s in await self.list():
            same = (s.expression, s.tz) == (rule, tz) if kind == "cron" else s.after_chain == rule
            if s.chain == chain and s.kind == kind and same:
                raise ScheduleError(f"{chain} already has this schedule: #{s.id} ({s.description()})")

    def _check_chain(self, name: str) -> str:
        from engine.chains import load_chain

        if not re.fullmatch(NAME_PATTERN, name):
            raise ScheduleError(f"{name!r} is not a chain name (letters, digits, '_', '.', '-'; see `llmauto chain list`)")
        return load_chain(self.settings.home, name, settings=self.settings).name  # UnknownChain / InvalidChain say why

    # ---- reading -------------------------------------------------------------------------
    async def list(self) -> Schedules:
        rows = await self.store.query("SELECT * FROM schedules ORDER BY id")
        return [Schedule.from_row(r) for r in rows]

    async def get(self, schedule_id: int) -> Schedule:
        rows = await self.store.query("SELECT * FROM schedules WHERE id = ?", (schedule_id,))
        if not rows:
            raise ScheduleError(f"no schedule #{schedule_id} (see `llmauto schedule list`)")
        return Schedule.from_row(rows[0])

    def next_fires(self, schedule: Schedule, now: datetime, count: int = 1) -> Times:
        """The next `count` fire times after `now` (aware, in the schedule's zone); [] for `after`
        schedules and for rows that no longer parse."""
        try:
            spec = schedule.spec()
        except ScheduleError:
            return []
        from engine.cron import next_fire_times

        return [] if spec is None else next_fire_times(spec, now, count)

    # ---- changing ------------------------------------------------------------------------
    async def remove(self, schedule_id: int) -> Schedule:
        schedule = await self.get(schedule_id)
        await self.store.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,))
        return schedule

    async def set_enabled(self, schedule_id: int, enabled: bool, *, now: datetime | None = None) -> Schedule:
        """Pause or resume. Resuming re-arms: what would have fired while paused is not "missed"."""
        schedule = await self.get(schedule_id)
        if schedule.enabled != enabled:
            if enabled:
                await self.store.execute(
                    "UPDATE schedules SET enabled = 1, armed_at = ? WHERE id = ?", (utc_iso(now or self.store.clock.now()), schedule_id)
                )
            else:
                await self.store.execute("UPDATE schedules SET enabled = 0, queued_at = NULL WHERE id = ?", (schedule_id,))
        return await self.get(schedule_id)

    async def claim(self, schedule_id: int, when: datetime, *, strict: bool = True) -> Schedule | None:
        """Take the firing slot `when` of an enabled schedule: moves `last_fire` forward in one
        UPDATE. None when the schedule is gone, paused, or the slot (or a later one) was taken
        already, by this process or another. `strict=False` also takes a slot equal to the last."""
        stamp = utc_iso(when)
        op = "<" if strict else "<="
        async with self.store.transaction() as db:
            cur = await db.execute(
                f"UPDATE schedules SET last_fire = ? WHERE id = ? AND enabled = 1 "
                f"AND (last_fire IS NULL OR last_fire {op} ?)",
                (stamp, schedule_id, stamp),
            )
            if cur.rowcount != 1:
                return None
            row = await (await db.execute("SELECT * FROM schedules WHERE id = ?", (schedule_id,))).fetchone()
        return Schedule.from_row(row) if row is not None else None

    async def record_fire(self, schedule_id: int, *, when: datetime, outcome: str, run_id: int | None) -> None:
        """Note what a firing did; `last_fire` only moves forward, `last_run_id` keeps the last run."""
        stamp = utc_iso(when)
        await self.store.execute(
            "UPDATE schedules SET last_fire = CASE WHEN last_fire IS NULL OR last_fire < ? THEN ? "
            "ELSE last_fire END, last_outcome = ?, last_run_id = COALESCE(?, last_run_id) WHERE id = ?",
            (stamp, stamp, outcome[:500], run_id, schedule_id),
        )

    async def queue(self, schedule_id: int, *, when: datetime, outcome: str) -> None:
        """Keep the slot `when` waiting to start when the chain's running run ends (one UPDATE with
        what `record_fire` notes, so a crash leaves both or neither)."""
        stamp = utc_iso(when)
        await self.store.execute(
            "UPDATE schedules SET last_fire = CASE WHEN last_fire IS NULL OR last_fire < ? THEN ? "
            "ELSE last_fire END, last_outcome = ?, queued_at = ? WHERE id = ?",
            (stamp, stamp, outcome[:500], stamp, schedule_id),
        )

    async def unqueue(self, schedule_id: int) -> None:
        """The waiting start was made (or dropped)."""
        await self.store.execute("UPDATE schedules SET queued_at = NULL WHERE id = ?", (schedule_id,))


def queued_slot(schedule: Schedule) -> datetime | None:
    return parse_iso(schedule.queued_at) if schedule.queued_at else None


def _check_overlap(overlap: str) -> None:
    if overlap not in OVERLAP_POLICIES:
        raise ScheduleError(f"overlap must be 'skip' or 'queue', not {overlap!r}")


def _after_path(schedules: Schedules, *, start: str, goal: str) -> list[str] | None:
    """The chains `start` finishing would start in turn until `goal`, or None if it never does."""
    edges: dict[str, list[str]] = {}
    for s in schedules:
        if s.kind == "after" and s.after_chain is not None:
            edges.setdefault(s.after_chain, []).append(s.chain)
    seen: set[str] = set()
    stack: list[list[str]] = [[start]]
    while stack:
        path = stack.pop()
        if path[-1] == goal:
            return path
        for nxt in edges.get(path[-1], []):
            if nxt not in seen:
                seen.add(nxt)
                stack.append([*path, nxt])
    return None


def parse_iso(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def format_fire(when: datetime, tz: str | None) -> str:
    """'2026-11-25 02:00 Europe/Berlin'."""
    zone: tzinfo = UTC
    if tz:
        from zoneinfo import (
            ZoneInfo,  # here: `chain status` of a chain without schedules never needs it
        )

        zone = ZoneInfo(tz)
    return f"{when.astimezone(zone):%Y-%m-%d %H:%M} {tz or 'UTC'}"


# ---- for `chain status`, the CLI and the bot -------------------------------------
async def next_fire_for_chain(
    store: Store, chain: str, settings: Settings, *, now: datetime | None = None
) -> str | None:
    """When the chain starts next by itself, e.g. "2026-11-25 02:00 Europe/Berlin (#3)"."""
    book = ScheduleBook(store, settings)
    now = now or store.clock.now()
    best: tuple[datetime, Schedule] | None = None
    after: Schedule | None = None
    for schedule in await book.list():
        if schedule.chain != chain or not schedule.enabled:
            continue
        if schedule.kind == "after":
            after = after or schedule
            continue
        times = book.next_fires(schedule, now, 1)
        if times and (best is None or times[0] < best[0]):
            best = (times[0], schedule)
    if best is not None:
        return f"{format_fire(best[0], best[1].tz)} (#{best[1].id})"
    if after is not None:
        return f"{after.description()} (#{after.id})"
    return None
