"""Schedule expressions and their fire times. Pure: time is always passed in.

Accepted, case-insensitive, at most 200 characters, with an optional `tz=Europe/Berlin` (or
`--tz Europe/Berlin`, as the CLI spells it) anywhere; zone names are case-insensitive too:
- 5-field cron `minute hour day month weekday`: `*`, lists, ranges, steps, names (`jan`, `mon-fri`);
  weekday 0 or 7 is Sunday. When day and weekday are both restricted either may match; as in vixie
  cron a field starting with `*` is unrestricted, so `0 0 */2 * 1` means odd days that are Mondays.
- readable forms: `daily [at] [HH:MM]`, `weekdays HH:MM`, `weekends HH:MM`, `mon,wed HH:MM`,
  `monday HH:MM`, `mon-fri HH:MM`, `hourly [:MM]`, `every Nm` / `every N min` (N divides 60),
  `every Nh` (N divides 24), `every minute|hour`, `@hourly|daily|midnight|weekly|monthly|yearly`.
The normalized expression is plain cron with names as numbers (`0 9 * jan mon-fri` -> `0 9 * 1 1-5`).

Fire times match wall time in the schedule's zone and are then placed on the timeline. When the
clocks change, a wall time that does not exist (spring forward) fires once, shifted forward by the
gap: 02:30 fires at 03:30 on the day Berlin or New York jumps from 02:00 to 03:00 (zoneinfo's
fold=0). A wall time that happens twice (fall back) fires once, at its first occurrence, unless
the schedule fires in every hour (`hourly`, `every 30m`): those fire at both occurrences and keep
their real-time rhythm. So a daily schedule fires exactly once on every calendar day.
Fire times are aware datetimes in the schedule's zone. Python compares and subtracts datetimes of
one tzinfo by wall time and finds no repeated wall time equal to another zone's (PEP 495): do
arithmetic on them in UTC, as this module does inside.

APScheduler 3's CronTrigger is not used: its `from_crontab("30 7 * * 1-5")` means Tuesday to
Saturday (weekdays count from Monday = 0), it fires a daily 02:30 twice on the fall-back day and
steps back in time for hourly schedules then, and it ANDs day and weekday. `spec.trigger()` is a
`CronSpecTrigger` (engine/cron_trigger.py) asking this module, so the scheduler and
`next_fire_times` agree. It lives apart so that reading schedules (`chain status`) does not import
APScheduler, whose package looks up its own version among the installed distributions (#14).

Days without a clock change have one UTC offset: their fire times are arithmetic, bisected to the
first one due; only transition days place times through zoneinfo, an hour at a time.
"""

from __future__ import annotations

import itertools
import re
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from engine.errors import ScheduleError
from engine.zones import find_zone, local_timezone_name

if TYPE_CHECKING:
    from engine.cron_trigger import CronSpecTrigger

MAX_TEXT = 200
SEARCH_DAYS = 366 * 29  # any valid expression fires within 28 years (Feb 29 on a Monday, say)
EXAMPLE = "Example: 0 2 * * * (every day at 02:00), or: daily 02:00, weekdays 07:30, every 30m"
TZ_EXAMPLE = "Example: tz=Europe/Berlin"

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("weekday", 0, 7))
_MONTHS = {m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_DAY_WORDS = {d.lower(): i for i, d in enumerate(_DAY_NAMES)}
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_AT = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
       "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_TIME = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])", re.ASCII)
_NUMBER = re.compile(r"[0-9]+", re.ASCII)
_LIST = re.compile(r"[0-9]+(,[0-9]+)*", re.ASCII)


@dataclass(frozen=True)
class ScheduleSpec:
    expression: str  # normalized 5-field cron, e.g. "0 2 * * *"
    original: str  # what the user typed
    tz: str  # IANA zone name

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(_checked_zone(self.tz))

    def trigger(self) -> CronSpecTrigger:
        """An APScheduler 3 trigger firing at `next_fire_times` (DST-safe; see the module doc)."""
        from engine.cron_trigger import CronSpecTrigger

        return CronSpecTrigger(self)


@dataclass(frozen=True)
class _Fields:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    either_day: bool  # day and weekday both restricted: either may match (vixie cron)

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom, dow = day.day in self.days, day.isoweekday() % 7 in self.weekdays
        return (dom or dow) if self.either_day else (dom and dow)

    def can_fire(self) -> bool:
        """Some date matches (every month-day falls on each weekday within 28 years)."""
        return self.either_day or any(d <= _MONTH_DAYS[m - 1] for m in self.months for d in self.days)


# ---- time zones -------------------------------------------------------------------------------
def _checked_zone(name: str) -> str:
    found = find_zone(name)
    if found is None:
        raise ScheduleError(f"unknown time zone {name!r}. {TZ_EXAMPLE}")
    return found


def canonical_zone(name: str) -> str:
    """The IANA name of a zone given in any case ('europe/berlin' -> 'Europe/Berlin');
    ScheduleError naming it when there is no such zone."""
    return _checked_zone(name.strip())


def _zones_in(words: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Split off `tz=NAME`, `--tz=NAME` and `--tz NAME`: (the other words, [(as typed, zone)])."""
    rest: list[str] = []
    zones: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        word, low = words[i], words[i].lower()
        if low.startswith(("tz=", "--tz=")):
            typed, name = word, word.split("=", 1)[1]
        elif low == "--tz":
            if i + 1 >= len(words):
                raise ScheduleError(f"--tz needs a zone name. {TZ_EXAMPLE}")
            i += 1
            typed, name = f"{word} {words[i]}", words[i]
        else:
            rest.append(word)
            i += 1
            continue
        zones.append((typed, canonical_zone(name)))
        i += 1
    return rest, zones


# ---- parsing ----------------------------------------------------------------------------------
def parse_schedule(text: str, *, tz: str | None = None, default_tz: str | None = None) -> ScheduleSpec:
    """Parse a schedule; ScheduleError says what is wrong and gives an example. The zone is the
    text's `tz=...` and/or `tz` (the CLI's --tz), which must name the same zone, else
    `default_tz`, else the machine's zone."""
    original = (text or "").strip()
    if not original:
        raise ScheduleError(f"empty schedule. {EXAMPLE}")
    if len(original) > MAX_TEXT:
        raise ScheduleError(f"schedule too long ({len(original)} characters, at most {MAX_TEXT}). {EXAMPLE}")
    words, zones = _zones_in(original.split())
    if tz is not None and tz.strip():
        zones.insert(0, (f"--tz {tz.strip()}", canonical_zone(tz)))
    if len({zone for _, zone in zones}) > 1:
        given = " and ".join(typed for typed, _ in zones)
        raise ScheduleError(f"two different time zones given ({given}): give one. {TZ_EXAMPLE}")
    if not words:
        raise ScheduleError(f"no schedule given, only a time zone. {EXAMPLE}")
    zone = zones[0][1] if zones else _checked_zone(default_tz or local_timezone_name())
    expression = _readable([w.lower() for w in words]) or " ".join(words).lower()
    fields = _parse_fields(expression)
    if not fields.can_fire():
        raise ScheduleError(f"{expression!r} never fires (no such date). {EXAMPLE}")
    return ScheduleSpec(expression=_normalize(expression), original=original, tz=zone)


def _readable(words: list[str]) -> str | None:
    """The cron expression of a readable form, or None when `words` is not one."""
    head, rest = words[0], words[1:]
    if head in _AT:
        if rest:
            raise ScheduleError(f"{head} takes nothing more, got {' '.join(rest)!r}. {EXAMPLE}")
        return _AT[head]
    if head == "hourly":
        if not rest:
            return "0 * * * *"
        match = re.fullmatch(r":?([0-5]?[0-9])", rest[0], re.ASCII)
        if len(rest) > 1 or not match:
            raise ScheduleError(f"expected a minute like :15 after 'hourly', got {' '.join(rest)!r}. Example: hourly :15")
        return f"{int(match.group(1))} * * * *"
    if head == "every":
        return _every(" ".join(rest))
    weekdays = {"daily": "*", "weekdays": "1-5", "weekends": "0,6"}.get(head) or _day_list(head)
    if weekdays is None:
        return None
    if rest[:1] == ["at"]:
        rest = rest[1:] or ["nothing"]
    if len(rest) > 1:
        raise ScheduleError(f"expected one time like 07:30 after {head!r}, got {' '.join(rest)!r}. {EXAMPLE}")
    match = _TIME.fullmatch(rest[0] if rest else "00:00")
    if not match:
        raise ScheduleError(f"expected a time like 07:30 after {head!r}, got {rest[0]!r}. {EXAMPLE}")
    return f"{int(match.group(2))} {int(match.group(1))} * * {weekdays}"


def _day_list(word: str) -> str | None:
    """'mon,wed', 'monday' or 'mon-fri' ('fri-mon' wraps round Sunday) as a cron weekday list;
    None when `word` is no day list."""
    days: set[int] = set()
    for part in word.split(","):
        ends = [_DAY_WORDS.get(d, _DAYS.get(d)) for d in part.split("-")]
        if len(ends) > 2 or None in ends:
            return None
        first, last = ends[0], ends[-1]
        assert first is not None and last is not None
        days.update(range(first, last + 1) if first <= last else [*range(first, 7), *range(last + 1)])
    pairs = itertools.groupby(enumerate(sorted(days)), lambda pair: pair[1] - pair[0])
    runs = [[d for _, d in run] for _, run in pairs]  # consecutive days
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in runs)


def _every(text: str) -> str:
    match = re.fullmatch(r"([0-9]*)\s*(m|mins?|minutes?|h|hrs?|hours?)", text, re.ASCII)
    if not match:
        raise ScheduleError(f"expected 'every N m' or 'every N h', got 'every {text}'. Example: every 30m")
    n, unit = int(match.group(1) or 1), match.group(2)
    if unit.startswith("m"):
        if n == 0 or 60 % n:
            raise ScheduleError(f"every {n}m: the minutes must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60), "
                                "so every hour looks the same. Example: every 30m")
        return {1: "* * * * *", 60: "0 * * * *"}.get(n, f"*/{n} * * * *")
    if n == 0 or 24 % n:
        raise ScheduleError(f"every {n}h: the hours must divide 24 (1, 2, 3, 4, 6, 8, 12 or 24), "
                            "so every day looks the same. Example: every 6h")
    return {1: "0 * * * *", 24: "0 0 * * *"}.get(n, f"0 */{n} * * *")


def _normalize(expression: str) -> str:
    """Lower case, single spaces, month and weekday names as numbers."""
    m, h, dom, mon, dow = expression.lower().split()
    mon = re.sub(r"[a-z]+", lambda name: str(_MONTHS[name.group()]), mon)
    dow = re.sub(r"[a-z]+", lambda name: str(_DAYS[name.group()]), dow)
    return " ".join((m, h, dom, mon, dow))


@cache
def _parse_fields(expression: str) -> _Fields:
    parts = expression.lower().split()
    if len(parts) != 5:
        hint = " (seconds are not supported)" if len(parts) == 6 else ""
        raise ScheduleError(f"expected 5 fields (minute hour day month weekday), got {len(parts)}{hint}: "
                            f"{expression!r}. {EXAMPLE}")
    sets = [_parse_field(part, name, lo, hi) for part, (name, lo, hi) in zip(parts, _FIELDS, strict=True)]
    return _Fields(
        minutes=tuple(sorted(sets[0])), hours=tuple(sorted(sets[1])), days=frozenset(sets[2]),
        months=frozenset(sets[3]), weekdays=frozenset(d % 7 for d in sets[4]),
        either_day=not parts[2].startswith("*") and not parts[4].startswith("*"),
    )


def _value(token: str, name: str, lo: int, hi: int) -> int:
    names = _MONTHS if name == "month" else _DAYS if name == "weekday" else {}
    if token in names:
        return names[token]
    if not _NUMBER.fullmatch(token):
        raise ScheduleError(f"{name}: {token!r} is not a number{' or a name' if names else ''}. {EXAMPLE}")
    value = int(token)
    if not lo <= value <= hi:
        raise ScheduleError(f"{name}: {value} is out of range {lo}-{hi}. {EXAMPLE}")
    return value


def _parse_field(text: str, name: str, lo: int, hi: int) -> set[int]:
    top = 6 if name == "weekday" else hi  # `*` is 0-6 for weekdays: 7 is Sunday again
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleError(f"{name}: empty list item in {text!r}. {EXAMPLE}")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _NUMBER.fullmatch(step_text) or int(step_text) == 0:
                raise ScheduleError(f"{name}: bad step {step_text!r} in {item!r}: it must be a number from 1. {EXAMPLE}")
            step = int(step_text)
            if step > top - lo + 1:
                raise ScheduleError(f"{name}: bad step {step} in {item!r}: larger than the range {lo}-{top}. {EXAMPLE}")
        if base == "*":
            start, end = lo, top
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _value(a, name, lo, hi), _value(b, name, lo, hi)
            if start > end:
                raise ScheduleError(f"{name}: range {base!r} runs backwards. {EXAMPLE}")
        else:
            start = _value(base, name, lo, hi)
            end = hi if slash else start
        values.update(range(start, end + 1, step))
    return values


# ---- fire times -------------------------------------------------------------------------------
def _steady_offset(zone: ZoneInfo, day: date) -> timedelta | None:
    """The zone's UTC offset all through `day`, or None when the clocks change that day (or a
    wall time repeated across midnight makes it start or end twice)."""
    midnight = datetime.combine(day, time())
    offsets = {(midnight + timedelta(hours=h)).replace(tzinfo=zone, fold=fold).utcoffset()
               for h in (0, 12, 24) for fold in (0, 1)}
    return offsets.pop() if len(offsets) == 1 else None


def _day_fires(f: _Fields, day: date, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """The fire instants (UTC) of one local day that are later than `after` (UTC), in order."""
    midnight = datetime.combine(day, time())
    offset = _steady_offset(zone, day)
    if offset is not None:  # wall time minus the offset: no gaps, no folds, bisect to the first due
        wall_after = (after + offset).replace(tzinfo=None)
        for hour in f.hours:
            top = midnight + timedelta(hours=hour)
            if top + timedelta(hours=1) <= wall_after:
                continue
            due = bisect_right(f.minutes, wall_after.minute) if top <= wall_after else 0
            for minute in f.minutes[due:]:
                yield (top + timedelta(minutes=minute) - offset).replace(tzinfo=UTC)
        return
    # The clocks change today: place every time through zoneinfo and sort the day (a repeated
    # stretch interleaves its first and second occurrences with the times around it).
    every_hour = len(f.hours) == 24  # such schedules fire at both occurrences of a repeated time
    found: set[datetime] = set()
    for hour in f.hours:
        top = midnight + timedelta(hours=hour)
        if _instants(top + timedelta(minutes=f.minutes[-1]), zone, every_hour)[-1] > after:
            found.update(t for m in f.minutes for t in _instants(top + timedelta(minutes=m), zone, every_hour))
    if found and f.day_matches(day + timedelta(days=1)):  # tomorrow's first times may come before
        latest, tomorrow = max(found), midnight + timedelta(days=1)  # today's last ones
        for hour in f.hours:
            early = {t for m in f.minutes for t in _instants(tomorrow + timedelta(hours=hour, minutes=m), zone, every_hour)
                     if t <= latest}
            if not early:
                break
            found |= early
    yield from sorted(t for t in found if t > after)


def _instants(wall: datetime, zone: ZoneInfo, both: bool) -> list[datetime]:
    """When a local wall time happens (UTC): a skipped one shifted forward by the gap (fold=0
    keeps the offset from before the jump); a repeated one at its first occurrence, or at both."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return [first, second] if both and second > first else [first]


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


def _fires_utc(spec: ScheduleSpec, after: datetime) -> Iterator[datetime]:
    """Fire instants (UTC) strictly after `after`, in order, for up to SEARCH_DAYS days."""
    f, zone, last = _parse_fields(spec.expression), spec.zone, _utc(after, "after")
    day = last.astimezone(zone).date() - timedelta(days=1)  # a gap may shift the eve's times
    for _ in range(min(SEARCH_DAYS, (date.max - day).days)):
        if f.day_matches(day):
            for when in _day_fires(f, day, zone, last):
                if when > last:  # a time shifted by a gap may equal a later one
                    last = when
                    yield when
        day += timedelta(days=1)


def iter_fires(spec: ScheduleSpec, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after `after`, in order, as aware datetimes in the spec's zone."""
    zone = spec.zone
    return (when.astimezone(zone) for when in _fires_utc(spec, after))


def next_fire_times(spec: ScheduleSpec, after: datetime, count: int = 3) -> list[datetime]:
    """The next `count` fire times strictly after `after`, as aware datetimes in the spec's zone."""
    return list(itertools.islice(iter_fires(spec, after), max(count, 0)))


def fires_between(spec: ScheduleSpec, after: datetime, until: datetime, *, limit: int = 1000) -> list[datetime]:
    """Fire times in (after, until], at most `limit` of them (the latest kept)."""
    end, zone = _utc(until, "until"), spec.zone
    out: deque[datetime] = deque(itertools.takewhile(lambda t: t <= end, _fires_utc(spec, after)), maxlen=limit)
    return [when.astimezone(zone) for when in out]


def most_recent_fire(spec: ScheduleSpec, before: datetime, not_before: datetime | None = None) -> datetime | None:
    """The latest fire time in (not_before, before], for catching up a missed run; without
    `not_before` the latest one at all (looking back up to SEARCH_DAYS days). Walks backwards."""
    f, zone, end = _parse_fields(spec.expression), spec.zone, _utc(before, "before")
    floor = _utc(not_before, "not_before") if not_before is not None else end - timedelta(days=SEARCH_DAYS)
    day = end.astimezone(zone).date() + timedelta(days=1)
    stop = floor.astimezone(zone).date() - timedelta(days=1)
    while floor < end and day >= stop:
        if f.day_matches(day):
            due = [t for t in _day_fires(f, day, zone, floor) if t <= end]
            if due:
                return max(due).astimezone(zone)
        day -= timedelta(days=1)
    return None


# ---- words ------------------------------------------------------------------------------------
def describe(spec: ScheduleSpec) -> str:
    """A short human description, e.g. 'every day at 02:00 (Europe/Berlin)'; else the cron."""
    m, h, dom, mon, dow = spec.expression.split()
    f, tz = _parse_fields(spec.expression), f" ({spec.tz})"
    if _LIST.fullmatch(m) and _LIST.fullmatch(h) and len(f.minutes) * len(f.hours) <= 4 and mon == "*":
        at = ", ".join(f"{hh:02d}:{mm:02d}" for hh in f.hours for mm in f.minutes)
        if dom == "*":
            return f"{_weekday_words(f.weekdays)} at {at}{tz}"
        if dow == "*" and _LIST.fullmatch(dom):
            return f"monthly on day {dom.replace(',', ', ')} at {at}{tz}"
    if dom == mon == dow == "*":
        if h == "*" and m.isdigit():
            return f"every hour at :{int(m):02d}{tz}"
        if h == "*" and m.startswith("*/"):
            return f"every {m[2:]} minutes{tz}"
        if h == "*" and m == "*":
            return f"every minute{tz}"
        if m.isdigit() and h.startswith("*/"):
            return f"every {h[2:]} hours{'' if m == '0' else f' at :{int(m):02d}'}{tz}"
    return f"cron {spec.expression}{tz}"


def _weekday_words(weekdays: frozenset[int]) -> str:
    known = {frozenset(range(7)): "every day", frozenset(range(1, 6)): "weekdays", frozenset({0, 6}): "weekends"}
    if weekdays in known:
        return known[weekdays]
    if len(weekdays) == 1:
        return f"{_DAY_NAMES[min(weekdays)]}s"
    return "every " + ", ".join(_DAY_NAMES[d][:3] for d in sorted(weekdays, key=lambda d: (d + 6) % 7))  # Monday first
